"""A fake sysfs tree on disk and a fake kernel that gives writes to it the kernel's side effects.

The tree is laid out like the real one (device directories under ``sys/devices/pci<D>:<B>/``,
``sys/bus/pci/devices/<BDF>`` links to them, ``driver`` / ``iommu_group`` / ``virtfnN`` / ``physfn`` as
relative links), so code that reads it cannot tell it from ``/sys``.  The kernel's state lives in the
tree itself; :class:`FakeKernel` keeps only what the kernel keeps in memory (driver ID tables, which
drivers can configure SR-IOV, injected faults).

Writes behave like the kernel's (``drivers/pci/pci-driver.c``, ``bus.c``, ``iov.c``, mdev core):

* ``driver_override``: ``\\n`` or empty clears it (reads ``(null)``); never binds or unbinds;
* ``drivers/<d>/unbind``: ENODEV unless bound to ``<d>``; removes the links; may block (busy driver);
* ``drivers/<d>/bind``: ENODEV when ``<d>`` does not match (an override naming another driver, or no
  ID-table entry), EBUSY when bound, the probe's error when the probe fails;
* ``drivers_probe``: binds the override driver, or the first registered ID-table match; succeeds even
  when nothing binds;
* ``sriov_numvfs``: ERANGE above ``sriov_totalvfs``, ENOENT without a PF driver that configures
  SR-IOV, EBUSY from one non-zero count to another or while a VF is in use; creates VF directories,
  ``virtfnN``/``physfn`` links and IOMMU groups, and auto-probes VFs unless
  ``sriov_drivers_autoprobe`` is 0;
* mdev ``create``/``remove``: EINVAL for a bad UUID, EEXIST, EUSERS when no instance is left.

vfio drivers fail to probe a device without an IOMMU group, as the real ones do.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import threading
import uuid as uuidlib

FAKE_RELEASE = "6.8.0-fake"


class SimulatedCrash(BaseException):
    """Raised from a write to model the process being killed: no rollback runs."""


def _write(path, text):
    with open(path, "w") as handle:
        handle.write(text)


def _read(path, default=None):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return default


def _link(target, path):
    if os.path.lexists(path):
        os.unlink(path)
    os.symlink(target, path)


def _oserror(code, path=None):
    return OSError(code, os.strerror(code), path)


class FakeKernel(object):
    def __init__(self, root):
        self.root = str(root)
        self.matches = {}            # bdf -> [driver names whose ID table matches, in priority order]
        self.vf_matches = {}         # pf bdf -> ID-table matches of its VFs
        self.sriov_drivers = {"ixgbe", "ice", "i40e", "mlx5_core", "nvidia", "igb"}
        self.gim_vf_limit = {}       # pf bdf -> the VF count gim can enable (partition mode)
        self.modules_available = {"vfio-pci": "vfio_pci", "vfio_pci": "vfio_pci", "gim": "gim",
                                  "amd-vfio-pci": "amd_vfio_pci", "pci-stub": "pci_stub"}
        self.fail_probe = set()      # (bdf, driver) whose probe fails
        self.hang_unbind = set()     # bdfs whose unbind blocks (busy host driver)
        self.in_use = set()          # VFs held by a VM
        self.faults = {}             # write index -> errno, or an exception instance
        self.writes = 0
        self.log = []                # ("write", host path, value) and ("command", argv)
        self.release = threading.Event()
        self.cancelled = False
        for d in ("sys/bus/pci/devices", "sys/bus/pci/drivers", "sys/kernel/iommu_groups", "sys/module",
                  "sys/class/mdev_bus", "sys/bus/mdev/devices", "sys/class/iommu", "dev/vfio", "proc/sys/kernel"):
            os.makedirs(self.p(d), exist_ok=True)
        _write(self.p("sys/bus/pci/drivers_probe"), "")
        _write(self.p("sys/bus/pci/drivers_autoprobe"), "1\n")
        _write(self.p("proc/sys/kernel/osrelease"), FAKE_RELEASE + "\n")

    # ---------------------------------------------------------------- tree helpers
    def p(self, *parts):
        return os.path.join(self.root, *parts)

    def devdir(self, bdf):
        return os.path.realpath(self.p("sys/bus/pci/devices", bdf))

    def exists(self, bdf):
        return os.path.isdir(self.p("sys/bus/pci/devices", bdf))

    def _link_of(self, bdf, name):
        try:
            return os.path.basename(os.readlink(os.path.join(self.devdir(bdf), name)))
        except OSError:
            return None

    def driver_of(self, bdf):
        return self._link_of(bdf, "driver")

    def group_of(self, bdf):
        return self._link_of(bdf, "iommu_group")

    def override_of(self, bdf):
        value = _read(os.path.join(self.devdir(bdf), "driver_override"))
        return None if value in (None, "(null)") else value

    def registered(self, driver):
        return os.path.isdir(self.p("sys/bus/pci/drivers", driver))

    def vfs_of(self, pf):
        d = self.devdir(pf)
        found = []
        for name in os.listdir(d):
            if name.startswith("virtfn"):
                found.append((int(name[6:]), os.path.basename(os.readlink(os.path.join(d, name)))))
        return [b for _i, b in sorted(found)]

    # ---------------------------------------------------------------- building
    def add_driver(self, name, module=None):
        d = self.p("sys/bus/pci/drivers", name)
        if os.path.isdir(d):
            return
        os.makedirs(d)
        for attr in ("bind", "unbind", "new_id", "remove_id", "uevent"):
            _write(os.path.join(d, attr), "")
        os.makedirs(self.p("sys/module", (module or name).replace("-", "_")), exist_ok=True)
        if "vfio" in name:
            _write(self.p("dev/vfio/vfio"), "")

    def add_group(self, group):
        d = self.p("sys/kernel/iommu_groups", str(group), "devices")
        os.makedirs(d, exist_ok=True)
        _write(self.p("sys/kernel/iommu_groups", str(group), "type"), "DMA\n")
        os.makedirs(self.p("sys/class/iommu/dmar0"), exist_ok=True)

    def next_group(self):
        """The lowest free group number, as the kernel's group ID allocator hands them out."""
        used = set(int(g) for g in os.listdir(self.p("sys/kernel/iommu_groups")))
        return min(set(range(len(used) + 1)) - used)

    def add_device(self, bdf, vendor="0x1002", device="0x74a1", cls="0x038000", driver=None, group=None,
                   matches=None, boot_vga=None, numa_node=-1, override=None, sriov=None, parent=None,
                   reset=True, bars=(0x4000000000, 0x200000)):
        """Create a PCI function. ``sriov``: dict(totalvfs, offset, stride, vf_device, numvfs, vf_matches)."""
        domain, bus = bdf.split(":")[:2]
        parent = parent or self.p("sys/devices", "pci%s:%s" % (domain, bus))
        os.makedirs(parent, exist_ok=True)
        d = os.path.join(parent, bdf)
        os.makedirs(d)
        attrs = {
            "vendor": vendor, "device": device, "subsystem_vendor": vendor, "subsystem_device": device,
            "class": cls, "driver_override": override or "(null)", "numa_node": str(numa_node),
            "local_cpulist": "0-7" if numa_node < 1 else "8-15", "enable": "1",
            "resource": "\n".join("0x%016x 0x%016x 0x%016x" % (0xE0000000 * (i + 1), 0xE0000000 * (i + 1) + size - 1,
                                                               0x14220C) for i, size in enumerate(bars)),
        }
        if boot_vga is not None:
            attrs["boot_vga"] = "1" if boot_vga else "0"
        if reset:
            attrs["reset"] = ""
            attrs["reset_method"] = "flr bus"
        for name, value in attrs.items():
            _write(os.path.join(d, name), value + "\n")
        vid, did = int(vendor, 16), int(device, 16)
        with open(os.path.join(d, "config"), "wb") as handle:
            handle.write(bytes([vid & 0xFF, vid >> 8, did & 0xFF, did >> 8]) + b"\0" * 60)
        _link(os.path.relpath(d, self.p("sys/bus/pci/devices")), self.p("sys/bus/pci/devices", bdf))
        if matches is None:
            matches = [driver] if driver else self._default_matches(vendor, cls)
        self.matches[bdf] = list(matches)
        if group is not None:
            self._join_group(bdf, group)
        if sriov:
            _write(os.path.join(d, "sriov_totalvfs"), "%d\n" % sriov["totalvfs"])
            _write(os.path.join(d, "sriov_numvfs"), "0\n")
            _write(os.path.join(d, "sriov_offset"), "%d\n" % sriov.get("offset", 1))
            _write(os.path.join(d, "sriov_stride"), "%d\n" % sriov.get("stride", 1))
            _write(os.path.join(d, "sriov_vf_device"), "%s\n" % sriov.get("vf_device", "74b5")[-4:])
            _write(os.path.join(d, "sriov_drivers_autoprobe"), "%d\n" % sriov.get("autoprobe", 1))
            self.vf_matches[bdf] = list(sriov.get("vf_matches", []))
            if sriov.get("gim_limit") is not None:
                self.gim_vf_limit[bdf] = sriov["gim_limit"]
        if driver:
            self.add_driver(driver)
            self._attach(bdf, driver)
        if sriov and sriov.get("numvfs"):
            self._create_vfs(bdf, sriov["numvfs"])
        return bdf

    @staticmethod
    def _default_matches(vendor, cls):
        base = int(cls, 16) >> 16
        if base == 0x04:
            return ["snd_hda_intel"]
        if vendor == "0x1002":
            return ["amdgpu"]
        if vendor == "0x10de":
            return ["nvidia"]
        if int(cls, 16) >> 8 == 0x0604:
            return ["pcieport"]
        return []

    def add_mdev_type(self, parent, type_id, name, available=4, device_api="vfio-pci"):
        d = os.path.join(self.devdir(parent), "mdev_supported_types", type_id)
        os.makedirs(os.path.join(d, "devices"), exist_ok=True)
        _write(os.path.join(d, "name"), name + "\n")
        _write(os.path.join(d, "available_instances"), "%d\n" % available)
        _write(os.path.join(d, "device_api"), device_api + "\n")
        _write(os.path.join(d, "description"), "fake %s\n" % name)
        _write(os.path.join(d, "create"), "")
        link = self.p("sys/class/mdev_bus", parent)
        if not os.path.lexists(link):
            _link(os.path.relpath(self.devdir(parent), self.p("sys/class/mdev_bus")), link)

    def _join_group(self, bdf, group):
        self.add_group(group)
        d = self.devdir(bdf)
        gdir = self.p("sys/kernel/iommu_groups", str(group))
        _link(os.path.relpath(gdir, d), os.path.join(d, "iommu_group"))
        _link(os.path.relpath(d, os.path.join(gdir, "devices")), os.path.join(gdir, "devices", bdf))

    # ---------------------------------------------------------------- driver core
    def _matches(self, driver, bdf):
        override = self.override_of(bdf)
        if override is not None:
            return override == driver
        return driver in self.matches.get(bdf, [])

    def _probe_ok(self, bdf, driver):
        if (bdf, driver) in self.fail_probe:
            return errno.EIO
        if "vfio" in driver and self.group_of(bdf) is None:
            return errno.EINVAL
        return 0

    def _attach(self, bdf, driver):
        d = self.devdir(bdf)
        ddir = self.p("sys/bus/pci/drivers", driver)
        _link(os.path.relpath(ddir, d), os.path.join(d, "driver"))
        _link(os.path.relpath(d, ddir), os.path.join(ddir, bdf))
        self._vfio_nodes()

    def _detach(self, bdf):
        driver = self.driver_of(bdf)
        if driver is None:
            return
        os.unlink(os.path.join(self.devdir(bdf), "driver"))
        link = self.p("sys/bus/pci/drivers", driver, bdf)
        if os.path.lexists(link):
            os.unlink(link)
        self._vfio_nodes()

    def _vfio_nodes(self):
        wanted = set()
        for bdf in os.listdir(self.p("sys/bus/pci/devices")):
            driver = self.driver_of(bdf)
            group = self.group_of(bdf)
            if driver and "vfio" in driver and group is not None:
                wanted.add(group)
        for name in os.listdir(self.p("dev/vfio")):
            if name != "vfio" and name not in wanted:
                os.unlink(self.p("dev/vfio", name))
        for group in wanted:
            _write(self.p("dev/vfio", group), "")

    def _device_attach(self, bdf):
        """What the bus does on drivers_probe or when a device appears: first driver that matches and probes."""
        if self.driver_of(bdf):
            return
        override = self.override_of(bdf)
        candidates = [override] if override else list(self.matches.get(bdf, []))
        for driver in candidates:
            if driver and self.registered(driver) and self._probe_ok(bdf, driver) == 0:
                self._attach(bdf, driver)
                return

    # ---------------------------------------------------------------- SR-IOV
    def _create_vfs(self, pf, count):
        pdir = self.devdir(pf)
        offset = int(_read(os.path.join(pdir, "sriov_offset")))
        stride = int(_read(os.path.join(pdir, "sriov_stride")))
        vendor = _read(os.path.join(pdir, "vendor"))
        vf_device = "0x" + _read(os.path.join(pdir, "sriov_vf_device"))
        cls = _read(os.path.join(pdir, "class"))
        numa = int(_read(os.path.join(pdir, "numa_node")))
        has_group = self.group_of(pf) is not None
        domain, bus, rest = pf.split(":")
        dev, fn = rest.split(".")
        rid = (int(bus, 16) << 8) | (int(dev, 16) << 3) | int(fn, 16)
        autoprobe = _read(os.path.join(pdir, "sriov_drivers_autoprobe")) != "0"
        created = []
        for i in range(count):
            v = rid + offset + i * stride
            vf = "%s:%02x:%02x.%x" % (domain, v >> 8, (v >> 3) & 0x1F, v & 7)
            self.add_device(vf, vendor=vendor, device=vf_device, cls=cls, numa_node=numa,
                            matches=self.vf_matches.get(pf, []), parent=os.path.dirname(pdir),
                            group=self.next_group() if has_group else None)
            _link("../" + vf, os.path.join(pdir, "virtfn%d" % i))
            _link("../" + pf, os.path.join(self.devdir(vf), "physfn"))
            created.append(vf)
        _write(os.path.join(pdir, "sriov_numvfs"), "%d\n" % count)
        if autoprobe:
            for vf in created:
                self._device_attach(vf)

    def _remove_vfs(self, pf):
        pdir = self.devdir(pf)
        for i, vf in enumerate(self.vfs_of(pf)):
            self._remove_device(vf)
            os.unlink(os.path.join(pdir, "virtfn%d" % i))
        _write(os.path.join(pdir, "sriov_numvfs"), "0\n")

    def _remove_device(self, bdf):
        self._detach(bdf)
        d = self.devdir(bdf)
        group = self.group_of(bdf)
        if group is not None:
            gdir = self.p("sys/kernel/iommu_groups", group)
            os.unlink(os.path.join(gdir, "devices", bdf))
            if not os.listdir(os.path.join(gdir, "devices")):
                shutil.rmtree(gdir)
        os.unlink(self.p("sys/bus/pci/devices", bdf))
        shutil.rmtree(d)
        self.matches.pop(bdf, None)
        self._vfio_nodes()

    # ---------------------------------------------------------------- the writer
    def write(self, path, value):
        """Replacement for ``hostfs.write_attr``: one write() to a sysfs attribute."""
        index = self.writes
        self.writes += 1
        self.log.append(("write", "/" + os.path.relpath(path, self.root), value))
        fault = self.faults.get(index)
        if fault is not None:
            if isinstance(fault, BaseException):
                raise fault
            raise _oserror(fault, path)
        if not os.path.lexists(path):
            raise _oserror(errno.ENOENT, path)
        real = os.path.realpath(path)
        rel = os.path.relpath(real, self.root).split(os.sep)
        name = rel[-1]
        text = value.rstrip("\n")
        if rel[:3] == ["sys", "bus", "pci"] and name == "drivers_probe":
            return self._w_probe(text)
        if rel[:4] == ["sys", "bus", "pci", "drivers"] and len(rel) == 6:
            return self._w_driver(rel[4], name, text)
        if rel[0] == "sys" and rel[1] == "devices":
            if name == "create" and len(rel) >= 3 and rel[-3] == "mdev_supported_types":
                return self._w_mdev_create(rel[-4], rel[-2], text)
            if name == "remove" and os.path.lexists(os.path.join(os.path.dirname(real), "mdev_type")):
                return self._w_mdev_remove(rel[-2], os.path.basename(os.path.dirname(os.path.dirname(real))), text)
            bdf = rel[-2]
            if name == "driver_override":
                if len(text) > 4095:
                    raise _oserror(errno.EINVAL, path)
                _write(real, (text or "(null)") + "\n")
                return None
            if name == "sriov_numvfs":
                return self._w_numvfs(bdf, text)
            if name == "sriov_drivers_autoprobe":
                if text not in ("0", "1"):
                    raise _oserror(errno.EINVAL, path)
                _write(real, text + "\n")
                return None
        raise _oserror(errno.EACCES, path)

    def _w_probe(self, bdf):
        if not self.exists(bdf):
            raise _oserror(errno.ENODEV)
        self._device_attach(bdf)

    def _w_driver(self, driver, attr, bdf):
        if attr == "unbind":
            if not self.exists(bdf) or self.driver_of(bdf) != driver:
                raise _oserror(errno.ENODEV)
            if bdf in self.hang_unbind or ("vfio" in driver and bdf in self.in_use):
                self.release.wait(30)
                if self.cancelled:
                    raise _oserror(errno.EINTR)
            self._detach(bdf)
            return
        if attr == "bind":
            if not self.exists(bdf) or not self._matches(driver, bdf):
                raise _oserror(errno.ENODEV)
            if self.driver_of(bdf):
                raise _oserror(errno.EBUSY)
            code = self._probe_ok(bdf, driver)
            if code:
                raise _oserror(code)
            self._attach(bdf, driver)
            return
        if attr == "new_id":
            raise AssertionError("new_id must never be written (it binds every device with those IDs)")
        raise _oserror(errno.EACCES)

    def _w_numvfs(self, pf, text):
        try:
            want = int(text)
        except ValueError:
            raise _oserror(errno.EINVAL)
        total = int(_read(os.path.join(self.devdir(pf), "sriov_totalvfs")))
        current = len(self.vfs_of(pf))
        if want > total:
            raise _oserror(errno.ERANGE)
        if want == current:
            return
        driver = self.driver_of(pf)
        if driver is None or driver not in self.sriov_drivers:
            raise _oserror(errno.ENOENT)
        if want == 0:
            if any(vf in self.in_use for vf in self.vfs_of(pf)):
                raise _oserror(errno.EBUSY)
            self._remove_vfs(pf)
            return
        if current:
            raise _oserror(errno.EBUSY)
        self._create_vfs(pf, want)

    def _w_mdev_create(self, parent, type_id, text):
        try:
            value = str(uuidlib.UUID(text))
        except ValueError:
            raise _oserror(errno.EINVAL)
        if os.path.lexists(self.p("sys/bus/mdev/devices", value)):
            raise _oserror(errno.EEXIST)
        tdir = os.path.join(self.devdir(parent), "mdev_supported_types", type_id)
        available = int(_read(os.path.join(tdir, "available_instances")))
        if available < 1:
            raise _oserror(errno.EUSERS)
        mdir = os.path.join(self.devdir(parent), value)
        os.makedirs(mdir)
        _link(os.path.relpath(tdir, mdir), os.path.join(mdir, "mdev_type"))
        _write(os.path.join(mdir, "remove"), "")
        group = self.next_group()
        self.add_group(group)
        gdir = self.p("sys/kernel/iommu_groups", str(group))
        _link(os.path.relpath(gdir, mdir), os.path.join(mdir, "iommu_group"))
        _link(os.path.relpath(mdir, os.path.join(gdir, "devices")), os.path.join(gdir, "devices", value))
        _link(os.path.relpath(mdir, self.p("sys/bus/mdev/devices")), self.p("sys/bus/mdev/devices", value))
        _link(os.path.relpath(mdir, os.path.join(tdir, "devices")), os.path.join(tdir, "devices", value))
        _write(os.path.join(tdir, "available_instances"), "%d\n" % (available - 1))

    def _w_mdev_remove(self, mdev, parent, text):
        if text not in ("1",):
            raise _oserror(errno.EINVAL)
        mdir = os.path.join(self.devdir(parent), mdev)
        tdir = os.path.realpath(os.path.join(mdir, "mdev_type"))
        gdir = os.path.realpath(os.path.join(mdir, "iommu_group"))
        os.unlink(os.path.join(tdir, "devices", mdev))
        os.unlink(self.p("sys/bus/mdev/devices", mdev))
        shutil.rmtree(gdir)
        shutil.rmtree(mdir)
        available = int(_read(os.path.join(tdir, "available_instances")))
        _write(os.path.join(tdir, "available_instances"), "%d\n" % (available + 1))

    # ---------------------------------------------------------------- commands
    def run_command(self, module, argv, timeout):
        """Replacement for ``hostfs.run_command``: modprobe and sriov-manage."""
        self.log.append(("command", list(argv)))
        fault = self.faults.get(("command", argv[0]))
        if fault is not None:
            return fault
        if argv[0] == "modprobe":
            if argv[1] == "-r":
                return self._rmmod(argv[2], timeout)
            return self._modprobe(argv[1], argv[2:])
        if argv[0].endswith("sriov-manage"):
            pf = argv[2]
            if argv[1] == "-e":
                if self.driver_of(pf) != "nvidia":
                    return 1, "", "%s is not bound to nvidia" % pf
                total = int(_read(os.path.join(self.devdir(pf), "sriov_totalvfs")))
                if not self.vfs_of(pf):
                    self._create_vfs(pf, total)
                return 0, "Enabling VFs on %s\n" % pf, ""
            if any(vf in self.in_use for vf in self.vfs_of(pf)):
                return 1, "", "Cannot disable VFs on %s: in use" % pf
            self._remove_vfs(pf)
            return 0, "", ""
        return 127, "", "%s: command not found" % argv[0]

    def _modprobe(self, name, params):
        module = self.modules_available.get(name)
        if module is None:
            return 1, "", "modprobe: FATAL: Module %s not found in directory /lib/modules/%s" % (name, FAKE_RELEASE)
        if name == "gim":
            values = []
            for param in params:
                if param.startswith("vf_num="):
                    values = [int(v) for v in param[7:].split(",")]
            self.add_driver("gim")
            claimed = [b for b in sorted(os.listdir(self.p("sys/bus/pci/devices")))
                       if "gim" in self.matches.get(b, []) and self.driver_of(b) is None]
            for i, pf in enumerate(claimed):
                self._attach(pf, "gim")
                want = values[i] if i < len(values) else 1
                self._create_vfs(pf, min(want, self.gim_vf_limit.get(pf, want)))
            return 0, "", ""
        self.add_driver(name if "-" in name else name.replace("_", "-"), module)
        driver = name if "-" in name else name.replace("_", "-")
        for bdf in sorted(os.listdir(self.p("sys/bus/pci/devices"))):
            if self.driver_of(bdf) is None and self._matches(driver, bdf) and self._probe_ok(bdf, driver) == 0:
                self._attach(bdf, driver)
        return 0, "", ""

    def _rmmod(self, name, timeout):
        if name != "gim":
            return 1, "", "modprobe: FATAL: Module %s is builtin." % name
        if not os.path.isdir(self.p("sys/module/gim")):
            return 0, "", ""
        pfs = [b for b in sorted(os.listdir(self.p("sys/bus/pci/devices"))) if self.driver_of(b) == "gim"]
        if any(vf in self.in_use for pf in pfs for vf in self.vfs_of(pf)):
            return 124, "", ""     # gim_exit waits for every VF to be released: the time limit kills it
        for pf in pfs:
            self._remove_vfs(pf)
            self._detach(pf)
        shutil.rmtree(self.p("sys/bus/pci/drivers/gim"))
        shutil.rmtree(self.p("sys/module/gim"))
        return 0, "", ""

    # ---------------------------------------------------------------- observation
    def snapshot(self):
        """Everything a passthrough run may change, read from the tree."""
        devices = {}
        for bdf in sorted(os.listdir(self.p("sys/bus/pci/devices"))):
            d = self.devdir(bdf)
            devices[bdf] = {
                "driver": self.driver_of(bdf),
                "override": _read(os.path.join(d, "driver_override")),
                "numvfs": _read(os.path.join(d, "sriov_numvfs")),
                "autoprobe": _read(os.path.join(d, "sriov_drivers_autoprobe")),
                # a re-created VF gets whatever group number is free: only its having one is kept
                "group": self.group_of(bdf) if not os.path.lexists(os.path.join(d, "physfn"))
                else self.group_of(bdf) is not None,
            }
        return {
            "devices": devices,
            "mdevs": sorted(os.listdir(self.p("sys/bus/mdev/devices"))),
            "gim": os.path.isdir(self.p("sys/module/gim")),
            "vfio_nodes": sorted(n for n in os.listdir(self.p("dev/vfio")) if n != "vfio"),
        }

    def ops(self):
        """The log in the shape of the module's plan (writes and commands only)."""
        out = []
        for entry in self.log:
            if entry[0] == "write":
                out.append(("write", entry[1], entry[2]))
            else:
                out.append(("command", tuple(entry[1])))
        return out

    def cancel_hangs(self):
        self.cancelled = True
        self.release.set()


