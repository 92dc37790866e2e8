"""The fleet a run builds for (benchmark/fleet.py): node profiles, build targets, shards, expected durations."""

from __future__ import annotations

import pytest

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.fleet import (
    build_targets,
    check_profiles,
    durations_from_rows,
    expected_seconds,
    node_profile,
    plan,
    shard,
)
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError
from ansible_collections.rocm.madengine.plugins.module_utils.host.gpu import Gpu, GpuInventory

MI300X = "AMD Instinct MI300X"
H100 = "NVIDIA H100 80GB HBM3"


def amd(arch="gfx942", product=MI300X, count=8):
    return GpuInventory("AMD", [Gpu(i, "AMD", arch=arch, product=product) for i in range(count)])


def nvidia(product=H100, arch="H100", count=8):
    return GpuInventory("NVIDIA", [Gpu(i, "NVIDIA", arch=arch, product=product) for i in range(count)])


def cpu():
    return GpuInventory("NONE")


def essentials(profile):
    return (profile["gpu_vendor"], profile["gpu_architecture"], profile["gpu_product"], profile["source"])


# ---- node profiles: detection wins, the inventory fills in ----------------------------------------

def test_detection_that_agrees_with_the_inventory_is_quiet():
    profile, warnings = node_profile("mi300x-01", "AMD", "gfx942", amd())
    assert essentials(profile) == ("AMD", "gfx942", MI300X, "detected") and warnings == []
    assert profile["declared"] == {"gpu_vendor": "AMD", "gpu_architecture": "gfx942"}
    assert profile["gpu_count"] == 8 and profile["node"] == "mi300x-01"
    profile, warnings = node_profile("h100-01", "NVIDIA", "NVIDIA H100 80GB HBM3", nvidia())
    assert essentials(profile) == ("NVIDIA", "H100", H100, "detected") and warnings == []


def test_an_architecture_detection_contradicts_is_replaced_with_a_warning():
    profile, warnings = node_profile("mi300x-03", "AMD", "gfx942", amd("gfx90a", "AMD Instinct MI250X"))
    assert essentials(profile)[:2] == ("AMD", "gfx90a")
    assert warnings == ["Node mi300x-03: the inventory declares madengine_gpu_arch gfx942, but detection found gfx90a "
                        "(AMD Instinct MI250X); gfx90a is used (detection wins: correct the inventory)."]


def test_a_vendor_detection_contradicts_is_replaced_with_a_warning():
    profile, warnings = node_profile("h100-02", "AMD", "", nvidia())
    assert essentials(profile)[:2] == ("NVIDIA", "H100")
    assert warnings == ["Node h100-02: the inventory declares madengine_gpu_vendor AMD, but detection found 8 NVIDIA "
                        "GPUs; NVIDIA is used (detection wins: correct the inventory)."]
    profile, warnings = node_profile("gone-01", "AMD", "gfx942", cpu())
    assert essentials(profile)[:2] == ("NONE", "")
    assert warnings == ["Node gone-01: the inventory declares madengine_gpu_vendor AMD, but detection found no GPU; "
                        "NONE is used (detection wins: correct the inventory)."]


def test_none_is_a_choice_and_the_inventory_fills_what_detection_cannot_tell():
    profile, warnings = node_profile("mi300x-cpu", "NONE", "", amd())
    assert essentials(profile) == ("NONE", "", "", "inventory") and warnings == []
    # an NVIDIA node without nvidia-smi: counted from PCI, no product, no architecture
    unknown = GpuInventory("NVIDIA", [Gpu(i, "NVIDIA") for i in range(2)])
    profile, warnings = node_profile("h100-x", "auto", "H100", unknown)
    assert essentials(profile) == ("NVIDIA", "H100", "", "detected, architecture from the inventory")
    assert warnings == []
    profile, warnings = node_profile("lonely", "auto", "gfx942", cpu())
    assert essentials(profile)[:2] == ("NONE", "") and warnings == [
        "Node lonely: the inventory declares madengine_gpu_arch gfx942, but detection found no GPU; the node runs in "
        "CPU mode (detection wins)."]


