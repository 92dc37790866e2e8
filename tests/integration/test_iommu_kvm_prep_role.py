"""The iommu_kvm_prep role from the installed collection: its molecule scenario, inputs and facts."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import COLLECTION_DIR, ansible_env, run_playbook, task_results

PLAYBOOK = os.path.join(os.path.dirname(__file__), "playbooks", "iommu_kvm_prep.yml")
ROLE_DIR = os.path.join(COLLECTION_DIR, "roles", "iommu_kvm_prep")


@pytest.mark.slow
def test_molecule_scenario_reports_what_this_machine_lacks():
    """syntax, converge (validate, then apply into a scratch root), idempotence, verify."""
    env = ansible_env(PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
                      NO_COLOR="1", PY_COLORS="0", ANSIBLE_FORCE_COLOR="0",
                      ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default")
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "molecule"), "test"], cwd=ROLE_DIR,
                          env=env, capture_output=True, text=True, timeout=900, check=False)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    for action in ("syntax", "converge", "idempotence", "verify"):
        assert re.search(r"%s\S*: \S*Executed: Successful" % action, re.sub(r"\x1b\[[0-9;]*m", "", log)), action


def test_role_reports_without_failing_when_asked():
    rc, out, log = run_playbook(PLAYBOOK, extra_vars={"iommu_kvm_prep_fail": False})
    assert rc == 0, log
    facts = task_results(out, "Facts set by the role")["localhost"]["msg"]
    assert [c["id"] for c in facts["report"]] == list(range(1, 21))
    assert facts["ready"] == (facts["failures"] == [])
    assert facts["reboot_required"] is False
    with open("/proc/cpuinfo") as handle:
        has_vmx = re.search(r"\b(vmx|svm)\b", handle.read()) is not None
    status = {c["name"]: c["status"] for c in facts["report"]}
    assert status["cpu_virtualization"] == ("pass" if has_vmx else "fail")


@pytest.mark.parametrize("extra, message", [
    ({"iommu_kvm_prep_mode": "pci"}, "value of iommu_kvm_prep_mode must be one of: vfio, sriov, vgpu, none, got: pci"),
    ({"iommu_kvm_prep_vm_memory_mb": "lots"}, "iommu_kvm_prep_vm_memory_mb"),
    ({"iommu_kvm_prep_checks": ["iommu"]}, "value of iommu_kvm_prep_checks must be one or more of: cpu_virtualization"),
    ({"iommu_kvm_prep_vm_memory": "lots"}, "memory must be a size such as 8G or 8192M, not 'lots'."),
])
def test_role_rejects_bad_input(extra, message):
    rc, _out, log = run_playbook(PLAYBOOK, extra_vars=extra)
    assert rc != 0 and message in log


def test_apply_mode_refuses_to_reboot_the_control_node(tmp_path):
    rc, out, log = run_playbook(PLAYBOOK, extra_vars={
        "iommu_kvm_prep_apply": True, "iommu_kvm_prep_allow_reboot": True, "iommu_kvm_prep_install_packages": False,
        "iommu_kvm_prep_config_root": str(tmp_path), "iommu_kvm_prep_fail": False})
    assert rc == 0, log
    facts = task_results(out, "Facts set by the role")["localhost"]["msg"]
    assert (tmp_path / "etc/default/grub.d/60-rocm-madengine-iommu.cfg").is_file()
    assert (tmp_path / "etc/modprobe.d/rocm-madengine-vfio.conf").is_file()
    assert facts["reboot_required"] == (not facts["ready"])
    reboot = task_results(out, "rocm.madengine.iommu_kvm_prep : Reboot into the new configuration")["localhost"]
    assert reboot.get("skipped") is True and not reboot.get("changed")
    if facts["reboot_required"]:
        assert facts["reboot_note"].endswith("refusing to reboot the control node; reboot it yourself.")


def test_role_runs_the_checks_asked_for_with_sizes_and_old_size_names(tmp_path):
    base = {"iommu_kvm_prep_fail": False, "iommu_kvm_prep_image_dir": str(tmp_path),
            "iommu_kvm_prep_checks": ["memory_available"]}
    for sizes, memory in (({"iommu_kvm_prep_vm_memory": "3G"}, 3072), ({"iommu_kvm_prep_vm_memory_mb": 2048}, 2048)):
        rc, out, log = run_playbook(PLAYBOOK, extra_vars=dict(base, **sizes))
        assert rc == 0, log
        facts = task_results(out, "Facts set by the role")["localhost"]["msg"]
        assert [c["name"] for c in facts["report"]] == ["memory_available"]
        assert facts["report"][0]["detail"].endswith("for a %d MiB VM." % memory) or \
            facts["report"][0]["detail"].endswith("the VM needs %d MiB (VFIO pins all guest memory)." % memory)


def test_mode_none_checks_what_a_vm_without_passthrough_needs():
    rc, out, log = run_playbook(PLAYBOOK, extra_vars={"iommu_kvm_prep_mode": "none", "iommu_kvm_prep_fail": False,
                                                      "iommu_kvm_prep_network_type": "user"})
    assert rc == 0, log
    facts = task_results(out, "Facts set by the role")["localhost"]["msg"]
    assert [c["name"] for c in facts["report"]] == ["libvirt_reachable", "vm_tools", "base_image", "memory_available",
                                                    "disk_space", "libvirt_network"]
    assert [c["status"] for c in facts["report"]][2:] == ["skip", "pass", "pass", "skip"]
