"""madengine_run's action plugin following a node's background job: round trips, progress latency, terminal line
ends, a connection that drops while a model runs, a node that stays lost, a job killed on the node; and the real
module run in the background by the plugin as ansible-core runs it.

The tests with a node use a real one: the plugin's requests for news run in /bin/sh on files that a job of this
test writes as madengine_run's background job does (the journal through ProgressJournal, the job file replaced as
detached.run_detached replaces it, the result handed over in the result file)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import local_detached_run
import pytest
from conftest import imported_on_controller
from manifest_builder import manifest, simple

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.detached import job_state
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.progress import (
    WATCH_MARK,
    ProgressJournal,
    describe,
    parse_lines,
)

RUNNING = job_state(os.getpid())  # this test's process: alive while the test runs
FINISHED = json.dumps({"finished": 1})
PROGRESS_WITHIN_S = 10.0  # the bound on a model's start or end being shown


@pytest.fixture(scope="module")
def plugin():
    """The action plugin (imported as controller code: conftest.imported_on_controller)."""
    with imported_on_controller("action.madengine_run") as madengine_run:
        yield madengine_run


@pytest.fixture
def shown(plugin, monkeypatch):
    """The lines the plugin shows, with the time each was shown."""
    lines = []
    monkeypatch.setattr(plugin, "show", lambda line: lines.append((time.monotonic(), line)))
    return lines


def mark():
    return "\n%s\n" % WATCH_MARK


def lost(message):
    from ansible.errors import AnsibleConnectionFailure

    return AnsibleConnectionFailure(message)


class Replies(object):
    """A node that answers each request with the next of ``outputs`` (an exception is raised)."""

    def __init__(self, plugin, outputs, args=None):
        self.plugin, self.outputs, self.commands = plugin, list(outputs), []
        self._task = SimpleNamespace(args=args or {})

    def shell(self, command):
        self.commands.append(command)
        out = self.outputs.pop(0)
        if isinstance(out, Exception):
            raise out
        connection = SimpleNamespace(_low_level_execute_command=lambda *a, **k: {"stdout": out})
        return self.plugin.ActionModule.shell(connection, command)


def handed_over(result, warnings=()):
    """The result file's text as the module writes it (madengine_run_task.hand_over)."""
    return json.dumps({"result": result, "warnings": list(warnings)})


def read_at_the_end(result):
    """The node's answer to the command reading the result file and the job file of an ended job."""
    return handed_over(result) + mark() + FINISHED


class ShellNode(object):
    """A node whose requests run in /bin/sh; ``down`` (a callable) says when its connection fails."""

    def __init__(self, args=None, down=None):
        self._task = SimpleNamespace(args=args or {})
        self.down = down or (lambda: False)
        self.requests = []  # (started, took) of each request that reached the node
        self.refused = 0

    def shell(self, command):
        if self.down():
            self.refused += 1
            raise lost("ssh: connect to host 10.0.0.9 port 22: Connection refused")
        started = time.monotonic()
        proc = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, check=True, timeout=60)
        self.requests.append((started, time.monotonic() - started))
        return proc.stdout


class Job(object):
    """A background job of madengine_run on ``tmp_path``: models of the given seconds, journal lines when they start
    and end, at the end the result (and ``warnings``) handed over in the result file (unless ``hand_over`` is false)
    and the job file saying it finished.  ``written``: (time, journal line) in order."""

    def __init__(self, tmp_path, seconds, startup=0.3, warnings=(), hand_over=True):
        self.job_file = str(tmp_path / "madengine-job-1.json")
        self.journal = str(tmp_path / "madengine-progress-1.jsonl")
        self.result_file = str(tmp_path / "madengine-result-1.json")
        self.seconds, self.startup, self.written = list(seconds), startup, []
        self.warnings, self.hand_over = list(warnings), hand_over
        self.result = {"changed": True, "results": [{"model": "m%d" % i, "status": "SUCCESS"}
                                                    for i in range(len(self.seconds))]}
        self.replace(self.job_file, RUNNING)
        self.thread = threading.Thread(target=self.run)

    @staticmethod
    def replace(path, text):
        with open(path + ".tmp", "w") as handle:
            handle.write(text)
        os.replace(path + ".tmp", path)

    def write(self, journal, event, **fields):
        journal.write(event, **fields)
        self.written.append((time.monotonic(), event))

    def run(self):
        journal, total = ProgressJournal(self.journal), len(self.seconds)
        time.sleep(self.startup)
        self.write(journal, "plan", total=total, models=["m%d" % i for i in range(total)])
        for index, seconds in enumerate(self.seconds):
            self.write(journal, "start", model="m%d" % index, index=index + 1, total=total, log="/r/m.log")
            time.sleep(seconds)
            self.write(journal, "end", model="m%d" % index, status="SUCCESS", rows=1, elapsed=seconds,
                       done=index + 1, total=total)
        time.sleep(0.1)  # the hand-over's write
        if self.hand_over:
            self.replace(self.result_file, handed_over(self.result, self.warnings))
        self.replace(self.job_file, FINISHED)

    def follow(self, plugin, node):
        watch = plugin.Watch(node, "node-1", {})
        self.thread.start()
        try:
            return watch, watch.follow(self.job_file, self.journal, self.result_file)
        finally:
            self.thread.join()


