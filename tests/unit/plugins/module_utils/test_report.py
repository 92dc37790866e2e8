"""Merging node rows, the merged CSV, the summary and the re-run plan (the HTML report: test_report_html.py)."""

from __future__ import annotations

import csv
import io
import os
import re

import pytest
from fleet_rows import MODELS, node_rows, row

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark import report as _report
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.history import COMPARISON_COLUMNS
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.rows import (
    COLUMNS,
    MADENGINE_COLUMNS,
    rows_to_csv,
)
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError, write_if_changed


def fleet(**fail):
    return {"node1": node_rows("node1", fail=fail.get("node1", ()), perf=100.0),
            "node2": node_rows("node2", fail=fail.get("node2", ()), perf=110.0)}


def parse_csv(data):
    reader = csv.DictReader(io.StringIO(data.decode("utf-8")))
    return reader.fieldnames, list(reader)


# ---- merge ----------------------------------------------------------------------------------

def test_merge_keeps_every_row_in_node_order_with_the_schema_header():
    report = _report.merge(fleet(node2=["dummy"]), hosts=["node1", "node2"], models=MODELS)
    header, rows = parse_csv(report.to_csv())
    assert header[:29] == list(MADENGINE_COLUMNS) and header[: len(COLUMNS)] == list(COLUMNS)
    # the comparison columns come after the provenance columns, the extras of multiple_results last
    assert header[len(COLUMNS):] == ["baseline_performance", "baseline_run_id", "verdict", "temperature"]
    assert [(r["host"], r["model"]) for r in rows] == [
        (h, m) for h in ("node1", "node2")
        for m in ("dummy", "dummy_multi_1", "dummy_multi_2", "dummy_multi_3", "dummy_multi_4", "dummy2/model2")]
    failed = [r for r in rows if r["status"] == "FAILURE"]
    assert [(r["model"], r["host"], r["error"]) for r in failed] == [("dummy", "node2", "exit code 3")]
    assert report.missing_hosts == [] and report.placeholders == 0


def test_csv_is_the_row_schema_writer_format():
    results = fleet()
    report = _report.merge(results, hosts=["node1", "node2"])
    expected = rows_to_csv(results["node1"] + results["node2"],
                           header=list(COLUMNS) + list(COMPARISON_COLUMNS) + ["temperature"])
    assert report.to_csv().decode("utf-8") == expected


def test_node_with_no_rows_is_missing_and_gets_a_failure_row_per_model():
    results = fleet()
    results["node3"] = []
    results["node4"] = None
    report = _report.merge(results, hosts=["node1", "node2", "node3", "node4"], models=MODELS)
    assert report.missing_hosts == ["node3", "node4"]
    placeholders = [r for r in report.rows if r["host"] in ("node3", "node4")]
    assert [(r["host"], r["model"], r["status"]) for r in placeholders] == [
        (h, m, "FAILURE") for h in ("node3", "node4") for m in MODELS]
    assert all("no results from node %s" % r["host"] in r["error"] for r in placeholders)
    assert report.placeholders == 6
    # The other nodes lose nothing.
    assert len([r for r in report.rows if r["host"] in ("node1", "node2")]) == 12


def test_a_missing_node_s_failure_rows_say_why_it_returned_none():
    results = fleet(node2=["dummy"])
    results["node3"] = []
    why = "Start the VM and wait for it (madengine_vm): VM madengine-vm-node3 is unreachable. Its console ends: x"
    report = _report.merge(results, hosts=["node1", "node2", "node3"], models=MODELS,
                           host_errors={"node3": why, "node1": "ignored: node1 returned rows", "node2": ""})
    assert [r["error"] for r in report.rows if r["host"] == "node3"] == ["no results from node node3: " + why] * 3
    assert [r["error"] for r in report.rows if r["status"] == "FAILURE" and r["host"] != "node3"] == ["exit code 3"]


def test_expected_node_absent_from_results_is_missing_too():
    report = _report.merge({"node1": node_rows("node1")}, hosts=["node1", "node2"], models=MODELS)
    assert report.missing_hosts == ["node2"]
    assert [r["model"] for r in report.rows if r["host"] == "node2"] == MODELS


