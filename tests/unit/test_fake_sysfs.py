"""The fake kernel behaves like the kernel where the passthrough code depends on it.

These tests pin the documented kernel semantics the fake models, so a test of the module that
passes against the fake is a statement about the kernel's behaviour, not about the fake's.
"""

from __future__ import annotations

import errno
import os

import pytest
from fake_sysfs import FakeKernel, consumer_host, mi300x_host


def _errno(kernel, path, value):
    with pytest.raises(OSError) as info:
        kernel.write(kernel.p(path), value)
    return info.value.errno


def test_tree_links_resolve_like_sysfs(tmp_path):
    k = mi300x_host(tmp_path, gpus=1)
    dev = k.p("sys/bus/pci/devices/0000:83:00.0")
    assert os.path.islink(dev)
    assert os.path.realpath(os.path.join(dev, "driver")) == k.p("sys/bus/pci/drivers/amdgpu")
    assert os.path.isfile(os.path.join(dev, "driver", "unbind"))
    assert os.path.realpath(os.path.join(dev, "iommu_group")) == k.p("sys/kernel/iommu_groups/40")
    member = k.p("sys/kernel/iommu_groups/40/devices/0000:83:00.0")
    assert os.path.realpath(member) == os.path.realpath(dev)
    assert open(os.path.join(dev, "driver_override")).read() == "(null)\n"


def test_override_does_not_unbind_and_newline_clears(tmp_path):
    k = mi300x_host(tmp_path, gpus=1)
    k.write(k.p("sys/bus/pci/devices/0000:83:00.0/driver_override"), "vfio-pci")
    assert k.driver_of("0000:83:00.0") == "amdgpu"
    assert k.override_of("0000:83:00.0") == "vfio-pci"
    k.write(k.p("sys/bus/pci/devices/0000:83:00.0/driver_override"), "\n")
    assert k.override_of("0000:83:00.0") is None


def test_unbind_needs_the_bound_driver(tmp_path):
    k = mi300x_host(tmp_path, gpus=1)
    assert _errno(k, "sys/bus/pci/drivers/vfio-pci/unbind", "0000:83:00.0") == errno.ENODEV
    k.write(k.p("sys/bus/pci/drivers/amdgpu/unbind"), "0000:83:00.0")
    assert k.driver_of("0000:83:00.0") is None
    assert not os.path.lexists(k.p("sys/bus/pci/drivers/amdgpu/0000:83:00.0"))


def test_drivers_probe_succeeds_even_when_nothing_binds(tmp_path):
    k = mi300x_host(tmp_path, gpus=1)
    k.write(k.p("sys/bus/pci/drivers/amdgpu/unbind"), "0000:83:00.0")
    k.write(k.p("sys/bus/pci/devices/0000:83:00.0/driver_override"), "no-such-driver")
    k.write(k.p("sys/bus/pci/drivers_probe"), "0000:83:00.0")
    assert k.driver_of("0000:83:00.0") is None
    k.write(k.p("sys/bus/pci/devices/0000:83:00.0/driver_override"), "vfio-pci")
    k.write(k.p("sys/bus/pci/drivers_probe"), "0000:83:00.0")
    assert k.driver_of("0000:83:00.0") == "vfio-pci"
    assert os.path.exists(k.p("dev/vfio/40"))


def test_bind_matches_override_or_id_table(tmp_path):
    k = mi300x_host(tmp_path, gpus=1)
    assert _errno(k, "sys/bus/pci/drivers/amdgpu/bind", "0000:83:00.0") == errno.EBUSY
    k.write(k.p("sys/bus/pci/drivers/amdgpu/unbind"), "0000:83:00.0")
    # vfio-pci has no ID table entry and there is no override: no match
    assert _errno(k, "sys/bus/pci/drivers/vfio-pci/bind", "0000:83:00.0") == errno.ENODEV
    k.write(k.p("sys/bus/pci/devices/0000:83:00.0/driver_override"), "vfio-pci")
    # the override now excludes amdgpu
    assert _errno(k, "sys/bus/pci/drivers/amdgpu/bind", "0000:83:00.0") == errno.ENODEV
    k.write(k.p("sys/bus/pci/drivers/vfio-pci/bind"), "0000:83:00.0")
    assert k.driver_of("0000:83:00.0") == "vfio-pci"


def test_vfio_probe_fails_without_iommu_group(tmp_path):
    k = FakeKernel(tmp_path)
    k.add_driver("vfio-pci")
    k.add_device("0000:05:00.0", cls="0x038000", override="vfio-pci")
    assert _errno(k, "sys/bus/pci/drivers/vfio-pci/bind", "0000:05:00.0") == errno.EINVAL
    k.write(k.p("sys/bus/pci/drivers_probe"), "0000:05:00.0")
    assert k.driver_of("0000:05:00.0") is None


