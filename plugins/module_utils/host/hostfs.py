# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""The one reader of the host: its filesystem under a host root, and the two edges that change the host.

Every module that looks at the host (GPU detection, passthrough, the host checks, the VM's host
settings) reads through :class:`HostFs`: ``<root>/sys``, ``<root>/dev``, ``<root>/proc``, ``<root>/etc``
and the host's tools (``<root>/usr/bin`` and ``<root>/opt/rocm/bin`` before ``PATH`` when the root is
not ``/``). ``root`` is ``/`` on a real host; tests and fleets point it at another tree.

The host is changed only through two functions:

* :func:`write_attr` - the one place a sysfs attribute is written (a single ``write()`` on an
  existing file, as the kernel expects);
* :func:`run_command` - the one place a program (``modprobe``...) runs, through ``module.run_command``.

Both are looked up at call time, so a test can replace them with a fake kernel; the code that
decides what to write is the same either way.
"""

from __future__ import annotations

import errno
import glob
import os
import re
import shutil
import threading
import time

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError

VENDOR_IDS = {"AMD": "0x1002", "NVIDIA": "0x10de"}
VENDOR_NAMES = {"0x1002": "AMD", "0x10de": "NVIDIA"}
# gpu_vendor values of every module; "any" is the old name of "auto".
GPU_VENDOR_CHOICES = ["auto", "AMD", "NVIDIA", "NONE", "any"]
# Base classes that identify a GPU: display controllers and processing accelerators (MI300-class).
GPU_BASE_CLASSES = (0x03, 0x12)
BRIDGE_CLASS = 0x0604
# Drivers that leave an IOMMU group viable for VFIO (driver_managed_dma on current kernels).
DMA_SAFE_DRIVERS = ("pci-stub", "pcieport")
# Where the host's tools are looked for under a host root other than /, before PATH.
HOST_TOOL_DIRS = ("usr/bin", "usr/sbin", "bin", "sbin", "opt/rocm/bin")

_FULL_BDF = re.compile(r"^([0-9a-f]{4}):([0-9a-f]{2}):([01][0-9a-f])\.([0-7])$")
_ANY_BDF = re.compile(r"^(?:([0-9a-f]{1,4}):)?([0-9a-f]{1,2}):([0-9a-f]{1,2})\.([0-7])$")


def normalize_bdf(value, what=None):
    """The full lower-case ``DDDD:BB:DD.F`` form of a PCI address; ``BB:DD.F`` and short fields are accepted.

    ``what`` (``hostdev``...) starts the error sentence.
    """
    text = str(value).strip().lower()
    match = _ANY_BDF.match(text)
    label = "%s %r" % (what, value) if what else "%r" % (value,)
    if not match:
        raise MadengineError("%s is not a PCI address: expected DDDD:BB:DD.F (0000:83:00.0) or BB:DD.F (83:00.0)."
                             % label)
    domain, bus, slot, function = match.groups()
    if int(slot, 16) > 0x1F:
        raise MadengineError("%s has slot 0x%s; PCI slots go up to 0x1f." % (label, slot))
    return "%04x:%02x:%02x.%s" % (int(domain or "0", 16), int(bus, 16), int(slot, 16), function)


def bdf_to_rid(bdf):
    domain, bus, dev, fn = _FULL_BDF.match(bdf).groups()
    return int(domain, 16), (int(bus, 16) << 8) | (int(dev, 16) << 3) | int(fn, 16)


def rid_to_bdf(domain, rid):
    return "%04x:%02x:%02x.%x" % (domain, (rid >> 8) & 0xFF, (rid >> 3) & 0x1F, rid & 0x7)


def slot_of(bdf):
    """``DDDD:BB:DD`` - the part every function of one card shares."""
    return bdf.rsplit(".", 1)[0]


def is_dma_safe_driver(name):
    return name is None or "vfio" in name or name in DMA_SAFE_DRIVERS


def vendor_filter(gpu_vendor):
    """``AMD`` or ``NVIDIA`` for a GPU vendor option; None (either vendor) for auto, any and NONE."""
    value = (gpu_vendor or "auto").strip()
    return value.upper() if value.upper() in VENDOR_IDS else None


def errno_name(code):
    return errno.errorcode.get(code, str(code))


# --------------------------------------------------------------------------------------------
# The two edges. Tests replace these module attributes; nothing else writes or runs anything.

def write_attr(path, value):
    """Write ``value`` to an existing sysfs attribute with one ``write()``; errors keep their errno."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode("utf-8"))
    finally:
        os.close(fd)


