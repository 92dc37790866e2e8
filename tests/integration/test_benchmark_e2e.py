"""benchmark.yml end to end, run as rocm.madengine.benchmark from the installed tarball.

The inventory has the controller (localhost, the main Docker engine, which builds and pushes to the
local registry) and two GPU nodes, each with a Docker engine of its own (own data root and socket),
so every node really pulls from the registry.  The runs follow one another, each one a test:

1. the first run builds, pushes, pulls and runs on both nodes, and merges one table;
2. a second run builds and pushes nothing and pulls nothing again; with madengine_fail_on_model_failure
   it fails at the very end, after the merge, naming the failed pairs;
3. a dry run (--check) after a script changed and one node lost its images: the matrix is planned,
   nothing is built, pushed, pulled or run, nothing is written;
4. node2's engine is stopped: node1's rows are all there, node2 is named and has FAILURE rows;
5. node2's engine is back: madengine_rerun_failed runs only the failed or missing pairs (one node at a
   time, madengine_serial), and the merged table carries node1's earlier good rows over;
6. with a credential file a model uses, a pull step throttled to one node at a time and -vvv: the
   nodes pull one after the other before the runs, and the secret is nowhere in the output or files.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
import uuid

import pytest
import yaml
from conftest import COLLECTION_DIR, MAIN_ENGINE, REGISTRY, SAMPLE_MAD, run_playbook, task_results
from docker_helpers import registry_request, repositories

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SESSION = uuid.uuid4().hex[:8]
PREFIX = "e2e%s-" % SESSION
NODES = ("node1", "node2")
MODELS = ["dummy", "dummy_multi", "dummy_fail"]
IMAGES = [PREFIX + "dummy_cpu.ubuntu", PREFIX + "dummy_multi_cpu.ubuntu", PREFIX + "dummy_fail_cpu.ubuntu"]
# rows of one node: dummy, dummy_multi's four results, dummy_fail (a FAILURE row, not a failed task)
NODE_ROWS = [("dummy", "SUCCESS")] + [("dummy_multi_%d" % n, "SUCCESS") for n in range(1, 5)] + [
    ("dummy_fail", "FAILURE")]
STATS = {"ANSIBLE_SHOW_CUSTOM_STATS": "1"}
BUILD = "Build and push the images, write the manifest"
RUN = "Run each model"
PUBLISH = "Publish this node's rows as its facts (and, in check mode, its plan)"
MERGE = "Merge the rows into one CSV and write the HTML report"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, engines, main_api):
    root = tmp_path_factory.mktemp("fleet")
    mad = root / "mad"
    shutil.copytree(SAMPLE_MAD, mad)
    inventory = {"all": {
        "vars": {"ansible_connection": "local",
                 "madengine_mad_root": str(mad), "madengine_tags": ",".join(MODELS),
                 "madengine_registry": REGISTRY, "madengine_image_prefix": PREFIX,
                 "madengine_gpu_vendor": "NONE",
                 "madengine_additional_context": {"gpu_vendor": "NONE", "guest_os": "UBUNTU"},
                 "madengine_output_dir": str(root / "results"), "madengine_timeout": 120},
        "children": {
            "controller": {"hosts": {"localhost": {"madengine_docker_host": MAIN_ENGINE}}},
            "gpu_nodes": {"hosts": dict((name, {"madengine_docker_host": engine.host})
                                        for name, engine in engines.items())}}}}
    path = root / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    return {"root": root, "mad": mad, "inventory": str(path), "out": root / "results", "engines": engines}


def benchmark(fleet, check=False, args=(), env=None, **extra_vars):
    started = time.time()
    rc, parsed, log = run_playbook("rocm.madengine.benchmark", inventory=fleet["inventory"], check=check,
                                   extra_vars=extra_vars or None, env=dict(STATS, **(env or {})), timeout=600,
                                   args=args)
    assert parsed is not None, log
    return {"rc": rc, "out": parsed, "log": log, "started": started, "finished": time.time()}


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def node_runs(run, node):
    """The runs of a node's madengine_run (one call for all its models), in order."""
    return task_results(run["out"], RUN).get(node, {}).get("runs", [])


def node_items(run, node):
    """The models madengine_run ran on a node, in order."""
    return [r["model"] for r in node_runs(run, node)]


