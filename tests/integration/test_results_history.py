"""Results over time through the result_collection role, from the installed collection: two runs collected
into a SQLite file and into a real PostgreSQL server, regressions, a failing play on request, bad databases,
and a database password that never shows (-vvv).
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3

import pytest
from conftest import run_playbook, task_results
from fleet_rows import MODELS, node_rows

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.rows import MADENGINE_COLUMNS, PROVENANCE_COLUMNS

HERE = os.path.join(os.path.dirname(__file__), "playbooks")
PLAYBOOK = os.path.join(HERE, "result_collection.yml")
MERGE = "Merge the rows into one CSV and write the HTML report"
STATS = {"ANSIBLE_SHOW_CUSTOM_STATS": "1"}
NODES = ("node1", "node2")


def inventory(tmp_path, controller_vars=""):
    lines = ["[controller]", "localhost ansible_connection=local " + controller_vars, "[gpu_nodes]"]
    lines += ["%s ansible_connection=local" % node for node in NODES]
    path = tmp_path / "inventory.ini"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def fleet(run_id, day, dummy=100.0):
    """Every node's rows of one run, as madengine_run returns them (one run id for the fleet)."""
    results = {}
    for node in NODES:
        rows = [dict(r, run_id=run_id, start_time="2026-11-%02dT10:00:00Z" % day, end_time="2026-11-%02dT10:05:00Z"
                     % day) for r in node_rows(node)]
        rows[0]["performance"] = repr(dummy)
        results[node] = rows
    return results


def collect(tmp_path, out, run_id, day, dummy=100.0, env=None, args=(), controller_vars="", **extra):
    extra_vars = {"node_results": fleet(run_id, day, dummy), "models": MODELS, "out": str(out), "run_id": run_id}
    extra_vars.update(extra)
    return run_playbook(PLAYBOOK, inventory=inventory(tmp_path, controller_vars), extra_vars=extra_vars,
                        env=dict(STATS, **(env or {})), args=args)


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def stored_runs(query):
    """{run_id: rows} of the database, through ``query`` (SQL -> rows)."""
    runs = dict(query("SELECT pk, run_id FROM madengine_runs"))
    found = {}
    for run_pk, count in query("SELECT run_pk, COUNT(*) FROM madengine_results GROUP BY run_pk"):
        found[runs[run_pk]] = count
    return found


def check_two_runs(tmp_path, out, query, **extra):
    rc, parsed, log = collect(tmp_path, out, "job-1", 1, **extra)
    assert rc == 0, log
    first = plays_summary(parsed)
    assert first["verdicts"] == {"regressed": 0, "improved": 0, "unchanged": 0, "no baseline": 12}

    rc, parsed, log = collect(tmp_path, out, "job-2", 2, dummy=80.0, **extra)
    assert rc == 0, log
    summary = plays_summary(parsed)
    assert summary["verdicts"] == {"regressed": 2, "improved": 0, "unchanged": 10, "no baseline": 0}
    assert summary["regressed"] == ["dummy@node1 -20.00%", "dummy@node2 -20.00%"] and summary["regressed_total"] == 2
    assert summary["database"]["stored"] is True and summary["database"]["error"] is None
    rows = read_rows(out / "perf.csv")
    for r in rows:
        if r["model"] == "dummy":
            assert abs(float(r["relative_change"]) + 20.0) < 0.01
            assert (r["verdict"], r["baseline_performance"], r["baseline_run_id"]) == ("regressed", "100.0", "job-1")
        else:
            assert (r["verdict"], r["relative_change"], r["baseline_run_id"]) == ("unchanged", "0.00", "job-1")
    header = list(rows[0])
    schema = len(MADENGINE_COLUMNS) + len(PROVENANCE_COLUMNS)
    assert header[19] == "relative_change" and header[schema - 1] == "error" and header[schema] == "node_log_path"
    assert header[schema + 1:schema + 4] == ["baseline_performance", "baseline_run_id", "verdict"]
    html = (out / "perf.html").read_text()
    assert 'id="regressions">Regressions (2)</h2>' in html and "-20.00" in html
    shown = task_results(parsed, "Show where the results are")["localhost"]["msg"]
    assert "regressed: dummy@node1 -20.00%, dummy@node2 -20.00%" in shown

    # collecting the second run again stores nothing and changes nothing
    before = {name: (out / name).read_bytes() for name in ("perf.csv", "perf.html")}
    rc, parsed, log = collect(tmp_path, out, "job-2", 2, dummy=80.0, **extra)
    assert rc == 0, log
    report = task_results(parsed, MERGE)["localhost"]
    assert report["changed"] is False and report["database"]["rows_written"] == 0, log
    assert {name: (out / name).read_bytes() for name in before} == before
    assert stored_runs(query) == {"job-1": 12, "job-2": 12}


def plays_summary(parsed):
    return parsed["global_custom_stats"]["madengine_summary"]


def test_two_runs_in_the_default_sqlite_file(tmp_path):
    out = tmp_path / "results"

    def query(sql):
        with sqlite3.connect(str(out / "history.sqlite")) as conn:
            return conn.execute(sql).fetchall()

    check_two_runs(tmp_path, out, query)


