# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the module_options action checks, as plain functions (no controller state, so they are tested alone).

An option dict is checked against a module's documented options, the DOCUMENTATION ansible-test keeps equal to
the argument spec; relative path options of a host with a local connection are made absolute.
"""

from __future__ import annotations

import os

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.text.converters import to_native
from ansible.module_utils.errors import UnsupportedError

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


def canonical_names(documented):
    """{name or alias: option name}."""
    names = {}
    for name, doc in documented.items():
        names[name] = name
        for alias in doc.get("aliases") or []:
            names[alias] = name
    return names


def check(fqcn, documented, values, reserved=()):
    """Sentences naming what is wrong with ``values`` (an option dict) for the module ``fqcn``."""
    spec = spec_from_doc(documented)
    names = canonical_names(documented)
    problems = []
    taken = sorted(key for key in values if names.get(key) in reserved or key in reserved)
    if taken:
        problems.append("the role sets %s itself" % ", ".join(taken))
    checked = ArgumentSpecValidator(spec).validate(
        {key: value for key, value in values.items() if key not in taken})
    if checked.unsupported_parameters:
        # a name, or a tuple (parent option, ..., name) for a sub-option
        unknown = sorted(set(".".join(entry) if isinstance(entry, tuple) else entry
                             for entry in checked.unsupported_parameters))
        problems.append("unknown key(s) %s (%s takes: %s)"
                        % (", ".join(unknown), fqcn, ", ".join(sorted(set(documented) - set(reserved)))))
    problems.extend(to_native(error) for error in checked.errors if not isinstance(error, UnsupportedError))
    return problems


def local_paths(documented, values, cwd):
    """{option: absolute path} for the relative values of path options (``~`` and ``$`` left to the module)."""
    names = canonical_names(documented)
    paths = {}
    for key, value in values.items():
        doc = documented.get(names.get(key), {})
        if doc.get("type") != "path" or not isinstance(value, str) or not value:
            continue
        if os.path.isabs(value) or value.startswith(("~", "$")):
            continue
        paths[key] = os.path.normpath(os.path.join(cwd, value))
    return paths


def kind(value):
    """What a value is, in words (ansible-core 2.19+ hands over tagged subclasses of str, list, ...)."""
    for types, name in ((str, "a string"), ((list, tuple), "a list"), (bool, "a boolean"),
                        ((int, float), "a number")):
        if isinstance(value, types):
            return name
    return type(value).__name__