def image_events(api, since, until):
    """Image events (build tags, pushes, pulls) of this session's images on an engine."""
    while time.time() < until + 1.1:
        time.sleep(0.1)
    events = api.events(since=int(since), until=int(until) + 1, decode=True, filters={"type": "image"})
    return [(e["Action"], e["Actor"].get("Attributes", {}).get("name") or e["Actor"].get("ID"))
            for e in events if since * 1e9 <= e.get("timeNano", 0) <= until * 1e9 and PREFIX in json.dumps(e)]


def all_events(api, since, until):
    while time.time() < until + 1.1:
        time.sleep(0.1)
    return [e for e in api.events(since=int(since), until=int(until) + 1, decode=True)
            if since * 1e9 <= e.get("timeNano", 0) <= until * 1e9]


def registry_tags():
    found = {}
    for repo in repositories(REGISTRY):
        if repo.startswith(PREFIX):
            _h, body = registry_request(REGISTRY, "/v2/%s/tags/list" % repo)
            found[repo] = sorted(json.loads(body).get("tags") or [])
    return found


# ---- the quick start: inventories/local ------------------------------------------------------------

def test_the_local_inventory_runs_as_the_quick_start_does(tmp_path, main_api):
    """ansible-playbook -i inventories/local rocm.madengine.benchmark, in a directory of its own."""
    local = os.path.join(COLLECTION_DIR, "inventories", "local")
    prefix = {"madengine_image_prefix": PREFIX + "local-"}
    # a dry run first, before anything exists: everything planned, nothing written
    rc, out, log = run_playbook("rocm.madengine.benchmark", inventory=local, cwd=str(tmp_path), env=STATS,
                                extra_vars=prefix, check=True)
    assert rc == 0, log
    assert sorted(task_results(out, BUILD)["localhost"]["built"]) == sorted(
        PREFIX + "local-" + i for i in ("dummy_cpu.ubuntu", "dummy_multi_cpu.ubuntu", "dummy2_model2_cpu.ubuntu"))
    matrix = task_results(out, "Show the planned matrix (dry run; no report is written)")["localhost"]["msg"]
    assert matrix == {"localhost": dict((m, "run %slocal-%s_cpu.ubuntu" % (PREFIX, m.replace("/", "_")))
                                        for m in ("dummy", "dummy_multi", "dummy2/model2"))}
    assert os.listdir(tmp_path) == []
    assert [i for i in main_api.images() if any(PREFIX + "local-" in t for t in i.get("RepoTags") or [])] == []

    rc, out, log = run_playbook("rocm.madengine.benchmark", inventory=local, cwd=str(tmp_path), env=STATS,
                                extra_vars=prefix)
    assert rc == 0, log
    assert all(play["play"]["path"].startswith(COLLECTION_DIR) for play in out["plays"])
    results = tmp_path / "results"  # the default madengine_output_dir, under the current directory
    rows = read_csv(results / "perf.csv")
    multi = [("localhost", "dummy_multi_%d" % n, "SUCCESS", "") for n in range(1, 5)]
    model2 = ("localhost", "dummy2/model2", "SUCCESS", " --batch-size 32")
    assert [(r["host"], r["model"], r["status"], r["args"]) for r in rows] == (
        [("localhost", "dummy", "SUCCESS", "")] + multi + [model2])
    assert (results / "perf.html").is_file() and (results / "build_manifest.json").is_file()
    assert (results / "localhost" / "perf.csv").is_file()  # the node's own CSV and logs
    shown = task_results(out, "Show where the results are")["localhost"]["msg"]
    assert "CSV: %s" % (results / "perf.csv") in shown and "HTML: %s" % (results / "perf.html") in shown
    assert not os.path.exists(os.path.join(COLLECTION_DIR, "playbooks", "results"))


# ---- 1. the first run ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def first(fleet):
    return benchmark(fleet)


