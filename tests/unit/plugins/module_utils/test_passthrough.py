"""The passthrough engine against the fake kernel: sequences, restore, policies, errors, rollback."""

from __future__ import annotations

import contextlib
import errno
import json
import os

import pytest
from fake_sysfs import FakeKernel, SimulatedCrash, consumer_host, engine, installed, mi300x_host, plan_ops

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError
from ansible_collections.rocm.madengine.plugins.module_utils.host.passthrough.engine import DeadDeviceError, StepError

GPU = "0000:83:00.0"
GPU2 = "0000:93:00.0"


@pytest.fixture
def use():
    with contextlib.ExitStack() as stack:
        yield lambda kernel: stack.enter_context(installed(kernel))


@pytest.fixture
def state(tmp_path):
    return tmp_path / "state"


def run(kernel, state, action, ids=(), **options):
    e = engine(kernel, state, **options)
    getattr(e, action)(list(ids))
    return e


def writes(plan):
    return [(s["stage"], s["path"], s.get("value")) for s in plan if s["op"] == "write"]


# ------------------------------------------------------------------------------------------ vfio


def test_vfio_sequence_is_override_unbind_probe_and_absent_restores(tmp_path, state, use):
    k = use(mi300x_host(tmp_path / "root", gpus=1))
    before = k.snapshot()
    e = run(k, state, "present", [GPU])
    assert writes(e.plan) == [
        ("override", "/sys/bus/pci/devices/%s/driver_override" % GPU, "vfio-pci"),
        ("unbind", "/sys/bus/pci/drivers/amdgpu/unbind", GPU),
        ("probe", "/sys/bus/pci/drivers_probe", GPU),
    ]
    assert e.plan[0] == {"op": "record", "stage": "record", "device": GPU, "path": str(state / (GPU + ".json"))}
    assert k.driver_of(GPU) == "vfio-pci" and os.path.exists(k.p("dev/vfio/40"))
    assert e.hostdevs == [GPU] and e.changed
    saved = json.loads((state / (GPU + ".json")).read_text())
    assert saved["original_driver"] == "amdgpu" and saved["original_override"] is None
    assert saved["role"] == "gpu" and saved["target_driver"] == "vfio-pci"
    device = e.devices[0]
    assert device["current_driver"] == "vfio-pci" and device["original_driver"] == "amdgpu"
    assert device["class"] == "0x120000" and device["iommu_group"] == "40" and device["group_members"] == [GPU]

    back = run(k, state, "absent")
    assert writes(back.plan) == [
        ("restore_override", "/sys/bus/pci/devices/%s/driver_override" % GPU, "\n"),
        ("unbind", "/sys/bus/pci/drivers/vfio-pci/unbind", GPU),
        ("reprobe", "/sys/bus/pci/drivers_probe", GPU),
    ]
    assert k.snapshot() == before
    assert os.listdir(state) == []


def test_short_and_upper_case_addresses_are_normalised(tmp_path, state, use):
    k = use(mi300x_host(tmp_path / "root", gpus=1))
    e = run(k, state, "present", ["83:00.0", "0000:83:00.0".upper()])
    assert e.hostdevs == [GPU]


@pytest.mark.parametrize("raw, message", [
    ("zz:00.0", r"is not a PCI address: expected DDDD:BB:DD.F"),
    ("0000:83:00", r"is not a PCI address: expected DDDD:BB:DD.F"),
    ("83.00.0", r"is not a PCI address: expected DDDD:BB:DD.F"),
    ("0000:83:20.0", r"^'0000:83:20.0' has slot 0x20; PCI slots go up to 0x1f\.$"),
])
def test_bad_address_is_a_sentence(tmp_path, state, use, raw, message):
    k = use(mi300x_host(tmp_path / "root", gpus=1))
    with pytest.raises(MadengineError, match=message):
        run(k, state, "present", [raw])
    assert k.log == []


def test_blank_addresses_mean_discovery(tmp_path, state, use):
    """An empty comma-separated string (an AWX survey left empty) is no address at all."""
    k = use(mi300x_host(tmp_path / "root", gpus=2))
    assert engine(k, state).select(["", " "]) == [GPU, GPU2]


def test_missing_device_and_wrong_vendor(tmp_path, state, use):
    k = use(mi300x_host(tmp_path / "root", gpus=1))
    with pytest.raises(MadengineError, match=r"PCI device 0000:84:00.0 does not exist \(no /sys/bus/pci/devices/"):
        run(k, state, "present", ["84:00.0"])
    with pytest.raises(MadengineError, match=r"PCI device 0000:83:00.0 has vendor 0x1002, not NVIDIA \(0x10de\)"):
        run(k, state, "present", [GPU], gpu_vendor="NVIDIA")
    assert k.log == []


