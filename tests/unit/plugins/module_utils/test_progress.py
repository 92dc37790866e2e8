"""The progress journal of a node's run: written by madengine_run, read and shown by its action plugin."""

from __future__ import annotations

import json
import subprocess
import time

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.progress import (
    WATCH_MARK,
    ProgressJournal,
    describe,
    job_running,
    parse_lines,
    split_watch_output,
    wait_steps,
    watch_command,
)


def test_the_journal_is_one_json_object_a_line_in_a_directory_it_makes(tmp_path):
    path = tmp_path / "deeper" / "progress.jsonl"
    journal = ProgressJournal(str(path))
    journal.write("plan", total=2, models=["a", "b"])
    journal.write("start", model="a", index=1, total=2, log="/r/a.log")
    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["event"] for e in events] == ["plan", "start"]
    assert events[1]["model"] == "a" and events[1]["log"] == "/r/a.log" and events[1]["time"] > 0


def test_no_path_writes_nothing(tmp_path):
    ProgressJournal("").write("plan", total=1, models=["a"])
    ProgressJournal(None).write("plan", total=1, models=["a"])
    assert list(tmp_path.iterdir()) == []


def test_lines_name_the_node_the_model_the_count_the_status_and_the_time():
    assert describe("n1", {"event": "plan", "total": 2, "models": ["a", "b"]}) == "n1: 2 model(s) to run: a, b"
    assert describe("n1", {"event": "start", "model": "a", "index": 1, "total": 2, "log": "/r/a.log"}) == (
        "n1: [1/2] a started, log /r/a.log")
    assert describe("n1", {"event": "start", "model": "a", "index": 1, "total": 2, "log": ""}) == "n1: [1/2] a started"
    assert describe("n1", {"event": "end", "model": "a", "status": "FAILURE", "elapsed": 12.345, "rows": 1,
                           "done": 1, "total": 2}) == "n1: [1/2 done] a FAILURE in 12.3 s (1 row)"
    assert describe("n1", {"event": "end", "model": "m", "status": "SUCCESS", "elapsed": None, "rows": 3,
                           "done": 2, "total": 2}) == "n1: [2/2 done] m SUCCESS in 0.0 s (3 rows)"
    assert describe("n1", {"event": "something else"}) is None


def test_a_line_cut_short_or_not_an_object_is_left_out():
    text = '{"event": "plan", "total": 1}\n[1, 2]\nnot json\n{"event": "start", "mod'
    assert parse_lines(text) == [{"event": "plan", "total": 1}]


def test_a_request_for_news_waits_on_the_node_and_returns_the_new_lines_and_the_job_s_state(tmp_path):
    journal, job = tmp_path / "journal.jsonl", tmp_path / "job"
    job.write_text('{"started": 1, "finished": 0}')
    journal.write_text('{"event": "plan", "total": 1}\n')
    offset = journal.stat().st_size

    def ask(wait):
        began = time.monotonic()
        out = subprocess.run(["/bin/sh", "-c", watch_command(str(journal), str(job), offset, wait, 0.1, 0.05)],
                             capture_output=True, text=True, check=True).stdout
        return time.monotonic() - began, split_watch_output(out)

    took, (head, state) = ask(0.5)  # nothing new: the whole wait, then the state
    assert head == "" and job_running(state) and 0.5 <= took < 3, took
    with open(journal, "a") as handle:
        handle.write('{"event": "start", "model": "a"}\n')
    took, (head, state) = ask(30)  # a new line: at once, from the offset on
    assert head == '{"event": "start", "model": "a"}\n' and job_running(state) and took < 3, took
    job.write_text('{"changed": true}')
    took, (head, state) = ask(30)  # the job's end: at once, with its result
    assert state == '{"changed": true}' and not job_running(state) and took < 3, took
    job.unlink()
    assert ask(30)[1][1] == ""  # no state file: an empty state


def test_the_job_s_state_is_split_from_the_journal_and_a_terminal_s_cr_lf_read_as_lf():
    text = '{"event": "plan"}\r\n\r\n%s\r\n{"changed": true}' % WATCH_MARK
    assert split_watch_output(text) == ('{"event": "plan"}\n', '{"changed": true}')
    assert job_running('{"started": 1, "finished": 0}') and not job_running('{"failed": true}')


def test_a_wait_checks_often_for_its_first_second_then_at_pauses_doubling_up_to_the_longest():
    steps = wait_steps(5.0, 0.1, 0.5)
    assert steps[:10] == [0.1] * 10 and steps[10:13] == [0.2, 0.4, 0.5]
    assert set(steps[13:]) == {0.5} and abs(sum(steps) - 5.0) < 0.5
    assert len(steps) < len(wait_steps(5.0, 0.1)) / 2  # fewer sleep processes on the node for a long model
    assert wait_steps(5.0, 0.1) == [0.1] * 50  # no longest step: the same step throughout
    assert wait_steps(2.0, 0.5, 0.5) == [0.5] * 4 and wait_steps(0, 0.1, 0.5) == []
    assert "for d in 0.1 0.1 0.1 0.1 0.1 0.1 0.1 0.1 0.1 0.1 0.2 0.4 0.5 " in watch_command(
        "/j", "/f", 0, 5.0, 0.1, 0.1, 0.5)
