"""gpu_passthrough through the AnsibleModule harness, against the fake kernel and the real /sys."""

from __future__ import annotations

import contextlib
import errno
import json
import os

import pytest
from fake_sysfs import FakeKernel, consumer_host, installed, mi300x_host, plan_ops

from ansible_collections.rocm.madengine.plugins.module_utils.host import hostfs as _hostfs
from ansible_collections.rocm.madengine.plugins.modules import gpu_passthrough

GPU = "0000:83:00.0"


@pytest.fixture
def use():
    with contextlib.ExitStack() as stack:
        yield lambda kernel: stack.enter_context(installed(kernel))


def args(kernel, tmp_path, **extra):
    out = {"host_root": kernel.root, "state_dir": str(tmp_path / "state"), "timeout": 2}
    out.update(extra)
    return out


def test_present_absent_query_cycle(tmp_path, use, module_runner):
    k = use(mi300x_host(tmp_path / "root", gpus=1, audio=True))
    before = k.snapshot()
    up = module_runner(gpu_passthrough, args(k, tmp_path, gpu_ids=["83:00.0"]))
    assert not up.failed and up["changed"] is True
    assert up["hostdevs"] == [GPU, "0000:83:00.1"] and up["mdevs"] == []
    assert up["state_files"] == [str(tmp_path / "state" / (b + ".json")) for b in (GPU, "0000:83:00.1")]
    assert up["clean"] is False and up["reboot_required"] is False
    assert plan_ops(up["plan"]) == k.ops()
    gpu = up["devices"][0]
    assert (gpu["bdf"], gpu["original_driver"], gpu["current_driver"], gpu["role"]) == (
        GPU, "amdgpu", "vfio-pci", "gpu")

    again = module_runner(gpu_passthrough, args(k, tmp_path, gpu_ids=["83:00.0"]))
    assert again["changed"] is False and again["plan"] == [] and again["hostdevs"] == up["hostdevs"]

    query = module_runner(gpu_passthrough, args(k, tmp_path, state="query"))
    assert query["changed"] is False and query["clean"] is False
    assert query["hostdevs"] == [GPU, "0000:83:00.1"]

    down = module_runner(gpu_passthrough, args(k, tmp_path, state="absent"))
    assert down["changed"] is True and down["clean"] is True and down["state_files"] == []
    assert k.snapshot() == before
    idle = module_runner(gpu_passthrough, args(k, tmp_path, state="absent"))
    assert idle["changed"] is False and idle["plan"] == []


def test_check_mode_predicts_the_exact_plan_and_writes_nothing(tmp_path, use, module_runner):
    k = use(consumer_host(tmp_path / "root"))
    before = k.snapshot()
    predicted = module_runner(gpu_passthrough, args(k, tmp_path, mode="sriov", gpu_ids=["03:00.0"], num_vfs=2),
                              check_mode=True)
    assert predicted["changed"] is True and k.log == [] and k.snapshot() == before
    assert not (tmp_path / "state").exists()
    real = module_runner(gpu_passthrough, args(k, tmp_path, mode="sriov", gpu_ids=["03:00.0"], num_vfs=2))
    assert predicted["plan"] == real["plan"] and plan_ops(real["plan"]) == k.ops()
    assert predicted["state_files"] == real["state_files"] and len(real["state_files"]) == 3
    assert predicted["hostdevs"] == real["hostdevs"] == ["0000:03:10.0", "0000:03:10.2"]


def test_diff_mode_shows_driver_and_vf_changes(tmp_path, use, module_runner):
    k = use(consumer_host(tmp_path / "root"))
    result = module_runner(gpu_passthrough, args(k, tmp_path, gpu_ids=["01:00.0"]), check_mode=True, diff=True)
    assert result["diff"] == {
        "before": "0000:01:00.0: driver=nvidia driver_override=(null)\n"
                  "0000:01:00.1: driver=snd_hda_intel driver_override=(null)\n",
        "after": "0000:01:00.0: driver=vfio-pci driver_override=vfio-pci\n"
                 "0000:01:00.1: driver=vfio-pci driver_override=vfio-pci\n",
    }
    sriov = module_runner(gpu_passthrough, args(k, tmp_path, mode="sriov", gpu_ids=["03:00.0"]), diff=True)
    assert "0000:03:00.0: driver=ixgbe driver_override=(null) sriov_numvfs=0\n" in sriov["diff"]["before"]
    assert "0000:03:00.0: driver=ixgbe driver_override=(null) sriov_numvfs=1\n" in sriov["diff"]["after"]
    assert "0000:03:10.0: driver=vfio-pci driver_override=vfio-pci\n" in sriov["diff"]["after"]
    quiet = module_runner(gpu_passthrough, args(k, tmp_path, mode="sriov", gpu_ids=["03:00.0"]), diff=True)
    assert "diff" not in quiet