def test_first_run_builds_once_runs_on_every_node_and_merges_one_table(first, fleet, main_api):
    assert first["rc"] == 0, first["log"]
    out = first["out"]
    # the playbook and its role came from the installed tarball
    assert all(play["play"]["path"].startswith(COLLECTION_DIR) for play in out["plays"])
    build = task_results(out, BUILD)
    assert list(build) == ["localhost"] and build["localhost"]["changed"] is True
    assert sorted(build["localhost"]["built"]) == sorted(IMAGES)
    assert sorted(build["localhost"]["pushed"]) == sorted("%s/%s" % (REGISTRY, i) for i in IMAGES)
    manifest = build["localhost"]["manifest"]

    for node in NODES:
        assert node_items(first, node) == MODELS
    rows = read_csv(fleet["out"] / "perf.csv")
    assert [(r["host"], r["model"], r["status"]) for r in rows] == [
        (node, model, status) for node in NODES for model, status in NODE_ROWS]
    assert len(set(r["run_id"] for r in rows)) == 1
    assert all(r["image_digest"].startswith("%s/%s" % (REGISTRY, PREFIX)) for r in rows if r["model"] != "dummy_fail")

    # each node pulled the images into its own engine and left no container behind
    for node in NODES:
        engine = fleet["engines"][node]
        assert sorted(manifest["built_images"][i]["image_id"] for i in IMAGES) == engine.images()
        assert engine.containers() == []

    # the facts: every node published exactly its own rows
    published = task_results(out, PUBLISH)
    for node in NODES:
        facts = published[node]["ansible_facts"]["madengine_results"]
        assert [(r["host"], r["model"], r["status"]) for r in facts] == [(node, m, s) for m, s in NODE_ROWS]
        assert [r["performance"] for r in facts] == [r["performance"] for r in rows if r["host"] == node]

    html = (fleet["out"] / "perf.html").read_text()
    assert "node1" in html and "node2" in html and "dummy_multi" in html
    summary = out["global_custom_stats"]["madengine_summary"]
    assert summary["rows"] == 12 and summary["nodes"] == 2 and summary["missing_nodes"] == []
    assert summary["failed"] == ["dummy_fail@node1", "dummy_fail@node2"]
    assert summary["csv"] == str(fleet["out"] / "perf.csv") and summary["html"] == str(fleet["out"] / "perf.html")
    shown = task_results(out, "Show where the results are")["localhost"]["msg"]
    assert "CSV: %s" % (fleet["out"] / "perf.csv") in shown and "HTML: %s" % (fleet["out"] / "perf.html") in shown


# ---- 2. nothing to build the second time --------------------------------------------------------

@pytest.fixture(scope="module")
def second(first, fleet):
    assert first["rc"] == 0, first["log"]
    return benchmark(fleet, madengine_fail_on_model_failure="true")


def test_second_run_builds_pushes_and_pulls_nothing(second, first, fleet, main_api):
    assert second["rc"] != 0 and second["out"]["stats"]["localhost"]["failures"] == 1, second["log"]
    failed = task_results(second["out"], "Fail when a model failed (madengine_fail_on_model_failure)")["localhost"]
    assert failed["msg"] == "2 (model, node) pair(s) failed: dummy_fail@node1, dummy_fail@node2; see %s." % (
        fleet["out"] / "perf.csv")
    assert all(s["failures"] == 0 for n, s in second["out"]["stats"].items() if n != "localhost")
    build = task_results(second["out"], BUILD)["localhost"]
    assert build["changed"] is False and build["built"] == [] and build["pushed"] == []
    assert sorted(build["reused"]) == sorted(IMAGES)
    assert image_events(main_api, second["started"], second["finished"]) == []
    for node in NODES:
        runs = node_runs(second, node)
        assert [r["pulled"] for r in runs] == [False, False, False]
        with fleet["engines"][node].api() as api:
            assert [a for a, _n in image_events(api, second["started"], second["finished"])] == []
    rows = read_csv(fleet["out"] / "perf.csv")
    assert [(r["host"], r["model"], r["status"]) for r in rows] == [
        (node, model, status) for node in NODES for model, status in NODE_ROWS]
    first_ids = set(r["run_id"] for r in read_csv_rows_of(first))
    assert set(r["run_id"] for r in rows).isdisjoint(first_ids)
    # compared with the first run, stored in the default results database: the same figures, nothing regressed
    summary = second["out"]["global_custom_stats"]["madengine_summary"]
    assert summary["verdicts"] == {"regressed": 0, "improved": 0, "unchanged": 10, "no baseline": 0}
    assert summary["database"] == {"location": str(fleet["out"] / "history.sqlite"), "stored": True, "error": None}
    assert set(r["baseline_run_id"] for r in rows if r["verdict"]) == first_ids


def read_csv_rows_of(run):
    return task_results(run["out"], PUBLISH)["node1"]["ansible_facts"]["madengine_results"]


