"""Run logs brought home (read on the node, written on the controller), their column and links; node registries."""

from __future__ import annotations

import csv
import io
import os

import pytest
from fleet_rows import row

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark import baseline as _baseline
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark import history as _history
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark import report as _report
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark import report_html as _html
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.manifest import for_registry
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.rows import COLUMNS, PROVENANCE_COLUMNS
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.run_logs import (
    keep_tails,
    read_tails,
    write_home,
)
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError


def test_a_log_under_the_cap_comes_home_whole_and_a_second_fetch_changes_nothing(tmp_path):
    node = tmp_path / "node"
    node.mkdir()
    log = node / "dummy.run.live.log"
    log.write_bytes(b"line 1\nline 2\n")
    home = tmp_path / "home" / "n1"
    written = write_home(read_tails([str(log)], 1024), str(home), "n1", 1024)
    assert written == [{"node_path": str(log), "path": str(home / log.name), "size": 14, "truncated": False,
                        "changed": True}]
    assert (home / log.name).read_bytes() == b"line 1\nline 2\n"
    again = write_home(read_tails([str(log)], 1024), str(home), "n1", 1024)
    assert [w["changed"] for w in again] == [False]


def test_a_chatty_log_keeps_its_tail_after_a_line_saying_what_was_cut(tmp_path):
    log = tmp_path / "chatty.log"
    log.write_bytes(b"".join(b"line %06d\n" % n for n in range(100000)))  # 1.2 MB
    logs = read_tails([str(log)], 4096)
    assert logs[0]["truncated"] and logs[0]["size"] == 1200000
    assert len(logs[0]["content"]) < 4096  # compressed on the way
    home = tmp_path / "home"
    write_home(logs, str(home), "node7", 4096)
    lines = (home / "chatty.log").read_bytes().split(b"\n")
    assert lines[0].decode() == ("[the first 1195904 bytes of this log were cut to keep it under 4096 bytes; the "
                                 "whole log is %s on node7]" % log)
    assert lines[-2] == b"line 099999"
    assert sum(len(line) + 1 for line in lines[1:-1]) == 4096


def test_a_missing_log_is_reported_and_nothing_is_written(tmp_path):
    written = write_home(read_tails([str(tmp_path / "gone.log")], 10), str(tmp_path / "home"), "n", 10)
    assert written == [{"node_path": str(tmp_path / "gone.log"), "path": "", "size": 0, "truncated": False,
                        "changed": False}]
    assert not (tmp_path / "home").exists()
    with pytest.raises(MadengineError, match="max_size must be a positive number of bytes, not 0"):
        read_tails([], 0)


def test_a_log_already_home_is_left_alone(tmp_path):
    log = tmp_path / "n1" / "m.log"
    log.parent.mkdir()
    log.write_bytes(b"x" * 100)
    written = write_home(read_tails([str(log)], 10), str(log.parent), "n1", 10, same_file=os.path.samefile)
    assert written[0]["changed"] is False and log.read_bytes() == b"x" * 100


def test_the_tails_a_run_result_carries_are_written_and_leave_the_result(tmp_path):
    log = tmp_path / "node" / "m.run.live.log"
    log.parent.mkdir()
    log.write_bytes(b"".join(b"step %04d\n" % n for n in range(1000)))
    result = {"results": [{"log_path": str(log)}], "log_tails": read_tails([str(log)], 100)}
    assert keep_tails(result, str(tmp_path / "home" / "n1"), "n1", 100, local=False) is None
    assert "log_tails" not in result and result["results"] == [{"log_path": str(log)}]
    copy = tmp_path / "home" / "n1" / log.name
    assert result["logs"] == [{"node_path": str(log), "path": str(copy), "size": 10000, "truncated": True,
                               "changed": True}]
    assert copy.read_bytes().endswith(b"step 0999\n") and b"were cut" in copy.read_bytes().split(b"\n")[0]
    # a local node's log already at its destination stays as it is
    home = {"log_tails": read_tails([str(log)], 100)}
    assert keep_tails(home, str(log.parent), "n1", 100, local=True) is None
    assert home["logs"][0]["changed"] is False and log.stat().st_size == 10000
    # no logs_dest: nothing is read on the node, nothing happens here
    assert keep_tails({"results": []}, None, "n1", 100, local=False) is None


