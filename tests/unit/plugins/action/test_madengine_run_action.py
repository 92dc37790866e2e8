"""madengine_run's action plugin following a node's async job: terminal line ends and a node that stays lost."""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from types import SimpleNamespace

import local_async_job
import pytest
from ansible.module_utils import _internal


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


def mark(plugin):
    return "\n%s\n" % plugin.MARK


def lost(message):
    from ansible.errors import AnsibleConnectionFailure

    return AnsibleConnectionFailure(message)


class Node(object):
    """The node's side of the polls: the shell outputs in turn (an exception is raised), the result it returns."""

    def __init__(self, plugin, outputs, args=None):
        self.plugin, self.outputs, self.commands, self.done, self.read = plugin, list(outputs), [], [], None
        self._task = SimpleNamespace(args=args or {})

    def shell(self, command):
        self.commands.append(command)
        out = self.outputs.pop(0)
        if isinstance(out, Exception):
            raise out
        self.done.append(out)
        connection = SimpleNamespace(_low_level_execute_command=lambda *a, **k: {"stdout": out})
        return self.plugin.ActionModule.shell(connection, command)

    def job_result(self, job_file, task_vars):
        """The result the last poll saw in the job's file (the plugin reads it with async_status)."""
        self.read = job_file
        state = [o for o in self.done if self.plugin.MARK in o][-1].replace("\r\n", "\n")
        return json.loads(state.rpartition(mark(self.plugin))[2])


def test_a_terminal_s_crlf_line_ends_are_read_as_the_journal_s_and_the_job_is_followed_to_its_end(plugin):
    state_mark = mark(plugin)
    journal = '{"event": "plan", "total": 1, "models": ["dummy"]}\n'
    running = '{"started": true, "finished": false}'
    done = json.dumps({"changed": True, "results": [{"model": "dummy", "status": "SUCCESS"}]})
    crlf = [(journal + state_mark + running).replace("\n", "\r\n"), state_mark.replace("\n", "\r\n") + running,
            (state_mark + done).replace("\n", "\r\n")]
    node = Node(plugin, crlf + [""])
    watch = plugin.Watch(node, "node-1", {})
    result = watch.follow("/a/job", "/a/journal")
    assert result["results"] == [{"model": "dummy", "status": "SUCCESS"}]
    # the offset counts the journal's bytes (LF), not the terminal's CR LF
    assert watch.offset == len(journal.encode("utf-8"))
    assert "tail -c +%d " % (len(journal) + 1) in node.commands[-1]
    assert node.read == "/a/job"


def test_a_node_lost_for_its_unreachable_timeout_fails_the_task_with_the_time_it_was_first_lost(plugin):
    refused = lost("ssh: connect to host 10.0.0.9 port 22: Connection refused")
    node = Node(plugin, [mark(plugin) + '{"started": true, "finished": false}'] + [refused] * 50,
                args={"unreachable_timeout": 0.3})
    result = plugin.Watch(node, "node-1", {}).follow("/a/job", "/a/journal")
    assert result["failed"] and result["unreachable_during_run"], result
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", result["unreachable_since"]), result
    assert result["msg"].startswith("node-1 was unreachable for 0 s while its models ran (its async job /a/job")
    assert "Connection refused" in result["msg"]
    assert len(node.commands) < 10  # tried again until the timeout, not for the default 10 minutes


def test_a_node_back_within_its_unreachable_timeout_goes_on_to_the_job_s_result(plugin):
    timed_out, done = lost("ssh: connection timed out"), mark(plugin) + json.dumps({"changed": True, "results": []})
    node = Node(plugin, [timed_out, timed_out, done, ""], args={"unreachable_timeout": 30})
    assert plugin.Watch(node, "node-1", {}).follow("/a/job", "/a/journal") == {"changed": True, "results": []}


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
