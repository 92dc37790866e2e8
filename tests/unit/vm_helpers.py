"""Helpers for the madengine_vm tests: private libvirt test-driver URIs, base images, fake host trees."""

from __future__ import annotations

import contextlib
import glob
import os
import subprocess

# The tiny guest ci/libvirtd.sh prepares for the real-libvirtd tests (a Debian kernel and a busybox initramfs).
GUEST_DIR = os.environ.get("MADCI_GUEST_DIR", "/var/cache/madci/guest")
CI_LIBVIRTD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "ci", "libvirtd.sh")

# A test-driver node with a NAT network called "default", like a stock libvirt host. The test driver gives
# every connection to a test:///<file> URI its own private copy of this state.
NODE_XML = """<node>
  <network>
    <name>default</name>
    <bridge name='virbr0'/>
    <forward mode='nat'/>
    <ip address='192.168.122.1' netmask='255.255.255.0'>
      <dhcp><range start='192.168.122.2' end='192.168.122.254'/></dhcp>
    </ip>
  </network>
</node>
"""


def run_command(argv):
    """The ``run_command`` the module passes to module_utils, for direct calls from tests."""
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def private_uri(tmp_path):
    node = tmp_path / "libvirt-node.xml"
    node.write_text(NODE_XML)
    return "test://%s" % node


def make_base(path, size="64M"):
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True)
    return str(path)


def vm_dirs(tmp_path):
    dirs = {k: tmp_path / k for k in ("images", "state", "logs")}
    for d in dirs.values():
        d.mkdir(exist_ok=True)
    return dirs


def fake_host(root, kvm=False, gpus=None, hugepages=None):
    """A host tree for ``host_root``: /proc/cpuinfo, /sys/module, /dev/kvm, PCI devices, huge pages.

    ``gpus`` maps a BDF to ``dict(numa_node=, local_cpulist=, iommu_group=)``.
    """
    os.makedirs(os.path.join(root, "proc"), exist_ok=True)
    flags = "fpu vme de pse tsc msr pae" + (" vmx" if kvm else "")
    with open(os.path.join(root, "proc", "cpuinfo"), "w") as handle:
        handle.write("processor\t: 0\nflags\t\t: %s\n\nprocessor\t: 1\nflags\t\t: %s\n" % (flags, flags))
    os.makedirs(os.path.join(root, "sys", "module", "kvm"), exist_ok=True)
    os.makedirs(os.path.join(root, "dev"), exist_ok=True)
    if kvm:
        os.makedirs(os.path.join(root, "sys", "module", "kvm_intel"), exist_ok=True)
        # a character device that opens read-write, as /dev/kvm must be
        os.symlink("/dev/null", os.path.join(root, "dev", "kvm"))
    for bdf, info in (gpus or {}).items():
        dev = os.path.join(root, "sys", "bus", "pci", "devices", bdf)
        os.makedirs(dev, exist_ok=True)
        for key in ("numa_node", "local_cpulist"):
            if key in info:
                with open(os.path.join(dev, key), "w") as handle:
                    handle.write("%s\n" % info[key])
        if "iommu_group" in info:
            group = os.path.join(root, "sys", "kernel", "iommu_groups", str(info["iommu_group"]))
            os.makedirs(group, exist_ok=True)
            os.symlink("../../../../kernel/iommu_groups/%s" % info["iommu_group"], os.path.join(dev, "iommu_group"))
    for size_kib, free in (hugepages or {}).items():
        base = os.path.join(root, "sys", "kernel", "mm", "hugepages", "hugepages-%dkB" % size_kib)
        os.makedirs(base, exist_ok=True)
        with open(os.path.join(base, "free_hugepages"), "w") as handle:
            handle.write("%d\n" % free)
    return str(root)


def hold_vfio(root, pid, group):
    """Make process ``pid`` of the fake tree hold /dev/vfio/<group> open, as QEMU does."""
    fd_dir = os.path.join(root, "proc", str(pid), "fd")
    os.makedirs(fd_dir, exist_ok=True)
    os.symlink("/dev/vfio/%s" % group, os.path.join(fd_dir, "17"))


def module_args(tmp_path, **overrides):
    """madengine_vm arguments for a private test-driver host under ``tmp_path``."""
    dirs = vm_dirs(tmp_path)
    base = tmp_path / "base.qcow2"
    if not base.exists():
        make_base(base)
    args = dict(
        name="madengine-vm-unit",
        uri=private_uri(tmp_path),
        base_image=str(base),
        memory="512M",
        vcpus=2,
        image_dir=str(dirs["images"]),
        state_dir=str(dirs["state"]),
        log_dir=str(dirs["logs"]),
        retry_delay=0.0,
    )
    if "host_root" not in overrides and "sysfs_root" not in overrides:
        args["host_root"] = fake_host(str(tmp_path / "host"))
    args.update(overrides)
    return args


def leftovers(tmp_path):
    """Files left in the VM directories of ``module_args`` (the base image is not in them)."""
    found = []
    for key in ("images", "state", "logs"):
        d = tmp_path / key
        if d.is_dir():
            found.extend(str(p) for p in d.iterdir())
    return sorted(found)


def spec_params(tmp_path, **overrides):
    """Full parameter dict, as AnsibleModule would hand it over (defaults included)."""
    params = dict(
        state="running", hostdevs=[], managed=False, mdevs=[], ssh_user="root", ssh_pubkey=None, user_data=None,
        wait_for="ip", ip_sources=["lease", "agent", "arp", "console"], ssh_port=22, boot_timeout=300, retries=3,
        recreate=False, stop_timeout=60, verify_clean=True, keep_logs=False, domain_type="auto", firmware="efi",
        machine="q35", cpu_pinning="auto", hugepages=False, hugepage_size="1G", maxphysaddr="passthrough",
        network="default", network_type="network", kernel=None, initrd=None, kernel_args=None, disk_cache="none",
        run_id=None, sweep=None, disk_size=None, passthrough={}, inventory={},
    )
    params.update(module_args(tmp_path, **overrides))
    return params


def ensure_libvirtd(uri="qemu:///system"):
    """Start libvirtd and prepare the test guest (ci/libvirtd.sh) unless both are ready already."""
    up = subprocess.run(["virsh", "-c", uri, "version"], capture_output=True, check=False).returncode == 0
    if not (up and os.path.exists(os.path.join(GUEST_DIR, ".ready-v1"))):
        proc = subprocess.run(["bash", CI_LIBVIRTD], capture_output=True, text=True, check=False, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def vm_name(node):
    """The name the madengine role gives a node's VM (madengine_vm_name's default)."""
    return "madengine-vm-" + node


@contextlib.contextmanager
def libvirt_session(uri, prefix):
    """A connection to ``uri`` (libvirtd started first); afterwards every domain named ``prefix...`` is destroyed
    and undefined, so that no QEMU is left behind even when an assertion failed."""
    import libvirt

    ensure_libvirtd(uri)
    handle = libvirt.open(uri)
    try:
        yield handle
    finally:
        for dom in handle.listAllDomains(0):
            if dom.name().startswith(prefix):
                if dom.isActive():
                    dom.destroy()
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        handle.close()


def pci_drivers():
    """Driver of every real PCI device of this machine: no VM test may leave any of them rebound."""
    found = {}
    for dev in glob.glob("/sys/bus/pci/devices/*"):
        link = os.path.join(dev, "driver")
        found[os.path.basename(dev)] = os.path.basename(os.readlink(link)) if os.path.islink(link) else None
    return found