def test_without_detection_the_inventory_is_the_profile():
    profile, warnings = node_profile("n1", "AMD", "gfx90a", None)
    assert essentials(profile) == ("AMD", "gfx90a", "", "inventory") and warnings == []
    with pytest.raises(MadengineError, match=r"^Node n2: GPU detection is off \(madengine_gpu_detect\) and "
                                             r"madengine_gpu_vendor is auto; declare AMD, NVIDIA or NONE for it\.$"):
        node_profile("n2", "auto", "", None)
    with pytest.raises(MadengineError, match=r"^Node n3: madengine_gpu_vendor 'INTEL' is not one of auto, AMD, "):
        node_profile("n3", "INTEL", "", None)


# ---- targets -------------------------------------------------------------------------------------

def profiles(**nodes):
    return check_profiles(dict((name.replace("_", "-"), {"gpu_vendor": v, "gpu_architecture": a, "gpu_product": p})
                               for name, (v, a, p) in nodes.items()))


FLEET = profiles(mi300x_01=("AMD", "gfx942", MI300X), mi300x_02=("AMD", "gfx942", MI300X),
                 mi250_01=("AMD", "gfx90a", "AMD Instinct MI250X"), h100_01=("NVIDIA", "NVIDIA H100 80GB HBM3", H100),
                 cpu_01=("NONE", "", ""))


def test_targets_are_the_distinct_vendor_and_architecture_pairs():
    assert build_targets(FLEET) == [("AMD", "gfx90a"), ("AMD", "gfx942"), ("NVIDIA", "H100"), ("NONE", "")]
    assert build_targets(FLEET, ["gfx908", "gfx942"]) == [("AMD", "gfx908"), ("AMD", "gfx90a"), ("AMD", "gfx942"),
                                                          ("NVIDIA", "H100"), ("NONE", "")]


@pytest.mark.parametrize("nodes, message", [
    ([1], "nodes must map each node to its GPU profile"),
    ({"n1": "AMD"}, "Node n1: its profile must be a dict with gpu_vendor and gpu_architecture, not 'AMD'."),
    ({"n1": {"gpu_vendor": "INTEL"}}, "Node n1: gpu_vendor 'INTEL' of its profile is not one of AMD, NVIDIA, NONE."),
])
def test_bad_profiles_name_the_node(nodes, message):
    with pytest.raises(MadengineError) as err:
        check_profiles(nodes)
    assert str(err.value).startswith(message)


# ---- shards --------------------------------------------------------------------------------------

MODELS = ["a", "b", "c", "d", "e", "f"]
FOUR = profiles(n1=("AMD", "gfx942", MI300X), n2=("AMD", "gfx942", MI300X), n3=("AMD", "gfx942", MI300X),
                n4=("AMD", "gfx942", MI300X))


def loads(assignments, seconds):
    return dict((node, sum(seconds[m] for m in models)) for node, models in assignments.items())


def test_shard_runs_every_model_once_per_group_and_balances_by_count():
    twelve = ["m%02d" % i for i in range(12)]
    assignments, groups = shard(twelve, FOUR)
    assert sorted(m for models in assignments.values() for m in models) == twelve
    assert [len(models) for models in assignments.values()] == [3, 3, 3, 3]
    assert all(models == sorted(models) for models in assignments.values())  # selection order
    assert groups == [{"group": "AMD gfx942 (AMD Instinct MI300X)", "gpu_vendor": "AMD", "gpu_architecture": "gfx942",
                       "gpu_product": MI300X, "nodes": ["n1", "n2", "n3", "n4"], "basis": "count",
                       "expected_seconds": {"n1": 3.0, "n2": 3.0, "n3": 3.0, "n4": 3.0}}]