def _mixed_host(root):
    k = FakeKernel(root)
    k.add_driver("vfio-pci")
    k.add_device("0000:00:02.0", vendor="0x1002", device="0x164e", cls="0x030000", driver="amdgpu", group=1,
                 boot_vga=True)
    k.add_device("0000:03:00.0", vendor="0x8086", device="0x56a0", cls="0x030000", driver="i915", group=2,
                 boot_vga=False)
    k.add_device("0000:83:00.0", vendor="0x1002", device="0x74a1", cls="0x120000", driver="amdgpu", group=3)
    k.add_device("0000:84:00.0", vendor="0x1002", device="0x740f", cls="0x038000", driver="amdgpu", group=4)
    k.add_device("0000:a1:00.0", vendor="0x10de", device="0x2330", cls="0x030200", driver="nvidia", group=5)
    k.add_device("0000:a1:00.1", vendor="0x10de", device="0x22a3", cls="0x040300", driver="snd_hda_intel", group=5)
    k.add_device("0000:b0:00.0", vendor="0x1002", device="0x1478", cls="0x060400", driver="pcieport", group=6)
    return k


def test_discovery_by_vendor_and_class_skips_boot_vga(tmp_path, state, use):
    k = use(_mixed_host(tmp_path / "root"))
    assert engine(k, state).select([]) == ["0000:83:00.0", "0000:84:00.0", "0000:a1:00.0"]
    assert engine(k, state, gpu_vendor="AMD").select([]) == ["0000:83:00.0", "0000:84:00.0"]
    assert engine(k, state, gpu_vendor="NVIDIA").select([]) == ["0000:a1:00.0"]
    assert engine(k, state, exclude_boot_vga=False).select([])[0] == "0000:00:02.0"
    assert engine(k, state, count=2).select([]) == ["0000:83:00.0", "0000:84:00.0"]
    with pytest.raises(MadengineError, match=r"count is 4 but only 3 GPU\(s\) were found"):
        engine(k, state, count=4).select([])


def test_boot_vga_given_explicitly_is_refused(tmp_path, state, use):
    k = use(_mixed_host(tmp_path / "root"))
    with pytest.raises(MadengineError, match=r"0000:00:02.0 is the boot VGA device \(the host console\)"):
        run(k, state, "present", ["00:02.0"])
    assert k.log == []
    e = run(k, state, "present", ["00:02.0"], exclude_boot_vga=False)
    assert e.hostdevs == ["0000:00:02.0"]


def test_no_gpu_found(tmp_path, state, use):
    k = use(FakeKernel(tmp_path / "root"))
    k.add_device("0000:00:03.0", vendor="0x1af4", device="0x1000", cls="0x020000", driver="virtio-pci")
    with pytest.raises(MadengineError, match=r"No GPU found: no AMD or NVIDIA PCI function with class 0x03xxxx or "
                                             r"0x12xxxx under /sys/bus/pci/devices"):
        run(k, state, "present")


def test_second_present_changes_nothing(tmp_path, state, use):
    k = use(mi300x_host(tmp_path / "root", gpus=2, audio=True))
    first = run(k, state, "present")
    assert first.changed and len(first.hostdevs) == 4
    writes_before = k.writes
    second = run(k, state, "present")
    assert not second.changed and second.plan == [] and k.writes == writes_before
    assert second.hostdevs == first.hostdevs


def test_device_already_on_vfio_is_recorded_not_rebound(tmp_path, state, use):
    k = use(FakeKernel(tmp_path / "root"))
    k.add_device(GPU, cls="0x120000", driver="vfio-pci", group=7, override="vfio-pci")
    e = run(k, state, "present", [GPU])
    assert [s["op"] for s in e.plan] == ["record"] and k.writes == 0
    assert json.loads((state / (GPU + ".json")).read_text())["original_driver"] == "vfio-pci"
    back = run(k, state, "absent")
    assert writes(back.plan) == [] and k.driver_of(GPU) == "vfio-pci"


def test_unbound_device_is_left_unbound_on_restore(tmp_path, state, use):
    k = use(FakeKernel(tmp_path / "root"))
    k.add_driver("vfio-pci")
    k.add_driver("amdgpu")
    k.add_device(GPU, cls="0x120000", driver=None, matches=["amdgpu"], group=7)
    e = run(k, state, "present", [GPU])
    assert [w[0] for w in writes(e.plan)] == ["override", "probe"]
    back = run(k, state, "absent")
    assert [w[0] for w in writes(back.plan)] == ["restore_override", "unbind"]
    assert k.driver_of(GPU) is None and k.override_of(GPU) is None


