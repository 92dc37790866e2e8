"""What an operator sees while benchmark.yml runs: each model's start and end, live, on the playbook's stdout.

rocm.madengine.benchmark (installed collection, default stdout callback, default verbosity) on this machine as
controller and node, with a model that runs SLOW_SECONDS in its container and a quick one after it.  The
playbook's stdout is read line by line as it is written: the slow model's start line must come first, its
end line SLOW_SECONDS later (not all at the end of the task), each within 10 s of what it reports, with the
node's running count, and the node's async job and journal must be gone afterwards.
"""

from __future__ import annotations

import csv
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
import yaml
from conftest import MAIN_ENGINE, SAMPLE_MAD, ansible_env

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SESSION = uuid.uuid4().hex[:8]
PREFIX = "prog%s-" % SESSION
SLOW_SECONDS = 12
DOWN_SECONDS = 6
MODELS = ["slow_dummy", "dummy"]


def catalogue(root):
    mad = root / "mad"
    shutil.copytree(SAMPLE_MAD, mad)
    script = mad / "scripts" / "sample" / "run_slow.sh"
    script.write_text("#!/bin/bash\necho slow model starts\nsleep %d\necho 'performance: 42.5 samples_per_second'\n"
                      % SLOW_SECONDS)
    models = json.loads((mad / "models.json").read_text())
    slow = dict(next(m for m in models if m["name"] == "dummy"), name="slow_dummy",
                scripts="scripts/sample/run_slow.sh", tags=["progress"])
    (mad / "models.json").write_text(json.dumps(models + [slow], indent=1))
    return mad


def watch(command, env, cwd, stderr=subprocess.DEVNULL, on_line=None):
    """(returncode, [(time read, line)]) of a command whose stdout is read as it is written."""
    lines = []
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, cwd=cwd)
    for line in proc.stdout:
        lines.append((time.time(), line.rstrip("\n")))
        if on_line:
            on_line(lines[-1][1])
    return proc.wait(timeout=600), lines


def inventory_file(tmp_path, mad, node="localhost", **node_vars):
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump({"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                 "madengine_mad_root": str(mad), "madengine_tags": ",".join(MODELS),
                 "madengine_image_prefix": PREFIX, "madengine_gpu_vendor": "NONE",
                 "madengine_docker_host": MAIN_ENGINE, "madengine_output_dir": str(tmp_path / "results"),
                 "madengine_additional_context": {"gpu_vendor": "NONE", "guest_os": "UBUNTU"}},
        "children": {"controller": {"hosts": {"localhost": {}}}, "gpu_nodes": {"hosts": {node: node_vars}}}}}))
    return str(path)


def seen(lines, pattern):
    found = [(at, line) for at, line in lines if re.fullmatch(pattern, line)]
    assert len(found) == 1, "\n".join(line for _at, line in lines)
    return found[0]


