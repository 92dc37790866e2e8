# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""A read model of the PCI part of sysfs, rooted anywhere, and the two edges that change the host.

Every path is ``<root>/sys/...`` or ``<root>/dev/...``; ``root`` is ``/`` on a real host.

The host is changed only through two functions:

* :func:`write_attr` - the one place a sysfs attribute is written (a single ``write()`` on an
  existing file, as the kernel expects);
* :func:`run_command` - the one place a program (``modprobe``...) runs, through ``module.run_command``.

Both are looked up at call time, so a test can replace them with a fake kernel; the code that
decides what to write is the same either way.
"""

from __future__ import annotations

import errno
import os
import re
import threading
import time

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError

VENDOR_IDS = {"AMD": "0x1002", "NVIDIA": "0x10de"}
VENDOR_NAMES = {"0x1002": "AMD", "0x10de": "NVIDIA"}
# Base classes that identify a GPU: display controllers and processing accelerators (MI300-class).
GPU_BASE_CLASSES = (0x03, 0x12)
BRIDGE_CLASS = 0x0604
# Drivers that leave an IOMMU group viable for VFIO (driver_managed_dma on current kernels).
DMA_SAFE_DRIVERS = ("pci-stub", "pcieport")

_FULL_BDF = re.compile(r"^([0-9a-f]{4}):([0-9a-f]{2}):([01][0-9a-f])\.([0-7])$")
_SHORT_BDF = re.compile(r"^([0-9a-f]{2}):([01][0-9a-f])\.([0-7])$")


def normalize_bdf(value):
    """Return the full lower-case ``DDDD:BB:DD.F`` form of a PCI address; accept ``BB:DD.F``."""
    text = str(value).strip().lower()
    if _FULL_BDF.match(text):
        return text
    if _SHORT_BDF.match(text):
        return "0000:" + text
    raise MadengineError(
        "'%s' is not a PCI address: expected DDDD:BB:DD.F (0000:83:00.0) or BB:DD.F (83:00.0)." % value
    )


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


class Sysfs(object):
    """Reads under ``root`` and timed writes through :func:`write_attr`."""

    def __init__(self, root="/"):
        self.root = root or "/"

    # paths ------------------------------------------------------------------------------
    def path(self, *parts):
        return os.path.join(self.root, *[p.lstrip("/") for p in parts])

    def rel(self, path):
        """The host path (``/sys/...``) of a path under root, as shown in plans and messages."""
        return "/" + os.path.relpath(path, self.root)

    def dev_path(self, bdf, attr=None):
        parts = ["sys/bus/pci/devices", bdf]
        if attr:
            parts.append(attr)
        return self.path(*parts)

    def driver_path(self, driver, attr=None):
        parts = ["sys/bus/pci/drivers", driver]
        if attr:
            parts.append(attr)
        return self.path(*parts)

    # reads ------------------------------------------------------------------------------
    def read(self, path, default=None):
        try:
            with open(path) as handle:
                return handle.read().strip()
        except (OSError, UnicodeDecodeError):
            return default

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

    def pci_devices(self):
        return [n for n in self.listdir(self.path("sys/bus/pci/devices")) if _FULL_BDF.match(n)]

    def device_exists(self, bdf):
        return os.path.isdir(self.dev_path(bdf))

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

    def driver_registered(self, driver):
        return os.path.isdir(self.driver_path(driver))

    def module_loaded(self, name):
        return os.path.isdir(self.path("sys/module", name.replace("-", "_")))

    def vfio_group_node(self, group):
        return self.path("dev/vfio", group)

    def mdev_path(self, uuid, attr=None):
        parts = ["sys/bus/mdev/devices", uuid]
        if attr:
            parts.append(attr)
        return self.path(*parts)

    def mdev_types_dir(self, bdf):
        return self.path("sys/class/mdev_bus", bdf, "mdev_supported_types")

    def mdev_parents(self):
        return [n for n in self.listdir(self.path("sys/class/mdev_bus")) if _FULL_BDF.match(n)]

    def bar_sizes(self, bdf):
        """Sizes in bytes of the device's memory regions from ``resource``."""
        sizes = []
        text = self.read(self.dev_path(bdf, "resource"), default="")
        for line in text.splitlines():
            parts = line.split()
            if len(parts) < 2:
                continue
            try:
                start, end = int(parts[0], 16), int(parts[1], 16)
            except ValueError:
                continue
            if end > start:
                sizes.append(end - start + 1)
        return sizes

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


def errno_name(code):
    return errno.errorcode.get(code, str(code))
