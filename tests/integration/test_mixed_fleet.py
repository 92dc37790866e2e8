"""A mixed fleet end to end: rocm.madengine.benchmark from the installed collection on ci/simulated-fleet.sh's nodes.

One fleet for the module: an MI300X node (amd-gfx942), an MI250X node (amd-gfx90a), an H100 node whose engine
starts NVIDIA containers through the stand-in runtime hook, and two CPU nodes; the controller is this machine's
main engine with the local registry.  The runs follow one another, each one a test:

1. one benchmark.yml run over every node, with one more inventory file on top: the second CPU node gets the H100
   node's GPUs (its host root) but keeps an engine without the NVIDIA runtime, and the MI300X node declares the
   wrong architecture.  One image per model and (vendor, architecture) is built, every node runs the ones that fit
   it, SKIPPED only for skip_gpu_arch and for models without a Dockerfile for the node's vendor, the NVIDIA
   containers get the GPUs n_gpus asks for, the node without the runtime has FAILURE rows saying so;
2. inventories/example as shipped (group_vars included) in check mode, its hosts mapped onto the fleet's
   nodes: the whole matrix per node, nothing built, pulled, run or written;
3. inventories/example for real with --limit to one node of each group (the build host left out): the build
   host builds (delegated), only the limited nodes run, the report names them;
4. madengine_matrix shard over the two CPU nodes (--limit cpu) with one node's engine down: each model once,
   the stopped node's share missing; then, the engine back, madengine_rerun_failed with madengine_manifest runs
   that share and nothing else, without building;
5. bad input: a --limit that leaves no GPU node, and a shard whose groups have one node.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import time
import uuid

import pytest
import yaml
from conftest import COLLECTION_DIR, MAIN_ENGINE, REGISTRY, SAMPLE_MAD, run_playbook, task_results
from fleet_helpers import fleet as fleet_script
from fleet_helpers import read as read_fleet

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SESSION = uuid.uuid4().hex[:8]
PREFIX = "mixed%s-" % SESSION
KINDS = ("amd-gfx942", "amd-gfx90a", "nvidia-h100", "cpu:2")
NODES = ("amd-gfx942-1", "amd-gfx90a-1", "nvidia-h100-1", "cpu-1", "cpu-2")
TAGS = "dummy,dummy_multi,sample_gpu,gpu_skip_90a"
BUILD = "Build and push the images, write the manifest"
DETECT = "Learn this node's GPUs (detection wins over madengine_gpu_vendor and madengine_gpu_arch, with a warning)"
MATRIX = "Show the planned matrix (dry run; no report is written)"
CHECK = "Check the build settings"
NO_DOCKERFILE = "Model '%s' has no Dockerfile for gpu_vendor=NONE guest_os=UBUNTU"
MI300X, MI250X, H100 = "AMD Instinct MI300X", "AMD Instinct MI250X", "NVIDIA H100 80GB HBM3"
EXAMPLE = os.path.join(COLLECTION_DIR, "inventories", "example", "gpu_inventory")


def image(name):
    return PREFIX + name


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, main_api):
    root = tmp_path_factory.mktemp("mixed")
    mad = root / "mad"
    shutil.copytree(SAMPLE_MAD, mad)
    models = json.loads((mad / "models.json").read_text())
    sample = dict((m["name"], m) for m in models)["sample_gpu"]
    gpu = dict(sample, name="gpu_skip_90a", skip_gpu_arch="gfx90a")
    (mad / "models.json").write_text(json.dumps(models + [gpu], indent=1))
    directory = root / "fleet"
    fleet_script("up", "--out", str(directory), *KINDS)
    try:
        _document, nodes, _state = read_fleet(directory)
        yield {"root": root, "mad": mad, "dir": directory, "inventory": str(directory / "inventory.yml"),
               "nodes": nodes}
    finally:
        fleet_script("down", str(directory))


def benchmark(fleet, inventory=None, extra=(), check=False, args=(), **extra_vars):
    variables = {"madengine_mad_root": str(fleet["mad"]), "madengine_tags": TAGS, "madengine_image_prefix": PREFIX,
                 "madengine_timeout": 120}
    variables.update(extra_vars)
    inventory_args = []
    for path in extra:
        inventory_args += ["-i", str(path)]
    started = time.time()
    rc, out, log = run_playbook("rocm.madengine.benchmark", inventory=inventory or fleet["inventory"],
                                extra_vars=variables, check=check, args=inventory_args + list(args), timeout=900,
                                cwd=str(fleet["root"]), env={"ANSIBLE_SHOW_CUSTOM_STATS": "1"})
    assert out is not None, log
    return {"rc": rc, "out": out, "log": log, "seconds": time.time() - started}


def overlay(fleet, name, hosts):
    """One more inventory file: host variables over the fleet's (or another inventory's) for ``hosts``."""
    path = fleet["root"] / ("%s.yml" % name)
    path.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    return path


def rows_of(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def by_node(rows):
    found = {}
    for row in rows:
        found.setdefault(row["host"], {})[row["model"]] = row
    return found


def log_of(row):
    with open(row["log_path"]) as handle:
        return handle.read()


# ---- 1. one run over the whole mixed fleet ----------------------------------------------------------

@pytest.fixture(scope="module")
def mixed(fleet):
    nvidia_root = fleet["nodes"]["nvidia-h100-1"]["madengine_run_options"]["host_root"]
    extra = overlay(fleet, "broken", {
        # the H100 node's GPUs behind an engine without the NVIDIA runtime
        "cpu-2": {"madengine_gpu_vendor": "auto", "madengine_gpu_arch": "", "madengine_run_options":
                  {"host_root": nvidia_root}},
        # an inventory that detection contradicts
        "amd-gfx942-1": {"madengine_gpu_arch": "gfx90a"}})
    return benchmark(fleet, inventory=fleet["inventory"], extra=[extra], madengine_output_dir=str(
        fleet["root"] / "mixed"))


def test_one_run_builds_per_vendor_and_architecture_and_every_node_runs_what_fits_it(mixed, fleet):
    assert mixed["rc"] == 0, mixed["log"]
    out = mixed["out"]
    build = task_results(out, BUILD)["localhost"]
    images = ["dummy_cpu.ubuntu", "dummy_multi_cpu.ubuntu"] + [
        "%s_sample.ubuntu.%s" % (m, s) for m in ("sample_gpu", "gpu_skip_90a")
        for s in ("amd_gfx90a", "amd_gfx942", "nvidia")]
    assert sorted(build["built"]) == sorted(image(i) for i in images)
    assert sorted(build["pushed"]) == sorted("%s/%s" % (REGISTRY, image(i)) for i in images)
    assert build["targets"] == [{"gpu_vendor": "AMD", "gpu_architecture": "gfx90a"},
                                {"gpu_vendor": "AMD", "gpu_architecture": "gfx942"},
                                {"gpu_vendor": "NVIDIA", "gpu_architecture": "H100"},
                                {"gpu_vendor": "NONE", "gpu_architecture": ""}]
    # detection wins over the inventory, with a warning naming the node
    detected = task_results(out, DETECT)
    assert detected["amd-gfx942-1"]["profile"]["gpu_architecture"] == "gfx942"
    assert "Node amd-gfx942-1: the inventory declares madengine_gpu_arch gfx90a, but detection found gfx942" in \
        json.dumps(detected["amd-gfx942-1"]["warnings"])
    assert detected["cpu-2"]["profile"]["gpu_vendor"] == "NVIDIA"

    rows = rows_of(fleet["root"] / "mixed" / "perf.csv")
    nodes = by_node(rows)
    assert sorted(nodes) == sorted(NODES)
    summary = out["global_custom_stats"]["madengine_summary"]
    multi = ["dummy_multi_%d" % n for n in range(1, 5)]
    for node, arch, product, rocm in (("amd-gfx942-1", "gfx942", MI300X, "6.4.1"),
                                      ("amd-gfx90a-1", "gfx90a", MI250X, "5.7.1")):
        got = nodes[node]
        assert [(m, got[m]["status"]) for m in ["dummy"] + multi] == [(m, "SUCCESS") for m in ["dummy"] + multi]
        gpu = got["sample_gpu"]
        assert (gpu["status"], gpu["docker_image"], gpu["gpu_architecture"], gpu["gpu_product"], gpu["rocm_version"],
                gpu["gpu_ids"]) == ("SUCCESS", image("sample_gpu_sample.ubuntu.amd_" + arch), arch, product, rocm,
                                    "0,1,2,3,4,5,6,7")
        assert "dri=renderD128 renderD136" in log_of(gpu)  # the node's render nodes, in the container
        assert got["dummy"]["gpu_ids"] == "0" and got["dummy"]["docker_image"] == image("dummy_cpu.ubuntu")
    assert nodes["amd-gfx942-1"]["gpu_skip_90a"]["status"] == "SUCCESS"
    skipped = nodes["amd-gfx90a-1"]["gpu_skip_90a"]
    assert (skipped["status"], skipped["error"]) == (
        "SKIPPED", "skip_gpu_arch of model 'gpu_skip_90a' lists gfx90a, this node's GPU architecture")

    h100 = nodes["nvidia-h100-1"]
    assert all(h100[m]["status"] == "SUCCESS" for m in ["dummy", "sample_gpu", "gpu_skip_90a"] + multi)
    gpu = h100["sample_gpu"]
    assert (gpu["docker_image"], gpu["gpu_product"], gpu["driver_version"], gpu["cuda_version"], gpu["gpu_ids"]) == (
        image("sample_gpu_sample.ubuntu.nvidia"), H100, "550.54.15", "12.4", "0,1,2,3,4,5,6,7")
    # the engine's NVIDIA runtime gave the containers the GPUs n_gpus asks for
    assert "NVIDIA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 " in log_of(gpu)
    assert "NVIDIA_VISIBLE_DEVICES=0 " in log_of(h100["dummy"]) and h100["dummy"]["gpu_ids"] == "0"
    with open(fleet["dir"] / "nvidia-h100-1" / "hook.log") as handle:
        hooked = handle.read()
    assert hooked.count("prestart NVIDIA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 ") == 2

    cpu = nodes["cpu-1"]
    assert all(cpu[m]["status"] == "SUCCESS" and cpu[m]["gpu_ids"] == "" for m in ["dummy"] + multi)
    for name in ("sample_gpu", "gpu_skip_90a"):
        assert cpu[name]["status"] == "SKIPPED" and cpu[name]["error"].startswith(NO_DOCKERFILE % name)
        assert cpu[name]["docker_image"] == ""

    # the node whose engine has no NVIDIA runtime: FAILURE rows saying so, the others unaffected
    broken = nodes["cpu-2"]
    assert sorted(broken) == sorted(["dummy", "dummy_multi", "sample_gpu", "gpu_skip_90a"])
    for row in broken.values():
        assert row["status"] == "FAILURE" and row["gpu_product"] == H100
        assert row["error"].startswith("the Docker engine of cpu-2 has no NVIDIA runtime, although the node has 8 "
                                       "NVIDIA GPUs"), row["error"]
    assert out["stats"]["cpu-2"]["failures"] == 0  # failed models are rows, not a failed node
    assert sorted(summary["hosts"]) == sorted(NODES) and summary["missing_nodes"] == []
    print("mixed fleet, 5 nodes, one benchmark.yml run: %.1f s" % mixed["seconds"])


# ---- 2. inventories/example in check mode, mapped onto the fleet ------------------------------------

EXAMPLE_NODES = {"mi300x": ["mi300x-0%d.example.com" % n for n in range(1, 5)],
                 "mi200": ["mi250-01.example.com", "mi250-02.example.com"],
                 "nvidia_h100": ["h100-01.example.com", "h100-02.example.com"]}
KIND_OF = {"mi300x": "amd-gfx942-1", "mi200": "amd-gfx90a-1", "nvidia_h100": "nvidia-h100-1"}


def example_overlay(fleet):
    """Host variables that put the example's hosts on this machine: build01 on the main engine, each node on
    the fleet node of its kind (its engine and fake GPUs). Everything else is the example's own group_vars."""
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, "ansible_become": False,
             "madengine_registry": REGISTRY}
    hosts = {"build01.example.com": dict(local, madengine_docker_host=MAIN_ENGINE)}
    for group, names in EXAMPLE_NODES.items():
        node = fleet["nodes"][KIND_OF[group]]
        for name in names:
            hosts[name] = dict(local, madengine_docker_host=node["madengine_docker_host"],
                               madengine_run_options=node["madengine_run_options"])
    return overlay(fleet, "example-on-fleet", hosts)