def test_a_persisted_override_is_written_back(tmp_path, state, use):
    k = use(FakeKernel(tmp_path / "root"))
    k.add_driver("vfio-pci")
    k.add_device(GPU, cls="0x120000", driver="amdgpu", override="amdgpu", group=7)
    run(k, state, "present", [GPU])
    back = run(k, state, "absent")
    assert writes(back.plan)[0] == ("restore_override", "/sys/bus/pci/devices/%s/driver_override" % GPU, "amdgpu")
    assert k.driver_of(GPU) == "amdgpu" and k.override_of(GPU) == "amdgpu"


# ------------------------------------------------------------------------------------------ groups


def test_include_functions_binds_the_audio_function(tmp_path, state, use):
    k = use(consumer_host(tmp_path / "root"))
    e = run(k, state, "present", ["01:00.0"])
    assert e.hostdevs == ["0000:01:00.0", "0000:01:00.1"]
    assert k.driver_of("0000:01:00.1") == "vfio-pci"
    assert k.driver_of("0000:00:01.0") == "pcieport"     # the bridge in the group is left alone


def test_group_policy_fail_names_the_offender_and_changes_nothing(tmp_path, state, use):
    k = use(consumer_host(tmp_path / "root"))
    before = k.snapshot()
    with pytest.raises(MadengineError) as info:
        run(k, state, "present", ["01:00.0"], include_functions=False)
    assert str(info.value) == (
        "IOMMU group 2 of 0000:01:00.0 is not viable for VFIO: 0000:01:00.1 (snd_hda_intel) shares it with a host "
        "driver. Bind it too (group_policy: bind, or include_functions: true for functions of the same card), move "
        "the card to another slot, or enable ACS in the firmware.")
    assert k.log == [] and k.snapshot() == before and not state.exists()


def test_group_policy_bind_binds_members_but_does_not_pass_them(tmp_path, state, use):
    k = use(consumer_host(tmp_path / "root"))
    before = k.snapshot()
    e = run(k, state, "present", ["01:00.0"], include_functions=False, group_policy="bind")
    assert e.hostdevs == ["0000:01:00.0"]
    assert k.driver_of("0000:01:00.1") == "vfio-pci"
    assert json.loads((state / "0000:01:00.1.json").read_text())["role"] == "group"
    run(k, state, "absent", ["01:00.0"])
    assert k.snapshot() == before


def test_group_policy_ignore_warns(tmp_path, state, use):
    k = use(consumer_host(tmp_path / "root"))
    e = run(k, state, "present", ["01:00.0"], include_functions=False, group_policy="ignore")
    assert e.hostdevs == ["0000:01:00.0"] and k.driver_of("0000:01:00.1") == "snd_hda_intel"
    assert e.warnings == ["IOMMU group 2 of 0000:01:00.0 is not viable for VFIO: 0000:01:00.1 (snd_hda_intel) "
                          "still use host drivers; QEMU will refuse the device until they are unbound."]


def test_unrelated_endpoint_in_the_group_blocks(tmp_path, state, use):
    k = use(mi300x_host(tmp_path / "root", gpus=1))
    k.add_device("0000:83:00.3", vendor="0x8086", device="0x10fb", cls="0x020000", driver="ixgbe", group=40)
    k.add_device("0000:85:00.0", vendor="0x8086", device="0x0953", cls="0x010802", driver=None, group=40)
    with pytest.raises(MadengineError, match=r"IOMMU group 40 of 0000:83:00.0 is not viable for VFIO: "
                                             r"0000:83:00.3 \(ixgbe\) shares it"):
        run(k, state, "present", [GPU], include_functions=False)


def test_no_iommu_group_is_reported_before_any_write(tmp_path, state, use):
    k = use(FakeKernel(tmp_path / "root"))
    k.add_driver("vfio-pci")
    k.add_device(GPU, cls="0x120000", driver="amdgpu")
    with pytest.raises(MadengineError, match=r"PCI device 0000:83:00.0 has no IOMMU group: the IOMMU is off"):
        run(k, state, "present", [GPU])
    assert k.log == []


def test_dead_device_requires_a_reboot(tmp_path, state, use):
    k = use(FakeKernel(tmp_path / "root"))
    k.add_driver("vfio-pci")
    k.add_device(GPU, vendor="0xffff", device="0xffff", cls="0x120000", driver=None, group=7)
    with pytest.raises(DeadDeviceError, match=r"0000:83:00.0 reads vendor 0xffff: it has fallen off the bus .* "
                                              r"only a host reboot brings it back"):
        run(k, state, "present", [GPU])
    assert k.log == []


# ------------------------------------------------------------------------------------------ modules


def test_vfio_pci_is_loaded_when_missing(tmp_path, state, use):
    k = use(FakeKernel(tmp_path / "root"))
    k.add_device(GPU, cls="0x120000", driver="amdgpu", group=7)
    e = run(k, state, "present", [GPU])
    assert e.plan[0] == {"op": "command", "stage": "modprobe", "device": None, "argv": ["modprobe", "vfio-pci"]}
    assert k.driver_of(GPU) == "vfio-pci"


