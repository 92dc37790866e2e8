# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Check an option dict against a module's documented options, on the controller.

The roles hand option dicts (madengine_vm_options, ...) to modules through ``module_defaults``, so a
new module option needs no role change. This plugin is the check that comes first: a key the
module does not know, or a value of the wrong type, is named with the host before anything on
the host changes. The module's DOCUMENTATION is the reference (ansible-test keeps it equal to the
argument spec).
"""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.text.converters import to_native
from ansible.module_utils.errors import UnsupportedError
from ansible.plugins.action import ActionBase
from ansible.plugins.loader import fragment_loader, module_loader
from ansible.utils.plugin_docs import get_docstring

_SPEC_KEYS = ("type", "elements", "choices", "aliases")


def spec_from_doc(options):
    """An argument spec (without defaults or required flags) from documented options."""
    spec = {}
    for name, doc in (options or {}).items():
        entry = {key: doc[key] for key in _SPEC_KEYS if doc.get(key) is not None}
        entry.setdefault("type", "str")
        if doc.get("suboptions"):
            entry["options"] = spec_from_doc(doc["suboptions"])
        spec[name] = entry
    return spec


def documented_options(module):
    """The documented options of a module (a short name means one of this collection)."""
    fqcn = module if "." in module else "rocm.madengine." + module
    found = module_loader.find_plugin_with_context(fqcn)
    if not found.resolved:
        raise AnsibleActionFail("module_options: no module %s" % fqcn)
    doc = get_docstring(found.plugin_resolved_path, fragment_loader, is_module=True,
                        collection_name=found.plugin_resolved_collection)[0]
    return fqcn, (doc or {}).get("options") or {}


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("module", "options", "name", "reserved"))
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        args = self._task.args
        module = args.get("module")
        if not isinstance(module, str) or not module:
            raise AnsibleActionFail("module_options needs module, the name of the module the options are for")
        options = args.get("options") or {}
        label = args.get("name") or "options"
        reserved = args.get("reserved") or []
        host = (task_vars or {}).get("inventory_hostname", "this host")
        if not isinstance(options, dict):
            raise AnsibleActionFail("%s on %s must be a mapping of %s options, not %s"
                                    % (label, host, module, type(options).__name__))

        fqcn, documented = documented_options(module)
        problems = []
        taken = sorted(set(options) & set(reserved))
        if taken:
            problems.append("the role sets %s itself" % ", ".join(taken))
        checked = ArgumentSpecValidator(spec_from_doc(documented)).validate(
            {key: value for key, value in options.items() if key not in reserved})
        if checked.unsupported_parameters:
            # entries are names, or (name, context) tuples on some ansible-core versions
            names = sorted(set(entry[0] if isinstance(entry, tuple) else entry
                               for entry in checked.unsupported_parameters))
            problems.append("unknown key(s) %s (%s takes: %s)"
                            % (", ".join(names), fqcn, ", ".join(sorted(set(documented) - set(reserved)))))
        problems.extend(to_native(error) for error in checked.errors if not isinstance(error, UnsupportedError))
        if problems:
            result.update(failed=True, msg="%s on %s: %s" % (label, host, "; ".join(problems)),
                          problems=problems)
            return result
        result.update(changed=False, options=options, module=fqcn)
        return result
