"""VM lifecycle on one libvirt test-driver connection: transitions, retries, teardown, guest address discovery."""

from __future__ import annotations

import random
import socket
import threading

import libvirt
import pytest
from vm_helpers import leftovers, run_command
from vm_helpers import spec_params as _params

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError
from ansible_collections.rocm.madengine.plugins.module_utils.vm import lifecycle as lc
from ansible_collections.rocm.madengine.plugins.module_utils.vm.spec import build_spec


def _error(code, message):
    """A libvirtError as the binding raises it (code, domain, message, level, …)."""
    exc = libvirt.libvirtError(message)
    exc.err = (code, 10, message, 2, None, None, None, 0, 0)
    return exc


class FaultyDomain(object):
    """A real test-driver domain whose create() fails the first ``failures`` times with ``error``."""

    def __init__(self, dom, faults):
        self._dom = dom
        self._faults = faults

    def create(self):
        if self._faults:
            raise self._faults.pop(0)
        return self._dom.create()

    def __getattr__(self, name):
        return getattr(self._dom, name)


class FaultyConnection(object):
    """Injects start failures at the libvirt boundary; everything else is the real test driver."""

    def __init__(self, conn, faults):
        self._conn = conn
        self.faults = list(faults)

    def defineXMLFlags(self, xml, flags):
        return FaultyDomain(self._conn.defineXMLFlags(xml, flags), self.faults)

    def lookupByName(self, name):
        return FaultyDomain(self._conn.lookupByName(name), self.faults)

    def __getattr__(self, name):
        return getattr(self._conn, name)


@pytest.fixture
def env(tmp_path):
    spec = build_spec(_params(tmp_path, retries=2, retry_delay=0.5), run_command)
    conn = lc.connect(_params(tmp_path)["uri"])
    yield tmp_path, spec, conn
    conn.close()


def test_full_lifecycle_on_one_connection(env):
    tmp_path, spec, conn = env
    life = lc.Lifecycle(conn, run_command)
    created = life.ensure(spec, "running")
    assert created["changed"] and created["ip"].startswith("192.168.122.")
    assert life.ensure(spec, "running")["changed"] is False
    stopped = life.ensure(spec, "stopped")
    assert stopped["changed"] is True and not conn.lookupByName(spec["name"]).isActive()
    assert life.ensure(spec, "stopped")["changed"] is False
    restarted = life.ensure(spec, "running")
    assert restarted["changed"] is True and restarted["attempts"] == 1
    removed = life.teardown(spec["name"], lc.load_record(spec["state_dir"], spec["name"]))
    assert removed[0] == "domain" and spec["overlay"] in removed and spec["state_file"] in removed
    assert life.verify_clean(spec["name"], spec["uuid"], [spec["overlay"], spec["seed"], spec["state_file"]]) == \
        {"ok": True, "problems": []}
    assert leftovers(tmp_path) == []


def test_transient_start_failure_is_retried_with_backoff(env):
    _tmp, spec, conn = env
    faulty = FaultyConnection(conn, [_error(lc.ERR_INTERNAL, "internal error: qemu unexpectedly closed the monitor")])
    slept = []
    life = lc.Lifecycle(faulty, run_command, sleep=slept.append)
    result = life.ensure(spec, "running")
    assert result["attempts"] == 2 and result["ip"]
    assert len(slept) == 1 and 0.4 <= slept[0] <= 0.6
    assert any(a.startswith("attempt 1 failed (internal error: qemu unexpectedly closed the monitor.)")
               for a in life.actions)
    # the failed attempt was torn down before the retry: one destroy-less undefine, then a fresh define
    first_undefine = next(i for i, a in enumerate(life.actions) if a.startswith("undefined"))
    assert life.actions.index("defined domain %s" % spec["name"]) < first_undefine