def plan_ops(plan):
    """A module plan reduced to what the fake kernel logs."""
    out = []
    for step in plan:
        if step["op"] == "write":
            out.append(("write", step["path"], step["value"]))
        elif step["op"] == "command":
            out.append(("command", tuple(step["argv"])))
    return out


# ---------------------------------------------------------------------------------------------
# Ready-made hosts


def mi300x_host(root, gpus=2, driver="amdgpu", audio=False):
    """AMD Instinct PFs (class 0x120000 like MI300X), each alone in its IOMMU group."""
    k = FakeKernel(root)
    k.add_driver("vfio-pci")
    for i in range(gpus):
        bus = 0x83 + i * 0x10
        bdf = "0000:%02x:00.0" % bus
        k.add_device(bdf, vendor="0x1002", device="0x74a1", cls="0x120000", driver=driver, group=40 + i,
                     matches=["amdgpu", "gim"], numa_node=i % 2,
                     sriov={"totalvfs": 8, "offset": 2, "stride": 1, "vf_device": "74b5", "vf_matches": []})
        if audio:
            k.add_device("0000:%02x:00.1" % bus, vendor="0x1002", device="0xab28", cls="0x040300",
                         driver="snd_hda_intel", group=40 + i)
    return k


def consumer_host(root):
    """A workstation: boot VGA on 00:02.0 (Intel), an NVIDIA card with its audio function, a NIC."""
    k = FakeKernel(root)
    k.add_driver("vfio-pci")
    k.add_device("0000:00:02.0", vendor="0x8086", device="0x3e92", cls="0x030000", driver="i915", group=1,
                 boot_vga=True)
    k.add_device("0000:00:01.0", vendor="0x8086", device="0x1901", cls="0x060400", driver="pcieport", group=2)
    k.add_device("0000:01:00.0", vendor="0x10de", device="0x2204", cls="0x030000", driver="nvidia", group=2,
                 boot_vga=False)
    k.add_device("0000:01:00.1", vendor="0x10de", device="0x1aef", cls="0x040300", driver="snd_hda_intel", group=2)
    k.add_device("0000:03:00.0", vendor="0x8086", device="0x10fb", cls="0x020000", driver="ixgbe", group=3,
                 sriov={"totalvfs": 4, "offset": 128, "stride": 2, "vf_device": "10ed", "vf_matches": ["ixgbevf"]})
    k.add_driver("ixgbevf")
    return k


@contextlib.contextmanager
def installed(kernel):
    """Route the collection's two host edges (sysfs writes, commands) to ``kernel``."""
    from ansible_collections.rocm.madengine.plugins.module_utils.host import hostfs as _hostfs
    saved = (_hostfs.write_attr, _hostfs.run_command)
    _hostfs.write_attr = kernel.write
    _hostfs.run_command = kernel.run_command
    try:
        yield kernel
    finally:
        _hostfs.write_attr, _hostfs.run_command = saved
        kernel.cancel_hangs()


def engine(kernel, state_dir, **options):
    """A passthrough engine on the kernel's tree, running commands through the same edge as the module."""
    from ansible_collections.rocm.madengine.plugins.module_utils.host import hostfs as _hostfs
    from ansible_collections.rocm.madengine.plugins.module_utils.host.passthrough.engine import Passthrough
    options.setdefault("timeout", 2)
    return Passthrough(_hostfs.HostFs(kernel.root), str(state_dir),
                       run=lambda argv, timeout: _hostfs.run_command(None, argv, timeout), **options)