def test_node_that_stopped_mid_run_gets_a_row_for_each_model_it_did_not_report():
    results = {"node1": node_rows("node1")[:1]}  # only dummy came back
    report = _report.merge(results, hosts=["node1"], models=MODELS)
    rows = [(r["model"], r["status"], r["error"]) for r in report.rows]
    assert rows == [("dummy", "SUCCESS", ""),
                    ("dummy_multi", "FAILURE", "node node1 returned no row for this model"),
                    ("dummy2/model2", "FAILURE", "node node1 returned no row for this model")]
    assert report.missing_hosts == []


def test_without_models_a_missing_node_is_only_named():
    results = fleet()
    results["node3"] = []
    report = _report.merge(results)
    assert report.missing_hosts == ["node3"] and report.placeholders == 0
    assert all(r["host"] != "node3" for r in report.rows)


def test_fill_missing_can_be_turned_off():
    report = _report.merge({"node1": []}, hosts=["node1"], models=MODELS, fill_missing=False)
    assert report.rows == [] and report.missing_hosts == ["node1"]


def test_multiple_results_rows_belong_to_their_model_not_a_shorter_prefix():
    pairs = _report.Pair(["dummy", "dummy_multi", "dummy2/model2"])
    assert pairs.base("dummy_multi_3") == "dummy_multi"
    assert pairs.base("dummy") == "dummy"
    assert pairs.base("dummy_other") == "dummy"
    assert pairs.base("unrelated") == "unrelated"
    assert _report.Pair([]).base("dummy_multi_3") == "dummy_multi_3"


def test_rows_are_ordered_by_model_within_a_node():
    shuffled = list(reversed(node_rows("node1")))
    report = _report.merge({"node1": shuffled}, models=MODELS)
    assert report.rows[0]["model"] == "dummy"
    assert [r["model"] for r in report.rows][-1] == "dummy2/model2"
    # rows of one model keep the order the node returned them in
    expected = ["dummy_multi_4", "dummy_multi_3", "dummy_multi_2", "dummy_multi_1"]
    assert [r["model"] for r in report.rows][1:5] == expected


def test_rows_missing_columns_are_completed_and_noted():
    results = {"node1": [{"model": "dummy", "status": "SUCCESS", "performance": 12.5, "exit_code": 0}]}
    report = _report.merge(results)
    only = report.rows[0]
    assert list(only)[: len(COLUMNS)] == list(COLUMNS)
    assert only["host"] == "node1" and only["performance"] == "12.5" and only["exit_code"] == "0"
    assert only["metric"] == ""
    assert len(report.notes) == 1 and report.notes[0].startswith("Rows of node node1 lack the columns n_gpus,")


@pytest.mark.parametrize("results, message", [
    ([{"model": "x"}], "results must map each node to its list of rows, not a list."),
    ({"node7": "oops"}, "The results of node node7 are a str, not a list of rows."),
    ({"node7": {"model": "x"}}, "The results of node node7 are a dict, not a list of rows."),
    ({"node7": [["dummy"]]}, "Row 1 of node node7 is a list, not a mapping of column to value."),
    ({"node7": [3]}, "Row 1 of node node7 is a int, not a mapping of column to value."),
    ({"node7": [{"status": "SUCCESS"}]}, "Row 1 of node node7 has no 'model' column."),
    ({"node7": [{"model": "a", "status": "SUCCESS"}, {"model": "b"}]}, "Row 2 of node node7 has no 'status' column."),
    ({"node7": [{"model": "a", "status": " "}]}, "Row 1 of node node7 has no 'status' column."),
    ({"node7": [{"model": "a", "status": "PASSED"}]},
     "Row 1 of node node7 (model a) has status 'PASSED'; expected one of SUCCESS, FAILURE, TIMEOUT, SKIPPED."),
])
def test_bad_results_are_sentences_naming_the_node_and_row(results, message):
    with pytest.raises(MadengineError) as err:
        _report.merge(results)
    assert str(err.value) == message


@pytest.mark.parametrize("models, message", [
    ([{"tags": ["x"]}], "Entry 1 of models has no 'name'."),
    (["dummy", 3], "Entry 2 of models is a int; expected a model name or a model dict."),
    (["dummy", None], "Entry 2 of models is null; expected a model name or a model dict."),
])
def test_bad_models_are_named(models, message):
    with pytest.raises(MadengineError) as err:
        _report.merge(fleet(), models=models)
    assert str(err.value) == message


def test_models_may_be_discover_dicts():
    assert _report.model_names([{"name": "dummy", "args": ""}, "dummy2/model2", {"name": "dummy"}]) == [
        "dummy", "dummy2/model2"]


