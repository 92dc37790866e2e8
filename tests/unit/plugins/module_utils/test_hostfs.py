"""The host reader (sys, dev, proc, tools under a host root) and the two host edges, with real files, a FIFO and
real commands."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time

import pytest
from fake_sysfs import consumer_host
from vm_helpers import hold_vfio

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError
from ansible_collections.rocm.madengine.plugins.module_utils.host import hostfs as _hostfs


@pytest.mark.parametrize("raw, full", [
    ("83:00.0", "0000:83:00.0"), ("0000:83:00.0", "0000:83:00.0"), ("0001:C1:1F.7", "0001:c1:1f.7"),
    (" 03:00.1 ", "0000:03:00.1"), ("1:2:3.4", "0001:02:03.4"), ("0000:C3:00.1", "0000:c3:00.1"),
])
def test_normalize_bdf(raw, full):
    assert _hostfs.normalize_bdf(raw) == full


@pytest.mark.parametrize("raw", ["83:00", "83:00.8", "g3:00.0", "00000:83:00.0", "83-00-0", "gpu0", ""])
def test_normalize_bdf_rejects(raw):
    with pytest.raises(MadengineError, match=r"^%r is not a PCI address: expected DDDD:BB:DD\.F \(0000:83:00\.0\) "
                                             r"or BB:DD\.F \(83:00\.0\)\.$" % raw):
        _hostfs.normalize_bdf(raw)


def test_normalize_bdf_names_what_the_address_is_for():
    with pytest.raises(MadengineError, match=r"^hostdev 'gpu0' is not a PCI address: expected"):
        _hostfs.normalize_bdf("gpu0", "hostdev")
    with pytest.raises(MadengineError, match=r"^hostdev '83:20.0' has slot 0x20; PCI slots go up to 0x1f\.$"):
        _hostfs.normalize_bdf("83:20.0", "hostdev")


@pytest.mark.parametrize("value, vendor", [("auto", None), ("any", None), ("NONE", None), (None, None),
                                           ("AMD", "AMD"), ("nvidia", "NVIDIA")])
def test_vendor_filter_is_the_same_for_every_module(value, vendor):
    assert _hostfs.vendor_filter(value) == vendor


def test_routing_id_round_trip():
    domain, rid = _hostfs.bdf_to_rid("0000:83:1f.7")
    assert rid == (0x83 << 8) | (0x1F << 3) | 7
    assert _hostfs.rid_to_bdf(domain, rid) == "0000:83:1f.7"


def test_reader_on_a_tree(tmp_path):
    k = consumer_host(tmp_path)
    s = _hostfs.HostFs(k.root)
    assert s.pci_devices() == ["0000:00:01.0", "0000:00:02.0", "0000:01:00.0", "0000:01:00.1", "0000:03:00.0"]
    assert s.driver("0000:01:00.0") == "nvidia" and s.override("0000:01:00.0") is None
    assert s.iommu_group("0000:01:00.0") == "2"
    assert s.group_members("2") == ["0000:00:01.0", "0000:01:00.0", "0000:01:00.1"]
    assert s.class_code("0000:01:00.1") == 0x040300
    assert s.bar_sizes("0000:01:00.0") == [0x4000000000, 0x200000]
    k.write(k.p("sys/bus/pci/devices/0000:03:00.0/sriov_numvfs"), "2")
    assert s.virtfns("0000:03:00.0") == ["0000:03:10.0", "0000:03:10.2"]
    assert s.physfn("0000:03:10.2") == "0000:03:00.0"
    assert s.rel(s.dev_path("0000:03:00.0", "class")) == "/sys/bus/pci/devices/0000:03:00.0/class"
    assert s.gpu_functions() == ["0000:01:00.0"]  # the boot VGA is an Intel GPU: neither AMD nor NVIDIA
    assert s.gpu_functions("NVIDIA", exclude_boot_vga=True) == ["0000:01:00.0"]
    assert s.gpu_functions("AMD") == [] and s.is_bridge("0000:00:01.0") and s.is_boot_vga("0000:00:02.0")


def test_the_host_root_holds_sys_dev_proc_etc(tmp_path):
    root = tmp_path / "node"
    for rel, text in (("proc/cpuinfo", "vendor_id\t: AuthenticAMD\nflags\t\t: fpu svm\naddress sizes\t: 52 bits "
                                       "physical, 57 bits virtual\n"),
                      ("proc/meminfo", "MemTotal:       1024 kB\nMemAvailable:    512 kB\n"),
                      ("proc/cmdline", "root=/dev/sda1 iommu=pt\n"), ("proc/sys/kernel/osrelease", "6.1.0-node\n"),
                      ("sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "7\n"),
                      ("etc/modprobe.d/x.conf", "blacklist amdgpu\n")):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    host = _hostfs.HostFs(str(root))
    assert host.cpuinfo() == ({"fpu", "svm"}, "AuthenticAMD", 52)
    assert host.meminfo("MemAvailable") == 512 and host.meminfo("Nope") is None
    assert host.cmdline() == ["root=/dev/sda1", "iommu=pt"] and host.kernel_release() == "6.1.0-node"
    assert host.free_hugepages(2048) == (7, str(root / "sys/kernel/mm/hugepages/hugepages-2048kB"))
    assert host.free_hugepages(1048576)[0] is None
    assert host.glob("/etc/modprobe.d/*.conf") == [str(root / "etc/modprobe.d/x.conf")]
    assert host.path("/dev/kvm") == host.path("dev", "kvm") == str(root / "dev/kvm")
    assert host.shown(str(root / "var/lib/x.qcow2")) == "/var/lib/x.qcow2" and host.shown("/elsewhere") == "/elsewhere"


def test_sys_and_dev_can_live_elsewhere(tmp_path):
    """madengine_run's older sysfs_root and dev_root: /sys and /dev outside the host root."""
    host = _hostfs.HostFs(str(tmp_path / "root"), sys_dir=str(tmp_path / "sys"), dev_dir=str(tmp_path / "devices"))
    assert host.path("/sys/bus/pci") == str(tmp_path / "sys/bus/pci") and host.path("sys") == str(tmp_path / "sys")
    assert host.path("/dev/kfd") == str(tmp_path / "devices/kfd") and host.path("/proc") == str(tmp_path / "root/proc")
    assert host.rel(str(tmp_path / "sys/bus/pci")) == "/sys/bus/pci" and host.rel(str(tmp_path / "sys")) == "/sys"