def test_load_modules_false_fails_clearly(tmp_path, state, use):
    k = use(FakeKernel(tmp_path / "root"))
    k.add_device(GPU, cls="0x120000", driver="amdgpu", group=7)
    with pytest.raises(MadengineError, match=r"Driver vfio-pci is not registered \(/sys/bus/pci/drivers/vfio-pci is "
                                             r"missing\) and load_modules is false"):
        run(k, state, "present", [GPU], load_modules=False)
    assert k.log == []


def test_modprobe_failure_is_reported(tmp_path, state, use):
    k = use(mi300x_host(tmp_path / "root", gpus=1))
    with pytest.raises(StepError, match=r"modprobe amd-vfio-pcx failed \(rc 1\): modprobe: FATAL: Module "
                                        r"amd-vfio-pcx not found"):
        run(k, state, "present", [GPU], driver="amd-vfio-pcx")
    assert k.driver_of(GPU) == "amdgpu"


# ------------------------------------------------------------------------------------------ failures


def test_probe_that_binds_nothing_is_caught_and_rolled_back(tmp_path, state, use):
    k = use(mi300x_host(tmp_path / "root", gpus=1))
    before = k.snapshot()
    k.fail_probe.add((GPU, "vfio-pci"))
    with pytest.raises(StepError) as info:
        run(k, state, "present", [GPU], timeout=1)
    assert str(info.value) == "drivers_probe reported success but 0000:83:00.0 is left without a driver, not bound " \
                              "to vfio-pci."
    assert info.value.stage == "probe" and info.value.device == GPU
    assert info.value.rolled_back == [GPU]
    assert k.snapshot() == before and os.listdir(state) == []


def test_busy_unbind_times_out_with_a_hint(tmp_path, state, use):
    k = use(mi300x_host(tmp_path / "root", gpus=1))
    k.hang_unbind.add(GPU)
    with pytest.raises(StepError) as info:
        run(k, state, "present", [GPU], timeout=1)
    message = str(info.value)
    assert message.startswith("Writing '0000:83:00.0' to /sys/bus/pci/drivers/amdgpu/unbind did not finish within 1 s.")
    assert "stop the processes that use the GPU" in message
    assert info.value.errno == errno.ETIMEDOUT and info.value.stage == "unbind"
    assert k.override_of(GPU) is None                      # the override was put back
    assert os.listdir(state) == []


def test_failure_on_device_k_restores_devices_before_it(tmp_path, state, use):
    k = use(mi300x_host(tmp_path / "root", gpus=3))
    before = k.snapshot()
    k.faults[7] = errno.EIO              # writes 0-2: GPU 1, 3-5: GPU 2, 6: GPU 3 override, 7: GPU 3 unbind
    with pytest.raises(StepError) as info:
        run(k, state, "present")
    assert info.value.device == "0000:a3:00.0" and info.value.stage == "unbind" and info.value.errno == errno.EIO
    assert str(info.value) == "Unbinding 0000:a3:00.0 from amdgpu failed: Input/output error (EIO)."
    assert info.value.rolled_back == ["0000:a3:00.0", GPU2, GPU]
    assert k.snapshot() == before and os.listdir(state) == []


def test_absent_after_a_crash_from_a_new_process(tmp_path, state, use):
    k = use(mi300x_host(tmp_path / "root", gpus=2, audio=True))
    before = k.snapshot()
    k.faults[5] = SimulatedCrash()       # killed in the middle of the second function
    with pytest.raises(SimulatedCrash):
        run(k, state, "present")
    assert sorted(os.listdir(state)) == ["0000:83:00.0.json", "0000:83:00.1.json"]
    assert k.snapshot() != before
    k.faults.clear()
    run(k, state, "absent")
    assert k.snapshot() == before and os.listdir(state) == []


def test_absent_without_a_record_leaves_a_vfio_device_and_warns(tmp_path, state, use):
    k = use(FakeKernel(tmp_path / "root"))
    k.add_device(GPU, cls="0x120000", driver="vfio-pci", group=7)
    e = run(k, state, "absent", [GPU])
    assert not e.changed and k.writes == 0
    assert e.warnings == ["0000:83:00.0 is bound to vfio-pci but there is no record of its original driver in %s; "
                          "it was left as it is." % state]