def run_command(module, argv, timeout):
    """Run ``argv`` (a bare name is looked up like ``modprobe`` is) with a time limit.

    Returns ``(rc, stdout, stderr)``; rc 127 when the program is missing, 124 when it timed out.
    """
    exe = argv[0]
    if not os.path.isabs(exe):
        exe = module.get_bin_path(exe, required=False, opt_dirs=["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
    elif not os.access(exe, os.X_OK):
        exe = None
    if not exe:
        return 127, "", "%s: command not found" % argv[0]
    cmd = [exe] + list(argv[1:])
    limiter = module.get_bin_path("timeout", required=False)
    if limiter and timeout:
        cmd = [limiter, "--kill-after=5", str(int(timeout))] + cmd
    return module.run_command(cmd)


# --------------------------------------------------------------------------------------------


class WriteTimeout(MadengineError):
    pass


class HostFs(object):
    """The host's filesystem under ``root``; reads, and timed writes through :func:`write_attr`.

    ``sys_dir`` and ``dev_dir`` place ``/sys`` and ``/dev`` elsewhere (madengine_run's older
    ``sysfs_root`` and ``dev_root`` options); by default they are ``<root>/sys`` and ``<root>/dev``.
    """

    def __init__(self, root="/", sys_dir=None, dev_dir=None):
        self.root = root or "/"
        self.mounts = {"sys": sys_dir, "dev": dev_dir}

    # paths ------------------------------------------------------------------------------
    def path(self, *parts):
        """The real path of a host path: ``path("/sys/bus/pci")`` or ``path("sys", "bus", "pci")``."""
        rel = "/".join(p.strip("/") for p in parts if p and p.strip("/"))
        head, _sep, tail = rel.partition("/")
        if self.mounts.get(head):
            return os.path.join(self.mounts[head], tail) if tail else self.mounts[head]
        return os.path.join(self.root, rel)

    def rel(self, path):
        """The host path (``/sys/...``) of a real path, as shown in plans and messages."""
        for head, mount in self.mounts.items():
            if mount and (path + "/").startswith(mount.rstrip("/") + "/"):
                inner = os.path.relpath(path, mount)
                return "/" + head + ("" if inner == "." else "/" + inner)
        return "/" + os.path.relpath(path, self.root)

    def shown(self, path):
        """``path`` as the host sees it when it lies under the root, else unchanged."""
        if self.root == "/" or not (path + "/").startswith(self.root.rstrip("/") + "/"):
            return path
        return self.rel(path)

    def dev_path(self, bdf, attr=None):
        return self.path("sys/bus/pci/devices", bdf, attr)

    def driver_path(self, driver, attr=None):
        return self.path("sys/bus/pci/drivers", driver, attr)

    # reads ------------------------------------------------------------------------------
    def read(self, path, default=None):
        """The stripped text of a real path, or ``default``."""
        try:
            with open(path) as handle:
                return handle.read().strip()
        except (OSError, UnicodeDecodeError):
            return default

    def read_host(self, host_path, default=None):
        return self.read(self.path(host_path), default)

    def read_int(self, path, default=None, base=10):
        text = self.read(path)
        if text is None:
            return default
        try:
            return int(text, base)
        except ValueError:
            return default

    def link_name(self, path):
        """Basename of a symlink's target, or None when there is no link."""
        try:
            return os.path.basename(os.readlink(path))
        except OSError:
            return None

    def exists(self, path):
        return os.path.lexists(path)

    def listdir(self, path):
        try:
            return sorted(os.listdir(path))
        except OSError:
            return []

    def glob(self, host_pattern):
        return sorted(glob.glob(self.path(host_pattern)))

    # /proc and the kernel -----------------------------------------------------------------
    def cpuinfo(self):
        """``(flags, vendor_id, physical address bits)`` of the first CPU in /proc/cpuinfo."""
        flags, vendor, phys_bits = set(), None, None
        for line in (self.read_host("/proc/cpuinfo", "") or "").splitlines():
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
        """A /proc/meminfo value in KiB, or None."""
        for line in (self.read_host("/proc/meminfo", "") or "").splitlines():
            if line.startswith(key + ":"):
                try:
                    return int(line.split()[1])
                except (IndexError, ValueError):
                    return None
        return None

    def cmdline(self):
        return (self.read_host("/proc/cmdline", "") or "").split()

    def kernel_release(self):
        return self.read_host("/proc/sys/kernel/osrelease") or os.uname()[2]

    def module_loaded(self, name):
        return os.path.isdir(self.path("sys/module", name.replace("-", "_")))

    def free_hugepages(self, page_kib):
        """``(free pages, directory)`` of the huge pages of ``page_kib`` KiB; free is None without them."""
        base = self.path("sys/kernel/mm/hugepages", "hugepages-%dkB" % page_kib)
        return self.read_int(os.path.join(base, "free_hugepages")), base

    def vfio_holders(self, bdf):
        """IOMMU group of ``bdf`` and the PIDs that hold ``/dev/vfio/<group>`` open (read from /proc)."""
        group = self.iommu_group(bdf)
        if group is None:
            return None, []
        target = "/dev/vfio/%s" % group
        holders = []
        for fd in glob.glob(self.path("proc", "[0-9]*", "fd", "*")):
            try:
                if os.readlink(fd) == target:
                    pid = fd.split(os.sep)[-3]
                    if pid not in holders:
                        holders.append(pid)
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.EACCES, errno.EINVAL):
                    raise
        return group, holders

    def find_tool(self, name, extra_dirs=()):
        """A host tool: ``extra_dirs`` (host paths), then under a root other than / its bin directories, then PATH."""
        dirs = [self.path(d) for d in extra_dirs]
        if self.root != "/":
            dirs += [self.path(d) for d in HOST_TOOL_DIRS]
        for directory in dirs:
            path = os.path.join(directory, name)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
        return shutil.which(name)

    # PCI --------------------------------------------------------------------------------
    def pci_devices(self):
        return [n for n in self.listdir(self.path("sys/bus/pci/devices")) if _FULL_BDF.match(n)]

    def device_exists(self, bdf):
        return os.path.isdir(self.dev_path(bdf))

    def vendor(self, bdf):
        return (self.read(self.dev_path(bdf, "vendor")) or "").lower()

    def driver(self, bdf):
        return self.link_name(self.dev_path(bdf, "driver"))

    def override(self, bdf):
        """The driver_override value; None when unset (the kernel shows ``(null)``)."""
        value = self.read(self.dev_path(bdf, "driver_override"))
        if value in (None, "", "(null)"):
            return None
        return value

    def iommu_group(self, bdf):
        return self.link_name(self.dev_path(bdf, "iommu_group"))

    def group_members(self, group):
        return [n for n in self.listdir(self.path("sys/kernel/iommu_groups", group, "devices")) if _FULL_BDF.match(n)]

    def class_code(self, bdf):
        return self.read_int(self.dev_path(bdf, "class"), default=0, base=16)

    def is_bridge(self, bdf):
        return (self.class_code(bdf) >> 8) == BRIDGE_CLASS

    def is_boot_vga(self, bdf):
        return self.read(self.dev_path(bdf, "boot_vga")) == "1"

    def physfn(self, bdf):
        return self.link_name(self.dev_path(bdf, "physfn"))

    def virtfns(self, bdf):
        """VF addresses of a PF in virtfn order."""
        found = []
        for name in self.listdir(self.dev_path(bdf)):
            if name.startswith("virtfn") and name[6:].isdigit():
                target = self.link_name(self.dev_path(bdf, name))
                if target:
                    found.append((int(name[6:]), target))
        return [t for _i, t in sorted(found)]

    def is_dead(self, bdf):
        """True when the device reads all-ones: it fell off the bus."""
        if self.vendor(bdf) == "0xffff":
            return True
        try:
            with open(self.dev_path(bdf, "config"), "rb") as handle:
                head = handle.read(2)
        except OSError:
            return False
        return head == b"\xff\xff"

    def is_gpu(self, bdf, vendor=None):
        """An AMD or NVIDIA (or only ``vendor``'s) display or processing-accelerator function."""
        vendor_id = self.vendor(bdf)
        if vendor_id != VENDOR_IDS.get(vendor, vendor_id) or vendor_id not in VENDOR_NAMES:
            return False
        return (self.class_code(bdf) >> 16) in GPU_BASE_CLASSES

    def gpu_functions(self, vendor=None, exclude_boot_vga=False, include_vfs=True):
        """The GPUs (see :meth:`is_gpu`) in address order."""
        found = []
        for bdf in self.pci_devices():
            if not self.is_gpu(bdf, vendor):
                continue
            if (not include_vfs and self.physfn(bdf)) or (exclude_boot_vga and self.is_boot_vga(bdf)):
                continue
            found.append(bdf)
        return found

    def bar_sizes(self, bdf):
        """Sizes in bytes of the device's memory regions from ``resource``."""
        sizes = []
        for line in (self.read(self.dev_path(bdf, "resource"), default="") or "").splitlines():
            parts = line.split()
            try:
                start, end = int(parts[0], 16), int(parts[1], 16)
            except (IndexError, ValueError):
                continue
            if end > start:
                sizes.append(end - start + 1)
        return sizes

    def driver_registered(self, driver):
        return os.path.isdir(self.driver_path(driver))

    def vfio_group_node(self, group):
        return self.path("dev/vfio", group)

    def mdev_path(self, uuid, attr=None):
        return self.path("sys/bus/mdev/devices", uuid, attr)

    def mdev_types_dir(self, bdf):
        return self.path("sys/class/mdev_bus", bdf, "mdev_supported_types")

    def mdev_parents(self):
        return [n for n in self.listdir(self.path("sys/class/mdev_bus")) if _FULL_BDF.match(n)]

    # writes -----------------------------------------------------------------------------
    def write(self, path, value, timeout=None):
        """Write through :func:`write_attr`; give up waiting after ``timeout`` seconds.

        A write that blocks (unbinding from a busy driver) keeps running in the kernel; the
        caller gets :class:`WriteTimeout` and can report it instead of hanging forever.
        """
        if not timeout:
            write_attr(path, value)
            return
        outcome = {}

        def target():
            try:
                write_attr(path, value)
            except BaseException as exc:  # re-raised in the caller's thread
                outcome["error"] = exc

        worker = threading.Thread(target=target, name="sysfs-write")
        worker.daemon = True
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            raise WriteTimeout("Writing %r to %s did not finish within %s s." % (value, self.rel(path), timeout))
        if "error" in outcome:
            raise outcome["error"]


def wait_until(predicate, timeout, interval=0.05):
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; the first check is immediate."""
    deadline = time.monotonic() + max(timeout or 0, 0)
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
