"""madengine_run's action plugin, as ansible-core runs it, running the real module in the background on this machine.

Run as a script (``python local_detached_run.py ASYNC_DIR ARGS_JSON [COLLECTIONS_PATH]``) with the Python of the
ansible-core under test: it loads the plugin through ansible-core's plugin loader, gives it a local connection and
a madengine_run task of the arguments in the file ARGS_JSON, runs the task as Ansible does (the module answers at
once and runs on detached, the plugin follows its journal and job file in ASYNC_DIR), prints the lines the plugin
shows on stdout and, after a RESULT line, the result it hands to Ansible with what stayed in ASYNC_DIR, as JSON.
Without COLLECTIONS_PATH, ansible-core's configured one is used (an execution environment's). The task's interpreter
is this Python (the plugin starts the run from its own process, as on a node that is the controller), or
MADCI_MODULE_INTERPRETER when set (the module runs, as on any other node).

``run([python], ...)`` runs it and returns (the lines shown, the result, the files left in ASYNC_DIR).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

RESULT_MARK = "--- RESULT ---"


def main(async_dir, args_json, collections_path=None):
    from ansible.plugins.loader import init_plugin_loader

    init_plugin_loader([collections_path] if collections_path else [])

    import ansible.plugins.loader as plugin_loaders
    from ansible.parsing.dataloader import DataLoader
    from ansible.playbook.play_context import PlayContext
    from ansible.playbook.task import Task
    from ansible.plugins.loader import connection_loader
    from ansible.template import Templar

    from ansible_collections.rocm.madengine.plugins.action import madengine_run

    os.makedirs(async_dir, exist_ok=True)
    os.environ["ANSIBLE_ASYNC_DIR"] = async_dir
    with open(args_json) as handle:
        module_args = json.load(handle)
    loader = DataLoader()
    task = Task()
    task.action = "rocm.madengine.madengine_run"
    task.args = module_args
    task.environment = []
    play_context = PlayContext()
    connection = connection_loader.get("local", play_context, os.devnull)
    action = madengine_run.ActionModule(task, connection, play_context, loader, Templar(loader=loader),
                                        plugin_loaders)
    # the controller's own Python starts the run from this process; another interpreter (MADCI_MODULE_INTERPRETER, a
    # wrapper around the same Python) runs the module, as on a node that is not the controller
    task_vars = {"ansible_python_interpreter": os.environ.get("MADCI_MODULE_INTERPRETER") or sys.executable,
                 "inventory_hostname": "node-1"}
    result = action.run(task_vars=task_vars)
    sys.stdout.flush()
    print(RESULT_MARK)
    print(json.dumps({"type": type(result).__name__, "result": result, "left": sorted(os.listdir(async_dir))},
                     default=repr, sort_keys=True))


def run(python, async_dir, args_json, collections_path=None, script=None, timeout=120, env=None):
    """(lines shown, the plugin's result, files left in async_dir) of the script run by ``python`` (a command: the
    interpreter and what comes before it, a container's for one); ``script``: the script's path for that
    interpreter; ``env``: the script's environment."""
    args = list(python) + [script or os.path.abspath(__file__), str(async_dir), str(args_json)] + (
        [collections_path] if collections_path else [])
    proc = subprocess.run(args, capture_output=True, text=True, check=False, timeout=timeout, env=env)
    assert proc.returncode == 0 and RESULT_MARK in proc.stdout, (
        "%s failed (%d):\n%s%s" % (" ".join(args), proc.returncode, proc.stdout, proc.stderr))
    shown, _mark, result = proc.stdout.rpartition(RESULT_MARK + "\n")
    found = json.loads(result)
    return shown.splitlines(), found, found.pop("left")


if __name__ == "__main__":
    main(*sys.argv[1:])
