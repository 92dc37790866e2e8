"""Running rocm.madengine.vm_benchmark (and the role's vm_cleanup entry point) in tests, and what is left after."""

from __future__ import annotations

import csv
import glob
import json
import os
import subprocess
import sys
import time

from conftest import ansible_env, run_playbook


def make_dirs(root):
    """The VM's image, state and log directories and the results directory under ``root``."""
    dirs = {k: root / k for k in ("images", "state", "logs", "results")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    return dirs


def vm_benchmark(inventory, check=False, extra_vars=None, playbook="rocm.madengine.vm_benchmark", args=(),
                 timeout=600):
    started = time.monotonic()
    rc, out, log = run_playbook(playbook, inventory=inventory, check=check, extra_vars=extra_vars, timeout=timeout,
                                env={"ANSIBLE_SHOW_CUSTOM_STATS": "1"}, args=args)
    assert out is not None, log
    return {"rc": rc, "out": out, "log": log, "seconds": time.monotonic() - started}


def vm_cleanup(inventory, tmp_path, args=()):
    """The role's vm_cleanup entry point on gpu_nodes, as the documentation shows it."""
    playbook = tmp_path / "cleanup.yml"
    playbook.write_text(
        "---\n- name: Remove what VM runs left on the nodes\n  hosts: gpu_nodes\n  gather_facts: false\n  tasks:\n"
        "    - name: Remove the VM and give the GPUs back\n      ansible.builtin.import_role:\n"
        "        name: rocm.madengine.madengine\n        tasks_from: vm_cleanup\n")
    return vm_benchmark(inventory, playbook=str(playbook), args=args)


def start_in_background(inventory, extra_vars, tmpdir):
    """vm_benchmark in its own process group, as a terminal or AWX runs it; its temporary files in ``tmpdir`` (a play
    that is killed cannot remove them)."""
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory,
           "rocm.madengine.vm_benchmark", "-e", json.dumps(extra_vars)]
    return subprocess.Popen(cmd, env=ansible_env(TMPDIR=str(tmpdir)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)


def domains(conn, names):
    return sorted(d.name() for d in conn.listAllDomains(0) if d.name() in names)


def vm_files(dirs):
    """Everything in the VM's image, state and log directories."""
    return sorted(p for key in ("images", "state", "logs") for p in glob.glob(os.path.join(str(dirs[key]), "*")))


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def slowest_tasks(out, count=8):
    """The ``count`` longest tasks of a json-callback run, as "<seconds> s <task>" (for the test's log)."""
    from datetime import datetime

    def seconds(task):
        span = task["task"]["duration"]
        return (datetime.fromisoformat(span["end"].rstrip("Z")) - datetime.fromisoformat(span["start"].rstrip("Z"))
                ).total_seconds()

    tasks = sorted(((seconds(t), t["task"]["name"]) for p in out["plays"] for t in p["tasks"]), reverse=True)
    return ["%6.1f s %s" % entry for entry in tasks[:count]]