def test_new_id_is_refused_by_the_test_kernel(tmp_path):
    k = mi300x_host(tmp_path, gpus=1)
    with pytest.raises(AssertionError, match="new_id"):
        k.write(k.p("sys/bus/pci/drivers/vfio-pci/new_id"), "1002 74a1")


def test_sriov_numvfs_errors_and_effects(tmp_path):
    k = consumer_host(tmp_path)
    numvfs = "sys/bus/pci/devices/0000:03:00.0/sriov_numvfs"
    assert _errno(k, numvfs, "5") == errno.ERANGE
    assert _errno(k, numvfs, "two") == errno.EINVAL
    k.write(k.p(numvfs), "2")
    assert k.vfs_of("0000:03:00.0") == ["0000:03:10.0", "0000:03:10.2"]
    vf = k.p("sys/bus/pci/devices/0000:03:10.2")
    assert os.path.basename(os.readlink(os.path.join(vf, "physfn"))) == "0000:03:00.0"
    assert k.driver_of("0000:03:10.2") == "ixgbevf"          # autoprobe is on
    assert k.group_of("0000:03:10.0") not in (None, k.group_of("0000:03:00.0"))
    assert _errno(k, numvfs, "3") == errno.EBUSY              # non-zero to non-zero
    k.in_use.add("0000:03:10.0")
    assert _errno(k, numvfs, "0") == errno.EBUSY              # a VM holds a VF
    k.in_use.clear()
    k.write(k.p(numvfs), "0")
    assert k.vfs_of("0000:03:00.0") == [] and not os.path.lexists(vf)


def test_sriov_numvfs_enoent_without_sriov_driver(tmp_path):
    k = mi300x_host(tmp_path, gpus=1)                        # amdgpu: no sriov_configure
    assert _errno(k, "sys/bus/pci/devices/0000:83:00.0/sriov_numvfs", "1") == errno.ENOENT


def test_autoprobe_off_leaves_vfs_unbound(tmp_path):
    k = consumer_host(tmp_path)
    k.write(k.p("sys/bus/pci/devices/0000:03:00.0/sriov_drivers_autoprobe"), "0")
    k.write(k.p("sys/bus/pci/devices/0000:03:00.0/sriov_numvfs"), "1")
    assert k.driver_of("0000:03:10.0") is None


def test_gim_enables_vfs_at_load_and_rejects_sriov_numvfs(tmp_path):
    k = mi300x_host(tmp_path, gpus=2, driver=None)
    rc, _out, _err = k.run_command(None, ["modprobe", "gim", "vf_num=1,2"], 10)
    assert rc == 0
    assert k.driver_of("0000:83:00.0") == "gim" and len(k.vfs_of("0000:93:00.0")) == 2
    assert _errno(k, "sys/bus/pci/devices/0000:83:00.0/sriov_numvfs", "0") == errno.ENOENT
    k.in_use.add(k.vfs_of("0000:83:00.0")[0])
    assert k.run_command(None, ["modprobe", "-r", "gim"], 10)[0] == 124
    k.in_use.clear()
    assert k.run_command(None, ["modprobe", "-r", "gim"], 10)[0] == 0
    assert k.driver_of("0000:83:00.0") is None and k.vfs_of("0000:83:00.0") == []


def test_mdev_create_and_remove(tmp_path):
    k = consumer_host(tmp_path)
    k.add_mdev_type("0000:01:00.0", "nvidia-474", "GRID A100-4C", available=1)
    create = "sys/class/mdev_bus/0000:01:00.0/mdev_supported_types/nvidia-474/create"
    assert _errno(k, create, "not-a-uuid") == errno.EINVAL
    k.write(k.p(create), "11111111-2222-3333-4444-555555555555")
    assert _errno(k, create, "11111111-2222-3333-4444-555555555555") == errno.EEXIST
    assert _errno(k, create, "11111111-2222-3333-4444-666666666666") == errno.EUSERS
    k.write(k.p("sys/bus/mdev/devices/11111111-2222-3333-4444-555555555555/remove"), "1")
    assert k.snapshot()["mdevs"] == []


def test_unknown_attribute_is_not_writable(tmp_path):
    k = mi300x_host(tmp_path, gpus=1)
    assert _errno(k, "sys/bus/pci/devices/0000:83:00.0/vendor", "0x10de") == errno.EACCES
    assert _errno(k, "sys/bus/pci/devices/0000:99:00.0/driver_override", "x") == errno.ENOENT


def test_modprobe_of_unknown_module_fails(tmp_path):
    k = FakeKernel(tmp_path)
    rc, _out, err = k.run_command(None, ["modprobe", "nonexistent"], 10)
    assert rc == 1 and "not found" in err