# ---- 3. the dry run --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dry(second, fleet, main_api):
    """A script of the sample changed and node2 lost its images; then --check."""
    assert task_results(second["out"], MERGE)["localhost"]["changed"] is True, second["log"]
    fleet["engines"]["node2"].remove_images()
    script = fleet["mad"] / "scripts" / "sample" / "run_fail.sh"
    original = script.read_text()
    script.write_text(original + "# changed\n")
    before = {"csv": (fleet["out"] / "perf.csv").read_bytes(), "html": (fleet["out"] / "perf.html").read_bytes(),
              "manifest": (fleet["out"] / "build_manifest.json").read_bytes(), "registry": registry_tags(),
              "main": sorted(i["Id"] for i in main_api.images()),
              "nodes": dict((n, fleet["engines"][n].images()) for n in NODES)}
    try:
        run = benchmark(fleet, check=True)
    finally:
        script.write_text(original)
    run["before"] = before
    return run


def test_check_mode_plans_the_whole_matrix_and_touches_nothing(dry, fleet, main_api):
    assert dry["rc"] == 0, dry["log"]
    build = task_results(dry["out"], BUILD)["localhost"]
    # planned, because the scripts directory every sample image holds changed
    assert sorted(build["built"]) == sorted(IMAGES) and build["changed"] is True
    for node in NODES:
        assert node_items(dry, node) == MODELS
        assert task_results(dry["out"], RUN)[node]["results"] == []
    matrix = task_results(dry["out"], "Show the planned matrix (dry run; no report is written)")["localhost"]["msg"]
    assert matrix == dict((n, dict((m, "run " + i) for m, i in zip(MODELS, IMAGES))) for n in NODES)
    assert task_results(dry["out"], MERGE) == {}
    before = dry["before"]
    # nothing built, pushed, pulled, run or written
    assert sorted(i["Id"] for i in main_api.images()) == before["main"]
    assert registry_tags() == before["registry"]
    assert dict((n, fleet["engines"][n].images()) for n in NODES) == before["nodes"] and before["nodes"]["node2"] == []
    for node in NODES:
        with fleet["engines"][node].api() as api:
            assert all_events(api, dry["started"], dry["finished"]) == []
    assert image_events(main_api, dry["started"], dry["finished"]) == []
    assert (fleet["out"] / "perf.csv").read_bytes() == before["csv"]
    assert (fleet["out"] / "perf.html").read_bytes() == before["html"]
    assert (fleet["out"] / "build_manifest.json").read_bytes() == before["manifest"]


# ---- 4. a node whose engine is down ---------------------------------------------------------------

@pytest.fixture(scope="module")
def stopped(dry, fleet):
    assert dry["rc"] == 0, dry["log"]
    fleet["engines"]["node2"].stop()
    return benchmark(fleet)


def test_a_stopped_engine_loses_no_other_rows_and_is_named(stopped, fleet):
    assert stopped["rc"] != 0, stopped["log"]  # node2 failed, and the play says so at the end
    out = stopped["out"]
    assert out["stats"]["node2"]["failures"] == 1 and out["stats"]["node1"]["failures"] == 0
    assert out["stats"]["localhost"]["failures"] == 0
    failed = task_results(out, "Fail this node with the reason its run failed")["node2"]
    assert failed["failed"] and "Run each model" in failed["msg"] and "is unreachable" in failed["msg"]
    report = task_results(out, MERGE)["localhost"]
    assert report["missing_hosts"] == ["node2"]
    summary = out["global_custom_stats"]["madengine_summary"]
    assert summary["missing_nodes"] == ["node2"]
    assert summary["failed"] == ["dummy_fail@node1"] + ["%s@node2" % m for m in MODELS]
    rows = read_csv(fleet["out"] / "perf.csv")
    assert [(r["host"], r["model"], r["status"]) for r in rows] == [
        ("node1", m, s) for m, s in NODE_ROWS] + [("node2", m, "FAILURE") for m in MODELS]
    assert all(r["error"].startswith("no results from node node2") for r in rows if r["host"] == "node2")
    assert "node2" in (fleet["out"] / "perf.html").read_text()


# ---- 5. re-run what failed -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rerun(stopped, fleet):
    fleet["engines"]["node2"].start()
    previous = read_csv(fleet["out"] / "perf.csv")
    run = benchmark(fleet, madengine_rerun_failed="true", madengine_serial="1")
    run["previous"] = previous
    return run


