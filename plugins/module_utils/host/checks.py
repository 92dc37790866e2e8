# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""The read-only checks that tell whether a host can run (GPU passthrough) VMs.

Each check is a function named after what it checks, registered in display order with the checks
whose results it reads (``needs``). :meth:`HostChecks.run` runs the checks asked for by name and what
they need, so the VM module asks for exactly the checks it relies on (the domain type, the base image)
and iommu_kvm_info for all of them.

A check returns ``{id, name, status, detail, fix, reboot}``: ``id`` is its display number, ``status``
one of ``pass``, ``fail``, ``warn`` or ``skip``; a failure's ``fix`` says what to do, and ``reboot``
tells whether the fix only takes effect after a reboot. Nothing here changes the host: files are read
through the host reader, and the only programs run are ``virsh`` (version, domcapabilities, net-info),
``qemu-img info``, ``modinfo`` and ``dmesg``.
"""

from __future__ import annotations

import json
import os
import stat
import xml.etree.ElementTree as ET

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError
from ansible_collections.rocm.madengine.plugins.module_utils.host.hostfs import (
    VENDOR_IDS,
    is_dma_safe_driver,
    normalize_bdf,
    slot_of,
    vendor_filter,
)
from ansible_collections.rocm.madengine.plugins.module_utils.host.sizes import GIB, MIB, gib

QEMU_USERS = ("libvirt-qemu", "qemu")
LIBVIRT_IMAGES = "/var/lib/libvirt/images"
# Passthrough modes; "none" is a VM without passthrough, which needs only the checks marked plain_vm.
MODES = ("vfio", "sriov", "vgpu", "none")


class Check(object):
    __slots__ = ("number", "name", "func", "needs", "plain_vm")

    def __init__(self, number, name, func, needs, plain_vm):
        self.number = number
        self.name = name
        self.func = func
        self.needs = tuple(needs)
        self.plain_vm = plain_vm


CHECKS = []   # in display order


def check(name, needs=(), plain_vm=False):
    """Register the decorated function as check ``name``, after the ones registered before it.

    ``needs``: the checks whose results it reads or whose input it shares; ``plain_vm``: a VM without GPU
    passthrough needs it too.
    """
    def register(func):
        CHECKS.append(Check(len(CHECKS) + 1, name, func, needs, plain_vm))
        return func
    return register


def check_names():
    return [c.name for c in CHECKS]


def default_checks(mode):
    """The checks that run when none are named: all of them, or for mode none those a plain VM needs."""
    return [c.name for c in CHECKS if c.plain_vm or mode != "none"]


def result(status, detail, fix=None, reboot=False):
    return {"status": status, "detail": detail, "fix": fix, "reboot": bool(reboot and status == "fail")}


def size_text(size):
    return gib(size) if size >= GIB else "%d MiB" % (size // MIB)


def hugepages_problem(host, memory, page):
    """None, or the sentence saying why the free huge pages of ``page`` bytes cannot hold ``memory`` bytes."""
    free, base = host.free_hugepages(page // 1024)
    need = -(-memory // page)
    if free is None:
        return "Huge pages of %s are not available on this host (%s is missing)." % (
            size_text(page), host.shown(os.path.join(base, "free_hugepages")))
    if free < need:
        return "%d free %s huge pages, the VM needs %d." % (free, size_text(page), need)
    return None


class HostChecks(object):
    """Runs checks on ``host`` (a :class:`HostFs`) for one VM shape and passthrough mode.

    ``run(argv, timeout) -> (rc, out, err)`` runs programs; ``which(name) -> path or None`` finds them
    (default: the host reader's tool lookup). Paths of the VM (``base_image``, ``image_dir``) are real
    paths; messages show them as the host sees them. Sizes are bytes; ``disk_size`` 0 has no limit.
    """

    def __init__(self, host, run, which=None, mode="vfio", gpu_ids=(), gpu_vendor="auto", include_functions=True,
                 base_image=None, memory=4 * GIB, disk_size=20 * GIB, image_dir=LIBVIRT_IMAGES, hugepages=False,
                 hugepage_size=GIB, network="default", network_type="network", libvirt_uri="qemu:///system",
                 timeout=30):
        self.host = host
        self.run_command = run
        self.which = which or host.find_tool
        self.mode = mode
        self.gpu_ids = [g for g in (gpu_ids or []) if str(g).strip()]
        self.vendor = vendor_filter(gpu_vendor)
        self.include_functions = include_functions
        self.base_image = base_image or None
        self.memory = memory
        self.disk_size = disk_size
        self.image_dir = image_dir
        self.hugepages = hugepages
        self.hugepage_size = hugepage_size
        self.network = network
        self.network_type = network_type
        self.uri = libvirt_uri
        self.timeout = timeout
        self.results = {}
        self.facts = {}
        self._gpus = None
        self.gpu_errors = []

    # ------------------------------------------------------------------ running
    @staticmethod
    def resolve(names=None):
        """The checks ``names`` (all when empty) and those they need, in display order."""
        wanted = set(names or check_names())
        unknown = sorted(wanted - set(check_names()))
        if unknown:
            raise MadengineError("Unknown host check(s) %s; the checks are: %s." % (
                ", ".join(unknown), ", ".join(check_names())))
        grown = True
        while grown:
            needed = set(n for c in CHECKS if c.name in wanted for n in c.needs)
            grown = not needed <= wanted
            wanted |= needed
        return [c for c in CHECKS if c.name in wanted]

    def run(self, names=None):
        """Run the checks ``names`` (by default those of the mode) and what they need; their results in order."""
        out = []
        for entry in self.resolve(names or default_checks(self.mode)):
            outcome = dict(entry.func(self))
            self.results[entry.name] = outcome
            out.append(dict(id=entry.number, name=entry.name, **outcome))
        return out

    def passed(self, name):
        return self.results.get(name, {}).get("status") in ("pass", "warn")

    def execute(self, argv):
        return self.run_command(argv, self.timeout)

    def shown(self, path):
        return self.host.shown(path)

    # ------------------------------------------------------------------ the GPUs checked
    @property
    def gpus(self):
        if self._gpus is None:
            self._gpus = self._select_gpus()
        return self._gpus

    def _select_gpus(self):
        if not self.gpu_ids:
            return self.host.gpu_functions(self.vendor, exclude_boot_vga=True, include_vfs=self.mode == "vgpu")
        found = []
        for raw in self.gpu_ids:
            try:
                bdf = normalize_bdf(raw)
            except MadengineError as exc:
                self.gpu_errors.append(str(exc))
                continue
            if not self.host.device_exists(bdf):
                self.gpu_errors.append("PCI device %s does not exist." % bdf)
            elif bdf not in found:
                found.append(bdf)
        return found

    def gpu_details(self):
        host = self.host
        return [{"bdf": b, "vendor": host.vendor(b), "device": host.read(host.dev_path(b, "device")),
                 "driver": host.driver(b), "iommu_group": host.iommu_group(b)} for b in self.gpus]

    def intel(self):
        return self.host.cpuinfo()[1] == "GenuineIntel"

    def kernel_args(self):
        """The IOMMU kernel arguments this host needs: intel_iommu=on on Intel CPUs, and iommu=pt."""
        return (["intel_iommu=on"] if self.intel() else []) + ["iommu=pt"]

    def blacklist(self):
        """Host drivers that must not load: amdgpu on AMD SR-IOV hosts, where GIM must own the PFs."""
        amd = [b for b in self.gpus if self.host.vendor(b) == VENDOR_IDS["AMD"]]
        return ["amdgpu"] if self.mode == "sriov" and amd else []


def summarize(checks):
    """Sentences for the report: failures (with their fix) and warnings."""
    failures, advisories, report = [], [], []
    for c in checks:
        line = "[%d] %s: %s" % (c["id"], c["name"], c["detail"])
        report.append("%-4s %s" % (c["status"].upper(), line))
        if c["status"] == "fail":
            failures.append(line + (" Fix: " + c["fix"] if c["fix"] else ""))
        elif c["status"] == "warn":
            advisories.append(line + (" Advice: " + c["fix"] if c["fix"] else ""))
    return failures, advisories, report


def last_line(text):
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def owner(path):
    try:
        import pwd

        return pwd.getpwuid(os.stat(path).st_uid).pw_name
    except (ImportError, KeyError, OSError):
        return None


# ======================================================================================================
# The checks, in display order (that order gives their numbers; the texts name other checks by number).


@check("cpu_virtualization")
def cpu_virtualization(c):
    flags, vendor, _bits = c.host.cpuinfo()
    if not flags:
        return result("fail", "/proc/cpuinfo has no flags line.", "Check that /proc is mounted.")
    found = sorted(flags & {"vmx", "svm"})
    if found:
        return result("pass", "CPU flag %s present (%s)." % (found[0], vendor or "unknown vendor"))
    return result(
        "fail", "/proc/cpuinfo has neither the vmx (Intel VT-x) nor the svm (AMD-V) flag, so KVM cannot run "
                "hardware-accelerated guests.",
        "Enable Intel VT-x or AMD-V (SVM) in the firmware setup; on a virtual machine, enable nested "
        "virtualisation on its host.")


@check("kvm_usable")
def kvm_usable(c):
    """The kvm module and a vendor module are loaded, and /dev/kvm is a character device that opens read-write.

    /dev/kvm alone proves nothing: some nested set-ups expose it without hardware virtualisation.
    """
    modules = [m for m in c.host.listdir(c.host.path("/sys/module")) if m == "kvm" or m.startswith("kvm_")]
    problems = []
    if "kvm" not in modules:
        problems.append("the kvm module is not loaded")
    if not set(modules) & {"kvm_intel", "kvm_amd"}:
        problems.append("neither kvm_intel nor kvm_amd is loaded%s" % (
            " (loaded: %s)" % ", ".join(modules) if modules else ""))
    problem = _kvm_node_problem(c.host.path("/dev/kvm"))
    if problem:
        problems.append(problem)
    if not problems:
        return result("pass", "KVM is loaded (%s) and /dev/kvm is usable." % ", ".join(modules))
    return result("fail", "KVM is not usable: %s." % "; ".join(problems),
                  "Load kvm_intel or kvm_amd (modprobe kvm_intel); it only loads when the CPU "
                  "virtualisation extensions are enabled (check 1).")


def _kvm_node_problem(node):
    try:
        if not stat.S_ISCHR(os.stat(node).st_mode):
            return "/dev/kvm is not a character device"
        os.close(os.open(node, os.O_RDWR))
    except FileNotFoundError:
        return "/dev/kvm does not exist"
    except OSError as exc:
        return "/dev/kvm cannot be opened read-write (%s)" % (exc.strerror or exc)
    return None


@check("iommu_enabled")
def iommu_enabled(c):
    units = c.host.listdir(c.host.path("/sys/class/iommu"))
    groups = c.host.listdir(c.host.path("/sys/kernel/iommu_groups"))
    if units and groups:
        return result("pass", "IOMMU active: %s, %d groups." % (", ".join(units), len(groups)))
    missing = " and ".join(p for p, v in (("/sys/class/iommu", units), ("/sys/kernel/iommu_groups", groups)) if not v)
    return result(
        "fail", "No active IOMMU: %s %s empty." % (missing, "are" if " and " in missing else "is"),
        "Enable VT-d (Intel) or AMD-Vi/IOMMU (AMD) in the firmware setup, add %s to the kernel command line "
        "(iommu_kvm_prep_apply: true writes a GRUB drop-in) and reboot." % " ".join(c.kernel_args()), reboot=True)


@check("iommu_cmdline", needs=("iommu_enabled",))
def iommu_cmdline(c):
    args = c.host.cmdline()
    red = [a for a in args if a in ("iommu=off", "intel_iommu=off", "amd_iommu=off")]
    if red:
        return result("fail", "The kernel command line disables the IOMMU: %s." % ", ".join(red),
                      "Remove %s from the kernel command line and reboot." % ", ".join(red), reboot=True)
    if c.intel() and "intel_iommu=on" not in args and not c.passed("iommu_enabled"):
        return result("fail", "Intel CPU and intel_iommu=on is not on the kernel command line.",
                      "Add intel_iommu=on iommu=pt to the kernel command line (iommu_kvm_prep_apply: true "
                      "writes a GRUB drop-in) and reboot.", reboot=True)
    if "iommu=pt" not in args and "iommu.passthrough=1" not in args:
        return result("warn", "iommu=pt is not set: host DMA goes through IOMMU translation (slower).",
                      "Add iommu=pt to the kernel command line.")
    return result("pass", "The kernel command line enables the IOMMU%s." % (
        " (intel_iommu=on)" if "intel_iommu=on" in args else ""))


@check("interrupt_remapping", needs=("iommu_enabled",))
def interrupt_remapping(c):
    if c.host.read_host("/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts") == "Y":
        return result("fail", "vfio_iommu_type1 allows unsafe interrupts (no interrupt remapping isolation).",
                      "Enable interrupt remapping (VT-d/AMD-Vi with IR in the firmware) and remove "
                      "allow_unsafe_interrupts=1 from modprobe.d, then reboot.", reboot=True)
    if not c.passed("iommu_enabled"):
        return result("skip", "Needs an active IOMMU (check 3).")
    for unit in c.host.listdir(c.host.path("/sys/class/iommu")):
        ecap = c.host.read_host("/sys/class/iommu/%s/intel-iommu/ecap" % unit)
        try:
            if ecap and int(ecap, 16) & 0x8:
                return result("pass", "%s supports interrupt remapping (ecap IR bit)." % unit)
        except ValueError:
            pass
    rc, out, _err = c.execute(["dmesg"])
    if rc != 0:
        return result("warn", "Cannot confirm interrupt remapping (dmesg is not readable).", "Run the check as root.")
    lowered = out.lower()
    if "enabled irq remapping" in lowered or "interrupt remapping enabled" in lowered:
        return result("pass", "The kernel log says interrupt remapping is enabled.")
    return result("warn", "The kernel log does not say that interrupt remapping is enabled.",
                  "Enable interrupt remapping in the firmware setup (part of VT-d / AMD-Vi).")


@check("vfio_available")
def vfio_available(c):
    host = c.host
    if host.driver_registered("vfio-pci") and os.path.exists(host.path("/dev/vfio/vfio")):
        return result("pass", "vfio-pci is registered and /dev/vfio/vfio exists.")
    release = host.kernel_release()
    builtin = host.read_host("/lib/modules/%s/modules.builtin" % release, "") or ""
    shipped = host.glob("/lib/modules/%s/kernel/drivers/vfio/pci/vfio-pci.ko*" % release)
    if "vfio-pci.ko" in builtin or "vfio_pci.ko" in builtin or shipped or host.module_loaded("vfio_pci"):
        return result("warn", "vfio-pci is available but not loaded.",
                      "gpu_passthrough loads it when needed; iommu_kvm_prep_apply: true loads it at boot.")
    return result("fail", "vfio-pci is not available for kernel %s (not loaded, not built in, no module file)."
                  % release, "Install a kernel with VFIO (CONFIG_VFIO_PCI), for example the distribution's generic "
                  "kernel, and boot it.", reboot=True)


@check("libvirt_reachable", plain_vm=True)
def libvirt_reachable(c):
    if not c.which("virsh"):
        return result("fail", "virsh is not installed, so libvirt cannot be reached.",
                      "Install libvirt and QEMU (iommu_kvm_prep_apply: true installs them) and start "
                      "libvirtd or virtqemud.")
    rc, out, err = c.execute(["virsh", "-c", c.uri, "version"])
    if rc == 0:
        lines = [line.strip() for line in out.splitlines() if line.strip()]
        return result("pass", "libvirt answers on %s (%s)." % (c.uri, "; ".join(lines[-2:])))
    return result("fail", "libvirt does not answer on %s: %s" % (c.uri, last_line(err or out)),
                  "Start libvirtd (or virtqemud) and check that this user may use %s." % c.uri)


@check("hypervisor_features", needs=("libvirt_reachable",))
def hypervisor_features(c):
    if not c.passed("libvirt_reachable"):
        return result("skip", "Needs libvirt (check 7).")
    rc, out, err = c.execute(["virsh", "-c", c.uri, "domcapabilities", "--virttype", "kvm", "--machine", "q35"])
    if rc != 0:
        return result("fail", "libvirt cannot describe KVM guests: %s" % last_line(err or out),
                      "Make KVM usable (checks 1 and 2) and install QEMU for x86_64.")
    try:
        caps = ET.fromstring(out)
    except ET.ParseError as exc:
        return result("fail", "virsh domcapabilities returned invalid XML: %s." % exc)
    missing = []
    hostdev = caps.find("./devices/hostdev")
    backends = [v.text for v in caps.findall("./devices/hostdev/enum[@name='pciBackend']/value")]
    if hostdev is None or hostdev.get("supported") != "yes":
        missing.append("PCI host devices")
    if "vfio" not in backends:
        missing.append("the vfio PCI backend (pciBackend is %s)" % (", ".join(backends) or "empty"))
    if "efi" not in [v.text for v in caps.findall("./os/enum[@name='firmware']/value")]:
        missing.append("EFI firmware (OVMF)")
    passthrough = caps.find("./cpu/mode[@name='host-passthrough']")
    if passthrough is None or passthrough.get("supported") != "yes":
        missing.append("host-passthrough CPU mode")
    if missing:
        return result("fail", "libvirt's KVM q35 guests lack %s." % ", ".join(missing),
                      "Enable the IOMMU and VFIO (checks 3 and 6) and install OVMF.")
    return result("pass", "KVM q35 guests support VFIO host devices, EFI and host-passthrough.")


@check("vm_tools", plain_vm=True)
def vm_tools(c):
    missing = [t for t in ("qemu-img", "qemu-system-x86_64", "virsh") if not c.which(t)]
    if not any(c.which(t) for t in ("genisoimage", "cloud-localds", "xorriso", "mkisofs")):
        missing.append("an ISO tool (genisoimage, cloud-localds or xorriso)")
    if not c.host.glob("/usr/share/qemu/firmware/*.json"):
        missing.append("OVMF firmware descriptors (/usr/share/qemu/firmware/*.json)")
    if missing:
        return result("fail", "Missing: %s." % ", ".join(missing),
                      "Install QEMU, libvirt, OVMF and genisoimage (iommu_kvm_prep_apply: true installs them).")
    return result("pass", "qemu-img, qemu-system-x86_64, virsh, an ISO tool and OVMF are installed.")


@check("base_image", plain_vm=True)
def base_image(c):
    """The base image exists, qemu-img reads it as qcow2, and its virtual size fits in the VM's disk."""
    if not c.base_image:
        return result("skip", "No base image given.")
    path, shown = c.base_image, c.shown(c.base_image)
    if not os.path.isfile(path):
        return result("fail", "Base image %s does not exist." % shown, "Build or copy the VM base image (qcow2) there.")
    if not c.which("qemu-img"):
        return result("fail", "Cannot inspect base image %s: qemu-img is not installed (check 9)." % shown,
                      "Install qemu-utils.")
    # --force-share: the base is the backing file of running VMs' overlays, and a leftover VM may still have it
    # open; only its header is read here, which is safe while others hold it.
    rc, out, err = c.execute(["qemu-img", "info", "--output=json", "--force-share", path])
    if rc != 0:
        return result("fail", "qemu-img cannot read base image %s: %s" % (shown, last_line(err or out)),
                      "Check that the file is a disk image.")
    try:
        info = json.loads(out)
    except ValueError:
        return result("fail", "qemu-img info returned invalid JSON for %s." % shown)
    size = int(info.get("virtual-size") or 0)
    c.facts["base_image_size"] = size
    problems = []
    if info.get("format") != "qcow2":
        problems.append("its format is %s, not qcow2" % info.get("format"))
    if c.disk_size and size > c.disk_size:
        problems.append("its virtual size (%s) exceeds the VM disk size (%s): the guest would see a truncated disk"
                        % (gib(size), gib(c.disk_size)))
    if problems:
        return result("fail", "Base image %s: %s." % (shown, "; ".join(problems)),
                      "Convert it with qemu-img convert -O qcow2, or raise the VM disk size.")
    if not os.stat(path).st_mode & stat.S_IROTH and owner(path) not in QEMU_USERS:
        return result("warn", "Base image %s is not readable by the QEMU user (%s)." % (shown, "/".join(QEMU_USERS)),
                      "chmod o+r the image or chown it to the QEMU user.")
    return result("pass", "Base image %s is qcow2, %s virtual." % (shown, gib(size)))


@check("memory_available", plain_vm=True)
def memory_available(c):
    available = c.host.meminfo("MemAvailable")
    if available is None:
        return result("fail", "Cannot read MemAvailable from /proc/meminfo.")
    need = c.memory // MIB
    if available * 1024 < c.memory:
        return result("fail", "%d MiB available, the VM needs %d MiB (VFIO pins all guest memory)." % (
            available // 1024, need), "Free memory or give the VM less.")
    if c.hugepages:
        problem = hugepages_problem(c.host, c.memory, c.hugepage_size)
        if problem:
            page = size_text(c.hugepage_size).replace(" GiB", "G").replace(" MiB", "M")
            return result("fail", problem, "Reserve them at boot (default_hugepagesz=%s hugepagesz=%s hugepages=N)."
                          % (page, page), reboot=True)
    return result("pass", "%d MiB available for a %d MiB VM." % (available // 1024, need))


@check("disk_space", plain_vm=True)
def disk_space(c):
    path = c.image_dir
    while not os.path.isdir(path) and path != os.path.dirname(path):
        path = os.path.dirname(path)
    stats = os.statvfs(path)
    free = stats.f_bavail * stats.f_frsize
    shown = c.shown(c.image_dir)
    if free < c.disk_size:
        detail = "%.1f GiB free for %s, the VM disk can grow to %s." % (free / GIB, shown, gib(c.disk_size))
        return result("fail", detail, "Free space there or use another image_dir.")
    return result("pass", "%.1f GiB free for %s." % (free / GIB, shown))


@check("libvirt_network", needs=("libvirt_reachable",), plain_vm=True)
def libvirt_network(c):
    if c.network_type != "network":
        return result("skip", "The VM uses %s, not a libvirt network." % (
            "the host bridge %s" % c.network if c.network_type == "bridge" else "QEMU user-mode networking"))
    if not c.passed("libvirt_reachable"):
        return result("skip", "Needs libvirt (check 7).")
    rc, out, err = c.execute(["virsh", "-c", c.uri, "net-info", c.network])
    problems = []
    if rc != 0:
        problems.append("libvirt has no '%s' network (%s)" % (c.network, last_line(err or out)))
    elif not any(line.split(":")[0].strip() == "Active" and line.split(":")[-1].strip() == "yes"
                 for line in out.splitlines()):
        problems.append("the '%s' network is not active" % c.network)
    if not c.which("dnsmasq"):
        problems.append("dnsmasq is not installed (the network's DHCP leases find the VM's address)")
    if problems:
        text = "; ".join(problems)
        return result("fail", text[0].upper() + text[1:] + ".",
                      "Install dnsmasq and run: virsh net-start %s; virsh net-autostart %s." % (c.network, c.network))
    return result("pass", "The '%s' network is active." % c.network)


@check("iommu_groups_viable", needs=("gpus_usable",))
def iommu_groups_viable(c):
    if c.mode == "none":
        return result("skip", "No GPU is passed through (mode none).")
    if c.mode != "vfio":
        return result("skip", "Mode %s passes VFs or mediated devices; they get their own groups." % c.mode)
    if not c.gpus:
        return result("skip", "No GPU to check (check 15).")
    host = c.host
    problems, notes = [], []
    for bdf in c.gpus:
        group = host.iommu_group(bdf)
        if group is None:
            problems.append("%s has no IOMMU group" % bdf)
            continue
        offenders = ["%s (%s)" % (m, host.driver(m)) for m in host.group_members(group)
                     if m != bdf and not (c.include_functions and slot_of(m) == slot_of(bdf))
                     and not is_dma_safe_driver(host.driver(m)) and not host.is_bridge(m)]
        if offenders:
            problems.append("group %s of %s also holds %s" % (group, bdf, ", ".join(offenders)))
        else:
            notes.append("%s: group %s" % (bdf, group))
    if problems:
        return result("fail", "IOMMU groups not viable for VFIO: %s." % "; ".join(problems),
                      "Enable the IOMMU (check 3); bind the other endpoints too (gpu_passthrough "
                      "group_policy: bind), move cards to other slots, or enable ACS in the firmware.")
    return result("pass", "Viable IOMMU groups: %s." % ", ".join(notes))


@check("gpus_usable")
def gpus_usable(c):
    gpus = c.gpus
    if c.gpu_errors:
        return result("fail", " ".join(c.gpu_errors), "Fix the GPU addresses.")
    if not gpus:
        return result("fail", "No GPU found: no %s PCI function with class 0x03xxxx or 0x12xxxx." % (
            c.vendor or "AMD or NVIDIA"), "Run on a GPU host, or check that the cards are seated and visible in lspci.")
    host = c.host
    dead = [b for b in gpus if host.is_dead(b)]
    console = [b for b in gpus if host.is_boot_vga(b)]
    no_reset = [b for b in gpus if not (host.exists(host.dev_path(b, "reset"))
                                        or host.exists(host.dev_path(b, "reset_method")))]
    if dead:
        return result("fail", "%s read%s vendor 0xffff: fallen off the bus." % (
            ", ".join(dead), "s" if len(dead) == 1 else ""), "Reboot the host.", reboot=True)
    if console:
        return result("fail", "%s carries the host console (boot_vga)." % ", ".join(console),
                      "Pass another GPU; the console GPU cannot be given to a VM safely.")
    if no_reset:
        return result("warn", "%s ha%s no reset method; it may not recover after a VM stops." % (
            ", ".join(no_reset), "s" if len(no_reset) == 1 else "ve"),
            "Prefer SR-IOV VFs, or load vendor-reset for older AMD GPUs.")
    return result("pass", "%d GPU(s): %s." % (len(gpus), ", ".join(gpus)))


@check("sriov_ready", needs=("gpus_usable",))
def sriov_ready(c):
    if c.mode != "sriov":
        return result("skip", "Only for mode sriov.")
    if not c.gpus:
        return result("skip", "No GPU to check (check 15).")
    host = c.host
    problems = []
    for bdf in c.gpus:
        if not host.read_int(host.dev_path(bdf, "sriov_totalvfs"), 0):
            problems.append("%s is not SR-IOV capable" % bdf)
        elif host.vendor(bdf) == VENDOR_IDS["AMD"]:
            if not host.module_loaded("gim") and c.execute(["modinfo", "gim"])[0] != 0:
                problems.append("the AMD GIM driver (gim) is not installed for %s" % bdf)
        elif host.vendor(bdf) == VENDOR_IDS["NVIDIA"]:
            if host.driver(bdf) != "nvidia":
                problems.append("%s is not bound to the nvidia host driver" % bdf)
            if not os.path.exists(host.path("/usr/lib/nvidia/sriov-manage")):
                problems.append("/usr/lib/nvidia/sriov-manage is missing")
    if problems:
        return result("fail", "SR-IOV is not ready: %s." % "; ".join(problems),
                      "Install the vendor's virtualisation host driver (AMD GIM from "
                      "amd/MxGPU-Virtualization, NVIDIA vGPU host driver).")
    return result("pass", "SR-IOV capable: %s." % ", ".join(c.gpus))


@check("vgpu_ready", needs=("gpus_usable",))
def vgpu_ready(c):
    if c.mode != "vgpu":
        return result("skip", "Only for mode vgpu.")
    if not c.gpus:
        return result("skip", "No GPU to check (check 15).")
    host = c.host
    problems, offers = [], []
    for bdf in c.gpus:
        types_dir = host.mdev_types_dir(bdf)
        if not os.path.isdir(types_dir):
            if host.exists(host.dev_path(bdf, "nvidia/creatable_vgpu_types")):
                problems.append("%s uses the vendor-specific VFIO vGPU interface, which is not supported" % bdf)
            else:
                problems.append("%s offers no mediated device types" % bdf)
            continue
        free = [t for t in host.listdir(types_dir)
                if host.read_int(os.path.join(types_dir, t, "available_instances"), 0) > 0]
        if free:
            offers.append("%s: %s" % (bdf, ", ".join(free)))
        else:
            problems.append("%s has no free mdev instance" % bdf)
    if problems:
        return result("fail", "vGPU is not ready: %s." % "; ".join(problems),
                      "Install the vGPU host driver; on SR-IOV GPUs enable the VFs (sriov-manage -e).")
    return result("pass", "mdev types with free instances: %s." % "; ".join(offers))


@check("bar_address_space", needs=("gpus_usable",))
def bar_address_space(c):
    if not c.gpus:
        return result("skip", "No GPU to check (check 15).")
    _flags, _vendor, bits = c.host.cpuinfo()
    if not bits:
        return result("warn", "/proc/cpuinfo gives no physical address size.", None)
    bars = sum(sum(c.host.bar_sizes(b)) for b in c.gpus)
    memory = (c.host.meminfo("MemTotal") or 0) * 1024
    if bars + memory >= (1 << bits):
        return result("warn", "GPU BARs (%.0f GiB) plus RAM (%.0f GiB) exceed the %d-bit physical address space."
                      % (bars / GIB, memory / GIB, bits),
                      "Pass fewer GPUs per VM; the guest uses maxphysaddr passthrough.")
    return result("pass", "GPU BARs (%.0f GiB) plus RAM (%.0f GiB) fit in %d physical address bits." % (
        bars / GIB, memory / GIB, bits))


@check("host_driver_ownership", needs=("gpus_usable",))
def host_driver_ownership(c):
    if not c.gpus:
        return result("skip", "No GPU to check (check 15).")
    host = c.host
    amd = [b for b in c.gpus if host.vendor(b) == VENDOR_IDS["AMD"]]
    if c.mode == "sriov" and amd:
        owned = [b for b in amd if host.driver(b) == "amdgpu"]
        if owned:
            blacklisted = any("blacklist amdgpu" in (host.read(f, "") or "")
                              for f in host.glob("/etc/modprobe.d/*.conf"))
            return result(
                "fail", "amdgpu owns %s; GIM must own the PFs%s." % (
                    ", ".join(owned), " (amdgpu is blacklisted in modprobe.d: reboot to apply)" if blacklisted else ""),
                "Blacklist amdgpu (iommu_kvm_prep_apply: true writes it to modprobe.d) and reboot.", reboot=True)
        return result("pass", "No AMD PF is owned by amdgpu.")
    return result("pass", "No host driver needs blacklisting in mode %s: gpu_passthrough rebinds at run time." % c.mode)


@check("lsm_image_labels")
def lsm_image_labels(c):
    active = []
    if c.host.read_host("/sys/module/apparmor/parameters/enabled") == "Y":
        active.append("AppArmor")
    if c.host.read_host("/sys/fs/selinux/enforce") == "1":
        active.append("SELinux")
    if not active:
        return result("pass", "No LSM enforcing (AppArmor and SELinux are off).")
    image_dir = os.path.normpath(c.shown(c.image_dir))
    if image_dir != LIBVIRT_IMAGES and not image_dir.startswith(LIBVIRT_IMAGES + "/"):
        return result("warn", "%s is enforcing and the images are in %s, outside %s." % (
            " and ".join(active), image_dir, LIBVIRT_IMAGES),
            "Keep VM images under %s so that libvirt's labels apply." % LIBVIRT_IMAGES)
    return result("pass", "%s is enforcing; images are under %s." % (" and ".join(active), LIBVIRT_IMAGES))