def test_failure_reports_device_stage_errno_and_rollback(tmp_path, use, module_runner):
    k = use(mi300x_host(tmp_path / "root", gpus=2))
    before = k.snapshot()
    k.faults[5] = errno.EBUSY            # second GPU's probe
    result = module_runner(gpu_passthrough, args(k, tmp_path))
    assert result.failed
    assert result["failed_device"] == "0000:93:00.0" and result["stage"] == "probe" and result["errno"] == "EBUSY"
    assert result["rolled_back"] == ["0000:93:00.0", GPU] and result["rollback_errors"] == []
    assert result["msg"] == ("Binding 0000:93:00.0 to vfio-pci failed: Device or resource busy (EBUSY). "
                             "Restored: 0000:93:00.0, 0000:83:00.0.")
    assert [s["stage"] for s in result["plan"]][-7:] == [
        "restore_override", "reprobe", "forget",                # the failed GPU first
        "restore_override", "unbind", "reprobe", "forget"]      # then the one bound before it
    assert k.snapshot() == before and os.listdir(tmp_path / "state") == []


def test_dead_device_sets_reboot_required(tmp_path, use, module_runner):
    k = use(FakeKernel(tmp_path / "root"))
    k.add_driver("vfio-pci")
    k.add_device(GPU, vendor="0xffff", device="0xffff", cls="0x120000", group=3)
    result = module_runner(gpu_passthrough, args(k, tmp_path, gpu_ids=[GPU]))
    assert result.failed and result["reboot_required"] is True and result["failed_device"] == GPU
    assert "has fallen off the bus" in result["msg"]
    query = module_runner(gpu_passthrough, args(k, tmp_path, state="query", gpu_ids=[GPU]))
    assert not query.failed and query["devices"][0]["dead"] is True


@pytest.mark.parametrize("extra, message", [
    ({"count": 0}, "count must be at least 1, got 0."),
    ({"timeout": 0}, "timeout must be at least 1 second, got 0."),
    ({"gpu_ids": ["banana"]}, "'banana' is not a PCI address: expected DDDD:BB:DD.F (0000:83:00.0) or BB:DD.F "
                              "(83:00.0)."),
    ({"mode": "vgpu", "gpu_ids": [GPU]}, "mode vgpu needs vgpu_type (an mdev type such as nvidia-474, or its name)."),
])
def test_bad_input_fails_with_a_sentence(tmp_path, use, module_runner, extra, message):
    k = use(mi300x_host(tmp_path / "root", gpus=1))
    result = module_runner(gpu_passthrough, args(k, tmp_path, **extra))
    assert result.failed and result["msg"] == message and k.log == []


def test_bad_host_root(tmp_path, module_runner):
    result = module_runner(gpu_passthrough, {"host_root": str(tmp_path), "state_dir": str(tmp_path / "s")})
    assert result.failed and result["msg"] == "host_root %s has no sys/bus/pci directory." % tmp_path


def test_sysfs_root_is_the_old_name_of_host_root_and_any_of_auto(tmp_path, use, module_runner):
    k = use(mi300x_host(tmp_path / "root", gpus=1))
    for vendor in ("any", "auto", "NONE", "AMD"):
        result = module_runner(gpu_passthrough, {"sysfs_root": k.root, "state_dir": str(tmp_path / "state"),
                                                 "state": "query", "gpu_vendor": vendor})
        assert not result.failed, result["msg"]
        assert [d["bdf"] for d in result["devices"]] == [GPU], vendor
    other = module_runner(gpu_passthrough, {"host_root": k.root, "state_dir": str(tmp_path / "state"),
                                            "state": "query", "gpu_vendor": "NVIDIA"})
    assert other["devices"] == []


def test_state_files_are_private_and_complete(tmp_path, use, module_runner):
    k = use(mi300x_host(tmp_path / "root", gpus=1))
    module_runner(gpu_passthrough, args(k, tmp_path, gpu_ids=[GPU]))
    path = tmp_path / "state" / (GPU + ".json")
    assert oct(os.stat(tmp_path / "state").st_mode & 0o777) == "0o700"
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    record = json.loads(path.read_text())
    assert {k: record[k] for k in ("key", "bdf", "role", "mode", "original_driver", "original_override",
                                   "target_driver", "vendor", "device", "version")} == {
        "key": GPU, "bdf": GPU, "role": "gpu", "mode": "vfio", "original_driver": "amdgpu", "original_override": None,
        "target_driver": "vfio-pci", "vendor": "0x1002", "device": "0x74a1", "version": 1}


def test_absent_from_another_process_with_only_the_state_dir(tmp_path, use, module_runner):
    """The second call shares nothing with the first but the state directory (like a new ansible run)."""
    k = use(mi300x_host(tmp_path / "root", gpus=2, audio=True))
    before = k.snapshot()
    module_runner(gpu_passthrough, args(k, tmp_path, gpu_vendor="AMD", count=1))
    result = module_runner(gpu_passthrough, {"state": "absent", "host_root": k.root,
                                             "state_dir": str(tmp_path / "state")})
    assert result["changed"] and k.snapshot() == before