# ---- same inputs, same bytes ------------------------------------------------------------------

def test_same_inputs_give_byte_identical_files_whatever_the_dict_order():
    a = fleet(node1=["dummy2/model2"])
    b = dict(reversed(list(a.items())))
    one = _report.merge(a, hosts=["node1", "node2"], models=MODELS)
    two = _report.merge(b, hosts=["node1", "node2"], models=MODELS)
    assert one.to_csv() == two.to_csv()
    # without hosts, nodes are in name order
    three = _report.merge(b, models=MODELS)
    assert three.to_csv() == one.to_csv()


def test_default_run_id():
    single = _report.merge({"n": [row("dummy", "n", run_id="abc")]})
    assert _report.default_run_id(single, single.to_csv()) == "abc"
    report = _report.merge(fleet())
    run_id = _report.default_run_id(report, report.to_csv())
    assert re.match(r"^merged-[0-9a-f]{12}$", run_id)
    assert run_id == _report.default_run_id(report, report.to_csv())


# ---- summary ----------------------------------------------------------------------------------

def test_summary_is_compact_and_counts_every_status():
    results = fleet(node1=["dummy", "dummy2/model2"])
    results["node3"] = []
    report = _report.merge(results, hosts=["node1", "node2", "node3"], models=MODELS)
    summary = _report.summary(report, "r1", "/x/perf.csv", "/x/perf.html", max_failed=2)
    assert summary == {
        "run_id": "r1", "rows": 15, "nodes": 3, "hosts": ["node1", "node2", "node3"],
        "counts": {"SUCCESS": 10, "FAILURE": 4, "TIMEOUT": 1, "SKIPPED": 0},
        "failed": ["dummy@node1", "dummy2/model2@node1"], "failed_total": 5,
        "missing_nodes": ["node3"], "csv": "/x/perf.csv", "html": "/x/perf.html", "json": None,
        "verdicts": {"regressed": 0, "improved": 0, "unchanged": 0, "no baseline": 0},
        "regressed": [], "regressed_total": 0, "database": None,
    }


def test_summary_of_nothing():
    report = _report.merge({"node1": []}, hosts=["node1"])
    summary = _report.summary(report, "r")
    assert summary["rows"] == 0 and summary["counts"] == {"SUCCESS": 0, "FAILURE": 0, "TIMEOUT": 0, "SKIPPED": 0}
    assert summary["missing_nodes"] == ["node1"]


# ---- re-run plan --------------------------------------------------------------------------------

def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def merged_csv(tmp_path, results, **kwargs):
    report = _report.merge(results, **kwargs)
    path = tmp_path / "perf.csv"
    path.write_bytes(report.to_csv())
    return str(path)


def test_rerun_plan_lists_failed_and_missing_pairs_per_node(tmp_path):
    results = fleet(node1=["dummy"], node2=["dummy2/model2"])
    results["node3"] = []
    path = merged_csv(tmp_path, results, hosts=["node1", "node2", "node3"], models=MODELS)
    _header, rows = _report.read_previous_csv(path)
    plan, pairs = _report.rerun_plan(rows, hosts=["node1", "node2", "node3", "node4"], models=MODELS)
    assert plan == {"node1": ["dummy"], "node2": ["dummy2/model2"], "node3": MODELS, "node4": MODELS}
    assert pairs[:2] == [{"model": "dummy", "host": "node1", "reason": "FAILURE"},
                         {"model": "dummy2/model2", "host": "node2", "reason": "TIMEOUT"}]
    assert {"model": "dummy", "host": "node4", "reason": "missing"} in pairs
    assert {"model": "dummy", "host": "node3", "reason": "FAILURE"} in pairs  # its placeholder row


def test_rerun_plan_without_hosts_or_models_uses_the_csv(tmp_path):
    results = fleet(node1=["dummy"])
    results["node2"] = results["node2"][1:]  # node2 lost its dummy row (and no placeholder was written)
    path = merged_csv(tmp_path, results)
    plan, pairs = _report.rerun_plan(_report.read_previous_csv(path)[1])
    # without models, multiple-results rows are models of their own
    assert plan == {"node1": ["dummy"], "node2": ["dummy"]}
    assert [p["reason"] for p in pairs] == ["FAILURE", "missing"]


