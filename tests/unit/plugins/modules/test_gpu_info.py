"""gpu_info through the AnsibleModule harness, on the host roots of simulated nodes (fake sysfs, devices, tools)."""

from __future__ import annotations

import pytest
from fake_gpu_sysfs import MI300X_DEVICE, FakeGpuSysfs, fake_nvidia_smi, write_host_root

from ansible_collections.rocm.madengine.plugins.modules import gpu_info


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """A host root per node kind, as ci/simulated-fleet.sh gives its nodes."""
    base = tmp_path_factory.mktemp("roots")
    found = {}
    for kind in ("amd-gfx942", "amd-gfx90a", "nvidia-h100", "cpu"):
        write_host_root(base / kind, kind)
        found[kind] = str(base / kind)
    # a node with GPUs of both vendors
    both = base / "both"
    write_host_root(both, "amd-gfx942")
    FakeGpuSysfs(both / "sys").add_nvidia_gpu(bdf="0000:e1:00.0")
    fake_nvidia_smi(str(both / "usr" / "bin"), [("NVIDIA H100 80GB HBM3", "00000000:E1:00.0")])
    found["both"] = str(both)
    return found


def info(runner, root, **options):
    return runner(gpu_info, dict(options, host_root=root, node_name=options.pop("node_name", "node-1")))


@pytest.mark.parametrize("kind, vendor, arch, product, count", [
    ("amd-gfx942", "AMD", "gfx942", "AMD Instinct MI300X", 8),
    ("amd-gfx90a", "AMD", "gfx90a", "AMD Instinct MI250X", 8),
    ("nvidia-h100", "NVIDIA", "H100", "NVIDIA H100 80GB HBM3", 8),
    ("cpu", "NONE", "", "", 0),
])
def test_each_node_kind_is_detected_with_its_profile(roots, module_runner, kind, vendor, arch, product, count):
    result = info(module_runner, roots[kind])
    assert not result.failed, result.get("msg")
    profile = result["profile"]
    assert (profile["gpu_vendor"], profile["gpu_architecture"], profile["gpu_product"], profile["gpu_count"]) == (
        vendor, arch, product, count)
    assert profile["source"] == "detected" and profile["declared"] == {"gpu_vendor": "auto", "gpu_architecture": ""}
    assert result["ansible_facts"] == {"madengine_gpu": profile} and result["changed"] is False
    assert result["gpu"]["vendor"] == vendor and "warnings" not in result
    if vendor == "NVIDIA":
        assert (result["gpu"]["driver_version"], result["gpu"]["cuda_version"]) == ("550.54.15", "12.4")


def test_an_inventory_that_detection_contradicts_is_a_warning_and_detection_wins(roots, module_runner):
    result = info(module_runner, roots["amd-gfx90a"], gpu_vendor="AMD", gpu_arch="gfx942", node_name="mi300x-03")
    assert not result.failed and result["profile"]["gpu_architecture"] == "gfx90a"
    assert result["warnings"] == ["Node mi300x-03: the inventory declares madengine_gpu_arch gfx942, but detection "
                                  "found gfx90a (AMD Instinct MI250X); gfx90a is used (detection wins: correct the "
                                  "inventory)."]
    result = info(module_runner, roots["nvidia-h100"], gpu_vendor="AMD", node_name="h100-02")
    assert not result.failed and result["profile"]["gpu_vendor"] == "NVIDIA"
    assert result["warnings"] == ["Node h100-02: the inventory declares madengine_gpu_vendor AMD, but detection found "
                                  "8 NVIDIA GPUs; NVIDIA is used (detection wins: correct the inventory)."]


def test_a_declared_vendor_chooses_on_a_node_with_both_and_auto_is_refused_there(roots, module_runner):
    result = info(module_runner, roots["both"], gpu_vendor="NVIDIA")
    assert not result.failed and result["profile"]["gpu_vendor"] == "NVIDIA" and "warnings" not in result
    refused = info(module_runner, roots["both"], node_name="twin-01")
    assert refused.failed and refused["msg"] == ("Node twin-01: This node has 8 AMD and 1 NVIDIA GPUs; set gpu_vendor "
                                                 "to AMD or NVIDIA (madengine_gpu_vendor)")


def test_none_and_detection_off_read_nothing(roots, module_runner, tmp_path):
    result = info(module_runner, roots["amd-gfx942"], gpu_vendor="NONE")
    assert result["profile"]["gpu_vendor"] == "NONE" and result["gpu"] is None and "warnings" not in result
    # nothing is read: a host root that does not exist is no problem
    result = info(module_runner, str(tmp_path / "absent"), gpu_vendor="AMD", gpu_arch="gfx90a", detect=False)
    assert not result.failed and result["gpu"] is None
    assert (result["profile"]["gpu_vendor"], result["profile"]["source"]) == ("AMD", "inventory")
    refused = info(module_runner, str(tmp_path / "absent"), detect=False, node_name="n9")
    assert refused.failed and refused["msg"].startswith("Node n9: GPU detection is off (madengine_gpu_detect)")


def test_check_mode_detects_the_same(roots, module_runner):
    result = module_runner(gpu_info, {"host_root": roots["amd-gfx942"]}, check_mode=True)
    assert not result.failed and result["profile"]["gpu_architecture"] == "gfx942" and result["changed"] is False


def test_amd_gpus_outside_the_kfd_topology_take_their_architecture_from_the_inventory(module_runner, tmp_path):
    """GPUs bound to vfio-pci (a VM host between runs) show on the PCI bus only: the vendor is detected, the
    architecture is the inventory's."""
    sysfs = FakeGpuSysfs(tmp_path / "root" / "sys")
    for bdf in ("0000:11:00.0", "0000:21:00.0"):
        sysfs.add_pci_device(bdf, "0x1002", MI300X_DEVICE, "0x038000", "AMD Instinct MI300X")
    result = info(module_runner, str(tmp_path / "root"), gpu_vendor="AMD", gpu_arch="gfx942")
    assert not result.failed, result.get("msg")
    profile = result["profile"]
    assert (profile["gpu_vendor"], profile["gpu_architecture"], profile["gpu_count"], profile["source"]) == (
        "AMD", "gfx942", 2, "detected, architecture from the inventory")
    assert result["gpu"]["notes"] == ["2 AMD GPU(s) on the PCI bus are not in the KFD topology (amdgpu not bound to "
                                      "them); their architecture is unknown."]
    assert "warnings" not in result


def test_sysfs_root_wins_over_the_host_roots_sys(roots, module_runner, tmp_path):
    """A node whose runs read a sysfs elsewhere (madengine_run's sysfs_root) is detected from that sysfs too."""
    fs = FakeGpuSysfs(tmp_path / "sys").add_amd_gpu("gfx942").add_amd_gpu("gfx942")
    result = info(module_runner, roots["cpu"], sysfs_root=fs.root, gpu_vendor="AMD")
    assert not result.failed, result.get("msg")
    profile = result["profile"]
    assert (profile["gpu_vendor"], profile["gpu_architecture"], profile["gpu_count"]) == ("AMD", "gfx942", 2)
    assert info(module_runner, roots["cpu"])["profile"]["gpu_vendor"] == "NONE"