def test_original_driver_missing_at_restore_keeps_the_record(tmp_path, state, use):
    k = use(mi300x_host(tmp_path / "root", gpus=1))
    run(k, state, "present", [GPU])
    os.rename(k.p("sys/bus/pci/drivers/amdgpu"), k.p("amdgpu-unloaded"))
    with pytest.raises(MadengineError) as info:
        run(k, state, "absent", timeout=1)
    assert str(info.value) == ("Restoring failed for 1 device(s): Binding 0000:83:00.0 to amdgpu failed: No such file "
                               "or directory (ENOENT) (driver amdgpu is not loaded).")
    assert os.listdir(state) == [GPU + ".json"]
    os.rename(k.p("amdgpu-unloaded"), k.p("sys/bus/pci/drivers/amdgpu"))
    run(k, state, "absent")
    assert k.driver_of(GPU) == "amdgpu" and os.listdir(state) == []


def test_unwritable_state_dir_fails_before_touching_devices(tmp_path, use):
    k = use(mi300x_host(tmp_path / "root", gpus=1))
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(MadengineError, match=r"Cannot create the passthrough state directory %s" % blocker):
        run(k, str(blocker / "state"), "present", [GPU])
    assert k.log == []


def test_corrupt_state_file_is_named(tmp_path, state, use):
    k = use(mi300x_host(tmp_path / "root", gpus=1))
    state.mkdir()
    (state / (GPU + ".json")).write_text("{")
    with pytest.raises(MadengineError, match=r"Passthrough state file .*0000:83:00.0.json cannot be read"):
        run(k, state, "absent")


# ------------------------------------------------------------------------------------------ check mode


def test_check_mode_plan_is_what_a_real_run_does(tmp_path, state, use):
    k = use(mi300x_host(tmp_path / "root", gpus=2, audio=True))
    before = k.snapshot()
    predicted = run(k, state, "present", check_mode=True)
    assert k.log == [] and k.snapshot() == before and not state.exists()
    assert predicted.changed and predicted.hostdevs == ["0000:83:00.0", "0000:83:00.1", "0000:93:00.0",
                                                        "0000:93:00.1"]
    real = run(k, state, "present")
    assert predicted.plan == real.plan and plan_ops(predicted.plan) == k.ops()
    assert [d["current_driver"] for d in predicted.devices] == ["vfio-pci"] * 4
    n = len(k.log)
    predicted_back = run(k, state, "absent", check_mode=True)
    assert len(k.log) == n and len(os.listdir(state)) == 4      # nothing written, nothing forgotten
    assert predicted_back.state_files() == []                     # ...but a real run would leave none
    real_back = run(k, state, "absent")
    assert predicted_back.plan == real_back.plan


def test_diff_shows_driver_changes(tmp_path, state, use):
    k = use(mi300x_host(tmp_path / "root", gpus=1))
    e = run(k, state, "present", [GPU])
    assert e.diff() == {
        "before": "0000:83:00.0: driver=amdgpu driver_override=(null) sriov_numvfs=0\n",
        "after": "0000:83:00.0: driver=vfio-pci driver_override=vfio-pci sriov_numvfs=0\n",
    }


# ------------------------------------------------------------------------------------------ sriov


NIC = "0000:03:00.0"


def test_sriov_sysfs_creates_binds_and_restores(tmp_path, state, use):
    k = use(consumer_host(tmp_path / "root"))
    before = k.snapshot()
    e = run(k, state, "present", [NIC], mode="sriov", num_vfs=2)
    dev = "/sys/bus/pci/devices/%s/" % NIC
    assert writes(e.plan) == [
        ("autoprobe", dev + "sriov_drivers_autoprobe", "0"),
        ("numvfs", dev + "sriov_numvfs", "2"),
        ("override", "/sys/bus/pci/devices/0000:03:10.0/driver_override", "vfio-pci"),
        ("probe", "/sys/bus/pci/drivers_probe", "0000:03:10.0"),
        ("override", "/sys/bus/pci/devices/0000:03:10.2/driver_override", "vfio-pci"),
        ("probe", "/sys/bus/pci/drivers_probe", "0000:03:10.2"),
    ]
    assert e.hostdevs == ["0000:03:10.0", "0000:03:10.2"]
    pf = json.loads((state / (NIC + ".json")).read_text())
    assert pf["original_numvfs"] == 0 and pf["original_autoprobe"] == 1 and pf["provider"] == "sysfs"
    back = run(k, state, "absent")
    assert [w[0] for w in writes(back.plan)] == ["restore_override", "unbind"] * 2 + ["numvfs", "autoprobe"]
    assert k.snapshot() == before


def test_sriov_changing_a_count_writes_zero_first(tmp_path, state, use):
    k = use(consumer_host(tmp_path / "root"))
    k.write(k.p("sys/bus/pci/devices/%s/sriov_numvfs" % NIC), "1")
    k.log.clear()
    k.writes = 0
    before = k.snapshot()
    e = run(k, state, "present", [NIC], mode="sriov", num_vfs=3)
    numvfs = [w[2] for w in writes(e.plan) if w[0] == "numvfs"]
    assert numvfs == ["0", "3"]
    run(k, state, "absent")
    assert k.snapshot() == before and k.driver_of("0000:03:10.0") == "ixgbevf"