def test_each_model_start_and_end_show_live_with_the_count(tmp_path, main_api):
    mad = catalogue(tmp_path)
    inventory = inventory_file(tmp_path, mad)
    async_dir = tmp_path / "async"
    env = ansible_env(ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default", ANSIBLE_ASYNC_DIR=str(async_dir))
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory,
               "rocm.madengine.benchmark"]
    rc, lines = watch(command, env, str(tmp_path))
    log = "\n".join(line for _at, line in lines)
    assert rc == 0, log

    plan = seen(lines, r"localhost: 2 model\(s\) to run: slow_dummy, dummy")
    start = seen(lines, r"localhost: \[1/2\] slow_dummy started, log (/\S+\.run\.live\.log)")
    end = seen(lines, r"localhost: \[1/2 done\] slow_dummy SUCCESS in ([\d.]+) s \(1 row\)")
    quick_start = seen(lines, r"localhost: \[2/2\] dummy started, log /\S+")
    quick_end = seen(lines, r"localhost: \[2/2 done\] dummy SUCCESS in [\d.]+ s \(1 row\)")
    assert plan[0] <= start[0] < end[0] <= quick_start[0] <= quick_end[0]
    elapsed = float(re.search(r"in ([\d.]+) s", end[1]).group(1))
    assert elapsed >= SLOW_SECONDS
    # the start was shown while the model ran, not with its end
    assert end[0] - start[0] >= elapsed - 10, log
    # the end was shown within 10 s of the model's end (its row's end_time, whole seconds)
    with open(tmp_path / "results" / "perf.csv", newline="") as handle:
        rows = dict((r["model"], r) for r in csv.DictReader(handle))
    ended = datetime.datetime.strptime(rows["slow_dummy"]["end_time"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()
    assert -1 <= end[0] - ended <= 10, log
    assert rows["slow_dummy"]["status"] == rows["dummy"]["status"] == "SUCCESS"
    # the start line names the run log to follow on the node: the model's output is there
    log_path = re.fullmatch(r".* log (\S+)", start[1]).group(1)
    assert log_path == rows["slow_dummy"]["log_path"]
    with open(log_path) as handle:
        assert "slow model starts" in handle.read()
    # the lines belong to the task that runs the models
    run_task = [at for at, line in lines if line.startswith("TASK [") and "Run each model" in line]
    assert len(run_task) == 1 and run_task[0] <= plan[0], log
    # the job's result file and journal were removed from the async directory
    assert not async_dir.exists() or os.listdir(async_dir) == [], os.listdir(async_dir)


def test_a_job_stopped_on_the_node_fails_its_node_naming_the_process_and_the_play_goes_on(tmp_path, main_api):
    """On a node that is the controller the job starts from the task's own process; stopped there with SIGTERM while
    its slow model runs, it dies as a module's process would and nothing else does: the node's run fails naming the
    process, the report still comes, and the play ends with the node failed."""
    mad = catalogue(tmp_path)
    inventory = inventory_file(tmp_path, mad)
    async_dir = tmp_path / "async"
    env = ansible_env(ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default", ANSIBLE_ASYNC_DIR=str(async_dir))
    stopped = []

    def stop_the_job(line):
        if re.match(r"localhost: \[1/2\] slow_dummy started", line):
            job = next(name for name in os.listdir(async_dir) if re.fullmatch(r"madengine-job-\w+\.json", name))
            stopped.append(json.loads((async_dir / job).read_text())["pid"])
            os.kill(stopped[0], signal.SIGTERM)

    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory,
               "rocm.madengine.benchmark"]
    try:
        rc, lines = watch(command, env, str(tmp_path), stderr=subprocess.STDOUT, on_line=stop_the_job)
    finally:
        remove_run_containers(main_api)
    log = "\n".join(line for _at, line in lines)
    assert stopped and rc == 2, log
    assert "Traceback" not in log
    assert "madengine_run on localhost ended without a result: its process %d is gone" % stopped[0] in log, log
    with open(tmp_path / "results" / "perf.csv", newline="") as handle:
        rows = [(r["host"], r["model"], r["status"]) for r in csv.DictReader(handle)]
    assert rows == [("localhost", "slow_dummy", "FAILURE"), ("localhost", "dummy", "FAILURE")], log
    assert not async_dir.exists() or os.listdir(async_dir) == [], os.listdir(async_dir)


def remove_run_containers(api):
    """The containers of this session's runs (a stopped job leaves its model's container behind)."""
    for container in api.containers(all=True, filters={"label": "org.rocm.madengine.image"}):
        if PREFIX in container["Labels"]["org.rocm.madengine.image"]:
            api.remove_container(container["Id"], force=True)


def test_a_link_dropped_while_a_model_runs_loses_no_result(tmp_path, main_api):
    """node1's connection fails from its slow model's start for DOWN_SECONDS: the run goes on, its rows arrive."""
    mad = catalogue(tmp_path)
    inventory = inventory_file(tmp_path, mad, node="node1", ansible_connection="flaky_local")
    down = tmp_path / "link-down"
    env = ansible_env(ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default", FLAKY_LOCAL_DOWN=str(down),
                      ANSIBLE_CONNECTION_PLUGINS=os.path.join(os.path.dirname(__file__), "playbooks",
                                                              "connection_plugins"))
    timers = []

    def drop_link(line):
        if re.match(r"node1: \[1/2\] slow_dummy started", line):
            down.write_text("down")
            timers.append(threading.Timer(DOWN_SECONDS, down.unlink))
            timers[-1].start()

    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory,
               "rocm.madengine.benchmark"]
    rc, lines = watch(command, env, str(tmp_path), stderr=subprocess.STDOUT, on_line=drop_link)
    for timer in timers:
        timer.join()
    log = "\n".join(line for _at, line in lines)
    assert rc == 0 and len(timers) == 1, log
    texts = [line for _at, line in lines]
    lost = [i for i, line in enumerate(texts) if "node1: unreachable while its models run" in line]
    back = [i for i, line in enumerate(texts) if line == "node1: reachable again"]
    start = texts.index(next(t for t in texts if t.startswith("node1: [1/2] slow_dummy started")))
    end = texts.index(next(t for t in texts if t.startswith("node1: [1/2 done] slow_dummy SUCCESS")))
    # the warning goes to stderr (its place among the stdout lines is not kept); the rest is stdout, in order
    assert len(lost) == 1 and len(back) == 1 and start < back[0] < end, log
    with open(tmp_path / "results" / "perf.csv", newline="") as handle:
        rows = [(r["host"], r["model"], r["status"]) for r in csv.DictReader(handle)]
    assert rows == [("node1", "slow_dummy", "SUCCESS"), ("node1", "dummy", "SUCCESS")], log


def test_awx_shows_the_lines_as_verbose_events_of_the_task(tmp_path, main_api):
    """Under ansible-runner (AWX's runner, its awx_display callback) each line is a job event of the task."""
    ansible_runner = pytest.importorskip("ansible_runner")
    mad = catalogue(tmp_path)
    data = tmp_path / "runner"
    (data / "project").mkdir(parents=True)
    (data / "project" / "run.yml").write_text(
        "- name: The benchmark\n  ansible.builtin.import_playbook: rocm.madengine.benchmark\n")
    inventory = inventory_file(tmp_path, mad)
    env = ansible_env()
    keys = ("ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_PYTHON_INTERPRETER", "ANSIBLE_LOCALHOST_WARNING")
    run = ansible_runner.run(private_data_dir=str(data), playbook="run.yml", inventory=inventory, quiet=True,
                             envvars=dict((k, env[k]) for k in keys))
    events = list(run.events)
    stdout = "\n".join(e.get("stdout", "") for e in events)
    assert run.rc == 0, stdout
    ours = [e for e in events if re.match(r"localhost: (\[|2 model)", e.get("stdout", ""))]
    assert [e["stdout"].split(" log ")[0] for e in ours][:2] == [
        "localhost: 2 model(s) to run: slow_dummy, dummy", "localhost: [1/2] slow_dummy started,"], stdout
    assert len(ours) == 5 and all(e["event"] == "verbose" for e in ours), stdout
    assert all(e["event_data"].get("task", "").endswith("Run each model") for e in ours), ours
    ok = [e for e in events if e["event"] == "runner_on_ok" and e["event_data"]["task"].endswith("Run each model")]
    assert len(ok) == 1 and ours[-1]["counter"] < ok[0]["counter"]
