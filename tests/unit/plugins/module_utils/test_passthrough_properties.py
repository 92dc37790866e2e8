"""Properties of gpu_passthrough over random host topologies (hypothesis).

* present then absent leaves every device exactly as found (driver, override, VF count, autoprobe,
  IOMMU groups, /dev/vfio nodes, mdevs, gim) and no state file;
* the check-mode plan is exactly what the real run writes, in order;
* a kernel error injected at any write leaves every device as found (rollback);
* a crash (the process killed) at any write, followed by ``absent`` from a new process, does too.

present/absent run through the module (AnsibleModule harness); the fault sweeps call the engine the
module calls, to keep the sweep fast.
"""

from __future__ import annotations

import errno
import os
import tempfile

import pytest
from conftest import run_module
from fake_sysfs import FakeKernel, SimulatedCrash, engine, installed, plan_ops
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError
from ansible_collections.rocm.madengine.plugins.modules import gpu_passthrough

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True, database=None)
# The fault sweeps rebuild the tree once per write; MADCI_HYPOTHESIS_SCALE=10 runs ten times the examples.
SCALE = max(1, int(os.environ.get("MADCI_HYPOTHESIS_SCALE", "1")))
ERRNOS = [errno.EIO, errno.EBUSY, errno.ENODEV, errno.EINVAL, errno.ENOMEM, errno.EPERM]


def examples(n):
    return settings(max_examples=n * SCALE, **SETTINGS)


# ------------------------------------------------------------------------------------------ topologies

gpu_st = st.fixed_dictionaries({
    "vendor": st.sampled_from(["0x1002", "0x10de"]),
    "cls": st.sampled_from(["0x038000", "0x030000", "0x030200", "0x120000"]),
    "start": st.sampled_from(["native", "native", "unbound", "override", "vfio"]),
    "audio": st.sampled_from([None, "same-group", "own-group"]),
    "neighbour": st.sampled_from([None, None, "nic", "bridge", "idle"]),
})

vfio_st = st.fixed_dictionaries({
    "gpus": st.lists(gpu_st, min_size=1, max_size=4),
    "vfio_loaded": st.booleans(),
    "policy": st.sampled_from(["fail", "bind", "ignore"]),
    "include_functions": st.booleans(),
})

pf_st = st.fixed_dictionaries({
    "total": st.integers(1, 4),
    "start_vfs": st.integers(0, 4),
    "autoprobe": st.sampled_from([0, 1]),
    "vf_driver": st.sampled_from([None, "ixgbevf"]),
    "stride": st.sampled_from([1, 2]),
})

sriov_st = st.fixed_dictionaries({
    "pfs": st.lists(pf_st, min_size=1, max_size=2),
    "num_vfs": st.integers(1, 4),
})

gim_st = st.fixed_dictionaries({
    "pfs": st.integers(1, 3),
    "loaded": st.booleans(),
    "num_vfs": st.integers(1, 3),
})


def build_vfio(root, topo):
    k = FakeKernel(root)
    if topo["vfio_loaded"]:
        k.add_driver("vfio-pci")
    k.add_driver("snd_hda_intel")
    group = 10
    for i, gpu in enumerate(topo["gpus"]):
        bus = 0x10 * (i + 1)
        bdf = "0000:%02x:00.0" % bus
        native = "amdgpu" if gpu["vendor"] == "0x1002" else "nvidia"
        k.add_driver(native)
        start = gpu["start"]
        if start == "vfio":
            k.add_driver("vfio-pci")
        k.add_device(bdf, vendor=gpu["vendor"], cls=gpu["cls"], matches=[native], group=group,
                     driver={"native": native, "override": native, "vfio": "vfio-pci"}.get(start),
                     override={"override": native, "vfio": "vfio-pci"}.get(start))
        if gpu["audio"]:
            k.add_device("0000:%02x:00.1" % bus, vendor=gpu["vendor"], device="0xaaf0", cls="0x040300",
                         driver="snd_hda_intel", group=group if gpu["audio"] == "same-group" else group + 1)
        neighbour = gpu["neighbour"]
        if neighbour == "nic":
            k.add_device("0000:%02x:01.0" % bus, vendor="0x8086", device="0x10fb", cls="0x020000",
                         driver="ixgbe", group=group)
        elif neighbour == "bridge":
            k.add_device("0000:%02x:01.0" % bus, vendor="0x1002", device="0x1478", cls="0x060400",
                         driver="pcieport", group=group)
        elif neighbour == "idle":
            k.add_device("0000:%02x:01.0" % bus, vendor="0x8086", device="0x0953", cls="0x010802", driver=None,
                         matches=[], group=group)
        group += 2
    return k


def vfio_options(topo):
    return {"group_policy": topo["policy"], "include_functions": topo["include_functions"]}


