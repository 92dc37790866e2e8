"""iommu_kvm_info through the AnsibleModule harness on this machine's real /proc and /sys."""

from __future__ import annotations

import os
import re

import pytest
from vm_helpers import fake_host, make_base

from ansible_collections.rocm.madengine.plugins.modules import iommu_kvm_info


def _has_virtualisation():
    with open("/proc/cpuinfo") as handle:
        return re.search(r"^flags\s*:.*\b(vmx|svm)\b", handle.read(), re.M) is not None


def _iommu_active():
    return bool(os.listdir("/sys/class/iommu")) and bool(os.listdir("/sys/kernel/iommu_groups"))


@pytest.mark.skipif(not os.path.isdir("/sys/class/iommu"), reason="needs a Linux sysfs")
def test_real_host_report_matches_the_machine(module_runner, tmp_path):
    result = module_runner(iommu_kvm_info, {"image_dir": str(tmp_path)})
    assert not result.failed, result.get("msg")
    assert result["changed"] is False
    status = {c["name"]: c["status"] for c in result["checks"]}
    assert [c["id"] for c in result["checks"]] == list(range(1, 21))
    assert status["cpu_virtualization"] == ("pass" if _has_virtualisation() else "fail")
    assert status["iommu_enabled"] == ("pass" if _iommu_active() else "fail")
    assert result["ready"] == (not result["failures"])
    assert len(result["failures"]) == list(status.values()).count("fail")
    assert all(" Fix: " in f for f in result["failures"])
    assert len(result["report"]) == 20
    checked = module_runner(iommu_kvm_info, {"image_dir": str(tmp_path)}, check_mode=True)
    assert {c["name"]: c["status"] for c in checked["checks"]} == status


@pytest.mark.parametrize("option, value, message", [
    ("timeout", 0, "timeout must be at least 1, got 0."),
    ("memory", "lots", "memory must be a size such as 8G or 8192M, not 'lots'."),
    ("vm_memory_mb", 0, "memory must be larger than zero, not '0'."),
    ("disk_size_gb", "-1", "disk_size must be a size such as 8G or 8192M, not '-1'."),
    ("hugepage_size", "1X", "hugepage_size must be a size such as 8G or 8192M, not '1X'."),
])
def test_bad_numbers(module_runner, option, value, message):
    result = module_runner(iommu_kvm_info, {option: value})
    assert result.failed and result["msg"] == message


def _node(tmp_path, memory_kib=8 << 20):
    """A host root with /proc (8 GiB available, no vmx), a base image and an image directory under it."""
    root = fake_host(str(tmp_path / "node"))
    with open(os.path.join(root, "proc", "meminfo"), "w") as handle:
        handle.write("MemTotal: %d kB\nMemAvailable: %d kB\n" % (memory_kib, memory_kib))
    os.makedirs(os.path.join(root, "var/lib/libvirt/images"))
    make_base(os.path.join(root, "var/lib/libvirt/images/base.qcow2"), "2G")
    return root


def test_only_the_checks_asked_for_run_under_the_host_root(tmp_path, module_runner):
    root = _node(tmp_path)
    args = {"host_root": root, "checks": ["memory_available", "base_image", "cpu_virtualization"],
            "base_image": "/var/lib/libvirt/images/base.qcow2", "memory": "6G", "disk_size": "4G"}
    result = module_runner(iommu_kvm_info, args)
    assert not result.failed, result.get("msg")
    assert [(c["id"], c["name"], c["status"]) for c in result["checks"]] == [
        (1, "cpu_virtualization", "fail"), (10, "base_image", "pass"), (11, "memory_available", "pass")]
    assert result["checks"][1]["detail"] == "Base image /var/lib/libvirt/images/base.qcow2 is qcow2, 2 GiB virtual."
    assert result["checks"][2]["detail"] == "8192 MiB available for a 6144 MiB VM."
    assert result["report"][0].startswith("FAIL [1] cpu_virtualization: /proc/cpuinfo has neither the vmx")
    assert result["ready"] is False and len(result["failures"]) == 1
    assert result["kernel_args"] == ["iommu=pt"] and result["blacklist"] == []


def test_sizes_and_their_old_names(tmp_path, module_runner):
    """memory and disk_size take sizes; vm_memory_mb (MiB) and disk_size_gb (GiB) are their older names."""
    root = _node(tmp_path)
    base = {"host_root": root, "checks": ["memory_available", "base_image"],
            "base_image": "/var/lib/libvirt/images/base.qcow2"}
    for sizes in ({"memory": "16G", "disk_size": "1G"}, {"vm_memory_mb": 16384, "disk_size_gb": 1},
                  {"memory": 16384, "disk_size": "1"}):
        result = module_runner(iommu_kvm_info, dict(base, **sizes))
        assert [c["detail"] for c in result["checks"]] == [
            "Base image /var/lib/libvirt/images/base.qcow2: its virtual size (2 GiB) exceeds the VM disk size (1 GiB): "
            "the guest would see a truncated disk.",
            "8192 MiB available, the VM needs 16384 MiB (VFIO pins all guest memory)."], sizes


def test_unknown_check_names_are_refused(module_runner):
    result = module_runner(iommu_kvm_info, {"checks": ["iommu", "kvm_usable"]})
    assert result.failed and "value of checks must be one or more of: cpu_virtualization, kvm_usable" in result["msg"]
    assert "Got no match for: iommu" in result["msg"]
