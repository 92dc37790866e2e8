# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""The twenty read-only checks that tell whether a host can run GPU passthrough VMs.

Each check returns ``{id, name, status, detail, fix, reboot}`` with ``status`` one of ``pass``,
``fail``, ``warn`` or ``skip``; a failure's ``fix`` says what to do, and ``reboot`` tells whether the
fix only takes effect after a reboot. Nothing here changes the host: files are read under ``root``
and the only programs run are ``virsh`` (version, domcapabilities, net-info), ``qemu-img info``,
``modinfo`` and ``dmesg``.
"""

from __future__ import annotations

import glob
import json
import os
import stat
import xml.etree.ElementTree as ET

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError
from ansible_collections.rocm.madengine.plugins.module_utils.host.passthrough import (
    discover_gpus,
    is_dead,
    read_vendor,
)
from ansible_collections.rocm.madengine.plugins.module_utils.host.sysfs import (
    BRIDGE_CLASS,
    VENDOR_IDS,
    Sysfs,
    is_dma_safe_driver,
    normalize_bdf,
    slot_of,
)

GIB = 1 << 30
CHECK_NAMES = (
    (1, "cpu_virtualization"), (2, "kvm"), (3, "iommu"), (4, "iommu_cmdline"), (5, "interrupt_remapping"),
    (6, "vfio"), (7, "libvirt"), (8, "hypervisor_features"), (9, "tools"), (10, "base_image"), (11, "memory"),
    (12, "disk"), (13, "network"), (14, "iommu_groups"), (15, "gpus"), (16, "sriov"), (17, "vgpu"),
    (18, "large_bar"), (19, "host_driver"), (20, "lsm"),
)
QEMU_USERS = ("libvirt-qemu", "qemu")
LIBVIRT_IMAGES = "/var/lib/libvirt/images"


class HostCheck(object):
    """``run(argv, timeout) -> (rc, out, err)``; ``which(name) -> path or None``."""

    def __init__(self, root="/", run=None, which=None, mode="vfio", gpu_ids=(), gpu_vendor="any",
                 include_functions=True, base_image=None, vm_memory_mb=4096, disk_size_gb=20,
                 image_dir=LIBVIRT_IMAGES, hugepages=False, libvirt_uri="qemu:///system", timeout=30):
        self.root = root or "/"
        self.sysfs = Sysfs(self.root)
        self.run_command = run
        self.which = which
        self.mode = mode
        self.gpu_ids = list(gpu_ids or [])
        self.gpu_vendor = gpu_vendor
        self.include_functions = include_functions
        self.base_image = base_image
        self.vm_memory_mb = vm_memory_mb
        self.disk_size_gb = disk_size_gb
        self.image_dir = image_dir
        self.hugepages = hugepages
        self.uri = libvirt_uri
        self.timeout = timeout
        self.results = {}
        self.gpus = []
        self.gpu_errors = []

    # ------------------------------------------------------------------ helpers
    def p(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    def read(self, path, default=None):
        return self.sysfs.read(self.p(path), default)

    def run(self, argv):
        return self.run_command(argv, self.timeout)

    def cpuinfo(self):
        flags, vendor, phys_bits = set(), None, None
        for line in (self.read("/proc/cpuinfo", "") or "").splitlines():
            key, _sep, value = line.partition(":")
            key = key.strip()
            if key == "flags":
                flags.update(value.split())
            elif key == "vendor_id" and vendor is None:
                vendor = value.strip()
            elif key == "address sizes" and phys_bits is None:
                try:
                    phys_bits = int(value.split("bits physical")[0].strip())
                except ValueError:
                    pass
        return flags, vendor, phys_bits

    def meminfo(self, key):
        for line in (self.read("/proc/meminfo", "") or "").splitlines():
            if line.startswith(key + ":"):
                try:
                    return int(line.split()[1])
                except (IndexError, ValueError):
                    return None
        return None

    def cmdline(self):
        return (self.read("/proc/cmdline", "") or "").split()

    def nonempty_dir(self, path):
        return bool(self.sysfs.listdir(self.p(path)))

    def kernel_release(self):
        return self.read("/proc/sys/kernel/osrelease") or os.uname()[2]

    @staticmethod
    def result(status, detail, fix=None, reboot=False):
        return {"status": status, "detail": detail, "fix": fix, "reboot": bool(reboot and status == "fail")}

    def passed(self, number):
        return self.results.get(number, {}).get("status") in ("pass", "warn")

    # ------------------------------------------------------------------ driver
    def run_all(self):
        self._select_gpus()
        checks = []
        for number, name in CHECK_NAMES:
            outcome = getattr(self, "check_%d" % number)()
            self.results[number] = outcome
            entry = {"id": number, "name": name}
            entry.update(outcome)
            checks.append(entry)
        return checks

    def gpu_details(self):
        return [{"bdf": b, "vendor": read_vendor(self.sysfs, b),
                 "device": self.sysfs.read(self.sysfs.dev_path(b, "device")),
                 "driver": self.sysfs.driver(b), "iommu_group": self.sysfs.iommu_group(b)} for b in self.gpus]

    def _select_gpus(self):
        if self.gpu_ids:
            for raw in self.gpu_ids:
                try:
                    bdf = normalize_bdf(raw)
                except MadengineError as exc:
                    self.gpu_errors.append(str(exc))
                    continue
                if not self.sysfs.device_exists(bdf):
                    self.gpu_errors.append("PCI device %s does not exist." % bdf)
                else:
                    self.gpus.append(bdf)
        else:
            self.gpus = discover_gpus(self.sysfs, self.gpu_vendor, exclude_boot_vga=True,
                                      include_vfs=self.mode == "vgpu")

    # ------------------------------------------------------------------ 1-6: CPU, KVM, IOMMU, VFIO
    def check_1(self):
        flags, vendor, _bits = self.cpuinfo()
        if not flags:
            return self.result("fail", "/proc/cpuinfo has no flags line.", "Check that /proc is mounted.")
        found = sorted(flags & {"vmx", "svm"})
        if found:
            return self.result("pass", "CPU flag %s present (%s)." % (found[0], vendor or "unknown vendor"))
        return self.result(
            "fail", "/proc/cpuinfo has neither the vmx (Intel VT-x) nor the svm (AMD-V) flag, so KVM cannot run "
                    "hardware-accelerated guests.",
            "Enable Intel VT-x or AMD-V (SVM) in the firmware setup; on a virtual machine, enable nested "
            "virtualisation on its host.")

    def check_2(self):
        modules = [m for m in self.sysfs.listdir(self.p("/sys/module")) if m == "kvm" or m.startswith("kvm_")]
        problems = []
        if "kvm" not in modules:
            problems.append("the kvm module is not loaded")
        if not set(modules) & {"kvm_intel", "kvm_amd"}:
            problems.append("neither kvm_intel nor kvm_amd is loaded%s" % (
                " (loaded: %s)" % ", ".join(modules) if modules else ""))
        node = self.p("/dev/kvm")
        try:
            if not stat.S_ISCHR(os.stat(node).st_mode):
                problems.append("/dev/kvm is not a character device")
            elif not os.access(node, os.R_OK | os.W_OK):
                problems.append("/dev/kvm is not readable and writable")
        except OSError:
            problems.append("/dev/kvm does not exist")
        if not problems:
            return self.result("pass", "KVM is loaded (%s) and /dev/kvm is usable." % ", ".join(modules))
        return self.result("fail", "KVM is not usable: %s." % "; ".join(problems),
                           "Load kvm_intel or kvm_amd (modprobe kvm_intel); it only loads when the CPU "
                           "virtualisation extensions are enabled (check 1).")

    def check_3(self):
        units = self.sysfs.listdir(self.p("/sys/class/iommu"))
        groups = self.sysfs.listdir(self.p("/sys/kernel/iommu_groups"))
        if units and groups:
            return self.result("pass", "IOMMU active: %s, %d groups." % (", ".join(units), len(groups)))
        missing = " and ".join(p for p, v in (("/sys/class/iommu", units), ("/sys/kernel/iommu_groups", groups))
                               if not v)
        return self.result(
            "fail", "No active IOMMU: %s %s empty." % (missing, "are" if " and " in missing else "is"),
            "Enable VT-d (Intel) or AMD-Vi/IOMMU (AMD) in the firmware setup, add %s to the kernel command line "
            "(iommu_kvm_prep_apply: true writes a GRUB drop-in) and reboot." % (
                "intel_iommu=on iommu=pt" if self._intel() else "iommu=pt"), reboot=True)

    def _intel(self):
        return self.cpuinfo()[1] == "GenuineIntel"

    def check_4(self):
        args = self.cmdline()
        red = [a for a in args if a in ("iommu=off", "intel_iommu=off", "amd_iommu=off")]
        if red:
            return self.result("fail", "The kernel command line disables the IOMMU: %s." % ", ".join(red),
                               "Remove %s from the kernel command line and reboot." % ", ".join(red), reboot=True)
        if self._intel() and "intel_iommu=on" not in args and not self.passed(3):
            return self.result("fail", "Intel CPU and intel_iommu=on is not on the kernel command line.",
                               "Add intel_iommu=on iommu=pt to the kernel command line (iommu_kvm_prep_apply: true "
                               "writes a GRUB drop-in) and reboot.", reboot=True)
        if "iommu=pt" not in args and "iommu.passthrough=1" not in args:
            return self.result("warn", "iommu=pt is not set: host DMA goes through IOMMU translation (slower).",
                               "Add iommu=pt to the kernel command line.")
        return self.result("pass", "The kernel command line enables the IOMMU%s." % (
            " (intel_iommu=on)" if "intel_iommu=on" in args else ""))

    def check_5(self):
        unsafe = self.read("/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts")
        if unsafe == "Y":
            return self.result("fail", "vfio_iommu_type1 allows unsafe interrupts (no interrupt remapping isolation).",
                               "Enable interrupt remapping (VT-d/AMD-Vi with IR in the firmware) and remove "
                               "allow_unsafe_interrupts=1 from modprobe.d, then reboot.", reboot=True)
        if not self.passed(3):
            return self.result("skip", "Needs an active IOMMU (check 3).")
        for unit in self.sysfs.listdir(self.p("/sys/class/iommu")):
            ecap = self.read("/sys/class/iommu/%s/intel-iommu/ecap" % unit)
            if ecap:
                try:
                    if int(ecap, 16) & 0x8:
                        return self.result("pass", "%s supports interrupt remapping (ecap IR bit)." % unit)
                except ValueError:
                    pass
        rc, out, _err = self.run(["dmesg"])
        if rc == 0:
            lowered = out.lower()
            if "enabled irq remapping" in lowered or "interrupt remapping enabled" in lowered:
                return self.result("pass", "The kernel log says interrupt remapping is enabled.")
            return self.result("warn", "The kernel log does not say that interrupt remapping is enabled.",
                               "Enable interrupt remapping in the firmware setup (part of VT-d / AMD-Vi).")
        return self.result("warn", "Cannot confirm interrupt remapping (dmesg is not readable).",
                           "Run the check as root.")

    def check_6(self):
        driver = self.sysfs.driver_registered("vfio-pci")
        container = os.path.exists(self.p("/dev/vfio/vfio"))
        if driver and container:
            return self.result("pass", "vfio-pci is registered and /dev/vfio/vfio exists.")
        release = self.kernel_release()
        builtin = self.read("/lib/modules/%s/modules.builtin" % release, "") or ""
        shipped = glob.glob(self.p("/lib/modules/%s/kernel/drivers/vfio/pci/vfio-pci.ko*" % release))
        if "vfio-pci.ko" in builtin or "vfio_pci.ko" in builtin or shipped or self.sysfs.module_loaded("vfio_pci"):
            return self.result("warn", "vfio-pci is available but not loaded.",
                               "gpu_passthrough loads it when needed; iommu_kvm_prep_apply: true loads it at boot.")
        return self.result("fail", "vfio-pci is not available for kernel %s (not loaded, not built in, no module "
                                   "file)." % release,
                           "Install a kernel with VFIO (CONFIG_VFIO_PCI), for example the distribution's generic "
                           "kernel, and boot it.", reboot=True)

    # ------------------------------------------------------------------ 7-13: libvirt, tools, resources
    def check_7(self):
        if not self.which("virsh"):
            return self.result("fail", "virsh is not installed, so libvirt cannot be reached.",
                               "Install libvirt and QEMU (iommu_kvm_prep_apply: true installs them) and start "
                               "libvirtd or virtqemud.")
        rc, out, err = self.run(["virsh", "-c", self.uri, "version"])
        if rc == 0:
            lines = [line.strip() for line in out.splitlines() if line.strip()]
            return self.result("pass", "libvirt answers on %s (%s)." % (self.uri, "; ".join(lines[-2:])))
        return self.result("fail", "libvirt does not answer on %s: %s" % (self.uri, _last_line(err or out)),
                           "Start libvirtd (or virtqemud) and check that this user may use %s." % self.uri)

    def check_8(self):
        if not self.passed(7):
            return self.result("skip", "Needs libvirt (check 7).")
        rc, out, err = self.run(["virsh", "-c", self.uri, "domcapabilities", "--virttype", "kvm", "--machine", "q35"])
        if rc != 0:
            return self.result("fail", "libvirt cannot describe KVM guests: %s" % _last_line(err or out),
                               "Make KVM usable (checks 1 and 2) and install QEMU for x86_64.")
        try:
            caps = ET.fromstring(out)
        except ET.ParseError as exc:
            return self.result("fail", "virsh domcapabilities returned invalid XML: %s." % exc)
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
            return self.result("fail", "libvirt's KVM q35 guests lack %s." % ", ".join(missing),
                               "Enable the IOMMU and VFIO (checks 3 and 6) and install OVMF.")
        return self.result("pass", "KVM q35 guests support VFIO host devices, EFI and host-passthrough.")

    def check_9(self):
        missing = [t for t in ("qemu-img", "qemu-system-x86_64", "virsh") if not self.which(t)]
        if not any(self.which(t) for t in ("genisoimage", "cloud-localds", "xorriso", "mkisofs")):
            missing.append("an ISO tool (genisoimage, cloud-localds or xorriso)")
        if not glob.glob(self.p("/usr/share/qemu/firmware/*.json")):
            missing.append("OVMF firmware descriptors (/usr/share/qemu/firmware/*.json)")
        if missing:
            return self.result("fail", "Missing: %s." % ", ".join(missing),
                               "Install QEMU, libvirt, OVMF and genisoimage (iommu_kvm_prep_apply: true installs "
                               "them).")
        return self.result("pass", "qemu-img, qemu-system-x86_64, virsh, an ISO tool and OVMF are installed.")

    def check_10(self):
        if not self.base_image:
            return self.result("skip", "No base image given.")
        path = self.p(self.base_image)
        if not os.path.isfile(path):
            return self.result("fail", "Base image %s does not exist." % self.base_image,
                               "Build or copy the VM base image (qcow2) there.")
        if not self.which("qemu-img"):
            return self.result("fail", "Cannot inspect base image %s: qemu-img is not installed (check 9)." %
                               self.base_image, "Install qemu-utils.")
        rc, out, err = self.run(["qemu-img", "info", "--output=json", path])
        if rc != 0:
            detail = "qemu-img cannot read base image %s: %s" % (self.base_image, _last_line(err or out))
            return self.result("fail", detail, "Check that the file is a disk image and not in use.")
        try:
            info = json.loads(out)
        except ValueError:
            return self.result("fail", "qemu-img info returned invalid JSON for %s." % self.base_image)
        problems = []
        if info.get("format") != "qcow2":
            problems.append("its format is %s, not qcow2" % info.get("format"))
        size = info.get("virtual-size") or 0
        if size > self.disk_size_gb * GIB:
            problems.append("its virtual size (%.1f GiB) exceeds the VM disk size (%d GiB)" % (
                size / GIB, self.disk_size_gb))
        if problems:
            return self.result("fail", "Base image %s: %s." % (self.base_image, "; ".join(problems)),
                               "Convert it with qemu-img convert -O qcow2, or raise the VM disk size.")
        mode = os.stat(path).st_mode
        if not mode & stat.S_IROTH and _owner(path) not in QEMU_USERS:
            return self.result("warn", "Base image %s is not readable by the QEMU user (%s)." % (
                self.base_image, "/".join(QEMU_USERS)), "chmod o+r the image or chown it to the QEMU user.")
        return self.result("pass", "Base image %s is qcow2, %.1f GiB virtual." % (self.base_image, size / GIB))

    def check_11(self):
        available = self.meminfo("MemAvailable")
        if available is None:
            return self.result("fail", "Cannot read MemAvailable from /proc/meminfo.")
        need = self.vm_memory_mb * 1024
        if available < need:
            return self.result("fail", "%d MiB available, the VM needs %d MiB (VFIO pins all guest memory)." % (
                available // 1024, self.vm_memory_mb), "Free memory or give the VM less.")
        if self.hugepages:
            free = self.sysfs.read_int(self.p("/sys/kernel/mm/hugepages/hugepages-1048576kB/free_hugepages"), 0)
            if free * 1024 < self.vm_memory_mb:
                return self.result("fail", "%d free 1 GiB huge pages, the VM needs %d." % (
                    free, -(-self.vm_memory_mb // 1024)),
                    "Reserve them at boot (default_hugepagesz=1G hugepagesz=1G hugepages=N).", reboot=True)
        return self.result("pass", "%d MiB available for a %d MiB VM." % (available // 1024, self.vm_memory_mb))

    def check_12(self):
        path = self.p(self.image_dir)
        while not os.path.isdir(path) and path != os.path.dirname(path):
            path = os.path.dirname(path)
        stats = os.statvfs(path)
        free = stats.f_bavail * stats.f_frsize
        if free < self.disk_size_gb * GIB:
            return self.result("fail", "%.1f GiB free for %s, the VM disk can grow to %d GiB." % (
                free / GIB, self.image_dir, self.disk_size_gb), "Free space there or use another image_dir.")
        return self.result("pass", "%.1f GiB free for %s." % (free / GIB, self.image_dir))

    def check_13(self):
        if not self.passed(7):
            return self.result("skip", "Needs libvirt (check 7).")
        rc, out, err = self.run(["virsh", "-c", self.uri, "net-info", "default"])
        problems = []
        if rc != 0:
            problems.append("libvirt has no 'default' network (%s)" % _last_line(err or out))
        elif not any(line.split(":")[0].strip() == "Active" and line.split(":")[-1].strip() == "yes"
                     for line in out.splitlines()):
            problems.append("the 'default' network is not active")
        if not self.which("dnsmasq"):
            problems.append("dnsmasq is not installed (the network's DHCP leases find the VM's address)")
        if problems:
            text = "; ".join(problems)
            return self.result("fail", text[0].upper() + text[1:] + ".",
                               "Install dnsmasq and run: virsh net-start default; virsh net-autostart default.")
        return self.result("pass", "The 'default' network is active.")

    # ------------------------------------------------------------------ 14-19: GPUs
    def check_14(self):
        if self.mode != "vfio":
            return self.result("skip", "Mode %s passes VFs or mediated devices; they get their own groups." %
                               self.mode)
        if not self.gpus:
            return self.result("skip", "No GPU to check (check 15).")
        problems, notes = [], []
        for bdf in self.gpus:
            group = self.sysfs.iommu_group(bdf)
            if group is None:
                problems.append("%s has no IOMMU group" % bdf)
                continue
            offenders = []
            for member in self.sysfs.group_members(group):
                if member == bdf or (self.include_functions and slot_of(member) == slot_of(bdf)):
                    continue
                driver = self.sysfs.driver(member)
                if is_dma_safe_driver(driver) or (self.sysfs.class_code(member) >> 8) == BRIDGE_CLASS:
                    continue
                offenders.append("%s (%s)" % (member, driver))
            if offenders:
                problems.append("group %s of %s also holds %s" % (group, bdf, ", ".join(offenders)))
            else:
                notes.append("%s: group %s" % (bdf, group))
        if problems:
            return self.result("fail", "IOMMU groups not viable for VFIO: %s." % "; ".join(problems),
                               "Enable the IOMMU (check 3); bind the other endpoints too (gpu_passthrough "
                               "group_policy: bind), move cards to other slots, or enable ACS in the firmware.")
        return self.result("pass", "Viable IOMMU groups: %s." % ", ".join(notes))

    def check_15(self):
        if self.gpu_errors:
            return self.result("fail", " ".join(self.gpu_errors), "Fix the GPU addresses.")
        if not self.gpus:
            return self.result("fail", "No GPU found: no %s PCI function with class 0x03xxxx or 0x12xxxx." % (
                "AMD or NVIDIA" if self.gpu_vendor == "any" else self.gpu_vendor),
                "Run on a GPU host, or check that the cards are seated and visible in lspci.")
        dead, console, no_reset = [], [], []
        for bdf in self.gpus:
            if is_dead(self.sysfs, bdf):
                dead.append(bdf)
            if self.sysfs.read(self.sysfs.dev_path(bdf, "boot_vga")) == "1":
                console.append(bdf)
            if not (self.sysfs.exists(self.sysfs.dev_path(bdf, "reset"))
                    or self.sysfs.exists(self.sysfs.dev_path(bdf, "reset_method"))):
                no_reset.append(bdf)
        if dead:
            return self.result("fail", "%s read%s vendor 0xffff: fallen off the bus." % (
                ", ".join(dead), "s" if len(dead) == 1 else ""), "Reboot the host.", reboot=True)
        if console:
            return self.result("fail", "%s carries the host console (boot_vga)." % ", ".join(console),
                               "Pass another GPU; the console GPU cannot be given to a VM safely.")
        if no_reset:
            return self.result("warn", "%s ha%s no reset method; it may not recover after a VM stops." % (
                ", ".join(no_reset), "s" if len(no_reset) == 1 else "ve"),
                "Prefer SR-IOV VFs, or load vendor-reset for older AMD GPUs.")
        return self.result("pass", "%d GPU(s): %s." % (len(self.gpus), ", ".join(self.gpus)))

    def check_16(self):
        if self.mode != "sriov":
            return self.result("skip", "Only for mode sriov.")
        if not self.gpus:
            return self.result("skip", "No GPU to check (check 15).")
        problems = []
        for bdf in self.gpus:
            total = self.sysfs.read_int(self.sysfs.dev_path(bdf, "sriov_totalvfs"), 0)
            if not total:
                problems.append("%s is not SR-IOV capable" % bdf)
            elif read_vendor(self.sysfs, bdf) == VENDOR_IDS["AMD"]:
                if not self.sysfs.module_loaded("gim") and self.run(["modinfo", "gim"])[0] != 0:
                    problems.append("the AMD GIM driver (gim) is not installed for %s" % bdf)
            elif read_vendor(self.sysfs, bdf) == VENDOR_IDS["NVIDIA"]:
                if self.sysfs.driver(bdf) != "nvidia":
                    problems.append("%s is not bound to the nvidia host driver" % bdf)
                if not os.path.exists(self.p("/usr/lib/nvidia/sriov-manage")):
                    problems.append("/usr/lib/nvidia/sriov-manage is missing")
        if problems:
            return self.result("fail", "SR-IOV is not ready: %s." % "; ".join(problems),
                               "Install the vendor's virtualisation host driver (AMD GIM from "
                               "amd/MxGPU-Virtualization, NVIDIA vGPU host driver).")
        return self.result("pass", "SR-IOV capable: %s." % ", ".join(self.gpus))

    def check_17(self):
        if self.mode != "vgpu":
            return self.result("skip", "Only for mode vgpu.")
        if not self.gpus:
            return self.result("skip", "No GPU to check (check 15).")
        problems, offers = [], []
        for bdf in self.gpus:
            types_dir = self.sysfs.mdev_types_dir(bdf)
            if not os.path.isdir(types_dir):
                if self.sysfs.exists(self.sysfs.dev_path(bdf, "nvidia/creatable_vgpu_types")):
                    problems.append("%s uses the vendor-specific VFIO vGPU interface, which is not supported" % bdf)
                else:
                    problems.append("%s offers no mediated device types" % bdf)
                continue
            free = [t for t in self.sysfs.listdir(types_dir)
                    if self.sysfs.read_int(os.path.join(types_dir, t, "available_instances"), 0) > 0]
            if free:
                offers.append("%s: %s" % (bdf, ", ".join(free)))
            else:
                problems.append("%s has no free mdev instance" % bdf)
        if problems:
            return self.result("fail", "vGPU is not ready: %s." % "; ".join(problems),
                               "Install the vGPU host driver; on SR-IOV GPUs enable the VFs (sriov-manage -e).")
        return self.result("pass", "mdev types with free instances: %s." % "; ".join(offers))

    def check_18(self):
        if not self.gpus:
            return self.result("skip", "No GPU to check (check 15).")
        _flags, _vendor, bits = self.cpuinfo()
        if not bits:
            return self.result("warn", "/proc/cpuinfo gives no physical address size.", None)
        bars = sum(sum(self.sysfs.bar_sizes(b)) for b in self.gpus)
        memory = (self.meminfo("MemTotal") or 0) * 1024
        if bars + memory >= (1 << bits):
            return self.result("warn", "GPU BARs (%.0f GiB) plus RAM (%.0f GiB) exceed the %d-bit physical address "
                                       "space." % (bars / GIB, memory / GIB, bits),
                               "Pass fewer GPUs per VM; the guest uses maxphysaddr passthrough.")
        return self.result("pass", "GPU BARs (%.0f GiB) plus RAM (%.0f GiB) fit in %d physical address bits." % (
            bars / GIB, memory / GIB, bits))

    def check_19(self):
        if not self.gpus:
            return self.result("skip", "No GPU to check (check 15).")
        amd = [b for b in self.gpus if read_vendor(self.sysfs, b) == VENDOR_IDS["AMD"]]
        if self.mode == "sriov" and amd:
            owned = [b for b in amd if self.sysfs.driver(b) == "amdgpu"]
            if owned:
                blacklisted = any("blacklist amdgpu" in (self.sysfs.read(f, "") or "")
                                  for f in glob.glob(self.p("/etc/modprobe.d/*.conf")))
                return self.result(
                    "fail", "amdgpu owns %s; GIM must own the PFs%s." % (
                        ", ".join(owned), " (amdgpu is blacklisted in modprobe.d: reboot to apply)"
                        if blacklisted else ""),
                    "Blacklist amdgpu (iommu_kvm_prep_apply: true writes it to modprobe.d) and reboot.", reboot=True)
            return self.result("pass", "No AMD PF is owned by amdgpu.")
        return self.result("pass", "No host driver needs blacklisting in mode %s: gpu_passthrough rebinds at run "
                                   "time." % self.mode)

    def check_20(self):
        active = []
        if self.read("/sys/module/apparmor/parameters/enabled") == "Y":
            active.append("AppArmor")
        if self.read("/sys/fs/selinux/enforce") == "1":
            active.append("SELinux")
        if not active:
            return self.result("pass", "No LSM enforcing (AppArmor and SELinux are off).")
        image_dir = os.path.normpath(self.image_dir)
        if image_dir != LIBVIRT_IMAGES and not image_dir.startswith(LIBVIRT_IMAGES + "/"):
            return self.result("warn", "%s is enforcing and the images are in %s, outside %s." % (
                " and ".join(active), self.image_dir, LIBVIRT_IMAGES),
                "Keep VM images under %s so that libvirt's labels apply." % LIBVIRT_IMAGES)
        return self.result("pass", "%s is enforcing; images are under %s." % (" and ".join(active), LIBVIRT_IMAGES))


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


def _last_line(text):
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _owner(path):
    try:
        import pwd

        return pwd.getpwuid(os.stat(path).st_uid).pw_name
    except (ImportError, KeyError, OSError):
        return None