def blocked(topo):
    """True when the group policy ``fail`` must refuse the topology."""
    if topo["policy"] != "fail":
        return False
    for gpu in topo["gpus"]:
        if gpu["neighbour"] == "nic":
            return True
        if gpu["audio"] == "same-group" and not topo["include_functions"]:
            return True
    return False


def build_sriov(root, topo):
    k = FakeKernel(root)
    k.add_driver("vfio-pci")
    k.add_driver("ixgbevf")
    for i, pf in enumerate(topo["pfs"]):
        bdf = "0000:%02x:00.0" % (0x20 * (i + 1))
        k.add_device(bdf, vendor="0x8086", device="0x10fb", cls="0x020000", driver="ixgbe", group=100 * (i + 1),
                     sriov={"totalvfs": pf["total"], "offset": 0x80, "stride": pf["stride"], "vf_device": "10ed",
                            "autoprobe": pf["autoprobe"], "numvfs": min(pf["start_vfs"], pf["total"]),
                            "vf_matches": [pf["vf_driver"]] if pf["vf_driver"] else []})
    return k


def build_gim(root, topo):
    k = FakeKernel(root)
    k.add_driver("vfio-pci")
    for i in range(topo["pfs"]):
        k.add_device("0000:%02x:00.0" % (0x83 + 0x10 * i), cls="0x120000", matches=["amdgpu", "gim"], group=40 + i,
                     sriov={"totalvfs": 4, "offset": 2, "stride": 1, "vf_device": "74b5"})
    if topo["loaded"]:
        k.run_command(None, ["modprobe", "gim", "vf_num=%s" % ",".join(["3"] * topo["pfs"])], 10)
        k.log.clear()
    return k


def sriov_ids(topo):
    return ["0000:%02x:00.0" % (0x20 * (i + 1)) for i in range(len(topo["pfs"]))]


# ------------------------------------------------------------------------------------------ helpers


def module_args(kernel, state_dir, **options):
    args = {"host_root": kernel.root, "state_dir": state_dir, "timeout": 2}
    args.update(options)
    return args


def roundtrip(kernel, state_dir, expect_failure=False, **options):
    """present (check, real) then absent (check, real) through the module; returns the original snapshot."""
    original = kernel.snapshot()
    with installed(kernel):
        predicted = run_module(gpu_passthrough, module_args(kernel, state_dir, **options), check_mode=True)
        assert kernel.log == [] and kernel.snapshot() == original and not os.path.exists(state_dir)
        real = run_module(gpu_passthrough, module_args(kernel, state_dir, **options))
        if expect_failure:
            assert predicted.failed and real.failed and real["msg"] == predicted["msg"]
            assert kernel.log == [] and kernel.snapshot() == original
            return
        assert not predicted.failed, predicted["msg"]
        assert not real.failed, real["msg"]
        assert predicted["plan"] == real["plan"]
        assert plan_ops(real["plan"]) == kernel.ops()
        assert predicted["hostdevs"] == real["hostdevs"]
        for bdf in real["hostdevs"]:
            assert kernel.driver_of(bdf) == "vfio-pci"
        again = run_module(gpu_passthrough, module_args(kernel, state_dir, **options))
        assert again["changed"] is False and again["plan"] == []
        kernel.log.clear()
        absent_args = module_args(kernel, state_dir, state="absent")
        predicted_back = run_module(gpu_passthrough, absent_args, check_mode=True)
        assert kernel.log == []
        back = run_module(gpu_passthrough, absent_args)
        assert not back.failed, back["msg"]
        assert predicted_back["plan"] == back["plan"] and plan_ops(back["plan"]) == kernel.ops()
    assert kernel.snapshot() == original
    assert back["clean"] is True and os.listdir(state_dir) == []


def count_writes(build, topo, options, ids=()):
    with tempfile.TemporaryDirectory() as tmp:
        kernel = build(os.path.join(tmp, "root"), topo)
        with installed(kernel):
            engine(kernel, os.path.join(tmp, "state"), **options).present(list(ids))
        return kernel.writes, [e for e in kernel.log if e[0] == "command"]


def sweep_faults(build, topo, options, ids=(), crash=False, data=None):
    """Inject an error (or a crash) at every write of a present run; check devices end as found."""
    total, _commands = count_writes(build, topo, options, ids)
    for index in range(total):
        with tempfile.TemporaryDirectory() as tmp:
            kernel = build(os.path.join(tmp, "root"), topo)
            state_dir = os.path.join(tmp, "state")
            original = kernel.snapshot()
            kernel.faults[index] = SimulatedCrash() if crash else data.draw(st.sampled_from(ERRNOS), label="errno")
            with installed(kernel):
                if crash:
                    with pytest.raises(SimulatedCrash):
                        engine(kernel, state_dir, **options).present(list(ids))
                    kernel.faults.clear()
                    engine(kernel, state_dir).absent([])
                else:
                    with pytest.raises(MadengineError) as info:
                        engine(kernel, state_dir, **options).present(list(ids))
                    assert getattr(info.value, "rollback_errors", None) == []
            assert kernel.snapshot() == original, "write %d of %d" % (index, total)
            assert not os.path.exists(state_dir) or os.listdir(state_dir) == []
    return total