def test_rerun_plan_multiple_results_rerun_their_model(tmp_path):
    rows = node_rows("node1")
    rows[2] = row("dummy_multi_2", "node1", "FAILURE")
    path = merged_csv(tmp_path, {"node1": rows})
    plan, _pairs = _report.rerun_plan(_report.read_previous_csv(path)[1], models=MODELS)
    assert plan == {"node1": ["dummy_multi"]}


def test_a_shard_expects_only_its_assigned_pairs_and_reruns_only_failed_ones(tmp_path):
    assignments = {"node1": ["dummy", "dummy2/model2"], "node2": ["dummy_multi"], "node3": ["dummy"], "node4": []}
    results = {"node1": [r for r in node_rows("node1") if r["model"] in ("dummy", "dummy2/model2")],
               "node2": [r for r in node_rows("node2", perf=110.0) if r["model"].startswith("dummy_multi")],
               "node3": [], "node4": []}
    report = _report.merge(results, hosts=["node1", "node2", "node3", "node4"], models=MODELS,
                           assignments=assignments, matrix="shard")
    # node3's share is missing; node4 had nothing to run, so it is not missing and gets no row
    assert report.missing_hosts == ["node3"] and report.placeholders == 1
    assert [(r["host"], r["model"], r["status"]) for r in report.rows] == [
        ("node1", "dummy", "SUCCESS"), ("node1", "dummy2/model2", "SUCCESS")] + [
        ("node2", "dummy_multi_%d" % n, "SUCCESS") for n in range(1, 5)] + [("node3", "dummy", "FAILURE")]
    assert report.rows[-1]["error"].startswith("no results from node node3")
    path = tmp_path / "perf.csv"
    path.write_bytes(report.to_csv())
    previous = _report.read_previous_csv(str(path))[1]
    hosts = ["node1", "node2", "node3", "node4"]
    # a shard re-run takes the failed pairs only; with matrix all every pair without a row would run
    assert _report.rerun_plan(previous, hosts=hosts, models=MODELS, matrix="shard")[0] == {
        "node1": [], "node2": [], "node3": ["dummy"], "node4": []}
    assert _report.rerun_plan(previous, hosts=hosts, models=MODELS)[0]["node4"] == MODELS
    with pytest.raises(MadengineError, match=r"^assignments must map each node to the list of models it runs\.$"):
        _report.merge(results, hosts=hosts, models=MODELS, assignments=["node1"])


def test_rerun_statuses_can_include_skipped(tmp_path):
    rows = [row("dummy", "node1", "SKIPPED", error="skip_gpu_arch gfx942"), row("dummy_multi_1", "node1")]
    path = merged_csv(tmp_path, {"node1": rows})
    previous = _report.read_previous_csv(path)[1]
    assert _report.rerun_plan(previous, models=["dummy", "dummy_multi"])[0] == {"node1": []}
    assert _report.rerun_plan(previous, models=["dummy", "dummy_multi"],
                              statuses=("FAILURE", "TIMEOUT", "SKIPPED"))[0] == {"node1": ["dummy"]}


def test_merge_with_previous_rows_keeps_what_was_not_rerun(tmp_path):
    first = fleet(node1=["dummy"], node2=["dummy2/model2"])
    path = merged_csv(tmp_path, first, hosts=["node1", "node2"], models=MODELS)
    previous = _report.read_previous_csv(path)[1]
    plan, _pairs = _report.rerun_plan(previous, hosts=["node1", "node2"], models=MODELS)
    # the re-run returns rows only for the planned pairs, now successful
    again = {"node1": [row("dummy", "node1", performance=99.0)],
             "node2": [row("dummy2/model2", "node2", performance=220.0, args=" --batch-size 32")]}
    assert plan == {"node1": ["dummy"], "node2": ["dummy2/model2"]}
    report = _report.merge(again, hosts=["node1", "node2"], models=MODELS, previous_rows=previous)
    assert report.carried == 10 and report.placeholders == 0
    assert all(r["status"] == "SUCCESS" for r in report.rows)
    assert [(r["host"], r["model"]) for r in report.rows] == [
        (r["host"], r["model"]) for r in _report.read_previous_csv(path)[1]]
    assert [r["performance"] for r in report.rows if r["model"] == "dummy"] == ["99.0", "110.0"]


