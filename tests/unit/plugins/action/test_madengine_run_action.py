"""madengine_run's action plugin following a node's async job: round trips, progress latency, terminal line ends,
a connection that drops while a model runs and a node that stays lost.

The tests with a node use a real one: the plugin's requests for news run in /bin/sh on files that a job of this
test writes as madengine_run's async job does (the journal through ProgressJournal, the state file replaced as
async_wrapper replaces it)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import local_async_job
import pytest
from ansible.module_utils import _internal

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.progress import (
    WATCH_MARK,
    ProgressJournal,
    describe,
    parse_lines,
)

RUNNING = json.dumps({"started": 1, "finished": 0, "ansible_job_id": "j1.1"})
PROGRESS_WITHIN_S = 10.0  # the bound on a model's start or end being shown


@pytest.fixture(scope="module")
def plugin():
    """The action plugin, imported here and not at collection: controller code marks the process as the controller
    (module warnings would go to Display instead of the module's result), so the mark is put back afterwards."""
    was = _internal.is_controller
    try:
        from ansible_collections.rocm.madengine.plugins.action import madengine_run

        yield madengine_run
    finally:
        _internal.is_controller = was


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
        self.plugin, self.outputs, self.commands, self.last, self.read = plugin, list(outputs), [], "", None
        self._task = SimpleNamespace(args=args or {})

    def shell(self, command):
        self.commands.append(command)
        out = self.outputs.pop(0)
        if isinstance(out, Exception):
            raise out
        connection = SimpleNamespace(_low_level_execute_command=lambda *a, **k: {"stdout": out})
        self.last = self.plugin.ActionModule.shell(connection, command)
        return self.last

    def job_result(self, job_file, task_vars):
        """The result the last answer carried in the job's state (the plugin reads it with async_status)."""
        self.read = job_file
        return json.loads(self.last.rpartition(mark())[2])


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

    def job_result(self, job_file, task_vars):
        """The result in the job's file (the plugin reads it with async_status)."""
        with open(job_file) as handle:
            return json.load(handle)


class Job(object):
    """An async job of madengine_run on ``tmp_path``: models of the given seconds, journal lines when they start and
    end, the state file replaced by the module's result at the end.  ``written``: (time, journal line) in order."""

    def __init__(self, tmp_path, seconds, startup=0.3):
        self.job_file, self.journal = str(tmp_path / "j1.1"), str(tmp_path / "madengine-progress-1.jsonl")
        self.seconds, self.startup, self.written = list(seconds), startup, []
        self.result = {"changed": True, "results": [{"model": "m%d" % i, "status": "SUCCESS"}
                                                    for i in range(len(self.seconds))]}
        self.replace(RUNNING)
        self.thread = threading.Thread(target=self.run)

    def replace(self, text):
        with open(self.job_file + ".tmp", "w") as handle:
            handle.write(text)
        os.replace(self.job_file + ".tmp", self.job_file)

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
        time.sleep(0.1)  # the module's exit and async_wrapper's write
        self.replace(json.dumps(self.result))

    def follow(self, plugin, node):
        watch = plugin.Watch(node, "node-1", {})
        self.thread.start()
        try:
            return watch, watch.follow(self.job_file, self.journal)
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
    # 4-6 requests (a poll every 0.1-2 s took about 20 for such a run)
    assert 4 <= watch.polls == len(node.requests) <= 6, node.requests
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
    assert watch.follow(job.job_file, job.journal) == job.result
    assert watch.polls == 1 and len(shown) == 5 and shown[-1][1] == "node-1: [2/2 done] m1 SUCCESS in 0.2 s (1 row)"


def test_the_result_is_read_from_the_module_s_result_file_with_one_command_and_its_warnings_shown(
        plugin, tmp_path, shown, monkeypatch):
    """The module hands its result and warnings over in result_file: one `cat`, no async_status module."""
    warned = []
    monkeypatch.setattr(plugin.display, "warning", warned.append)
    job = Job(tmp_path, [0.2])
    result_file = tmp_path / "madengine-result-1.json"
    handed = {"changed": True, "results": [{"model": "m0", "status": "SUCCESS"}], "ansible_facts": {}}
    result_file.write_text(json.dumps({"result": handed, "warnings": ["The context key 'docker_gpus' is ignored"]}))
    node = ShellNode()
    node.job_result = None  # the async job is not asked
    watch = plugin.Watch(node, "node-1", {})
    job.thread.start()
    try:
        assert watch.follow(job.job_file, job.journal, str(result_file)) == handed
    finally:
        job.thread.join()
    assert warned == ["The context key 'docker_gpus' is ignored"]
    assert len(node.requests) == watch.polls + 1


@pytest.mark.parametrize("content", [None, "", '{"result": {"changed": tr', '["not", "a", "hand-over"]'])
def test_without_a_readable_result_file_the_async_job_s_record_is_read(plugin, tmp_path, shown, content):
    """A module that crashed or was killed wrote no result_file (or part of one): what async_wrapper recorded."""
    job = Job(tmp_path, [0.1], startup=0.0)
    result_file = tmp_path / "madengine-result-1.json"
    if content is not None:
        result_file.write_text(content)
    job.thread.start()
    job.thread.join()
    assert plugin.Watch(ShellNode(), "node-1", {}).follow(job.job_file, job.journal, str(result_file)) == job.result


def test_a_terminal_s_crlf_line_ends_are_read_as_the_journal_s_and_the_job_is_followed_to_its_end(plugin, shown):
    journal = '{"event": "plan", "total": 1, "models": ["dummy"]}\n'
    done = json.dumps({"changed": True, "results": [{"model": "dummy", "status": "SUCCESS"}]})
    crlf = [(journal + mark() + RUNNING).replace("\n", "\r\n"), mark().replace("\n", "\r\n") + RUNNING,
            (mark() + done).replace("\n", "\r\n")]
    node = Replies(plugin, crlf)
    watch = plugin.Watch(node, "node-1", {})
    result = watch.follow("/a/job", "/a/journal")
    assert result["results"] == [{"model": "dummy", "status": "SUCCESS"}]
    assert [line for _at, line in shown] == ["node-1: 1 model(s) to run: dummy"]
    # the offset counts the journal's bytes (LF), not the terminal's CR LF
    assert watch.offset == len(journal.encode("utf-8"))
    assert "tail -c +%d " % (len(journal) + 1) in node.commands[-1]
    assert watch.polls == 3 and not node.outputs
    assert node.read == "/a/job"


def test_a_job_whose_state_file_is_gone_fails_the_task_naming_the_node_and_the_file(plugin, tmp_path, shown):
    result = plugin.Watch(ShellNode(), "node-1", {}).follow(str(tmp_path / "gone"), str(tmp_path / "journal"))
    assert result == {"failed": True, "msg": "The async job of madengine_run on node-1 is gone (%s does not exist)."
                                             % (tmp_path / "gone")}


def test_a_node_lost_for_its_unreachable_timeout_fails_the_task_with_the_time_it_was_first_lost(plugin, shown):
    refused = lost("ssh: connect to host 10.0.0.9 port 22: Connection refused")
    node = Replies(plugin, [mark() + RUNNING] + [refused] * 50, args={"unreachable_timeout": 0.3})
    result = plugin.Watch(node, "node-1", {}).follow("/a/job", "/a/journal")
    assert result["failed"] and result["unreachable_during_run"], result
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", result["unreachable_since"]), result
    assert result["msg"].startswith("node-1 was unreachable for 0 s while its models ran (its async job /a/job")
    assert "Connection refused" in result["msg"]
    assert len(node.commands) < 10  # tried again until the timeout, not for the default 10 minutes


def test_a_node_back_within_its_unreachable_timeout_goes_on_to_the_job_s_result(plugin, shown, monkeypatch):
    monkeypatch.setattr(plugin, "RETRY_SECONDS", 0.1)
    timed_out, done = lost("ssh: connection timed out"), mark() + json.dumps({"changed": True, "results": []})
    node = Replies(plugin, [timed_out, timed_out, done], args={"unreachable_timeout": 30})
    assert plugin.Watch(node, "node-1", {}).follow("/a/job", "/a/journal") == {"changed": True, "results": []}
    assert [line for _at, line in shown] == ["node-1: reachable again"] and not node.outputs


# ---- a real async job, followed by the plugin as ansible-core runs it ------------------------------------------

JOURNAL_LINES = [
    {"event": "plan", "total": 1, "models": ["dummy"]},
    {"event": "start", "model": "dummy", "index": 1, "total": 1},
    {"event": "end", "model": "dummy", "status": "SUCCESS", "elapsed": 1.5, "rows": 1, "done": 1, "total": 1},
]


def journal_command(exit_code):
    """A shell command that writes a model's progress to the journal while it runs, prints and exits."""
    lines = ["printf '%%s\\n' %s >> \"$ANSIBLE_ASYNC_DIR/journal\"" % shlex.quote(json.dumps(event))
             for event in JOURNAL_LINES]
    return "; ".join([lines[0], lines[1], "sleep 1", lines[2], "echo ran dummy", "echo a warning >&2",
                      "exit %d" % exit_code])


@pytest.mark.parametrize("exit_code", [0, 3])
def test_the_job_s_result_is_read_by_ansible_core_as_a_module_s_result_dict(tmp_path, exit_code):
    """The plugin reads the finished job's result through ansible-core itself (its async_status module): a plain
    dict whatever the release (2.19 parses a module's output into a dict, 2.20 on into another type), the
    module's keys only, its progress shown as it ran."""
    shown, out = local_async_job.run([sys.executable], tmp_path, journal_command(exit_code),
                                     collections_path=os.environ["MADCI_INSTALLED"])
    assert out["type"] == "dict", out
    result = out["result"]
    assert result["rc"] == exit_code and result["stdout"] == "ran dummy" and result["stderr"] == "a warning"
    assert bool(result.get("failed")) == bool(exit_code), result
    if exit_code:
        assert "non-zero return code" in result["msg"], result
    # what async_status adds is not the module's
    assert not set(result) & {"ansible_job_id", "started", "finished", "results_file"}, sorted(result)
    assert shown == ["node-1: 1 model(s) to run: dummy", "node-1: [1/1] dummy started",
                     "node-1: [1/1 done] dummy SUCCESS in 1.5 s (1 row)"]