# ------------------------------------------------------------------------------------------ vfio


@examples(60)
@given(topo=vfio_st)
def test_vfio_present_then_absent_restores_everything(topo):
    with tempfile.TemporaryDirectory() as tmp:
        kernel = build_vfio(os.path.join(tmp, "root"), topo)
        roundtrip(kernel, os.path.join(tmp, "state"), expect_failure=blocked(topo), **vfio_options(topo))


@examples(12)
@given(topo=vfio_st.filter(lambda t: not blocked(t)), data=st.data())
def test_vfio_error_at_any_write_leaves_devices_as_found(topo, data):
    sweep_faults(build_vfio, topo, vfio_options(topo), data=data)


@examples(8)
@given(topo=vfio_st.filter(lambda t: not blocked(t)))
def test_vfio_crash_at_any_write_then_absent_restores(topo):
    sweep_faults(build_vfio, topo, vfio_options(topo), crash=True)


def test_vfio_failing_modprobe_leaves_devices_as_found(tmp_path):
    topo = {"gpus": [{"vendor": "0x1002", "cls": "0x120000", "start": "native", "audio": "same-group",
                      "neighbour": None}], "vfio_loaded": False, "policy": "fail", "include_functions": True}
    kernel = build_vfio(str(tmp_path / "root"), topo)
    original = kernel.snapshot()
    kernel.faults[("command", "modprobe")] = (1, "", "modprobe: ERROR: could not insert 'vfio_pci'")
    with installed(kernel):
        result = run_module(gpu_passthrough, module_args(kernel, str(tmp_path / "state")))
    assert result.failed and result["stage"] == "modprobe"
    assert result["msg"] == "modprobe vfio-pci failed (rc 1): modprobe: ERROR: could not insert 'vfio_pci'"
    assert kernel.snapshot() == original


# ------------------------------------------------------------------------------------------ sriov


@examples(30)
@given(topo=sriov_st)
def test_sriov_present_then_absent_restores_vf_counts(topo):
    with tempfile.TemporaryDirectory() as tmp:
        kernel = build_sriov(os.path.join(tmp, "root"), topo)
        too_many = any(topo["num_vfs"] > pf["total"] for pf in topo["pfs"])
        roundtrip(kernel, os.path.join(tmp, "state"), expect_failure=too_many, mode="sriov",
                  num_vfs=topo["num_vfs"], gpu_ids=sriov_ids(topo))


@examples(8)
@given(topo=sriov_st.filter(lambda t: all(t["num_vfs"] <= pf["total"] for pf in t["pfs"])), data=st.data())
def test_sriov_error_at_any_write_leaves_devices_as_found(topo, data):
    sweep_faults(build_sriov, topo, {"mode": "sriov", "num_vfs": topo["num_vfs"]}, ids=sriov_ids(topo), data=data)


@examples(6)
@given(topo=sriov_st.filter(lambda t: all(t["num_vfs"] <= pf["total"] for pf in t["pfs"])))
def test_sriov_crash_at_any_write_then_absent_restores(topo):
    sweep_faults(build_sriov, topo, {"mode": "sriov", "num_vfs": topo["num_vfs"]}, ids=sriov_ids(topo), crash=True)


# ------------------------------------------------------------------------------------------ gim


@examples(15)
@given(topo=gim_st)
def test_gim_present_then_absent_restores_and_never_writes_sriov_numvfs(topo):
    with tempfile.TemporaryDirectory() as tmp:
        kernel = build_gim(os.path.join(tmp, "root"), topo)
        roundtrip(kernel, os.path.join(tmp, "state"), mode="sriov", num_vfs=topo["num_vfs"])
        assert not any(e[0] == "write" and e[1].endswith("sriov_numvfs") for e in kernel.log)


@examples(8)
@given(topo=gim_st, data=st.data())
def test_gim_error_at_any_write_leaves_devices_as_found(topo, data):
    sweep_faults(build_gim, topo, {"mode": "sriov", "num_vfs": topo["num_vfs"]}, data=data)


@examples(6)
@given(topo=gim_st)
def test_gim_crash_at_any_write_then_absent_restores(topo):
    sweep_faults(build_gim, topo, {"mode": "sriov", "num_vfs": topo["num_vfs"]}, crash=True)
