# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""Errors, JSON loading with precise messages, and atomic file writes shared by every module."""

from __future__ import annotations

import datetime
import json
import os
import tempfile


class MadengineError(Exception):
    """A user-facing failure: the message is a full sentence naming the file, model or device."""


def load_json_file(path, what="JSON file"):
    """Load a JSON document; errors name the file and, for syntax errors, the line and column."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise MadengineError("%s %s does not exist." % (what, path))
    except OSError as exc:
        raise MadengineError("Cannot read %s %s: %s." % (what, path, exc.strerror or exc))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MadengineError("%s %s is not UTF-8 text (byte %d)." % (what, path, exc.start))
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MadengineError(
            "%s %s is not valid JSON: %s at line %d column %d." % (what, path, exc.msg, exc.lineno, exc.colno)
        )


def atomic_write_bytes(path, data, mode=0o644):
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename.

    Readers see the old content or the new one, never a half-written file; on failure nothing is left.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".tmp", dir=directory)
    except OSError as exc:
        raise MadengineError("Cannot write %s: %s." % (path, exc.strerror or exc))
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise MadengineError("Cannot write %s: %s." % (path, exc.strerror or exc))


def write_if_changed(path, data, check_mode=False):
    """Write ``data`` (bytes) atomically unless the file already holds exactly them.

    Returns True when the file differs (and, outside check mode, was written): an honest ``changed``.
    """
    try:
        with open(path, "rb") as handle:
            if handle.read() == data:
                return False
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        raise MadengineError("Cannot write %s: it is a directory." % path)
    except OSError as exc:
        raise MadengineError("Cannot read %s: %s." % (path, exc.strerror or exc))
    if not check_mode:
        atomic_write_bytes(path, data)
    return True


def atomic_write_text(path, text, mode=0o644):
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def atomic_write_json(path, document, mode=0o644):
    atomic_write_text(path, json.dumps(document, indent=2, sort_keys=False) + "\n", mode=mode)


def utc_now():
    """Current UTC time as an ISO 8601 string with a ``Z`` suffix and second precision."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def as_list(value):
    """Accept a list or a comma-separated string (what AWX surveys produce) and return a list."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return list(value)


# ---- helpers for the modules' tasks (they take an AnsibleModule) ---------------------------------

NO_LOG_PLACEHOLDER = "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


def absolute_paths(module):
    """Make every path option absolute against the module's working directory (where the play runs
    for a local task), so a relative path a user gives means the same to every part of the module."""
    for name, spec in module.argument_spec.items():
        if spec.get("type") == "path" and module.params.get(name):
            module.params[name] = os.path.abspath(module.params[name])


def leaf_values(value):
    """The texts Ansible masks for a ``no_log`` option: every string and number inside ``value``."""
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [text for item in value for text in leaf_values(item)]
    if value is None or isinstance(value, bool):
        return []
    return [str(value)]


def mask_only(module, option, secrets):
    """Mask only ``secrets`` of the ``no_log`` dict ``option`` in the module's results.

    Ansible masks every value of a ``no_log`` dict wherever it appears in the results, user names and
    repository names included, which would garble image names, paths and messages.  The option itself
    is replaced by Ansible's placeholder (so it does not show in ``invocation``); ``secrets`` stay
    masked, as do the values of every other ``no_log`` option.
    """
    value = module.params.get(option)
    if value is None:
        return
    module.no_log_values.difference_update(leaf_values(value))
    for name, spec in module.argument_spec.items():
        if spec.get("no_log") and name != option:
            module.no_log_values.update(leaf_values(module.params.get(name)))
    module.no_log_values.update(v for v in secrets if v)
    module.params[option] = NO_LOG_PLACEHOLDER


def log_tail(path, lines=5):
    """The last ``lines`` lines of a log file in one line (for an error message); "no log" or "empty log"."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 4096))
            tail = handle.read().decode("utf-8", "replace").splitlines()[-lines:]
    except OSError:
        return "no log"
    return " | ".join(tail) or "empty log"