def example(fleet, out, **kwargs):
    # the fleet's engines are not managed by docker_setup here, and the example's registry is the local one
    return benchmark(fleet, inventory=EXAMPLE, extra=[example_overlay(fleet)], madengine_docker_setup=False,
                     madengine_tags="dummy,sample_gpu", madengine_output_dir=str(fleet["root"] / out), **kwargs)


def session_images(api):
    return sorted(i["Id"] for i in api.images() if any(PREFIX in t for t in i.get("RepoTags") or []))


def test_the_example_inventory_plans_every_group_in_check_mode(mixed, fleet, main_api):
    before = session_images(main_api)
    run = example(fleet, "example-check", check=True)
    assert run["rc"] == 0, run["log"]
    matrix = task_results(run["out"], MATRIX)["build01.example.com"]["msg"]
    expected = {}
    for group, names in EXAMPLE_NODES.items():
        suffix = {"mi300x": "amd_gfx942", "mi200": "amd_gfx90a", "nvidia_h100": "nvidia"}[group]
        for name in names:
            expected[name] = {"dummy": "run " + image("dummy_cpu.ubuntu"),
                              "sample_gpu": "run " + image("sample_gpu_sample.ubuntu." + suffix)}
    assert matrix == expected
    build = task_results(run["out"], BUILD)["build01.example.com"]
    assert sorted(build["built"]) == sorted(image(i) for i in [
        "dummy_cpu.ubuntu", "sample_gpu_sample.ubuntu.amd_gfx90a", "sample_gpu_sample.ubuntu.amd_gfx942",
        "sample_gpu_sample.ubuntu.nvidia"])
    assert not (fleet["root"] / "example-check").exists()
    assert session_images(main_api) == before