def test_configuration_errors_are_not_retried(env):
    tmp_path, spec, conn = env
    error = _error(lc.ERR_CONFIG_UNSUPPORTED, "unsupported configuration: host doesn't support VFIO PCI passthrough")
    slept = []
    life = lc.Lifecycle(FaultyConnection(conn, [error]), run_command, sleep=slept.append)
    with pytest.raises(MadengineError) as info:
        life.ensure(spec, "running")
    assert str(info.value) == (
        "VM madengine-vm-unit could not be brought up and was not retried: unsupported configuration: host doesn't "
        "support VFIO PCI passthrough. Everything created for it was removed.")
    assert slept == [] and leftovers(tmp_path) == [] and conn.listAllDomains(0) == []


def test_retries_give_up_after_the_last_attempt(env):
    tmp_path, spec, conn = env
    faults = [_error(lc.ERR_OPERATION_TIMEOUT, "Timed out during operation: cannot acquire state change lock")] * 3
    slept = []
    life = lc.Lifecycle(FaultyConnection(conn, faults), run_command, sleep=slept.append)
    with pytest.raises(MadengineError, match=r"^VM madengine-vm-unit could not be brought up after 3 attempts: "):
        life.ensure(spec, "running")
    assert len(slept) == 2 and slept[1] > slept[0]
    assert leftovers(tmp_path) == [] and conn.listAllDomains(0) == []


def test_an_interruption_tears_down_and_is_not_retried(env):
    tmp_path, spec, conn = env
    life = lc.Lifecycle(FaultyConnection(conn, [lc.Interrupted("interrupted by signal 15.")]), run_command)
    with pytest.raises(MadengineError, match=r"^VM madengine-vm-unit could not be brought up and was not retried: "
                                             r"interrupted by signal 15\. Everything created for it was removed\.$"):
        life.ensure(spec, "running")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("code, message, transient", [
    (lc.ERR_INTERNAL, "internal error: qemu unexpectedly closed the monitor: x", True),
    (lc.ERR_OPERATION_FAILED, "operation failed: process exited while connecting to monitor", True),
    (lc.ERR_SYSTEM, "Unable to read from monitor: Input/output error", True),
    (lc.ERR_OPERATION_TIMEOUT, "Timed out during operation", True),
    (lc.ERR_INTERNAL, "internal error: unknown CPU feature", False),
    (lc.ERR_XML, "XML error: bad", False),
    (lc.ERR_CONFIG_UNSUPPORTED, "unsupported configuration: host doesn't support VFIO PCI passthrough", False),
])
def test_transient_classification(code, message, transient):
    assert lc.is_transient(_error(code, message)) is transient


def test_wait_timeout_is_transient_and_base_image_errors_are_not():
    assert lc.is_transient(lc.WaitTimeout("late")) and not lc.is_transient(MadengineError("base image x"))


def test_backoff_doubles_with_bounded_jitter():
    delays = lc.backoff_delays(4, 5.0, rng=random.Random(7))
    for i, delay in enumerate(delays):
        assert 5.0 * 2 ** i * 0.8 <= delay <= 5.0 * 2 ** i * 1.2


class Undefinable(object):
    """Stands for a driver that rejects some undefine flags, as the test driver rejects NVRAM."""

    def __init__(self, rejected):
        self.rejected = rejected
        self.calls = []

    def isPersistent(self):
        return True

    def name(self):
        return "vm"

    def undefineFlags(self, flags):
        self.calls.append(flags)
        if flags & self.rejected:
            raise _error(lc.ERR_INVALID_ARG, "unsupported flags (0x%x) in function undefineFlags" % flags)

    def undefine(self):
        self.calls.append(0)


def test_undefine_falls_back_to_fewer_flags(env):
    _tmp, _spec, conn = env
    dom = conn.defineXML("<domain type='qemu'><name>plain</name><memory>262144</memory>"
                         "<os><type arch='x86_64' machine='q35'>hvm</type></os></domain>")
    assert lc.undefine(dom) == lc.UNDEFINE_MANAGED_SAVE | lc.UNDEFINE_SNAPSHOTS  # the test driver has no NVRAM flag
    fake = Undefinable(rejected=lc.UNDEFINE_CHECKPOINTS)
    assert lc.undefine(fake) == lc.UNDEFINE_NVRAM | lc.UNDEFINE_MANAGED_SAVE | lc.UNDEFINE_SNAPSHOTS
    everything = Undefinable(rejected=0xFF)
    assert lc.undefine(everything) == 0 and everything.calls[-1] == 0


