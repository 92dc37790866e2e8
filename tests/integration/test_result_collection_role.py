"""The result_collection role through ansible-playbook, from the installed collection.

Nodes are inventory hosts with a local connection that hand back rows as facts (the way madengine_run
does); one node fails before returning anything and one cannot be reached at all (ssh to a closed port).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
from conftest import ansible_env, run_playbook, task_results
from fleet_rows import MODELS, node_rows, row

HERE = os.path.join(os.path.dirname(__file__), "playbooks")


def inventory(tmp_path, nodes=("node1", "node2", "node3", "node4")):
    lines = ["[controller]", "localhost ansible_connection=local", "[gpu_nodes]"]
    for node in nodes:
        if node == "node4":  # unreachable: nothing listens on port 1
            lines.append("node4 ansible_connection=ssh ansible_host=127.0.0.1 ansible_port=1 "
                         "ansible_ssh_common_args='-o ConnectTimeout=3 -o BatchMode=yes'")
        else:
            lines.append("%s ansible_connection=local" % node)
    path = tmp_path / "inventory.ini"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


STATS = {"ANSIBLE_SHOW_CUSTOM_STATS": "1"}  # the json callback reports set_stats data only then


def plays_stats(out):
    return out.get("global_custom_stats", {})


def test_merges_every_node_and_names_the_ones_without_results(tmp_path):
    out = tmp_path / "results"
    node_results = {"node1": node_rows("node1"), "node2": node_rows("node2", fail=["dummy"]),
                    "node3": node_rows("node3")}
    rc, parsed, log = run_playbook(os.path.join(HERE, "result_collection.yml"), inventory=inventory(tmp_path),
                                   extra_vars={"node_results": node_results, "fail_nodes": ["node3"],
                                               "models": MODELS, "out": str(out), "run_id": "job-7"},
                                   env=STATS)
    assert rc != 0, log  # node3 failed and node4 was unreachable: the play says so ...
    assert parsed["stats"]["node4"]["unreachable"] == 1 and parsed["stats"]["node3"]["failures"] == 1
    # ... but the controller still merged everything the others returned
    report = task_results(parsed, "Merge the rows into one CSV and write the HTML report")["localhost"]
    assert report["changed"] is True and report["missing_hosts"] == ["node3", "node4"]
    rows = read_rows(out / "perf.csv")
    assert [r["host"] for r in rows] == ["node1"] * 6 + ["node2"] * 6 + ["node3"] * 3 + ["node4"] * 3
    assert rows[6]["model"] == "dummy" and rows[6]["status"] == "FAILURE" and rows[6]["error"] == "exit code 3"
    assert all(r["status"] == "FAILURE" and r["error"].startswith("no results from node ") for r in rows[12:])
    assert rows[1]["temperature"] == "20"
    html = (out / "perf.html").read_text()
    assert "No results from: node3, node4" in html and "run job-7" in html
    # the compact summary reached the job artifacts
    stats = plays_stats(parsed)["madengine_summary"]
    assert stats == {"run_id": "job-7", "rows": 18, "nodes": 4, "hosts": ["node1", "node2", "node3", "node4"],
                     "counts": {"SUCCESS": 11, "FAILURE": 7, "TIMEOUT": 0, "SKIPPED": 0},
                     "failed": ["dummy@node2", "dummy@node3", "dummy_multi@node3", "dummy2/model2@node3",
                                "dummy@node4", "dummy_multi@node4", "dummy2/model2@node4"],
                     "failed_total": 7, "missing_nodes": ["node3", "node4"],
                     "verdicts": {"regressed": 0, "improved": 0, "unchanged": 0, "no baseline": 11},
                     "regressed": [], "regressed_total": 0,
                     "database": {"location": str(out / "history.sqlite"), "stored": True, "error": None},
                     "csv": str(out / "perf.csv"), "html": str(out / "perf.html"), "json": None}
    shown = task_results(parsed, "Show where the results are")["localhost"]["msg"]
    assert "CSV: %s" % (out / "perf.csv") in shown and "no results from: node3, node4" in shown
    assert "nodes in the run: node1, node2, node3, node4" in shown

    # Same inputs: same bytes, and the role reports no change.
    before = (out / "perf.csv").read_bytes(), (out / "perf.html").read_bytes()
    rc, parsed, log = run_playbook(os.path.join(HERE, "result_collection.yml"), inventory=inventory(tmp_path),
                                   extra_vars={"node_results": node_results, "fail_nodes": ["node3"],
                                               "models": MODELS, "out": str(out), "run_id": "job-7"})
    report = task_results(parsed, "Merge the rows into one CSV and write the HTML report")["localhost"]
    assert report["changed"] is False, log
    assert ((out / "perf.csv").read_bytes(), (out / "perf.html").read_bytes()) == before

    # Re-run only what failed or is missing; the merged table becomes complete.
    again = {"node2": [row("dummy", "node2", performance=111.0)], "node3": node_rows("node3"),
             "node4": node_rows("node4")}
    rc, parsed, log = run_playbook(os.path.join(HERE, "result_rerun.yml"),
                                   inventory=inventory(tmp_path, nodes=("node1", "node2", "node3", "node5")),
                                   extra_vars={"node_results": dict(again, node5=node_rows("node5")),
                                               "models": MODELS, "out": str(out)})
    assert rc == 0, log
    plan = task_results(parsed, "Plan a re-run of the failed or missing (model, node) pairs")["localhost"]
    assert plan["rerun"] == {"node1": [], "node2": ["dummy"], "node3": MODELS, "node5": MODELS}
    ran = task_results(parsed, "Return rows")
    assert ran["node1"].get("skipped") is True and "skipped" not in ran["node2"]
    report = task_results(parsed, "Merge the rows into one CSV and write the HTML report")["localhost"]
    assert report["missing_hosts"] == [] and report["carried"] == 14  # node1: 6, node2: 5, node4: 3
    rows = read_rows(out / "perf.csv")
    # node4 left the inventory: its old rows are kept, still failed; everything else succeeded
    assert sorted(set((r["host"], r["status"]) for r in rows)) == [
        ("node1", "SUCCESS"), ("node2", "SUCCESS"), ("node3", "SUCCESS"), ("node4", "FAILURE"),
        ("node5", "SUCCESS")]
    assert [r["performance"] for r in rows if r["host"] == "node2" and r["model"] == "dummy"] == ["111.0"]


def test_check_mode_writes_nothing(tmp_path):
    out = tmp_path / "results"
    rc, parsed, log = run_playbook(os.path.join(HERE, "result_collection.yml"),
                                   inventory=inventory(tmp_path, nodes=("node1",)), check=True,
                                   extra_vars={"node_results": {"node1": node_rows("node1")}, "models": MODELS,
                                               "out": str(out)})
    assert rc == 0, log
    report = task_results(parsed, "Merge the rows into one CSV and write the HTML report")["localhost"]
    assert report["changed"] is True and report["rows"] == 6
    assert not out.exists()


@pytest.mark.parametrize("extra, message", [
    ({"result_collection_hosts": "node1,nodeX"}, "must name inventory hosts"),
    ({"result_collection_fact": "bad name"}, "a fact name and a"),
])
def test_bad_settings_fail_validation(tmp_path, extra, message):
    extra_vars = {"node_results": {"node1": node_rows("node1")}, "models": MODELS, "out": str(tmp_path / "r")}
    extra_vars.update(extra)
    rc, parsed, log = run_playbook(os.path.join(HERE, "result_collection.yml"),
                                   inventory=inventory(tmp_path, nodes=("node1",)), extra_vars=extra_vars)
    assert rc != 0
    failed = task_results(parsed, "Check the result collection settings")["localhost"]
    assert failed["failed"] and message in failed["msg"], log
    assert not (tmp_path / "r").exists()


def test_rerun_plan_names_a_malformed_csv(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "perf.csv").write_text("model,status,host\ndummy,SUCCESS\n")
    rc, parsed, _log = run_playbook(os.path.join(HERE, "result_rerun.yml"),
                                    inventory=inventory(tmp_path, nodes=("node1",)),
                                    extra_vars={"node_results": {}, "models": MODELS, "out": str(out)})
    assert rc != 0
    failed = task_results(parsed, "Plan a re-run of the failed or missing (model, node) pairs")["localhost"]
    assert failed["msg"] == ("Previous results CSV %s is malformed: line 2 has 2 fields where the header has 3."
                             % (out / "perf.csv"))


@pytest.mark.parametrize("args, expected", [
    (["rocm.madengine.madengine_report"], ["previous_csv", "rerun_pairs", "fill_missing"]),
    (["-t", "role", "rocm.madengine.result_collection"], ["ENTRY POINT: *main*", "ENTRY POINT: *rerun_plan*",
                                                          "result_collection_previous_csv"]),
    (["-t", "role", "rocm.madengine.docker_setup"], ["docker_setup_insecure_registries",
                                                     "docker_setup_allow_restart"]),
])
def test_documentation_renders_from_the_installed_collection(args, expected):
    ansible_doc = os.path.join(os.path.dirname(sys.executable), "ansible-doc")
    proc = subprocess.run([ansible_doc] + args, check=False, capture_output=True, text=True, timeout=120,
                          env=ansible_env(ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_NOCOLOR="1"))
    assert proc.returncode == 0, proc.stderr
    for text in expected:
        assert text in proc.stdout


def test_report_options_reach_the_module_and_relative_paths_follow_the_working_directory(tmp_path):
    extra_vars = {"node_results": {"node1": node_rows("node1")}, "models": MODELS, "out": "relative/results",
                  "result_collection_report_options": {"csv_name": "merged.csv", "html": False, "title": "t"}}
    rc, parsed, log = run_playbook(os.path.join(HERE, "result_collection.yml"),
                                   inventory=inventory(tmp_path, nodes=("node1",)), extra_vars=extra_vars,
                                   cwd=str(tmp_path))
    assert rc == 0, log
    report = task_results(parsed, "Merge the rows into one CSV and write the HTML report")["localhost"]
    out = tmp_path / "relative" / "results"
    assert report["csv_path"] == str(out / "merged.csv") and report.get("html_path") is None
    assert sorted(os.listdir(out)) == ["history.sqlite", "merged.csv"] and len(read_rows(out / "merged.csv")) == 6


@pytest.mark.parametrize("options, message", [
    ({"csv_nmae": "x.csv"}, "result_collection_report_options on localhost: unknown key(s) csv_nmae "
                            "(rocm.madengine.madengine_report takes: "),
    ({"hosts": ["node1"]}, "result_collection_report_options on localhost: the role sets hosts itself"),
])
def test_bad_report_options_are_named_before_anything_is_written(tmp_path, options, message):
    extra_vars = {"node_results": {"node1": node_rows("node1")}, "models": MODELS, "out": str(tmp_path / "r"),
                  "result_collection_report_options": options}
    rc, parsed, log = run_playbook(os.path.join(HERE, "result_collection.yml"),
                                   inventory=inventory(tmp_path, nodes=("node1",)), extra_vars=extra_vars)
    assert rc != 0
    failed = task_results(parsed, "Check result_collection_report_options")["localhost"]
    assert failed["msg"].startswith(message), log
    assert not (tmp_path / "r").exists()
