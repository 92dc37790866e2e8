"""madengine_run's action plugin following a node's async job: terminal line ends and a node that stays lost."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

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
        self.plugin, self.outputs, self.commands, self.parsed = plugin, list(outputs), [], None
        self._task = SimpleNamespace(args=args or {})

    def shell(self, command):
        self.commands.append(command)
        out = self.outputs.pop(0)
        if isinstance(out, Exception):
            raise out
        connection = SimpleNamespace(_low_level_execute_command=lambda *a, **k: {"stdout": out})
        return self.plugin.ActionModule.shell(connection, command)

    def job_result(self, text):
        self.parsed = text
        return json.loads(text)


def test_a_terminal_s_crlf_line_ends_are_read_as_the_journal_s_and_the_job_is_followed_to_its_end(plugin):
    state_mark = mark(plugin)
    journal = '{"event": "plan", "total": 1, "models": ["dummy"]}\n'
    running = '{"started": true, "finished": false}'
    done = json.dumps({"changed": True, "results": [{"model": "dummy", "status": "SUCCESS"}]})
    crlf = [(journal + state_mark + running).replace("\n", "\r\n"), state_mark.replace("\n", "\r\n") + running,
            (state_mark + done).replace("\n", "\r\n")]
    node = Node(plugin, crlf + [state_mark.replace("\n", "\r\n") + done])
    watch = plugin.Watch(node, "node-1", {})
    result = watch.follow("/a/job", "/a/journal")
    assert result["results"] == [{"model": "dummy", "status": "SUCCESS"}]
    # the offset counts the journal's bytes (LF), not the terminal's CR LF
    assert watch.offset == len(journal.encode("utf-8"))
    assert "tail -c +%d " % (len(journal) + 1) in node.commands[-1]


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
    node = Node(plugin, [timed_out, timed_out, done, done], args={"unreachable_timeout": 30})
    assert plugin.Watch(node, "node-1", {}).follow("/a/job", "/a/journal") == {"changed": True, "results": []}
