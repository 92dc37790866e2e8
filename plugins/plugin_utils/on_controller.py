# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A module's task run in the task's own process on the controller, when the module would run there anyway.

madengine_build (on a build host that is the controller) and madengine_report (always on the controller) run with a
local connection and the controller's own Python. A module process there costs more than the work of a warm run:
Ansible assembles the module's payload, starts a Python that compiles the collection's code from the payload again
and imports everything anew. When nothing would differ, the action plugin runs the same task function here instead:
the arguments checked against the module's argument spec (same checks, same defaults), the same code, the result
masked with the same ``no_log`` values, made plain JSON as a module's would be, its warnings shown. Anything else -
another host, another interpreter, ``become``, ``async``, a task ``environment`` - runs the module as usual.
"""

from __future__ import annotations

import importlib
import json
import os
import shlex
import subprocess
import sys

from ansible import constants as C
from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.parameters import remove_values
from ansible.module_utils.common.process import get_bin_path
from ansible.module_utils.common.text.converters import to_bytes, to_native
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()

LOCAL_CONNECTIONS = ("local", "ansible.builtin.local")
TASKS = "ansible_collections.rocm.madengine.plugins.module_utils.benchmark."


class Ended(Exception):
    """exit_json or fail_json was called: the task's result."""

    def __init__(self, result):
        super(Ended, self).__init__("ended")
        self.result = result


class ControllerModule(object):
    """What a module's task function uses of AnsibleModule: validated params, check mode, warnings, the no_log values
    (which the task may narrow or extend), programs found and run, exit_json and fail_json (which end the task by
    raising Ended)."""

    def __init__(self, params, argument_spec, check_mode, no_log_values):
        self.params = params
        self.argument_spec = argument_spec
        self.check_mode = check_mode
        self.no_log_values = set(no_log_values)
        self.warnings = []

    def warn(self, warning):
        self.warnings.append(warning)

    def debug(self, _message):
        """AnsibleModule logs it only when Ansible's debugging is on."""

    def get_bin_path(self, name, required=False, opt_dirs=None):
        try:
            return get_bin_path(name, opt_dirs=opt_dirs or [])
        except ValueError:
            if required:
                self.fail_json(msg="Failed to find required executable %s" % name)
            return None

    def run_command(self, args, check_rc=False, handle_exceptions=True, environ_update=None, use_unsafe_shell=False,
                    data=None, binary_data=False):
        """(rc, stdout, stderr) as AnsibleModule.run_command gives them, for the arguments the tasks use."""
        shell = use_unsafe_shell and isinstance(args, str)
        if isinstance(args, str) and not shell:
            args = shlex.split(args)
        if data is not None and not binary_data:
            data = to_bytes(data) + b"\n"
        try:
            proc = subprocess.run(args, shell=shell, input=None if data is None else to_bytes(data),
                                  stdin=subprocess.DEVNULL if data is None else None, capture_output=True,
                                  env=dict(os.environ, **(environ_update or {})), check=False)
        except OSError as exc:
            if not handle_exceptions:
                raise
            self.fail_json(msg=to_native(exc), cmd=args)
        out = to_native(proc.stdout, errors="surrogate_or_replace")
        err = to_native(proc.stderr, errors="surrogate_or_replace")
        if check_rc and proc.returncode != 0:
            self.fail_json(msg=err.rstrip() or "non-zero return code", rc=proc.returncode, stdout=out, stderr=err,
                           cmd=args)
        return proc.returncode, out, err

    def exit_json(self, **result):
        raise Ended(result)

    def fail_json(self, msg, **result):
        result.pop("exception", None)  # a traceback of the controller's import, not the module's: the message says it
        raise Ended(dict(result, failed=True, msg=msg))


def interpreter_of(action, task_vars):
    """The Python interpreter the module would run with on the task's host (the delegated host's when delegated),
    templated; None when it is left to discovery."""
    task_vars = task_vars or {}
    host_vars = task_vars
    if action._task.delegate_to:
        host_vars = (task_vars.get("ansible_delegated_vars") or {}).get(action._task.delegate_to) or {}
    value = host_vars.get("ansible_python_interpreter")
    if value is None:
        return None
    return action._templar.template(value)