def test_rerun_failed_runs_only_the_failed_pairs_and_keeps_the_good_rows(rerun, fleet):
    assert rerun["rc"] == 0, rerun["log"]
    plan = task_results(rerun["out"], "Plan a re-run of the failed or missing (model, node) pairs")["localhost"]
    assert plan["rerun"] == {"node1": ["dummy_fail"], "node2": MODELS}
    assert node_items(rerun, "node1") == ["dummy_fail"] and node_items(rerun, "node2") == MODELS
    report = task_results(rerun["out"], MERGE)["localhost"]
    assert report["carried"] == 5 and report["missing_hosts"] == []
    rows = read_csv(fleet["out"] / "perf.csv")
    assert [(r["host"], r["model"], r["status"]) for r in rows] == [
        (node, model, status) for node in NODES for model, status in NODE_ROWS]
    previous = dict(((r["host"], r["model"]), r) for r in rerun["previous"])
    new_id = rerun["out"]["global_custom_stats"]["madengine_summary"]["run_id"]
    for r in rows:
        if r["host"] == "node1" and r["model"] != "dummy_fail":
            assert r == previous[(r["host"], r["model"])]  # carried over unchanged
        else:
            assert r["run_id"] == new_id
    assert fleet["engines"]["node2"].images() != []  # node2 pulled again
    # one batch per node
    batches = [sorted(t["hosts"]) for p in rerun["out"]["plays"] for t in p["tasks"]
               if p["play"]["name"] == "Run every model on every GPU node" and t["task"]["name"].endswith(RUN)]
    assert batches == [["node1"], ["node2"]]


# ---- 6. credentials, a throttled pull step, -vvv ----------------------------------------------------

SECRET = "E2e-%s-secret" % uuid.uuid4().hex


@pytest.fixture(scope="module")
def throttled(rerun, fleet):
    assert rerun["rc"] == 0, rerun["log"]
    models = json.loads((fleet["mad"] / "models.json").read_text())
    for model in models:
        if model["name"] == "dummy":
            model["cred"] = "E2E"
    (fleet["mad"] / "models.json").write_text(json.dumps(models, indent=1))
    creds = fleet["root"] / "credential.json"
    creds.write_text(json.dumps({"E2E": {"username": "e2e-user", "password": SECRET}}))
    for node in NODES:
        fleet["engines"][node].remove_images()
    temp_before = set(os.listdir("/tmp"))
    run = benchmark(fleet, args=("-vvv",), env={"ANSIBLE_VERBOSE_TO_STDERR": "1"},
                    madengine_credential_file=str(creds), madengine_pull_throttle=1)
    run["temp_left"] = sorted(set(os.listdir("/tmp")) - temp_before)
    return run


def test_throttled_pulls_and_credentials_that_never_show(throttled, fleet):
    assert throttled["rc"] == 0, throttled["log"]
    out = throttled["out"]
    pulls = task_results(out, "Pull the images (at most madengine_pull_throttle nodes at a time)")
    spans = {}
    for node in NODES:
        assert [(i["model"], i["pulled"], i["error"]) for i in pulls[node]["images"]] == [
            (m, True, "") for m in MODELS]
        runs = node_runs(throttled, node)
        assert [r["pulled"] for r in runs] == [False, False, False]
        assert runs[0]["container"]["environment"]["E2E_PASSWORD"] == "********"
        with fleet["engines"][node].api() as api:
            events = api.events(since=int(throttled["started"]), until=int(throttled["finished"]) + 1, decode=True,
                                filters={"type": "image", "event": "pull"})
            times = [e["timeNano"] for e in events]
        assert len(times) == len(MODELS)
        spans[node] = (min(times), max(times))
    first, second = sorted(spans.values())
    assert first[1] < second[0], "with madengine_pull_throttle=1 the nodes pull one after the other"
    rows = read_csv(fleet["out"] / "perf.csv")
    assert [(r["host"], r["model"], r["status"]) for r in rows] == [
        (node, model, status) for node in NODES for model, status in NODE_ROWS]
    # the secret is in no output (-vvv included) and in no file the run wrote; no credential file is left
    assert "EXEC" in throttled["log"] and SECRET not in throttled["log"]
    for directory, _dirs, files in os.walk(fleet["out"]):
        for name in files:
            with open(os.path.join(directory, name), "rb") as handle:
                assert SECRET.encode() not in handle.read(), os.path.join(directory, name)
    assert [name for name in throttled["temp_left"] if "madengine" in name] == []
