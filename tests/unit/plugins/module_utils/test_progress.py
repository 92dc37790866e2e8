"""The progress journal of a node's run: written by madengine_run, read and shown by its action plugin."""

from __future__ import annotations

import json

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.progress import (
    ProgressJournal,
    describe,
    parse_lines,
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
