"""madengine_report through the AnsibleModule harness."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
from fleet_rows import MODELS, node_rows, row

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.rows import MADENGINE_COLUMNS, PROVENANCE_COLUMNS
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
    assert sorted(os.listdir(out)) == ["history.sqlite", "perf.csv", "perf.html"]
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
    assert sorted(os.listdir(tmp_path / "results")) == ["fleet.csv", "history.sqlite"]


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
    assert result.failed and "one of the following is required: results, previous_csv, import_csv" in result["msg"]


def test_results_need_an_output_dir(module_runner):
    result = module_runner(madengine_report, {"results": {"node1": []}})
    assert result.failed and "missing parameter(s) required by 'results': output_dir" in result["msg"]


def test_unwritable_output_dir_is_named(tmp_path, module_runner):
    blocker = tmp_path / "results"
    blocker.write_text("not a directory")
    result = module_runner(madengine_report, args(blocker))
    assert result.failed and result["msg"] == "Output directory %s exists and is not a directory." % blocker


# ---- history, baselines, exports -------------------------------------------------------------------

def same_run(run_id, day, dummy=100.0):
    """node1 and node2 of one run; ``dummy`` is both nodes' figure of the dummy model."""
    results = {}
    for node in ("node1", "node2"):
        rows = [dict(r, run_id=run_id, start_time="2026-11-%02dT10:00:00Z" % day) for r in node_rows(node)]
        rows[0]["performance"] = repr(dummy)
        results[node] = rows
    return results


