"""madengine_vm against a real libvirtd with QEMU in software emulation, booting a tiny Debian-kernel guest.

ci/libvirtd.sh starts virtlogd + libvirtd without systemd and prepares the guest (a kernel unpacked from
Debian's linux-image .deb plus a busybox initramfs); the fixture runs it when the daemon does not answer.
The guest prints the disks it sees, the seed's instance-id and its address as a cloud-init "ci-info" row.
"""

from __future__ import annotations

import base64
import glob
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import libvirt
import pytest
from conftest import ansible_env, run_playbook, task_results
from vm_helpers import make_base, pci_drivers

from ansible_collections.rocm.madengine.plugins.modules import madengine_vm

pytestmark = [pytest.mark.libvirtd, pytest.mark.slow]

HERE = os.path.dirname(os.path.abspath(__file__))
CI = os.path.join(HERE, "..", "..", "ci", "libvirtd.sh")
PLAYBOOK = os.path.join(HERE, "playbooks", "vm_lifecycle.yml")
GUEST_DIR = os.environ.get("MADCI_GUEST_DIR", "/var/cache/madci/guest")
URI = "qemu:///system"


def _daemon_up():
    return subprocess.run(["virsh", "-c", URI, "version"], capture_output=True, check=False).returncode == 0


@pytest.fixture(scope="module")
def libvirtd():
    if not (_daemon_up() and os.path.exists(os.path.join(GUEST_DIR, ".ready-v1"))):
        proc = subprocess.run(["bash", CI], capture_output=True, text=True, check=False, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    conn = libvirt.open(URI)
    yield conn
    conn.close()


@pytest.fixture
def vm(tmp_path, libvirtd):
    """Options of a throw-away VM with a unique name; afterwards, nothing of it may be left."""
    name = "madengine-vm-ci-%s" % uuid.uuid4().hex[:8]
    dirs = {k: tmp_path / k for k in ("images", "state", "logs")}
    for d in dirs.values():
        d.mkdir()
    options = dict(
        name=name, uri=URI, base_image=make_base(tmp_path / "base.qcow2"),
        kernel=os.path.join(GUEST_DIR, "vmlinuz"), initrd=os.path.join(GUEST_DIR, "initramfs.gz"),
        image_dir=str(dirs["images"]), state_dir=str(dirs["state"]), log_dir=str(dirs["logs"]),
    )
    yield options
    leftover = [d.name() for d in libvirtd.listAllDomains(0) if d.name() == name]
    for d in leftover:  # never leave a running QEMU behind, even when an assertion failed
        dom = libvirtd.lookupByName(d)
        if dom.isActive():
            dom.destroy()
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
    assert leftover == [], "domain %s was left behind" % name


def _module_args(vm, **extra):
    args = dict(name=vm["name"], uri=URI, base_image=vm["base_image"], vcpus=1, memory="256M", disk_size="128M",
                firmware="bios", network_type="user", kernel=vm["kernel"], initrd=vm["initrd"],
                kernel_args="console=ttyS0 quiet", disk_cache="writeback", ip_sources=["console"], retry_delay=0.2,
                image_dir=vm["image_dir"], state_dir=vm["state_dir"], log_dir=vm["log_dir"])
    args.update(extra)
    return args


def _files(vm):
    return sorted(p for key in ("image_dir", "state_dir", "log_dir") for p in glob.glob(os.path.join(vm[key], "*")))


def test_boot_console_ip_and_guaranteed_cleanup(vm, libvirtd):
    """define → start → console + IP → idempotent re-run → destroy → undefine → nothing left."""
    start = time.monotonic()
    rc, out, log = run_playbook(PLAYBOOK, extra_vars={"vm": dict(vm, wait_for="ip")}, timeout=240)
    elapsed = time.monotonic() - start
    assert rc == 0, log
    started = task_results(out, "Start the VM")["localhost"]
    assert started["changed"] is True and started["domain_type"] == "qemu"
    assert started["ip"] == "10.0.2.15"  # QEMU user-mode networking's DHCP address, read from the console
    assert started["domain_type_reasons"]  # software emulation was chosen, and why
    again = task_results(out, "Start it again with the same options")["localhost"]
    assert again["changed"] is False and again["ip"] == "10.0.2.15" and again["uuid"] == started["uuid"]
    console = base64.b64decode(task_results(out, "Read the guest console")["localhost"]["content"]).decode()
    assert "madengine-guest: disks sr0 vda" in console  # overlay on virtio, seed on the CD-ROM (seed_device cdrom)
    assert "instance-id" in console and "iid-%s-" % started["uuid"] in console  # the seed reached the guest
    assert "| %s |" % started["mac"] in console
    removed = task_results(out, "Remove the VM and everything it owns")["localhost"]
    assert removed["changed"] is True and removed["clean"] == {"ok": True, "problems": []}
    assert removed["removed"][0] == "domain" and started["overlay"] in removed["removed"]
    assert any(a.startswith("destroyed domain") for a in removed["actions"])
    assert _files(vm) == []
    print("\nreal libvirtd boot test: %.1f s (playbook incl. guest boot)" % elapsed)


def test_failure_after_start_still_removes_everything(vm):
    rc, out, log = run_playbook(PLAYBOOK, extra_vars={"vm": dict(vm, wait_for="none"), "vm_fail_after_start": True},
                                timeout=240)
    assert rc != 0, log
    assert task_results(out, "Fail on purpose after the VM started")["localhost"]["failed"] is True
    removed = task_results(out, "Remove the VM and everything it owns")["localhost"]
    assert removed["changed"] is True and removed["clean"]["ok"] is True
    assert _files(vm) == []


def test_uefi_nvram_is_created_and_removed(vm, module_runner):
    result = module_runner(madengine_vm, _module_args(vm, firmware="efi", wait_for="none"))
    assert not result.failed, result.get("msg")
    assert result["nvram"] and os.path.isfile(result["nvram"])
    gone = module_runner(madengine_vm, dict(name=vm["name"], uri=URI, state="absent", image_dir=vm["image_dir"],
                                            state_dir=vm["state_dir"], log_dir=vm["log_dir"]))
    assert not gone.failed, gone.get("msg")
    assert any(a.startswith("undefined domain %s (flags 0x17)" % vm["name"]) for a in gone["actions"])  # NVRAM flag
    assert not os.path.exists(result["nvram"]) and gone["clean"]["ok"] is True
    assert _files(vm) == []


def test_start_failure_is_not_retried_and_leaves_nothing(vm, module_runner):
    """A GPU hostdev on a host without VFIO: libvirt refuses to start; nothing stays defined, created or bound."""
    drivers = pci_drivers()
    result = module_runner(madengine_vm, _module_args(vm, hostdevs=["0000:af:00.0"], managed=False, retries=2,
                                                      wait_for="none", cpu_pinning="none"))
    assert result.failed
    assert result["msg"].startswith("VM %s could not be brought up and was not retried: " % vm["name"])
    assert result["msg"].endswith("Everything created for it was removed.")
    assert sum(a.startswith("defined domain") for a in result["actions"]) == 1
    assert _files(vm) == [] and pci_drivers() == drivers


def test_wait_timeout_is_retried_then_leaves_nothing(vm, module_runner):
    """User-mode networking has no DHCP leases: waiting for a lease times out on every attempt."""
    result = module_runner(madengine_vm, _module_args(vm, ip_sources=["lease"], boot_timeout=2, retries=1))
    assert result.failed
    assert result["msg"].startswith("VM %s could not be brought up after 2 attempts: VM %s did not report an IP "
                                    "address (sources: lease) within 2 s." % (vm["name"], vm["name"]))
    assert sum(a.startswith("destroyed domain") for a in result["actions"]) == 2
    assert _files(vm) == []


def _start_in_background(vm, tmp_path):
    """ansible-playbook waiting (for a lease that never comes) in its own process group, once QEMU runs."""
    playbook = tmp_path / "wait.yml"
    playbook.write_text(
        "---\n- name: Wait forever\n  hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n"
        "    - name: Start the VM\n      rocm.madengine.madengine_vm: '{{ args }}'\n")
    args = _module_args(vm, ip_sources=["lease"], boot_timeout=120, retries=0)
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", str(playbook),
           "-e", json.dumps({"args": args})]
    # a killed play cannot clean its temporary files up: they stay in the test's directory, not in /tmp
    proc = subprocess.Popen(cmd, env=ansible_env(TMPDIR=str(tmp_path)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    conn = libvirt.open(URI)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if conn.lookupByName(vm["name"]).isActive():
                    return proc
            except libvirt.libvirtError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode()
            time.sleep(0.2)
    finally:
        conn.close()
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("the VM never started")


def test_interrupted_play_tears_down_what_it_created(vm, tmp_path, libvirtd):
    proc = _start_in_background(vm, tmp_path)
    os.killpg(proc.pid, signal.SIGTERM)  # Ctrl-C / a stopped AWX job: the whole process group is signalled
    proc.wait(60)
    # ansible-playbook exits at once; the module process finishes its teardown (destroy takes ~2 s) by itself.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (_files(vm) or vm["name"] in [d.name() for d in libvirtd.listAllDomains(0)]):
        time.sleep(0.2)
    assert vm["name"] not in [d.name() for d in libvirtd.listAllDomains(0)]
    assert _files(vm) == []


def test_killed_play_is_cleaned_up_from_the_state_file(vm, tmp_path, libvirtd, module_runner):
    proc = _start_in_background(vm, tmp_path)
    os.killpg(proc.pid, signal.SIGKILL)  # no chance to clean up: the domain, overlay and seed stay
    proc.wait(60)
    assert libvirtd.lookupByName(vm["name"]).isActive()
    assert any(p.endswith(".json") for p in _files(vm))
    gone = module_runner(madengine_vm, dict(name=vm["name"], uri=URI, state="absent", image_dir=vm["image_dir"],
                                            state_dir=vm["state_dir"], log_dir=vm["log_dir"]))
    assert not gone.failed, gone.get("msg")
    assert gone["changed"] is True and gone["clean"] == {"ok": True, "problems": []}
    assert _files(vm) == []
