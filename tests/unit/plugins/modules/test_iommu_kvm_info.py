"""iommu_kvm_info through the AnsibleModule harness on this machine's real /proc and /sys."""

from __future__ import annotations

import os
import re

import pytest

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
    assert status["iommu"] == ("pass" if _iommu_active() else "fail")
    assert result["ready"] == (not result["failures"])
    assert len(result["failures"]) == list(status.values()).count("fail")
    assert all(" Fix: " in f for f in result["failures"])
    assert len(result["report"]) == 20
    checked = module_runner(iommu_kvm_info, {"image_dir": str(tmp_path)}, check_mode=True)
    assert {c["name"]: c["status"] for c in checked["checks"]} == status


@pytest.mark.parametrize("option", ["vm_memory_mb", "disk_size_gb", "timeout"])
def test_bad_numbers(module_runner, option):
    result = module_runner(iommu_kvm_info, {option: 0})
    assert result.failed and result["msg"] == "%s must be at least 1, got 0." % option