def assert_each_line_shown_once_in_time(job, shown):
    """Every line of the job's journal shown once, in order, within the issue's bound of its writing."""
    with open(job.journal) as handle:
        expected = [describe("node-1", event) for event in parse_lines(handle.read())]
    assert len(expected) == len(job.written) == 1 + 2 * len(job.seconds)
    assert [line for _at, line in shown] == expected
    late = [(line, at - written) for (written, _event), (at, line) in zip(job.written, shown)
            if not 0 <= at - written <= PROGRESS_WITHIN_S]
    assert not late, late


def test_a_short_run_costs_a_few_round_trips_and_each_line_is_shown_as_it_happens(plugin, tmp_path, shown):
    job = Job(tmp_path, [1.5, 1.5, 1.5])
    node = ShellNode()
    watch, result = job.follow(plugin, node)
    assert result == job.result
    assert_each_line_shown_once_in_time(job, shown)
    # 7 lines in 4 bursts (plan and the first start, each end with the next start, the last end) and the job's end:
    # 4-6 requests for news (a poll every 0.1-2 s took about 20 for such a run), then one for the result
    assert 4 <= watch.polls == len(node.requests) - 1 <= 6, node.requests
    # a line waits on the node for its checks (0.1 s) and the lines written with it (0.1 s), not for a poll interval
    assert max(at - written for (written, _e), (at, _l) in zip(job.written, shown)) < 3.0, (job.written, shown)


def test_a_quiet_model_is_asked_about_every_few_seconds_and_its_end_still_shown_within_10_s(plugin, tmp_path, shown):
    job = Job(tmp_path, [7.0])
    node = ShellNode()
    watch, result = job.follow(plugin, node)
    assert result == job.result
    assert_each_line_shown_once_in_time(job, shown)
    # each request returned within its wait on the node (5 s, and the time of a loaded machine), so the quiet 7 s
    # took two of them: no connection is held for the whole model, none is opened every second
    assert all(took < plugin.WAIT_SECONDS + 3 for _started, took in node.requests), node.requests
    assert 3 <= watch.polls <= 5, node.requests


def test_a_connection_dropped_while_a_model_runs_loses_neither_its_lines_nor_its_result(
        plugin, tmp_path, shown, monkeypatch):
    """The link fails from the first model's start until after the job has ended; when it is back, every line is
    shown once, in order, and the job's result is read: the job ran on, its files stayed on the node."""
    monkeypatch.setattr(plugin, "RETRY_SECONDS", 0.3)
    job = Job(tmp_path, [1.0, 0.5])
    back_at = []

    def down():
        started = [at for at, event in job.written if event == "start"]
        if not started or (back_at and time.monotonic() >= back_at[0]):
            return False
        if not back_at and os.path.exists(job.job_file) and not open(job.job_file).read().startswith('{"started"'):
            back_at.append(time.monotonic() + 0.5)  # back half a second after the job's end
        return True

    node = ShellNode(args={"unreachable_timeout": 30}, down=down)
    _watch, result = job.follow(plugin, node)
    assert result == job.result
    assert node.refused >= 2 and back_at, node.refused
    lines = [line for _at, line in shown]
    assert lines.count("node-1: reachable again") == 1
    back = lines.index("node-1: reachable again")
    shown[:] = [entry for entry in shown if entry[1] != "node-1: reachable again"]
    assert [line for _at, line in shown][back:] == [
        "node-1: [1/2 done] m0 SUCCESS in 1.0 s (1 row)", "node-1: [2/2] m1 started, log /r/m.log",
        "node-1: [2/2 done] m1 SUCCESS in 0.5 s (1 row)"], lines
    assert lines[:back] == ["node-1: 2 model(s) to run: m0, m1", "node-1: [1/2] m0 started, log /r/m.log"], lines