def test_sriov_same_count_reuses_the_vfs(tmp_path, state, use):
    k = use(consumer_host(tmp_path / "root"))
    k.write(k.p("sys/bus/pci/devices/%s/sriov_numvfs" % NIC), "2")
    before = k.snapshot()
    e = run(k, state, "present", [NIC], mode="sriov", num_vfs=2)
    assert [w[0] for w in writes(e.plan)] == ["override", "unbind", "probe"] * 2
    run(k, state, "absent")
    assert k.snapshot() == before


@pytest.mark.parametrize("code, expected", [
    (errno.ERANGE, "PF 0000:03:00.0 supports at most 4 VFs (sriov_totalvfs); writing 2 to sriov_numvfs failed "
                   "(ERANGE)."),
    (errno.ENOENT, "PF 0000:03:00.0 cannot create VFs through sriov_numvfs (ENOENT): its driver (ixgbe) has no "
                   "SR-IOV configuration support; use a PF driver that has it, or sriov_provider gim (AMD) or "
                   "nvidia."),
    (errno.EBUSY, "PF 0000:03:00.0 refused to change its VF count to 2 (EBUSY): a VF is still in use, for example "
                  "by a running VM; stop the VMs that use its VFs and retry."),
])
def test_sriov_kernel_errors_become_sentences(tmp_path, state, use, code, expected):
    k = use(consumer_host(tmp_path / "root"))
    before = k.snapshot()
    k.faults[1] = code                   # write 0: autoprobe, write 1: sriov_numvfs
    with pytest.raises(StepError) as info:
        run(k, state, "present", [NIC], mode="sriov", num_vfs=2)
    assert str(info.value) == expected and info.value.errno == code
    assert k.snapshot() == before


def test_sriov_real_enoent_from_a_driver_without_sriov(tmp_path, state, use):
    k = use(mi300x_host(tmp_path / "root", gpus=1))
    with pytest.raises(StepError, match=r"PF 0000:83:00.0 cannot create VFs through sriov_numvfs \(ENOENT\): its "
                                        r"driver \(amdgpu\)"):
        run(k, state, "present", [GPU], mode="sriov", sriov_provider="sysfs")
    assert k.snapshot()["devices"][GPU]["autoprobe"] == "1"


def test_sriov_real_ebusy_when_a_vf_is_in_use(tmp_path, state, use):
    k = use(consumer_host(tmp_path / "root"))
    run(k, state, "present", [NIC], mode="sriov", num_vfs=2)
    k.in_use.add("0000:03:10.2")
    k.release.set()                      # unbinding from vfio-pci is allowed; disabling the VFs is not
    with pytest.raises(StepError, match=r"refused to change its VF count to 0 \(EBUSY\)"):
        run(k, state, "present", [NIC], mode="sriov", num_vfs=3)


@pytest.mark.parametrize("ids, options, message", [
    ([NIC], {"num_vfs": 5}, "PF 0000:03:00.0 supports at most 4 VFs (sriov_totalvfs), 5 requested."),
    ([NIC], {"num_vfs": 0}, "num_vfs must be at least 1 for mode sriov, got 0."),
    (["01:00.0"], {}, "PCI device 0000:01:00.0 is not SR-IOV capable (no sriov_totalvfs)."),
])
def test_sriov_preflight_errors(tmp_path, state, use, ids, options, message):
    k = use(consumer_host(tmp_path / "root"))
    with pytest.raises(MadengineError) as info:
        run(k, state, "present", ids, mode="sriov", **options)
    assert str(info.value) == message and k.log == []


def test_sriov_on_a_vf_or_driverless_pf(tmp_path, state, use):
    k = use(consumer_host(tmp_path / "root"))
    k.write(k.p("sys/bus/pci/devices/%s/sriov_numvfs" % NIC), "1")
    with pytest.raises(MadengineError, match=r"0000:03:10.0 is a VF; mode sriov needs the PF"):
        run(k, state, "present", ["03:10.0"], mode="sriov")
    k.write(k.p("sys/bus/pci/devices/%s/sriov_numvfs" % NIC), "0")
    k.write(k.p("sys/bus/pci/drivers/ixgbe/unbind"), NIC)
    with pytest.raises(MadengineError, match=r"PF 0000:03:00.0 has no driver bound"):
        run(k, state, "present", [NIC], mode="sriov")