def test_tools_under_a_host_root_come_before_path(tmp_path):
    root = tmp_path / "node"
    for rel in ("usr/bin/nvidia-smi", "opt/rocm/bin/amd-smi"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("#!/bin/sh\n")
        (root / rel).chmod(0o755)
    host = _hostfs.HostFs(str(root))
    assert host.find_tool("nvidia-smi") == str(root / "usr/bin/nvidia-smi")
    assert host.find_tool("amd-smi") == str(root / "opt/rocm/bin/amd-smi")
    assert host.find_tool("sh") == shutil.which("sh")
    assert _hostfs.HostFs("/").find_tool("nvidia-smi", ("/usr/bin",)) == shutil.which("nvidia-smi")


def test_vfio_holders_are_read_from_proc(tmp_path):
    k = consumer_host(tmp_path)
    host = _hostfs.HostFs(k.root)
    assert host.vfio_holders("0000:01:00.0") == ("2", [])
    hold_vfio(k.root, 4242, 2)
    hold_vfio(k.root, 17, 9)
    assert host.vfio_holders("0000:01:00.0") == ("2", ["4242"])
    assert host.vfio_holders("0000:00:00.0") == (None, [])


def test_a_blocking_write_times_out_instead_of_hanging(tmp_path):
    """A FIFO without a reader blocks open() like a busy unbind blocks write()."""
    fifo = str(tmp_path / "unbind")
    os.mkfifo(fifo)
    s = _hostfs.HostFs(str(tmp_path))
    start = time.monotonic()
    with pytest.raises(_hostfs.WriteTimeout, match=r"Writing '0000:83:00.0' to /unbind did not finish within 1 s"):
        s.write(fifo, "0000:83:00.0", timeout=1)
    assert 0.9 < time.monotonic() - start < 5
    # release the blocked writer
    with contextlib.suppress(OSError):
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        time.sleep(0.2)
        os.close(fd)


def test_a_write_error_keeps_its_errno_across_the_thread(tmp_path):
    s = _hostfs.HostFs(str(tmp_path))
    with pytest.raises(OSError) as info:
        s.write(str(tmp_path / "no-such-attribute"), "1", timeout=5)
    assert info.value.errno == 2


def test_wait_until_checks_first_then_polls():
    calls = []
    assert _hostfs.wait_until(lambda: calls.append(1) or True, 0) and len(calls) == 1
    flag = threading.Event()
    threading.Timer(0.2, flag.set).start()
    assert _hostfs.wait_until(flag.is_set, 5)
    assert not _hostfs.wait_until(lambda: False, 0.1)


def _real_module():
    from ansible.module_utils.basic import AnsibleModule
    from ansible.module_utils.testing import patch_module_args

    with patch_module_args({}):
        return AnsibleModule(argument_spec={})


def test_run_command_edge_runs_real_programs():
    module = _real_module()
    assert _hostfs.run_command(module, ["true"], 5)[0] == 0
    rc, _out, err = _hostfs.run_command(module, ["no-such-program-here"], 5)
    assert rc == 127 and err == "no-such-program-here: command not found"
    start = time.monotonic()
    assert _hostfs.run_command(module, ["sleep", "30"], 1)[0] == 124
    assert time.monotonic() - start < 10
    assert _hostfs.run_command(module, ["/nonexistent/sriov-manage", "-e", "x"], 5)[0] == 127