def test_logs_that_cannot_be_written_are_a_warning_and_the_rows_stay(tmp_path):
    log = tmp_path / "m.log"
    log.write_bytes(b"x\n")
    blocker = tmp_path / "home"
    blocker.write_text("a file where the directory should be")
    result = {"results": [{"model": "m"}], "log_tails": read_tails([str(log)], 100)}
    problem = keep_tails(result, str(blocker / "n1"), "n1", 100, local=False)
    assert problem.startswith("Cannot keep the run logs of n1 in %s: " % (blocker / "n1"))
    assert result == {"results": [{"model": "m"}], "logs": []}


def test_node_log_path_is_a_column_after_the_provenance_columns():
    assert COLUMNS[-1] == "node_log_path" and COLUMNS.index("error") == COLUMNS.index("node_log_path") - 1
    assert "node_log_path" not in PROVENANCE_COLUMNS


def test_rows_name_the_controller_copy_and_the_report_links_every_row_to_its_log(tmp_path):
    out = tmp_path / "results"
    (out / "n1").mkdir(parents=True)
    (out / "n1" / "dummy.log").write_text("log of dummy")
    rows = {"n1": [row("dummy", "n1", log_path="/srv/node/dummy.log"),
                   row("other", "n1", "FAILURE", log_path="/srv/node/other.log")],
            "n2": [row("dummy", "n2", log_path="/var/n2/dummy.log", node_log_path="/var/n2/dummy.log")]}
    report = _report.merge(rows)
    _report.logs_at_home(report.rows, str(out))
    table = list(csv.DictReader(io.StringIO(report.to_csv().decode())))
    paths = [(r["host"], r["model"], r["log_path"], r["node_log_path"]) for r in table]
    assert paths == [("n1", "dummy", str(out / "n1" / "dummy.log"), "/srv/node/dummy.log"),
                     ("n1", "other", "/srv/node/other.log", ""),  # not fetched: the node's path stays
                     ("n2", "dummy", "/var/n2/dummy.log", "/var/n2/dummy.log")]  # carried as it was
    link = _html.log_linker("", str(out))
    assert [link(r) for r in report.rows] == ["n1/dummy.log", "file:///srv/node/other.log", "file:///var/n2/dummy.log"]
    policy = _baseline.Policy()
    sources = _baseline.gather(None, report.rows, _history.row_run_ids(report.rows, "r"), "2026-12-01T00:00:00Z",
                               policy)
    page = _html.to_html(report, "t", "r", comparison=_baseline.compare(report, sources, policy),
                         output_dir=str(out)).decode()
    assert 'href="n1/dummy.log"' in page and 'href="file:///srv/node/other.log"' in page


MANIFEST = {"built_images": {
    "ci-dummy_gfx942": {"registry": "localhost:5000", "registry_image": "localhost:5000/ci-dummy_gfx942",
                        "registry_digest": "localhost:5000/ci-dummy_gfx942@sha256:abc", "docker_image": "ci-dummy"},
    "ci-local": {"docker_image": "ci-local"},
    "ci-hub": {"registry": "docker.io/me", "registry_image": "me/ci-hub"}}, "built_models": {}}


def test_a_node_that_reaches_the_registry_at_another_address_pulls_the_same_digests():
    seen = for_registry(MANIFEST, "10.0.0.1:5000/")
    entry = seen["built_images"]["ci-dummy_gfx942"]
    assert entry["registry_digest"] == "10.0.0.1:5000/ci-dummy_gfx942@sha256:abc"
    assert entry["registry_image"] == "10.0.0.1:5000/ci-dummy_gfx942"
    assert (entry["registry"], entry["build_registry"]) == ("10.0.0.1:5000", "localhost:5000")
    assert entry["build_registry_digest"] == "localhost:5000/ci-dummy_gfx942@sha256:abc"
    assert seen["built_images"]["ci-local"] == MANIFEST["built_images"]["ci-local"]
    assert seen["built_images"]["ci-hub"] == MANIFEST["built_images"]["ci-hub"]  # no host part to rename
    assert MANIFEST["built_images"]["ci-dummy_gfx942"]["registry"] == "localhost:5000"  # not changed in place
    assert for_registry(MANIFEST, "") is MANIFEST and for_registry(MANIFEST, "localhost:5000") == MANIFEST