def test_gim_vfs_come_from_loading_gim_never_from_sriov_numvfs(tmp_path, state, use):
    k = use(mi300x_host(tmp_path / "root", gpus=2, driver=None))
    before = k.snapshot()
    e = run(k, state, "present", mode="sriov", num_vfs=2)
    commands = [s["argv"] for s in e.plan if s["op"] == "command"]
    assert commands == [["modprobe", "gim", "vf_num=2,2"]]
    assert not any("sriov_numvfs" in entry[1] for entry in k.log if entry[0] == "write")
    assert e.hostdevs == ["0000:83:00.2", "0000:83:00.3", "0000:93:00.2", "0000:93:00.3"]
    assert all(json.loads((state / (pf + ".json")).read_text())["gim_loaded"] for pf in (GPU, GPU2))
    back = run(k, state, "absent")
    assert [s["argv"] for s in back.plan if s["op"] == "command"] == [["modprobe", "-r", "gim"]]
    assert k.snapshot() == before and not k.snapshot()["gim"]


def test_gim_already_loaded_is_left_loaded(tmp_path, state, use):
    k = use(mi300x_host(tmp_path / "root", gpus=1, driver=None))
    k.run_command(None, ["modprobe", "gim", "vf_num=1"], 10)
    k.log.clear()
    before = k.snapshot()
    e = run(k, state, "present", mode="sriov", num_vfs=1)
    assert [s for s in e.plan if s["op"] == "command"] == []
    run(k, state, "absent")
    assert k.snapshot() == before and k.snapshot()["gim"]


def test_gim_pf_owned_by_amdgpu_is_refused(tmp_path, state, use):
    k = use(mi300x_host(tmp_path / "root", gpus=1))
    with pytest.raises(MadengineError, match=r"AMD PF 0000:83:00.0 is bound to amdgpu; GIM-managed SR-IOV needs the "
                                             r"gim driver to own the PF. Blacklist amdgpu"):
        run(k, state, "present", mode="sriov")
    assert k.log == []


def test_gim_vf_limit_of_the_partition_mode_is_reported_and_gim_unloaded(tmp_path, state, use):
    k = FakeKernel(tmp_path / "root")
    k.add_driver("vfio-pci")
    k.add_device(GPU, cls="0x120000", matches=["amdgpu", "gim"], group=40,
                 sriov={"totalvfs": 8, "offset": 2, "stride": 1, "gim_limit": 1})
    use(k)
    before = k.snapshot()
    with pytest.raises(StepError, match=r"gim was loaded but 0000:83:00.0 is bound to gim with 1 VF\(s\); 8 expected "
                                        r"\(see gim's messages in dmesg: the VF count allowed depends on the "
                                        r"partition mode\)"):
        run(k, state, "present", [GPU], mode="sriov", num_vfs=8, timeout=1)
    assert k.snapshot() == before


def test_gim_with_too_few_vfs_asks_for_vf_num(tmp_path, state, use):
    k = use(mi300x_host(tmp_path / "root", gpus=1, driver=None))
    k.run_command(None, ["modprobe", "gim", "vf_num=1"], 10)
    with pytest.raises(MadengineError, match=r"gim enabled 1 VF\(s\) on 0000:83:00.0 but 2 were requested. GIM sets "
                                             r"the VF count from its vf_num module parameter \(never through "
                                             r"sriov_numvfs\)"):
        run(k, state, "present", mode="sriov", num_vfs=2)


def test_gim_unload_blocked_by_a_vm_keeps_the_record(tmp_path, state, use):
    k = use(mi300x_host(tmp_path / "root", gpus=1, driver=None))
    e = run(k, state, "present", mode="sriov")
    k.in_use.add(e.hostdevs[0])
    k.release.set()
    with pytest.raises(MadengineError) as info:
        run(k, state, "absent", timeout=1)
    assert str(info.value) == ("Restoring failed for 1 device(s): modprobe -r gim did not finish within 1 s. gim "
                               "waits until no VF is in use: stop the VMs that use its VFs, then run state=absent "
                               "again.")
    assert os.listdir(state) == [GPU + ".json"]


def test_nvidia_sriov_manage(tmp_path, state, use):
    k = use(consumer_host(tmp_path / "root"))
    d = k.devdir("0000:01:00.0")
    for name, value in (("sriov_totalvfs", "4"), ("sriov_numvfs", "0"), ("sriov_offset", "4"), ("sriov_stride", "1"),
                        ("sriov_vf_device", "2236"), ("sriov_drivers_autoprobe", "1")):
        with open(os.path.join(d, name), "w") as handle:
            handle.write(value + "\n")
    before = k.snapshot()
    e = run(k, state, "present", ["01:00.0"], mode="sriov", sriov_provider="nvidia", num_vfs=2)
    assert [s["argv"] for s in e.plan if s["op"] == "command"] == [
        ["/usr/lib/nvidia/sriov-manage", "-e", "0000:01:00.0"]]
    assert e.hostdevs == ["0000:01:00.4", "0000:01:00.5"]
    back = run(k, state, "absent")
    assert [s["argv"] for s in back.plan if s["op"] == "command"] == [
        ["/usr/lib/nvidia/sriov-manage", "-d", "0000:01:00.0"]]
    assert k.snapshot() == before