@pytest.mark.parametrize("content, message", [
    (None, "Previous results CSV {path} does not exist."),
    ("", "Previous results CSV {path} is empty."),
    ("model,status\ndummy,SUCCESS\n",
     "Previous results CSV {path} has no 'host' column; it is not a merged results CSV of rocm.madengine."),
    ("a,b\n1,2\n", "Previous results CSV {path} has no 'model' or 'status' or 'host' column; it is not a merged "
                   "results CSV of rocm.madengine."),
    ("model,status,host\ndummy,SUCCESS,n1\ndummy2,FAILURE,n1,extra\n",
     "Previous results CSV {path} is malformed: line 3 has 4 fields where the header has 3."),
    ("model,status,host\ndummy,DONE,n1\n",
     "Previous results CSV {path} is malformed: line 2 has status 'DONE'; expected one of SUCCESS, FAILURE, "
     "TIMEOUT, SKIPPED."),
    ("model,status,host\ndummy,SUCCESS,\n", "Previous results CSV {path} is malformed: line 2 has no host."),
    ('model,status,host\n"dummy,SUCCESS,n1\n',
     "Previous results CSV {path} is malformed: line 2: unexpected end of data."),
    (b"model,status,host\n\xff\xfe,SUCCESS,n1\n", "Previous results CSV {path} is not UTF-8 text (byte 18)."),
])
def test_malformed_previous_csv_is_named(tmp_path, content, message):
    path = tmp_path / "old.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(MadengineError) as err:
        _report.read_previous_csv(str(path))
    assert str(err.value) == message.format(path=path)


def test_previous_csv_that_is_a_directory(tmp_path):
    with pytest.raises(MadengineError, match=r"^Cannot read previous results CSV .*old\.csv: Is a directory\.$"):
        (tmp_path / "old.csv").mkdir()
        _report.read_previous_csv(str(tmp_path / "old.csv"))


# ---- writing ----------------------------------------------------------------------------------

def test_write_if_changed_is_honest_and_check_mode_writes_nothing(tmp_path):
    path = str(tmp_path / "perf.csv")
    assert write_if_changed(path, b"a\n", check_mode=True) is True
    assert not os.path.exists(path)
    assert write_if_changed(path, b"a\n") is True
    before = os.stat(path).st_mtime_ns
    assert write_if_changed(path, b"a\n") is False
    assert os.stat(path).st_mtime_ns == before
    assert write_if_changed(path, b"b\n", check_mode=True) is True
    assert open(path, "rb").read() == b"a\n"
    assert sorted(os.listdir(tmp_path)) == ["perf.csv"]


def test_output_directory_errors(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(MadengineError, match=r"^Output directory .*file exists and is not a directory\.$"):
        _report.ensure_directory(str(tmp_path / "file"))
    assert _report.ensure_directory(str(tmp_path / "new"), check_mode=True) is True
    assert not (tmp_path / "new").exists()
    assert _report.ensure_directory(str(tmp_path / "new" / "deeper")) is True
    assert _report.ensure_directory(str(tmp_path / "new" / "deeper")) is False
    with pytest.raises(MadengineError, match=r"^Cannot write .*perf\.csv: it is a directory\.$"):
        (tmp_path / "perf.csv").mkdir()
        write_if_changed(str(tmp_path / "perf.csv"), b"x")


def test_rerun_node_that_stays_unreachable_is_missing_and_keeps_its_failure_rows(tmp_path):
    first = fleet()
    first["node3"] = []
    hosts = ["node1", "node2", "node3"]
    path = merged_csv(tmp_path, first, hosts=hosts, models=MODELS)
    previous = _report.read_previous_csv(path)[1]
    report = _report.merge({"node1": [], "node2": [], "node3": []}, hosts=hosts, models=MODELS,
                           previous_rows=previous)
    # node1 and node2 had nothing to re-run; node3 had everything and returned nothing again
    assert report.missing_hosts == ["node3"]
    assert report.carried == 15 and report.placeholders == 0
    assert [r["error"] for r in report.rows if r["host"] == "node3"] == [_report.NO_RESULTS % "node3"] * 3


def test_rows_with_every_column_as_text_and_rows_needing_conversion_merge_alike():
    text = row("dummy", "node1", performance="12.5", exit_code="0")
    typed = dict(text, performance=12.5, exit_code=0)
    one = _report.merge({"node1": [text]})
    two = _report.merge({"node1": [typed]})
    assert one.to_csv() == two.to_csv()
    assert one.notes == two.notes == []
