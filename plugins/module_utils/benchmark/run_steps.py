# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""Planning the steps around one model run (``workspace.py``): clone, scripts, tools, data, details, keeping.

:func:`plan_steps` decides whether a model needs them and fills a :class:`workspace.Steps`; a model that needs
none keeps the direct command (its script as the container's command).
"""

from __future__ import annotations

import os
import shlex

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.context import ENV_NAME
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.sysenv import env_csv_name
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.workspace import (
    WORKSPACE,
    Clone,
    Steps,
    public_url,
)
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError

ROCENV_MODES = ("lite", "full")


def sys_env_wanted(option, ctx):
    """The system environment details: the module option when set, else the context's ``gen_sys_env_details``."""
    if option is not None:
        return bool(option)
    value = ctx.get("gen_sys_env_details")
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _read_key(entry, cred, model_name, base_dir):
    if entry.get("ssh_key"):
        key = str(entry["ssh_key"])
        return (key if key.endswith("\n") else key + "\n").encode("utf-8")
    path = entry.get("ssh_key_file")
    if not path:
        return None
    path = os.path.join(base_dir or "", os.path.expanduser(str(path)))
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise MadengineError("Model '%s': the ssh_key_file %s of credential '%s' cannot be read on this node: %s."
                             % (model_name, path, cred, exc.strerror or exc))


def plan_clone(run, credentials):
    """The Clone of a model with a ``url`` (its ``cred`` entry authenticates), or None."""
    url = str(run.model.get("url") or "").strip()
    if not url:
        return None
    cred = run.model.get("cred") or ""
    clone = Clone(url)
    if not cred:
        return clone
    entry = credentials.entries.get(cred)
    if not isinstance(entry, dict):
        raise MadengineError("Model '%s' clones %s with credential '%s', which %s does not define."
                             % (run.name, public_url(url), cred, credentials.origin or "the credentials"))
    if not ENV_NAME.match(cred):
        raise MadengineError("Model '%s': credential name '%s' is not usable as an environment variable prefix."
                             % (run.name, cred))
    clone.cred = cred
    if clone.is_ssh:
        clone.ssh_user = entry.get("username") or None
        base = os.path.dirname(credentials.source) if credentials.source else None
        clone.ssh_key = _read_key(entry, cred, run.name, base)
    elif "username" in entry and "password" in entry:
        clone.username_var, clone.password_var = cred + "_USERNAME", cred + "_PASSWORD"
    return clone


def _script_files(steps, items, files, run_name):
    for item in items:
        data = files.read(item["path"])
        if data is None:
            raise MadengineError("Model '%s': script %s is not in %s." % (run_name, item["path"], files.source))
        for rel, found in files.below(os.path.dirname(item["path"]) or item["path"]).items():
            if found is not None:
                steps.files["%s/%s" % (WORKSPACE, rel)] = found


def plan_steps(run, settings, ctx, scripts, files, credentials, workdir, words, prefix):
    """The Steps of a run, or None when its script can simply be the container's command."""
    clone = plan_clone(run, credentials)
    downloads = [m for m in run.data if m.download]
    env_details = sys_env_wanted(settings.sys_env_details, ctx)
    needed = (clone is not None or scripts.pre_scripts or scripts.post_scripts or scripts.tools or downloads
              or env_details or settings.keep_alive or settings.keep_model_dir)
    if not needed:
        return None
    steps = Steps(run.name)
    steps.clone = clone
    steps.pre_scripts, steps.post_scripts = list(scripts.pre_scripts), list(scripts.post_scripts)
    _script_files(steps, steps.pre_scripts + steps.post_scripts, files, run.name)
    if scripts.tools:
        for rel, found in files.below("scripts/common").items():
            if found is not None:
                steps.files.setdefault("%s/%s" % (WORKSPACE, rel), found)
    if env_details:
        mode = str(ctx.get("rocenv_mode") or "lite")
        steps.env_details = (env_csv_name(run.name), mode if mode in ROCENV_MODES else "lite")
    steps.data = downloads
    for mount in downloads:
        if mount.download["kind"] == "custom":
            steps.files["%s/%s" % (WORKSPACE, mount.download["path"])] = files.read(mount.download["path"])
    steps.scripts_dir = workdir
    command = " ".join(shlex.quote(w) for w in words)
    steps.command = ("%s %s" % (prefix, command)) if prefix else command
    steps.multiple_results = run.multiple_results
    steps.keep_alive = settings.keep_alive
    steps.keep_model_dir = settings.keep_model_dir
    return steps