def test_two_runs_in_postgresql_and_the_password_never_shows(tmp_path, postgres):
    database = postgres.create_database()
    url = postgres.url(database)
    out = tmp_path / "results"

    def query(sql):
        return postgres.execute(database, sql)

    check_two_runs(tmp_path, out, query, madengine_results_db=url)
    # -vvvv, a failing play (fail on regression), and every file written: no password anywhere. The URL is an
    # inventory variable (at -vvvv ansible-playbook shows its own command line, extra variables included).
    rc, _parsed, log = collect(tmp_path, out, "job-3", 3, dummy=60.0, args=("-vvvv",),
                               controller_vars="madengine_results_db=" + url, madengine_fail_on_regression=True,
                               env={"ANSIBLE_STDOUT_CALLBACK": "default", "ANSIBLE_INJECT_INVOCATION": "1"},
                               result_collection_report_options={"json_name": "summary.json"})
    assert rc != 0 and "ESTABLISH LOCAL CONNECTION" in log and "module_args" in log, log
    assert "regressed against their baseline: dummy@node1 -25.00%" in log
    assert postgres.password not in log
    assert "postgresql://madci:********@127.0.0.1:%d/%s" % (postgres.port, database) in log
    for name in os.listdir(out):
        assert postgres.password.encode() not in (out / name).read_bytes(), name
    assert not any(postgres.password in str(value) for value in postgres.execute(
        database, "SELECT run_id, title, source FROM madengine_runs"))
    document = json.loads((out / "summary.json").read_text())
    assert document["database"]["location"] == "postgresql://madci:********@127.0.0.1:%d/%s" % (postgres.port,
                                                                                                database)
    assert [r["relative_change"] for r in document["regressions"]] == ["-25.00", "-25.00"]


def test_fail_on_regression_names_the_rows_after_everything_is_written(tmp_path):
    out = tmp_path / "results"
    assert collect(tmp_path, out, "job-1", 1)[0] == 0
    rc, parsed, log = collect(tmp_path, out, "job-2", 2, dummy=90.0, madengine_fail_on_regression=True,
                              madengine_regression_thresholds={"models": {"dummy": 12}})
    assert rc == 0, log  # -10 % is within the 12 % of dummy
    rc, parsed, log = collect(tmp_path, out, "job-3", 3, dummy=70.0, madengine_fail_on_regression=True)
    assert rc != 0
    failed = task_results(parsed, "Fail when a row regressed (result_collection_fail_on_regression)")["localhost"]
    assert failed["msg"] == ("2 row(s) regressed against their baseline: dummy@node1 -22.22%%, dummy@node2"
                             " -22.22%%; see %s." % (out / "perf.csv"))
    assert plays_summary(parsed)["regressed_total"] == 2  # the artifacts were published first
    assert [r["verdict"] for r in read_rows(out / "perf.csv") if r["model"] == "dummy"] == ["regressed"] * 2


@pytest.mark.parametrize("damage, message", [
    ("garbage", "history.sqlite cannot be used: file is not a database."),
    ("newer", "history.sqlite has schema version 7, newer than this rocm.madengine reads (1)"),
    ("directory", "history.sqlite cannot be opened: it is a directory."),
])
def test_a_bad_database_is_a_warning_and_the_report_is_still_written(tmp_path, damage, message):
    out = tmp_path / "results"
    out.mkdir()
    path = out / "history.sqlite"
    if damage == "garbage":
        path.write_bytes(b"not a database\n" * 64)
    elif damage == "directory":
        path.mkdir()
    else:
        assert collect(tmp_path, out, "job-1", 1)[0] == 0
        with sqlite3.connect(str(path)) as conn:
            conn.execute("UPDATE madengine_schema SET version = 7")
        for name in ("perf.csv", "perf.html"):
            (out / name).unlink()
    before = path.read_bytes() if path.is_file() else None
    rc, parsed, log = collect(tmp_path, out, "job-2", 2)
    assert rc == 0, log
    report = task_results(parsed, MERGE)["localhost"]
    assert any(message in warning for warning in report["warnings"]), report["warnings"]
    summary = plays_summary(parsed)
    assert summary["database"]["stored"] is False and message in summary["database"]["error"]
    assert summary["verdicts"]["no baseline"] == 12
    assert len(read_rows(out / "perf.csv")) == 12
    assert "results database not used: " in (out / "perf.html").read_text()
    shown = task_results(parsed, "Show where the results are")["localhost"]["msg"]
    assert any(line.startswith("results database error: ") and message in line for line in shown)
    if before is not None:
        assert path.read_bytes() == before  # nothing was written into it


def test_an_unreachable_postgresql_server_is_a_warning(tmp_path, postgres):
    out = tmp_path / "results"
    url = "postgresql://madci:%s@127.0.0.1:1/results" % postgres.password
    rc, parsed, log = collect(tmp_path, out, "job-1", 1, madengine_results_db=url)
    assert rc == 0, log
    summary = plays_summary(parsed)
    assert summary["database"]["location"] == "postgresql://madci:********@127.0.0.1:1/results"
    assert "cannot be opened" in summary["database"]["error"] and postgres.password not in log
    assert sorted(os.listdir(out)) == ["perf.csv", "perf.html"]


def test_a_pinned_baseline_run_that_is_not_stored_fails_before_anything_is_written(tmp_path):
    out = tmp_path / "results"
    rc, parsed, _log = collect(tmp_path, out, "job-1", 1, madengine_baseline_run="job-0")
    assert rc != 0
    failed = task_results(parsed, MERGE)["localhost"]
    assert failed["msg"] == "The baseline run job-0 is not in the results database %s." % (out / "history.sqlite")
    assert not (out / "perf.csv").exists()