# ---- 3. inventories/example for real, --limit to one node per group ---------------------------------

def test_a_limit_to_some_nodes_builds_on_the_build_host_and_runs_only_them(mixed, fleet):
    limited = ["mi300x-01.example.com", "mi250-01.example.com", "h100-01.example.com"]
    run = example(fleet, "example-limit", args=("--limit", ",".join(limited)))
    assert run["rc"] == 0, run["log"]
    out = run["out"]
    assert "build01.example.com" not in out["stats"]
    build = task_results(out, BUILD)
    assert list(build) == ["mi300x-01.example.com"]  # delegated to the build host from the first node
    assert build["mi300x-01.example.com"]["built"] == []  # the images of the first run, with the same context
    rows = rows_of(fleet["root"] / "example-limit" / "perf.csv")
    assert sorted((r["host"], r["model"], r["status"]) for r in rows) == sorted(
        (node, model, "SUCCESS") for node in limited for model in ("dummy", "sample_gpu"))
    gpu = dict((r["host"], r["docker_image"]) for r in rows if r["model"] == "sample_gpu")
    assert gpu == {"mi300x-01.example.com": image("sample_gpu_sample.ubuntu.amd_gfx942"),
                   "mi250-01.example.com": image("sample_gpu_sample.ubuntu.amd_gfx90a"),
                   "h100-01.example.com": image("sample_gpu_sample.ubuntu.nvidia")}
    shown = task_results(out, "Show where the results are")["mi300x-01.example.com"]["msg"]
    assert "nodes in the run: %s" % ", ".join(limited) in shown