# ------------------------------------------------------------------------------------------ vgpu


def _vgpu_host(root, available=2):
    k = consumer_host(root)
    k.add_mdev_type("0000:01:00.0", "nvidia-474", "GRID A100-4C", available)
    k.add_mdev_type("0000:01:00.0", "nvidia-475", "GRID A100-8C", available)
    return k


def test_vgpu_creates_a_stable_mdev_and_removes_it(tmp_path, state, use):
    k = use(_vgpu_host(tmp_path / "root"))
    before = k.snapshot()
    e = run(k, state, "present", mode="vgpu", vgpu_type="GRID A100-4C")
    assert len(e.mdevs) == 1 and k.snapshot()["mdevs"] == e.mdevs
    assert writes(e.plan) == [("mdev_create", "/sys/class/mdev_bus/0000:01:00.0/mdev_supported_types/nvidia-474/"
                               "create", e.mdevs[0])]
    again = run(k, state, "present", ["01:00.0"], mode="vgpu", vgpu_type="nvidia-474")
    assert again.mdevs == e.mdevs and not again.changed
    back = run(k, state, "absent")
    assert writes(back.plan) == [("mdev_remove", "/sys/bus/mdev/devices/%s/remove" % e.mdevs[0], "1")]
    assert k.snapshot() == before


@pytest.mark.parametrize("options, message", [
    ({"vgpu_type": "nvidia-999"}, "mdev type 'nvidia-999' is not offered by 0000:01:00.0; available: nvidia-474 "
                                  "(GRID A100-4C), nvidia-475 (GRID A100-8C)."),
    ({}, "mode vgpu needs vgpu_type (an mdev type such as nvidia-474, or its name)."),
    ({"vgpu_type": "nvidia-474", "vgpu_uuid": "nope"}, "vgpu_uuid 'nope' is not a UUID."),
])
def test_vgpu_input_errors(tmp_path, state, use, options, message):
    k = use(_vgpu_host(tmp_path / "root"))
    with pytest.raises(MadengineError) as info:
        run(k, state, "present", ["01:00.0"], mode="vgpu", **options)
    assert str(info.value) == message and k.log == []


def test_vgpu_without_free_instances(tmp_path, state, use):
    k = use(_vgpu_host(tmp_path / "root", available=0))
    with pytest.raises(MadengineError, match=r"No free instance of mdev type nvidia-474 on 0000:01:00.0"):
        run(k, state, "present", ["01:00.0"], mode="vgpu", vgpu_type="nvidia-474")


def test_vgpu_vendor_vfio_flavour_is_not_supported(tmp_path, state, use):
    k = use(consumer_host(tmp_path / "root"))
    os.makedirs(os.path.join(k.devdir("0000:01:00.0"), "nvidia"))
    with open(os.path.join(k.devdir("0000:01:00.0"), "nvidia", "creatable_vgpu_types"), "w") as handle:
        handle.write("ID : vGPU Name\n")
    with pytest.raises(MadengineError, match=r"uses NVIDIA's vendor-specific VFIO vGPU interface .* is not supported"):
        run(k, state, "present", ["01:00.0"], mode="vgpu", vgpu_type="x")
    with pytest.raises(MadengineError, match=r"0000:03:00.0 offers no mediated device types \(no "
                                             r"/sys/class/mdev_bus/0000:03:00.0/mdev_supported_types\)"):
        run(k, state, "present", ["03:00.0"], mode="vgpu", vgpu_type="x")


def test_vgpu_uuid_of_another_type_is_refused(tmp_path, state, use):
    k = use(_vgpu_host(tmp_path / "root"))
    uuid = "11111111-2222-3333-4444-555555555555"
    run(k, state, "present", ["01:00.0"], mode="vgpu", vgpu_type="nvidia-474", vgpu_uuid=uuid)
    with pytest.raises(MadengineError, match=r"mdev %s already exists with type nvidia-474, not nvidia-475" % uuid):
        run(k, state, "present", ["01:00.0"], mode="vgpu", vgpu_type="nvidia-475", vgpu_uuid=uuid)


# ------------------------------------------------------------------------------------------ query


def test_query_reports_recorded_devices_and_clean(tmp_path, state, use):
    k = use(mi300x_host(tmp_path / "root", gpus=2))
    run(k, state, "present", [GPU])
    q = engine(k, state)
    recorded = q.query([])
    assert recorded == [GPU] and q.hostdevs == [GPU] and not q.changed
    assert [(d["bdf"], d["current_driver"], d["recorded"]) for d in q.devices] == [
        (GPU, "vfio-pci", True), (GPU2, "amdgpu", False)]
    run(k, state, "absent")
    q = engine(k, state)
    assert q.query([]) == [] and q.state_files() == []