def runs_here(action, task_vars):
    """Whether running the module would start the controller's own Python on the controller, with nothing to tell it
    apart from this process: a local connection, the same interpreter, no become, async or environment."""
    if action._connection.transport not in LOCAL_CONNECTIONS:
        return False
    if action._play_context.become or action._task.async_val or any(action._task.environment or ()):
        return False
    interpreter = interpreter_of(action, task_vars)
    if not interpreter or not isinstance(interpreter, str):
        return False
    try:
        return os.path.samefile(interpreter, sys.executable)
    except OSError:
        return False


def with_invocation(task_vars):
    """Whether a module's result carries its invocation (the arguments it ran with, masked): ansible-core 2.21 and
    later add it when INJECT_INVOCATION asks, earlier releases always."""
    try:
        return bool(C.config.get_config_value("INJECT_INVOCATION", variables=task_vars or {}))
    except AnsibleError:
        return True


def run_here(action, argument_spec, task, constraints=None, args=None, task_vars=None):
    """The module's result, its task function ``task(module)`` run in this process with ``args`` (default: the task's
    arguments); None when the module must run instead (an option it deprecates is used: the module says so as
    Ansible's modules do)."""
    checked = ArgumentSpecValidator(argument_spec, **(constraints or {})).validate(
        dict(action._task.args if args is None else args))
    if checked.error_messages:
        return {"failed": True, "msg": to_native(checked.error_messages[0])}
    if checked._deprecations:
        return None
    for found in checked._warnings:
        display.warning("Both option %s and its alias %s are set." % (found["option"], found["alias"]))
    module = ControllerModule(checked.validated_parameters, argument_spec, action._task.check_mode,
                              checked._no_log_values)
    here = os.getcwd()
    try:
        # a local module runs in the playbook's directory: relative paths mean the same here
        os.chdir(action._loader.get_basedir())
        task(module)
        result = {"failed": True, "msg": "%s ended without a result." % action._task.action}
    except Ended as ended:
        result = ended.result
    finally:
        os.chdir(here)
    result.setdefault("changed", False)
    if with_invocation(task_vars):
        result.setdefault("invocation", {"module_args": dict(module.params)})
    result = remove_values(result, module.no_log_values)
    warnings = remove_values(module.warnings, module.no_log_values)
    try:
        result = json.loads(json.dumps(result))  # plain JSON types, as a module's result reaches the controller
    except (TypeError, ValueError) as exc:
        raise AnsibleActionFail("%s returned a result that is not JSON: %s" % (action._task.action, exc))
    for warning in warnings:
        display.warning(warning)
    return result


def module_result(action, task_vars, task_module):
    """The result of the task's module: its task function (``ARGUMENT_SPEC``, ``CONSTRAINTS`` and ``run`` of
    ``module_utils/benchmark/<task_module>``) run here when it may be, else the module run as usual. The task's code
    is imported only here: a module run elsewhere needs none of it in this process."""
    here = None
    if runs_here(action, task_vars):
        task = importlib.import_module(TASKS + task_module)
        here = run_here(action, task.ARGUMENT_SPEC, task.run, task.CONSTRAINTS, task_vars=task_vars)
    if here is None:
        # as Ansible's own action runs a module, async included
        wrap_async = bool(action._task.async_val) and not action._connection.has_native_async
        here = action._execute_module(task_vars=task_vars, wrap_async=wrap_async)
        if not wrap_async:
            action._remove_tmp_path(action._connection._shell.tmpdir)
    return here


class ControllerAction(ActionBase):
    """The action of a module whose task runs here when it may (``module_result``): ``TASK_MODULE`` names its
    ``module_utils/benchmark`` task module."""

    TASK_MODULE = None
    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super(ControllerAction, self).run(tmp, task_vars)
        del tmp
        result.update(module_result(self, task_vars, self.TASK_MODULE))
        return result