# ---- 4. a shard, a node's share missing, its re-run ---------------------------------------------------

SHARD_TAGS = "dummy,dummy_multi,dummy2/model1,dummy2/model2,sample_gpu"


def stop_engine(fleet, node):
    from simfleet.engine import stop_engines
    from simfleet.fleet import Fleet

    stop_engines([Fleet(str(fleet["dir"])).engine(node, "cpu")], grace=20)


@pytest.fixture(scope="module")
def sharded(mixed, fleet):
    stop_engine(fleet, "cpu-2")
    return benchmark(fleet, args=("--limit", "cpu"), madengine_matrix="shard", madengine_tags=SHARD_TAGS,
                     madengine_output_dir=str(fleet["root"] / "shard"))


def test_a_shard_runs_each_model_once_and_a_failed_node_share_is_reported_missing(sharded, fleet):
    assert sharded["rc"] != 0, sharded["log"]  # cpu-2 failed, and the play says so at the end
    out = sharded["out"]
    assignments = task_results(out, BUILD)["cpu-1"]["assignments"]
    assert sorted(assignments) == ["cpu-1", "cpu-2"]
    models = ["dummy", "dummy_multi", "dummy2/model1", "dummy2/model2", "sample_gpu"]
    assert sorted(assignments["cpu-1"] + assignments["cpu-2"]) == sorted(models)
    assert assignments["cpu-1"] and assignments["cpu-2"]
    rows = rows_of(fleet["root"] / "shard" / "perf.csv")
    ran = by_node(rows)
    assert sorted(ran) == ["cpu-1", "cpu-2"]
    for model in assignments["cpu-2"]:
        assert ran["cpu-2"][model]["status"] == "FAILURE"
        assert ran["cpu-2"][model]["error"].startswith("no results from node cpu-2")
    assert sorted(set(m if not m.startswith("dummy_multi_") else "dummy_multi" for m in ran["cpu-1"])) == sorted(
        assignments["cpu-1"])
    summary = out["global_custom_stats"]["madengine_summary"]
    assert summary["missing_nodes"] == ["cpu-2"] and summary["hosts"] == ["cpu-1", "cpu-2"]