def test_console_ip_prefers_our_mac_and_skips_loopback(tmp_path):
    log = tmp_path / "console.log"
    log.write_text(
        "ci-info: | Device |  Up  | Address | Mask | Scope | Hw-Address |\n"
        "ci-info: |   lo   | True | 127.0.0.1 | 255.0.0.0 | host | . |\n"
        "ci-info: | eth1 | True | 10.9.0.4 | 255.255.255.0 | global | 52:54:00:00:00:01 |\n"
        "ci-info: | eth0 | True |        192.168.122.45       | 255.255.255.0 | global | 52:54:00:aa:bb:cc |\n")
    assert lc.console_ip(str(log), "52:54:00:AA:BB:CC") == "192.168.122.45"
    assert lc.console_ip(str(log), "52:54:00:99:99:99") in ("10.9.0.4", "192.168.122.45")
    assert lc.console_ip(str(tmp_path / "none.log"), "x") is None


def test_pick_address_ignores_ipv6_and_prefers_our_mac():
    ours = [{"addr": "fe80::1", "type": 1}, {"addr": "10.0.0.5", "type": 0}]
    ifaces = {"a": {"hwaddr": "52:54:00:00:00:01", "addrs": [{"addr": "10.0.0.9", "type": 0}]},
              "b": {"hwaddr": "52:54:00:aa:bb:cc", "addrs": ours}}
    assert lc.pick_address(ifaces, "52:54:00:aa:bb:cc") == "10.0.0.5"
    assert lc.pick_address({}, "x") is None


def test_ssh_banner_on_a_local_listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(2)
    port = server.getsockname()[1]

    def serve(greetings):
        for greeting in greetings:
            client, _addr = server.accept()
            client.sendall(greeting)
            client.close()

    thread = threading.Thread(target=serve, args=([b"SSH-2.0-OpenSSH_9.2\r\n", b"HTTP/1.1 400\r\n"],))
    thread.start()
    try:
        assert lc.ssh_banner("127.0.0.1", port, timeout=2) is True
        assert lc.ssh_banner("127.0.0.1", port, timeout=2) is False
    finally:
        thread.join(5)
        server.close()
    assert lc.ssh_banner("127.0.0.1", port, timeout=1) is False  # nothing listens any more


def test_wait_reports_a_guest_that_stopped_while_booting(env):
    _tmp, spec, conn = env
    life = lc.Lifecycle(conn, run_command)
    life.ensure(spec, "stopped")
    dom = conn.lookupByName(spec["name"])
    with open(spec["console_log"], "w") as handle:
        handle.write("Kernel panic - not syncing: VFS: Unable to mount root fs\n")
    with pytest.raises(MadengineError, match=r"^VM madengine-vm-unit stopped while booting\. Console: Kernel panic"):
        life.wait(dom, spec)


def test_restarting_a_stopped_vm_retries_from_scratch(env):
    _tmp, spec, conn = env
    lc.Lifecycle(conn, run_command).ensure(spec, "stopped")
    faulty = FaultyConnection(conn, [_error(lc.ERR_SYSTEM, "Unable to read from monitor: Input/output error")])
    slept = []
    life = lc.Lifecycle(faulty, run_command, sleep=slept.append)
    result = life.ensure(spec, "running")
    assert result["changed"] is True and result["attempts"] == 2 and result["ip"] and len(slept) == 1
    # the first start failed, everything was removed, and the second attempt created the VM again
    assert [a.split()[0] for a in life.actions if not a.startswith("attempt")] == [
        "undefined", "removed", "removed", "created", "created", "defined", "started", "VM"]
    assert conn.lookupByName(spec["name"]).isActive()