def test_the_job_s_last_lines_are_shown_though_it_ends_between_the_checks(plugin, tmp_path, shown):
    """The state is read before the journal: a job seen ended has its last end line shown with its result."""
    job = Job(tmp_path, [0.2, 0.2], startup=0.0)
    job.thread.start()
    job.thread.join()
    watch = plugin.Watch(ShellNode(), "node-1", {})
    assert watch.follow(job.job_file, job.journal, job.result_file) == job.result
    assert watch.polls == 1 and len(shown) == 5 and shown[-1][1] == "node-1: [2/2 done] m1 SUCCESS in 0.2 s (1 row)"


def test_the_result_is_read_from_the_module_s_result_file_with_one_command_and_its_warnings_shown(
        plugin, tmp_path, shown, monkeypatch):
    """The module hands its result and warnings over in result_file: one `cat` after the job's end, no module."""
    warned = []
    monkeypatch.setattr(plugin.display, "warning", warned.append)
    job = Job(tmp_path, [0.2], warnings=["The context key 'docker_gpus' is ignored"])
    node = ShellNode()
    watch, result = job.follow(plugin, node)
    assert result == job.result
    assert warned == ["The context key 'docker_gpus' is ignored"]
    assert len(node.requests) == watch.polls + 1


@pytest.mark.parametrize("content", [None, "", '{"result": {"changed": tr', '["not", "a", "hand-over"]'])
def test_a_finished_job_without_a_readable_result_file_fails_the_task_naming_the_node_and_the_file(
        plugin, tmp_path, shown, content):
    job = Job(tmp_path, [0.1], startup=0.0, hand_over=False)
    if content is not None:
        Job.replace(job.result_file, content)
    job.thread.start()
    job.thread.join()
    assert plugin.Watch(ShellNode(), "node-1", {}).follow(job.job_file, job.journal, job.result_file) == {
        "failed": True, "msg": "madengine_run on node-1 ended without a result: its result file %s could not be read; "
                               "the rows of the models it finished are in the node's CSV." % job.result_file}


def test_a_run_that_raised_in_the_background_fails_the_task_with_its_message(plugin, tmp_path, shown):
    job = Job(tmp_path, [0.1], startup=0.0, hand_over=False)
    job.thread.start()
    job.thread.join()
    Job.replace(job.job_file, json.dumps({"finished": 1, "failed": True, "msg": "The run failed on the node: boom"}))
    assert plugin.Watch(ShellNode(), "node-1", {}).follow(job.job_file, job.journal, job.result_file) == {
        "failed": True, "msg": "madengine_run on node-1: The run failed on the node: boom"}