def test_the_missing_share_is_rerun_on_its_node_without_building(sharded, fleet):
    fleet_script("up", "--out", str(fleet["dir"]), *KINDS)  # cpu-2's engine is back
    previous = rows_of(fleet["root"] / "shard" / "perf.csv")
    assignments = task_results(sharded["out"], BUILD)["cpu-1"]["assignments"]
    run = benchmark(fleet, args=("--limit", "cpu"), madengine_matrix="shard", madengine_tags=SHARD_TAGS,
                    madengine_output_dir=str(fleet["root"] / "shard"), madengine_rerun_failed=True,
                    madengine_manifest=str(fleet["root"] / "shard" / "build_manifest.json"))
    assert run["rc"] == 0, run["log"]
    build = task_results(run["out"], BUILD)["cpu-1"]
    assert build["built"] == [] and build["changed"] is False
    plan = task_results(run["out"], "Plan a re-run of the failed or missing (model, node) pairs")["cpu-1"]
    assert plan["rerun"] == {"cpu-1": [], "cpu-2": assignments["cpu-2"]}
    rows = rows_of(fleet["root"] / "shard" / "perf.csv")
    ran = by_node(rows)
    assert all(r["status"] in ("SUCCESS", "SKIPPED") for r in rows), rows
    # cpu-1's rows are carried over as they were (the re-run's rows may add columns, empty for them)
    assert [dict((k, r[k]) for k in previous[0]) for r in rows if r["host"] == "cpu-1"] == [
        r for r in previous if r["host"] == "cpu-1"]
    assert all(r.get(k, "") == "" for r in rows if r["host"] == "cpu-1" for k in set(r) - set(previous[0]))
    assert sorted(set(m if not m.startswith("dummy_multi_") else "dummy_multi" for m in ran["cpu-2"])) == sorted(
        assignments["cpu-2"])


# ---- 5. bad input --------------------------------------------------------------------------------------

def test_a_limit_without_gpu_nodes_is_named(fleet):
    run = benchmark(fleet, check=True, args=("--limit", "localhost"), madengine_output_dir=str(fleet["root"] / "x"))
    assert run["rc"] != 0
    failed = task_results(run["out"], CHECK)["localhost"]
    assert failed["msg"].startswith("--limit localhost leaves no host of the inventory group gpu_nodes in the run, "
                                    "so nothing would run: limit it to GPU nodes"), run["log"]
    assert not (fleet["root"] / "x").exists()


def test_a_shard_group_of_one_node_is_named_before_anything_is_built(fleet):
    run = benchmark(fleet, check=True, madengine_matrix="shard", madengine_output_dir=str(fleet["root"] / "y"))
    assert run["rc"] != 0
    failed = task_results(run["out"], BUILD)["localhost"]
    assert failed["msg"].startswith("madengine_matrix shard spreads the models over groups of equivalent nodes"), \
        run["log"]
    for alone in ("amd-gfx942-1 (AMD gfx942 (AMD Instinct MI300X))", "amd-gfx90a-1 (AMD gfx90a (AMD Instinct MI250X))",
                  "nvidia-h100-1 (NVIDIA H100 (NVIDIA H100 80GB HBM3))"):
        assert alone in failed["msg"]
    assert "cpu-1" not in failed["msg"] and "are alone in their group" in failed["msg"]
    assert "Run every model on every GPU node" not in [p["play"]["name"] for p in run["out"]["plays"]]