def test_absent_for_one_gpu_keeps_the_others(tmp_path, use, module_runner):
    k = use(mi300x_host(tmp_path / "root", gpus=2, audio=True))
    module_runner(gpu_passthrough, args(k, tmp_path))
    result = module_runner(gpu_passthrough, args(k, tmp_path, state="absent", gpu_ids=["93:00.0"]))
    assert sorted(d["bdf"] for d in result["devices"]) == ["0000:93:00.0", "0000:93:00.1"]
    assert k.driver_of(GPU) == "vfio-pci" and k.driver_of("0000:93:00.0") == "amdgpu"
    assert k.driver_of("0000:93:00.1") == "snd_hda_intel"


# ------------------------------------------------------------------------------------------ the real host


def _real_gpus():
    """GPUs on this machine, by an independent reading of /sys (AMD/NVIDIA, class 0x03 or 0x12)."""
    found = []
    base = "/sys/bus/pci/devices"
    for name in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        with open(os.path.join(base, name, "vendor")) as vendor, open(os.path.join(base, name, "class")) as cls:
            if vendor.read().strip() in ("0x1002", "0x10de") and int(cls.read(), 16) >> 16 in (0x03, 0x12):
                found.append(name)
    return found


def _driver_links():
    base = "/sys/bus/pci/devices"
    return {n: os.path.realpath(os.path.join(base, n, "driver")) for n in sorted(os.listdir(base))}


@pytest.mark.skipif(not os.path.isdir("/sys/bus/pci/devices"), reason="no PCI sysfs on this machine")
def test_query_of_the_real_sys_is_read_only(tmp_path, module_runner):
    before = _driver_links()
    result = module_runner(gpu_passthrough, {"state": "query", "state_dir": str(tmp_path / "state")})
    assert not result.failed, result.get("msg")
    assert [d["bdf"] for d in result["devices"]] == _real_gpus()
    assert result["changed"] is False and result["plan"] == [] and result["clean"] is True
    assert _driver_links() == before and not (tmp_path / "state").exists()


@pytest.mark.skipif(not os.path.isdir("/sys/bus/pci/devices") or _real_gpus(), reason="this machine has GPUs")
def test_present_on_a_machine_without_gpus_fails_cleanly(tmp_path, module_runner):
    before = _driver_links()
    result = module_runner(gpu_passthrough, {"state_dir": str(tmp_path / "state")}, check_mode=True)
    assert result.failed and result["msg"].startswith("No GPU found: no AMD or NVIDIA PCI function")
    assert _driver_links() == before and not (tmp_path / "state").exists()


def test_edges_are_the_only_writers(tmp_path):
    """Without the fake kernel, writes go to the file itself with one write(): what sysfs expects."""
    target = tmp_path / "attr"
    target.write_text("old")
    _hostfs.write_attr(str(target), "vfio-pci")
    assert target.read_text() == "vfio-pci"
    with pytest.raises(OSError) as info:
        _hostfs.write_attr(str(tmp_path / "missing"), "x")
    assert info.value.errno == errno.ENOENT and not (tmp_path / "missing").exists()


def test_absent_keeps_a_device_whose_vfio_group_a_process_holds(tmp_path, use, module_runner):
    """QEMU that did not exit still holds the group: the GPU is not rebound, the reason and the state file are kept."""
    from vm_helpers import hold_vfio

    k = use(mi300x_host(tmp_path / "root", gpus=2))
    up = module_runner(gpu_passthrough, args(k, tmp_path))
    assert up["leftovers"] == ["the GPU state file %s" % p for p in up["state_files"]]
    hold_vfio(k.root, 4242, 40)
    k.log.clear()
    down = module_runner(gpu_passthrough, args(k, tmp_path, state="absent"))
    assert down.failed
    refusal = ("0000:83:00.0 was not given back: /dev/vfio/40 (its IOMMU group) is still open by PID 4242; stop the "
               "VM that uses it, then run state=absent again.")
    assert down["msg"] == "Restoring failed for 1 device(s): " + refusal
    assert down["leftovers"] == [refusal, "the GPU state file %s" % (tmp_path / "state" / (GPU + ".json"))]
    assert k.driver_of(GPU) == "vfio-pci" and k.driver_of("0000:93:00.0") == "amdgpu"
    assert [e for e in k.log if GPU in e[1]] == []  # not one write to the held GPU
    os.unlink(os.path.join(k.root, "proc", "4242", "fd", "17"))
    again = module_runner(gpu_passthrough, args(k, tmp_path, state="absent"))
    assert not again.failed and again["leftovers"] == [] and again["clean"] is True
    assert k.driver_of(GPU) == "amdgpu"
