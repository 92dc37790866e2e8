"""madengine_run's action plugin, as ansible-core runs it, following a real async job on this machine.

Run as a script (``python local_async_job.py ASYNC_DIR COMMAND [COLLECTIONS_PATH]``) with the Python of the
ansible-core under test: it loads the plugin through ansible-core's plugin loader, gives it a local connection,
starts COMMAND (a shell command) as an async job the way the plugin starts the module, follows the job with the
plugin's watch (the journal ``ASYNC_DIR/journal``, the lines it shows on stdout) and prints the result the plugin
hands to Ansible after a RESULT line, as JSON. Without COLLECTIONS_PATH, ansible-core's configured one is used
(an execution environment's).

``run([python], ...)`` runs it and returns (the lines shown, the result).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

RESULT_MARK = "--- RESULT ---"


def main(async_dir, command, collections_path=None):
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
    loader = DataLoader()
    task = Task()
    task.action = "ansible.legacy.command"
    task.args = {}
    task.environment = []
    play_context = PlayContext()
    connection = connection_loader.get("local", play_context, os.devnull)
    action = madengine_run.ActionModule(task, connection, play_context, loader, Templar(loader=loader),
                                        plugin_loaders)
    task_vars = {"ansible_python_interpreter": sys.executable, "inventory_hostname": "node-1"}
    started = action.start_job({"_raw_params": command, "_uses_shell": True}, task_vars)
    watch = madengine_run.Watch(action, "node-1", task_vars)
    result = watch.follow(started["results_file"], os.path.join(async_dir, "journal"))
    sys.stdout.flush()
    print(RESULT_MARK)
    print(json.dumps({"type": type(result).__name__, "result": result}, default=repr, sort_keys=True))


def run(python, async_dir, command, collections_path=None, script=None, timeout=120):
    """(lines shown, the plugin's result) of the script run by ``python`` (a command: the interpreter and what
    comes before it, a container's for one); ``script``: the script's path for that interpreter."""
    args = list(python) + [script or os.path.abspath(__file__), str(async_dir), command] + (
        [collections_path] if collections_path else [])
    proc = subprocess.run(args, capture_output=True, text=True, check=False, timeout=timeout)
    assert proc.returncode == 0 and RESULT_MARK in proc.stdout, (
        "%s failed (%d):\n%s%s" % (" ".join(args), proc.returncode, proc.stdout, proc.stderr))
    shown, _mark, result = proc.stdout.rpartition(RESULT_MARK + "\n")
    return shown.splitlines(), json.loads(result)


if __name__ == "__main__":
    main(*sys.argv[1:])
