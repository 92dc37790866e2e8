"""madengine_report through the AnsibleModule harness."""

from __future__ import annotations

import csv
import os

from fleet_rows import MODELS, node_rows, row

from ansible_collections.rocm.madengine.plugins.modules import madengine_report


def fleet():
    return {"node1": node_rows("node1"), "node2": node_rows("node2", fail=["dummy"]), "node3": []}


def args(out, **extra):
    base = {"results": fleet(), "hosts": ["node1", "node2", "node3"], "models": MODELS, "output_dir": str(out)}
    base.update(extra)
    return base


def test_writes_csv_and_html_then_reports_no_change(tmp_path, module_runner):
    out = tmp_path / "results"
    first = module_runner(madengine_report, args(out))
    assert not first.failed and first["changed"] is True
    assert first["csv_path"] == str(out / "perf.csv") and first["html_path"] == str(out / "perf.html")
    assert sorted(os.listdir(out)) == ["perf.csv", "perf.html"]
    with open(out / "perf.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == first["rows"] == 15
    assert first["missing_hosts"] == ["node3"] and first["placeholders"] == 3
    assert first["failed_pairs"][0] == {"model": "dummy", "host": "node2", "status": "FAILURE"}
    assert first["summary"]["counts"] == {"SUCCESS": 11, "FAILURE": 4, "TIMEOUT": 0, "SKIPPED": 0}
    assert first["summary"]["csv"] == first["csv_path"] and first["summary"]["missing_nodes"] == ["node3"]
    assert "rerun" not in first

    csv_before, html_before = (out / "perf.csv").read_bytes(), (out / "perf.html").read_bytes()
    second = module_runner(madengine_report, args(out))
    assert second["changed"] is False and second["summary"] == first["summary"]
    assert (out / "perf.csv").read_bytes() == csv_before and (out / "perf.html").read_bytes() == html_before


def test_check_mode_predicts_and_writes_nothing(tmp_path, module_runner):
    out = tmp_path / "results"
    checked = module_runner(madengine_report, args(out), check_mode=True)
    assert checked["changed"] is True and not out.exists()
    module_runner(madengine_report, args(out))
    assert module_runner(madengine_report, args(out), check_mode=True)["changed"] is False
    changed_input = args(out, results={"node1": node_rows("node1", perf=1.0)})
    assert module_runner(madengine_report, changed_input, check_mode=True)["changed"] is True
    assert b"1.0" not in (out / "perf.csv").read_bytes().split(b"\n")[1]


def test_relative_output_dir_is_under_the_current_directory(tmp_path, module_runner, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = module_runner(madengine_report, args("results", html=False, csv_name="fleet.csv"))
    assert result["csv_path"] == str(tmp_path / "results" / "fleet.csv")
    assert "html_path" not in result and result["summary"]["html"] is None
    assert os.listdir(tmp_path / "results") == ["fleet.csv"]


def test_survey_strings_for_hosts_and_models(tmp_path, module_runner):
    result = module_runner(madengine_report, args(tmp_path, hosts="node1,node2,node3",
                                                  models="dummy,dummy_multi,dummy2/model2"))
    assert not result.failed and result["placeholders"] == 3 and result["missing_hosts"] == ["node3"]


def test_run_id_option_and_default(tmp_path, module_runner):
    given = module_runner(madengine_report, args(tmp_path / "a", run_id="job-42"))
    assert given["summary"]["run_id"] == "job-42"
    assert b"run job-42" in (tmp_path / "a" / "perf.html").read_bytes()
    default = module_runner(madengine_report, args(tmp_path / "b"))
    assert default["summary"]["run_id"].startswith("merged-")


def test_previous_csv_alone_plans_a_rerun_and_writes_nothing(tmp_path, module_runner):
    out = tmp_path / "results"
    module_runner(madengine_report, args(out))
    listing = sorted(os.listdir(out))
    plan = module_runner(madengine_report, {"previous_csv": str(out / "perf.csv"),
                                            "hosts": ["node1", "node2", "node3"], "models": MODELS})
    assert not plan.failed and plan["changed"] is False
    assert plan["rerun"] == {"node1": [], "node2": ["dummy"], "node3": MODELS}
    assert plan["rerun_pairs"][0] == {"model": "dummy", "host": "node2", "reason": "FAILURE"}
    assert "csv_path" not in plan and sorted(os.listdir(out)) == listing


def test_rerun_results_complete_the_previous_table(tmp_path, module_runner):
    out = tmp_path / "results"
    module_runner(madengine_report, args(out))
    again = {"node1": [], "node2": [row("dummy", "node2", performance=105.0)],
             "node3": node_rows("node3")}
    result = module_runner(madengine_report, args(out, results=again, previous_csv=str(out / "perf.csv")))
    assert result["changed"] is True and result["carried"] == 11 and result["placeholders"] == 0
    assert result["summary"]["counts"]["FAILURE"] == 0 and result["rows"] == 18
    # node1 had nothing to run again: its earlier rows stay, and it is not reported as missing
    assert result["missing_hosts"] == []
    assert result["rerun"] == {"node1": [], "node2": ["dummy"], "node3": MODELS}


def test_bad_row_fails_with_a_sentence(tmp_path, module_runner):
    result = module_runner(madengine_report, args(tmp_path / "out", results={"node1": [{"model": "dummy"}]}))
    assert result.failed and result["msg"] == "Row 1 of node node1 has no 'status' column."
    assert not (tmp_path / "out").exists()


def test_malformed_previous_csv_fails_naming_the_file(tmp_path, module_runner):
    bad = tmp_path / "old.csv"
    bad.write_text("model,status,host\ndummy,SUCCESS,n1,x\n")
    result = module_runner(madengine_report, {"previous_csv": str(bad)})
    assert result.failed
    assert result["msg"] == "Previous results CSV %s is malformed: line 2 has 4 fields where the header has 3." % bad


def test_missing_previous_csv_in_a_merge_writes_nothing(tmp_path, module_runner):
    out = tmp_path / "out"
    result = module_runner(madengine_report, args(out, previous_csv=str(tmp_path / "nope.csv")))
    assert result.failed and result["msg"] == "Previous results CSV %s does not exist." % (tmp_path / "nope.csv")
    assert not out.exists()


def test_file_names_must_be_plain(tmp_path, module_runner):
    result = module_runner(madengine_report, args(tmp_path, csv_name="../perf.csv"))
    assert result.failed and result["msg"] == "csv_name must be a plain file name, not '../perf.csv'."


def test_needs_results_or_previous_csv(module_runner):
    result = module_runner(madengine_report, {"hosts": ["node1"]})
    assert result.failed and "one of the following is required: results, previous_csv" in result["msg"]


def test_results_need_an_output_dir(module_runner):
    result = module_runner(madengine_report, {"results": {"node1": []}})
    assert result.failed and "missing parameter(s) required by 'results': output_dir" in result["msg"]


def test_unwritable_output_dir_is_named(tmp_path, module_runner):
    blocker = tmp_path / "results"
    blocker.write_text("not a directory")
    result = module_runner(madengine_report, args(blocker))
    assert result.failed and result["msg"] == "Output directory %s exists and is not a directory." % blocker


def test_durations_from_an_earlier_csv_and_none_from_a_missing_one(tmp_path, module_runner):
    rows = node_rows("node1") + [row("slow", "node1", test_duration="9.5"), row("slow", "node2", test_duration="10.5"),
                                 row("broken", "node1", "FAILURE", test_duration="1")]
    done = module_runner(madengine_report, args(tmp_path / "earlier", results={"node1": rows}, hosts=["node1"],
                                                models=[]))
    assert not done.failed, done.get("msg")
    result = module_runner(madengine_report, {"durations_from": done["csv_path"]})
    assert not result.failed and result["changed"] is False
    assert result["durations"] == {"slow": 10.0}
    assert module_runner(madengine_report, {"durations_from": str(tmp_path / "none.csv")})["durations"] == {}