def test_json_summary_and_the_merged_csv_columns(tmp_path, module_runner):
    out = tmp_path / "results"
    module_runner(madengine_report, args(out, results=same_run("r1", 1), run_id="r1"))
    result = module_runner(madengine_report, args(out, results=same_run("r2", 2, dummy=80.0), run_id="r2",
                                                  json_name="summary.json"))
    assert result["json_path"] == str(out / "summary.json") and result["summary"]["json"] == result["json_path"]
    document = json.loads((out / "summary.json").read_text())
    assert document["verdicts"] == {"regressed": 2, "improved": 0, "unchanged": 10, "no baseline": 0}
    assert [(r["model"], r["host"], r["relative_change"], r["baseline_run_id"]) for r in document["regressions"]] == [
        ("dummy", "node1", "-20.00", "r1"), ("dummy", "node2", "-20.00", "r1")]
    assert document["regressed"] == ["dummy@node1 -20.00%", "dummy@node2 -20.00%"]
    with open(out / "perf.csv", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
    schema = list(MADENGINE_COLUMNS) + list(PROVENANCE_COLUMNS)
    assert len(MADENGINE_COLUMNS) == 29 and header[:len(schema)] == schema
    assert header[len(schema):] == ["node_log_path", "baseline_performance", "baseline_run_id", "verdict",
                                    "temperature"]
    again = module_runner(madengine_report, args(out, results=same_run("r2", 2, dummy=80.0), run_id="r2",
                                                 json_name="summary.json"))
    assert again["changed"] is False and again["database"]["rows_written"] == 0


def test_nodes_with_their_own_run_ids_are_one_collection(tmp_path, module_runner):
    """Nodes that ran with their own run ids (madengine_run's default) are compared with the collection before,
    never with each other, and are one point of the trend charts."""
    def own_ids(day, dummy2=100.0, minute=0):
        results = {}
        for index, node in enumerate(("node1", "node2")):
            start = "2026-11-%02dT10:%02d:00Z" % (day, minute + index * 5)  # node2 started later
            rows = [dict(r, run_id="d%d-%s" % (day, node), start_time=start) for r in node_rows(node)]
            if node == "node2":
                rows[0]["performance"] = repr(dummy2)
            results[node] = rows
        return results

    out = tmp_path / "results"
    first = module_runner(madengine_report, args(out, results=own_ids(1, dummy2=80.0)))
    assert first["summary"]["verdicts"] == {"regressed": 0, "improved": 0, "unchanged": 0, "no baseline": 12}
    again = module_runner(madengine_report, args(out, results=own_ids(1, dummy2=80.0)))
    assert again["changed"] is False and again["summary"]["verdicts"]["no baseline"] == 12
    second = module_runner(madengine_report, args(out, results=own_ids(2, dummy2=80.0)))
    assert second["summary"]["verdicts"] == {"regressed": 0, "improved": 1, "unchanged": 11, "no baseline": 0}
    with open(out / "perf.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    # the latest earlier run of the GPU class is the last one of the collection before, never one of this one
    assert set(r["baseline_run_id"] for r in rows if r["status"] == "SUCCESS") == {"d1-node2"}
    assert [(r["host"], r["verdict"], r["relative_change"]) for r in rows if r["model"] == "dummy"][:2] == [
        ("node1", "improved", "25.00"), ("node2", "unchanged", "0.00")]
    html = (out / "perf.html").read_text()
    assert "dummy over 3 runs" in html and "dummy over 4 runs" not in html


def test_history_off_writes_no_database_and_a_csv_can_pin_the_baseline(tmp_path, module_runner):
    pinned = tmp_path / "madengine-perf.csv"
    pinned.write_text("model,n_gpus,performance,metric,status,gpu_architecture,machine_name\n"
                      "dummy,1,125.0,samples_per_second,SUCCESS,gfx942,old\n")
    out = tmp_path / "results"
    result = module_runner(madengine_report, args(out, results=same_run("r1", 1), history=False,
                                                  baseline_csv=str(pinned)))
    assert not result.failed and "history.sqlite" not in os.listdir(out)
    assert result["database"] == {"location": None, "stored": False, "error": None, "rows_written": 0}
    assert result["summary"]["verdicts"] == {"regressed": 2, "improved": 0, "unchanged": 0, "no baseline": 10}
    assert result["regressions"][0]["baseline_run_id"] == "csv:%s" % pinned


def test_importing_a_madengine_perf_csv_as_history(tmp_path, module_runner):
    perf = tmp_path / "perf.csv"
    header = ",".join(MADENGINE_COLUMNS)

    def line(model, value, build):
        fields = dict.fromkeys(MADENGINE_COLUMNS, "")
        fields.update(model=model, performance=value, metric="samples_per_second", status="SUCCESS",
                      gpu_architecture="gfx942", machine_name="mad-host", build_number=build)
        return ",".join(fields[c] for c in MADENGINE_COLUMNS)

    perf.write_text("\n".join([header, line("dummy", "110", "1"), line("dummy_multi_1", "101", "1"),
                               line("dummy", "125", "2")]) + "\n")
    out = tmp_path / "results"
    checked = module_runner(madengine_report, {"import_csv": str(perf), "output_dir": str(out)}, check_mode=True)
    assert checked["changed"] is True and checked["imported"]["rows_written"] == 3 and not out.exists()
    imported = module_runner(madengine_report, {"import_csv": str(perf), "output_dir": str(out)})
    assert imported["changed"] is True and imported["imported"]["runs_added"] == 2
    assert len(imported["imported"]["runs"]) == 2 and os.listdir(out) == ["history.sqlite"]
    again = module_runner(madengine_report, {"import_csv": str(perf), "output_dir": str(out)})
    assert again["changed"] is False and again["imported"]["rows_written"] == 0
    # the latest imported session (dummy 125) is the baseline of the MI300X rows, whatever their product
    result = module_runner(madengine_report, args(out, results=same_run("r1", 1)))
    found = dict(((r["model"], r["host"]), r) for r in result["regressions"])
    assert found[("dummy", "node1")]["relative_change"] == "-20.00"
    assert found[("dummy", "node1")]["baseline_run_id"] == imported["imported"]["runs"][1]


@pytest.mark.parametrize("content, message", [
    ("model,status\ndummy,SUCCESS\n", "madengine perf.csv {path} has no 'performance' column."),
    ("model,performance,status\ndummy,1,DONE\n",
     "madengine perf.csv {path} is malformed: line 2 has status 'DONE'; expected one of SUCCESS, FAILURE, TIMEOUT,"
     " SKIPPED."),
    ("model,performance,status\n,1,SUCCESS\n", "madengine perf.csv {path} is malformed: line 2 has no model."),
])
def test_bad_imports_are_named(tmp_path, module_runner, content, message):
    perf = tmp_path / "perf.csv"
    perf.write_text(content)
    result = module_runner(madengine_report, {"import_csv": str(perf), "output_dir": str(tmp_path / "out")})
    assert result.failed and result["msg"] == message.format(path=perf)
    assert not (tmp_path / "out").exists()


def test_an_import_into_a_bad_database_fails(tmp_path, module_runner):
    perf = tmp_path / "perf.csv"
    perf.write_text("model,performance,status\ndummy,1,SUCCESS\n")
    (tmp_path / "history.sqlite").write_text("not a database")
    result = module_runner(madengine_report, {"import_csv": str(perf), "output_dir": str(tmp_path)})
    assert result.failed and result["msg"] == ("Results database %s cannot be used: file is not a database."
                                               % (tmp_path / "history.sqlite"))


@pytest.mark.parametrize("extra, message", [
    ({"baseline_run": "r1", "baseline_csv": "/x.csv"},
     "baseline_run and baseline_csv both pin the baseline; give one of them."),
    ({"json_name": "a/b.json"}, "json_name must be a plain file name, not 'a/b.json'."),
    ({"log_url": "https://logs/{nope}"}, "log_url 'https://logs/{nope}' is not a valid template ('nope'); it may"
                                         " use {host}, {log_path}, {log_name}, {run_id}, {model}."),
    ({"thresholds": {"default": -2}}, "thresholds.default is -2.0; a threshold is a percentage, 0 or more."),
    ({"results_db": "mysql://u:pw@h/db"}, "The results database must be a SQLite file path or a postgresql:// URL,"
                                          " not a mysql:// URL."),
    ({"trend_runs": 0}, "trend_runs is 0; it must be 1 or more."),
])
def test_bad_options_fail_before_anything_is_written(tmp_path, module_runner, extra, message):
    out = tmp_path / "out"
    result = module_runner(madengine_report, args(out, **extra))
    assert result.failed and result["msg"] == message
    assert not out.exists()


def test_missing_libraries_are_named(tmp_path, module_runner, monkeypatch):
    from ansible_collections.rocm.madengine.plugins.module_utils.benchmark import report_html, results_db

    monkeypatch.setattr(report_html, "jinja2", None)
    result = module_runner(madengine_report, args(tmp_path / "a"))
    assert result.failed and "Failed to import the required Python library (Jinja2)" in result["msg"]
    assert not module_runner(madengine_report, args(tmp_path / "b", html=False)).failed
    monkeypatch.setattr(results_db, "_PSYCOPG", {"module": None, "error": "ImportError: No module named 'psycopg'"})
    result = module_runner(madengine_report, args(tmp_path / "c", results_db="postgresql://u@h/db"))
    assert result.failed and "Failed to import the required Python library (psycopg)" in result["msg"]
    assert not (tmp_path / "c").exists()


def test_the_database_password_is_masked_in_results_and_warnings(tmp_path, module_runner):
    url = "postgresql://bench:Sup3r-S3cret@127.0.0.1:1/results"
    result = module_runner(madengine_report, args(tmp_path / "out", results_db=url))
    assert not result.failed
    text = json.dumps(result)
    assert "Sup3r-S3cret" not in text
    assert result["database"]["location"] == "postgresql://bench:********@127.0.0.1:1/results"
    assert result["database"]["error"].startswith("Results database postgresql://bench:********@127.0.0.1:1/results"
                                                  " cannot be opened: ")
    assert any("cannot be opened" in warning for warning in result["warnings"])


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


def test_a_report_without_postgresql_does_not_import_psycopg(tmp_path):
    """psycopg is imported when a PostgreSQL database is used, not by every report (its import costs ~0.1 s)."""
    script = ("import sys; from ansible_collections.rocm.madengine.plugins.module_utils.benchmark import "
              "madengine_report_task, results_db; assert 'psycopg' not in sys.modules; "
              "module, error = results_db.postgresql_library(); assert module is sys.modules['psycopg'] and not error")
    subprocess.run([sys.executable, "-c", script], check=True,
                   env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
