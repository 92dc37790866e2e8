# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Check an option dict against a module's documented options, on the controller.

The roles hand option dicts (madengine_run_options, madengine_vm_options, ...) to modules through
``module_defaults``, so a new module option needs no role change. This plugin is the check that comes
first: a key the module does not know, a key the role sets itself, or a value of the wrong type is named
with the host before anything on the host changes. The module's DOCUMENTATION is the reference
(ansible-test keeps it equal to the argument spec).

It also returns ``paths``: on a host with a local connection, relative values of path options made
absolute against the directory ansible-playbook runs in, because Ansible runs local modules in the
playbook's directory while a user means the directory they started from. Option values themselves are
never returned (some are secrets).
"""

from __future__ import annotations

import os

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.plugins.loader import fragment_loader, module_loader
from ansible.utils.plugin_docs import get_docstring

from ansible_collections.rocm.madengine.plugins.plugin_utils.module_options import check, kind, local_paths

LOCAL_CONNECTIONS = ("local", "ansible.builtin.local")


def documented_options(module, where="module_options"):
    """``(fqcn, options)``: the documented options of a module (a short name means one of this collection)."""
    fqcn = module if "." in module else "rocm.madengine." + module
    found = module_loader.find_plugin_with_context(fqcn)
    if not found.resolved:
        raise AnsibleActionFail("%s: there is no module %s" % (where, fqcn))
    doc = get_docstring(found.plugin_resolved_path, fragment_loader, is_module=True,
                        collection_name=found.plugin_resolved_collection)[0]
    return fqcn, (doc or {}).get("options") or {}


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("module", "options", "name", "reserved", "defaults"))
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self._task.args
        module = args.get("module")
        if not isinstance(module, str) or not module:
            raise AnsibleActionFail("module_options needs module, the name of the module the options are for")
        label = args.get("name") or "options"
        host = task_vars.get("inventory_hostname", "this host")
        reserved = args.get("reserved") or []
        given = {}
        for arg, what in (("options", label), ("defaults", "the role's settings from its variables")):
            value = args.get(arg)
            if value is None or value == "":
                value = {}
            if not isinstance(value, dict):
                raise AnsibleActionFail("%s on %s must be a mapping of %s options, not %s"
                                        % (what, host, module, kind(value)))
            given[arg] = value

        fqcn, documented = documented_options(module, "%s on %s" % (label, host))
        problems = check(fqcn, documented, given["options"], reserved)
        problems.extend("%s (from the role's variables)" % problem
                        for problem in check(fqcn, documented, given["defaults"]))
        if problems:
            result.update(failed=True, module=fqcn, problems=problems,
                          msg="%s on %s: %s" % (label, host, "; ".join(problems)))
            return result

        merged = dict(given["defaults"], **given["options"])
        # a delegated task carries the connection of the host it is delegated to
        connection = self._play_context.connection or task_vars.get("ansible_connection")
        paths = local_paths(documented, merged, os.getcwd()) if connection in LOCAL_CONNECTIONS else {}
        result.update(changed=False, module=fqcn, option_keys=sorted(given["options"]), paths=paths)
        return result