def test_a_job_whose_process_was_killed_fails_the_task_at_the_next_request_naming_the_node_and_the_process(
        plugin, tmp_path, shown):
    """The job file still says it runs, its process is gone from /proc: no waiting for a job that cannot end."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    job = Job(tmp_path, [60.0], hand_over=False)
    Job.replace(job.job_file, job_state(dead.pid))
    Job.replace(job.journal, '{"event": "plan", "total": 1, "models": ["m0"]}\n')
    node = ShellNode()
    watch = plugin.Watch(node, "node-1", {})
    started = time.monotonic()
    result = watch.follow(job.job_file, job.journal, job.result_file)
    assert result == {"failed": True, "msg": "madengine_run on node-1 ended without a result: its process %d is gone "
                                             "(killed, or the node restarted); the rows of the models it finished are "
                                             "in the node's CSV." % dead.pid}
    assert watch.polls == 1 and time.monotonic() - started < 3.0, node.requests
    assert [line for _at, line in shown] == ["node-1: 1 model(s) to run: m0"]


def test_a_terminal_s_crlf_line_ends_are_read_as_the_journal_s_and_the_job_is_followed_to_its_end(plugin, shown):
    journal = '{"event": "plan", "total": 1, "models": ["dummy"]}\n'
    done = json.dumps({"changed": True, "results": [{"model": "dummy", "status": "SUCCESS"}]})
    crlf = [(journal + mark() + RUNNING).replace("\n", "\r\n"), mark().replace("\n", "\r\n") + RUNNING,
            (mark() + FINISHED).replace("\n", "\r\n"), done.replace("\n", "\r\n")]
    node = Replies(plugin, [crlf[0], crlf[1], crlf[2], read_at_the_end(json.loads(done)).replace("\n", "\r\n")])
    watch = plugin.Watch(node, "node-1", {})
    result = watch.follow("/a/job", "/a/journal", "/a/result")
    assert result["results"] == [{"model": "dummy", "status": "SUCCESS"}]
    assert [line for _at, line in shown] == ["node-1: 1 model(s) to run: dummy"]
    # the offset counts the journal's bytes (LF), not the terminal's CR LF
    assert watch.offset == len(journal.encode("utf-8"))
    assert "tail -c +%d " % (len(journal) + 1) in node.commands[-2]
    assert watch.polls == 3 and not node.outputs
    assert node.commands[-1] == "cat /a/result 2>/dev/null; printf '\\n%s\\n'; cat /a/job 2>/dev/null" % WATCH_MARK


def test_a_job_whose_state_file_is_gone_fails_the_task_naming_the_node_and_the_file(plugin, tmp_path, shown):
    result = plugin.Watch(ShellNode(), "node-1", {}).follow(str(tmp_path / "gone"), str(tmp_path / "journal"),
                                                            str(tmp_path / "result"))
    assert result == {"failed": True, "msg": "The job of madengine_run on node-1 is gone (%s does not exist)."
                                             % (tmp_path / "gone")}


def test_a_node_lost_for_its_unreachable_timeout_fails_the_task_with_the_time_it_was_first_lost(plugin, shown):
    refused = lost("ssh: connect to host 10.0.0.9 port 22: Connection refused")
    node = Replies(plugin, [mark() + RUNNING] + [refused] * 50, args={"unreachable_timeout": 0.3})
    result = plugin.Watch(node, "node-1", {}).follow("/a/job", "/a/journal", "/a/result")
    assert result["failed"] and result["unreachable_during_run"], result
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", result["unreachable_since"]), result
    assert result["msg"].startswith("node-1 was unreachable for 0 s while its models ran (its job /a/job")
    assert "Connection refused" in result["msg"]
    assert len(node.commands) < 10  # tried again until the timeout, not for the default 10 minutes


def test_a_node_back_within_its_unreachable_timeout_goes_on_to_the_job_s_result(plugin, shown, monkeypatch):
    monkeypatch.setattr(plugin, "RETRY_SECONDS", 0.1)
    timed_out, done = lost("ssh: connection timed out"), mark() + FINISHED
    node = Replies(plugin, [timed_out, timed_out, done, read_at_the_end({"changed": True, "results": []})],
                   args={"unreachable_timeout": 30})
    result = plugin.Watch(node, "node-1", {}).follow("/a/job", "/a/journal", "/a/result")
    assert result == {"changed": True, "results": []}
    assert [line for _at, line in shown] == ["node-1: reachable again"] and not node.outputs


# ---- the real module, run in the background by the plugin as ansible-core runs it -----------------------------

NO_ENGINE = "unix:///nonexistent/madci-docker.sock"


def cpu_node_args(tmp_path, vendor, **extra):
    """The arguments file of madengine_run on a CPU node (gpu_vendor NONE) for a one-model manifest whose image is
    built for ``vendor`` ('' for any)."""
    args = {"manifest": manifest(simple("dummy", vendor=vendor)), "tags": ["dummy"], "gpu_vendor": "NONE",
            "docker_host": NO_ENGINE, "results_dir": str(tmp_path / "results"), "run_id": "unit-run",
            "node_name": "node-1"}
    args.update(extra)
    path = tmp_path / "args.json"
    path.write_text(json.dumps(args))
    return path


@pytest.fixture(params=["here", "module"])
def way(request, tmp_path):
    """How the run starts: from the task's process (a node that is the controller, with its Python), or as the module
    (another interpreter: a wrapper script around the same Python)."""
    if request.param == "here":
        return {}
    wrapper = tmp_path / "python-wrapper"
    wrapper.write_text('#!/bin/sh\nprintf "%%s\\n" "$*" >>%s.log\nexec %s "$@"\n' % (wrapper, sys.executable))
    wrapper.chmod(0o755)
    return {"MADCI_MODULE_INTERPRETER": str(wrapper)}


def run_in_background(tmp_path, args_json, way):
    """(lines shown, result, files left in the async directory, module files left: in the module's temporary
    directory and, from the payload its process unpacked, in the system's)."""
    remote_tmp, system_tmp = tmp_path / "remote-tmp", tmp_path / "system-tmp"
    system_tmp.mkdir()
    env = dict(os.environ, ANSIBLE_REMOTE_TMP=str(remote_tmp), TMPDIR=str(system_tmp), **way)
    shown, out, left = local_detached_run.run([sys.executable], tmp_path / "async", args_json,
                                              collections_path=os.environ["MADCI_INSTALLED"], env=env)
    assert out["type"] == "dict", out
    module_files = sorted(os.listdir(remote_tmp)) if remote_tmp.exists() else []
    started = way.get("MADCI_MODULE_INTERPRETER")
    # the module ran through the other interpreter, or no module ran at all
    assert ("AnsiballZ_madengine_run.py" in open(started + ".log").read()) if started else not os.path.exists(
        str(tmp_path / "python-wrapper.log"))
    # the payload goes when the worker ends, just after it handed its result over
    deadline = time.monotonic() + 10
    while any("_payload_" in name for name in os.listdir(system_tmp)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return shown, out["result"], left, module_files + sorted(os.listdir(system_tmp))


def test_the_real_module_runs_in_the_background_and_hands_its_rows_over_leaving_no_file(tmp_path, way):
    """madengine_run started by its plugin: a process of its own runs the node's models (here one SKIPPED: its image
    is built for AMD GPUs, the node has none), its journal is shown, its result reaches Ansible as a dict, and
    neither the job's files nor the module's files (its arguments, the payload its worker imported) stay behind."""
    shown, result, left, module_files = run_in_background(tmp_path, cpu_node_args(tmp_path, "AMD"), way)
    assert not result.get("failed"), result
    assert [(row["model"], row["status"]) for row in result["results"]] == [("dummy", "SKIPPED")], result
    assert shown[0] == "node-1: 1 model(s) to run: dummy" and shown[-1].startswith("node-1: [1/1 done] dummy SKIPPED")
    assert not set(result) & {"started", "finished", "job_file", "pid"}, sorted(result)
    assert left == [] and module_files == [], (left, module_files)


def test_a_run_that_fails_in_the_background_fails_the_task_with_the_reason_naming_the_engine(tmp_path, way):
    """The failure happens in the detached worker (no engine at docker_host): it is handed over as the module's
    failed result, as it would be without the background."""
    _shown, result, left, module_files = run_in_background(tmp_path, cpu_node_args(tmp_path, ""), way)
    assert result.get("failed") and "/nonexistent/madci-docker.sock" in result["msg"], result
    assert left == [] and module_files == [], (left, module_files)


def test_a_run_killed_on_the_node_fails_the_task_naming_the_node_instead_of_waiting_for_it(tmp_path, way):
    """The worker waits on an engine that accepts and never answers; killed there, its job file still says it
    runs: the plugin sees the process gone from the node and fails the task saying so."""
    engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    engine.bind(str(tmp_path / "engine.sock"))
    engine.listen(8)
    killed, over = [], threading.Event()

    def kill_the_worker():
        while not over.is_set() and not killed:
            for name in os.listdir(tmp_path / "async") if (tmp_path / "async").exists() else []:
                if name.startswith("madengine-job-") and name.endswith(".json"):
                    state = json.loads((tmp_path / "async" / name).read_text() or "{}")
                    if state.get("pid"):
                        time.sleep(0.5)  # inside its wait on the engine
                        os.kill(state["pid"], signal.SIGKILL)
                        killed.append(state["pid"])
            time.sleep(0.1)

    killer = threading.Thread(target=kill_the_worker)
    killer.start()
    try:
        args = cpu_node_args(tmp_path, "", docker_host="unix://%s" % (tmp_path / "engine.sock"))
        started = time.monotonic()
        shown, result, left, _module_files = run_in_background(tmp_path, args, way)
    finally:
        over.set()
        killer.join()
        engine.close()
    assert killed, "the worker's job file never named its process"
    assert result == {"failed": True, "msg": "madengine_run on node-1 ended without a result: its process %d is gone "
                                             "(killed, or the node restarted); the rows of the models it finished are "
                                             "in the node's CSV." % killed[0]}
    # seen at the request after the kill (a request waits at most 5 s on the node), not after a timeout
    assert time.monotonic() - started < 30
    assert left == [] and shown[0] == "node-1: 1 model(s) to run: dummy", (left, shown)