def test_shard_balances_by_the_durations_of_an_earlier_run():
    seconds = {"a": 60, "b": 50, "c": 40, "d": 30, "e": 20, "f": 10}
    two = profiles(x1=("NVIDIA", "H100", H100), x2=("NVIDIA", "H100", H100))
    assignments, groups = shard(MODELS, two, seconds)
    assert assignments == {"x1": ["a", "d", "e"], "x2": ["b", "c", "f"]}
    assert loads(assignments, seconds) == {"x1": 110, "x2": 100}
    assert groups[0]["basis"] == "test_duration" and groups[0]["expected_seconds"] == {"x1": 110.0, "x2": 100.0}
    # a model without a duration counts as the median of the others
    expected, basis = expected_seconds(MODELS + ["g"], seconds)
    assert basis == "test_duration" and expected["g"] == 35.0


def test_each_group_gets_every_model_and_skipped_models_cost_nothing():
    fleet = profiles(c1=("NONE", "", ""), c2=("NONE", "", ""), g1=("AMD", "gfx942", MI300X),
                     g2=("AMD", "gfx942", MI300X))
    assignments, groups = shard(["gpu_only", "x", "y"], fleet, unsupported={"gpu_only": ["NONE"]})
    assert [g["nodes"] for g in groups] == [["c1", "c2"], ["g1", "g2"]]
    for group in (["c1", "c2"], ["g1", "g2"]):
        assert sorted(m for node in group for m in assignments[node]) == ["gpu_only", "x", "y"]
    # on the CPU nodes gpu_only is only skipped: x and y are spread, not put together
    assert sorted(len([m for m in assignments[n] if m != "gpu_only"]) for n in ("c1", "c2")) == [1, 1]


def test_a_group_of_one_node_cannot_be_sharded():
    with pytest.raises(MadengineError) as err:
        shard(MODELS, FLEET)
    assert str(err.value) == (
        "madengine_matrix shard spreads the models over groups of equivalent nodes (same vendor, architecture and "
        "product), but mi250-01 (AMD gfx90a (AMD Instinct MI250X)), h100-01 (NVIDIA H100 (NVIDIA H100 80GB HBM3)), "
        "cpu-01 (CPU only) are alone in their group: it would run every model by itself. Add equivalent nodes, "
        "limit the run to groups of two or more (--limit), or use madengine_matrix all.")


def test_all_gives_every_node_every_model():
    assignments, groups = plan(MODELS, FLEET, "all")
    assert assignments == dict((node, MODELS) for node in FLEET)
    assert [g["nodes"] for g in groups] == [["mi300x-01", "mi300x-02"], ["mi250-01"], ["h100-01"], ["cpu-01"]]
    with pytest.raises(MadengineError, match=r"^matrix must be one of all, shard, not 'some'\.$"):
        plan(MODELS, FLEET, "some")


def test_durations_come_from_success_rows_and_multiple_results_count_by_their_longest_row():
    rows = [{"model": "a", "status": "SUCCESS", "test_duration": "3.0"},
            {"model": "a", "status": "SUCCESS", "test_duration": "5.0"},
            {"model": "a", "status": "SUCCESS", "test_duration": "4.0"},
            {"model": "a", "status": "FAILURE", "test_duration": "100"},
            {"model": "multi_1", "status": "SUCCESS", "test_duration": "7.5"},
            {"model": "multi_2", "status": "SUCCESS", "test_duration": "8.5"},
            {"model": "b", "status": "SUCCESS", "test_duration": ""}]
    durations = durations_from_rows(rows)
    assert durations == {"a": 4.0, "multi_1": 7.5, "multi_2": 8.5}
    expected, basis = expected_seconds(["a", "multi", "b"], durations)
    assert expected == {"a": 4.0, "multi": 8.5, "b": 6.25} and basis == "test_duration"
    with pytest.raises(MadengineError, match=r"^durations: the duration of a must be a number of seconds, not 'x'\.$"):
        expected_seconds(["a"], {"a": "x"})
