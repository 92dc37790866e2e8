"""The sysfs reader and the two host edges, with real files, a FIFO and real commands."""

from __future__ import annotations

import contextlib
import os
import threading
import time

import pytest
from fake_sysfs import consumer_host

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError
from ansible_collections.rocm.madengine.plugins.module_utils.host import sysfs as _sysfs


@pytest.mark.parametrize("raw, full", [
    ("83:00.0", "0000:83:00.0"), ("0000:83:00.0", "0000:83:00.0"), ("0001:C1:1F.7", "0001:c1:1f.7"),
    (" 03:00.1 ", "0000:03:00.1"),
])
def test_normalize_bdf(raw, full):
    assert _sysfs.normalize_bdf(raw) == full


@pytest.mark.parametrize("raw", ["83:00", "83:00.8", "83:20.0", "g3:00.0", "00000:83:00.0", "83-00-0"])
def test_normalize_bdf_rejects(raw):
    with pytest.raises(MadengineError, match=r"is not a PCI address"):
        _sysfs.normalize_bdf(raw)


def test_routing_id_round_trip():
    domain, rid = _sysfs.bdf_to_rid("0000:83:1f.7")
    assert rid == (0x83 << 8) | (0x1F << 3) | 7
    assert _sysfs.rid_to_bdf(domain, rid) == "0000:83:1f.7"


def test_reader_on_a_tree(tmp_path):
    k = consumer_host(tmp_path)
    s = _sysfs.Sysfs(k.root)
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


def test_a_blocking_write_times_out_instead_of_hanging(tmp_path):
    """A FIFO without a reader blocks open() like a busy unbind blocks write()."""
    fifo = str(tmp_path / "unbind")
    os.mkfifo(fifo)
    s = _sysfs.Sysfs(str(tmp_path))
    start = time.monotonic()
    with pytest.raises(_sysfs.WriteTimeout, match=r"Writing '0000:83:00.0' to /unbind did not finish within 1 s"):
        s.write(fifo, "0000:83:00.0", timeout=1)
    assert 0.9 < time.monotonic() - start < 5
    # release the blocked writer
    with contextlib.suppress(OSError):
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        time.sleep(0.2)
        os.close(fd)


def test_a_write_error_keeps_its_errno_across_the_thread(tmp_path):
    s = _sysfs.Sysfs(str(tmp_path))
    with pytest.raises(OSError) as info:
        s.write(str(tmp_path / "no-such-attribute"), "1", timeout=5)
    assert info.value.errno == 2


def test_wait_until_checks_first_then_polls():
    calls = []
    assert _sysfs.wait_until(lambda: calls.append(1) or True, 0) and len(calls) == 1
    flag = threading.Event()
    threading.Timer(0.2, flag.set).start()
    assert _sysfs.wait_until(flag.is_set, 5)
    assert not _sysfs.wait_until(lambda: False, 0.1)


def _real_module():
    from ansible.module_utils.basic import AnsibleModule
    from ansible.module_utils.testing import patch_module_args

    with patch_module_args({}):
        return AnsibleModule(argument_spec={})


def test_run_command_edge_runs_real_programs():
    module = _real_module()
    assert _sysfs.run_command(module, ["true"], 5)[0] == 0
    rc, _out, err = _sysfs.run_command(module, ["no-such-program-here"], 5)
    assert rc == 127 and err == "no-such-program-here: command not found"
    start = time.monotonic()
    assert _sysfs.run_command(module, ["sleep", "30"], 1)[0] == 124
    assert time.monotonic() - start < 10
    assert _sysfs.run_command(module, ["/nonexistent/sriov-manage", "-e", "x"], 5)[0] == 127
