# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""Give host GPUs to VMs through sysfs and put them back exactly as they were found.

Modes:

* ``vfio``  - bind whole functions to vfio-pci (or a variant): ``driver_override`` -> ``unbind`` ->
  ``drivers_probe``, each write verified, never ``new_id``;
* ``sriov`` - create virtual functions (generic ``sriov_numvfs``, AMD GIM through its module
  parameter, NVIDIA through ``sriov-manage``) and bind the VFs as in ``vfio``;
* ``vgpu``  - create a mediated device of a given type on its parent.

Every change is one :class:`Step`. Steps are computed from the state they apply to; in check mode
a :class:`View` predicts each step's effect instead of performing it, so the plan returned in check
mode is the plan a real run executes. Before a device's first step its original state is saved in
``state_dir`` (one JSON file per device), so ``absent`` works from any later process, also after a
crash. If a step fails, the devices changed so far are restored in reverse order.
"""

from __future__ import annotations

import errno
import json
import os
import uuid

from ansible_collections.rocm.madengine.plugins.module_utils.common import (
    MadengineError,
    atomic_write_json,
    utc_now,
)
from ansible_collections.rocm.madengine.plugins.module_utils.host import sysfs as _sysfs
from ansible_collections.rocm.madengine.plugins.module_utils.host.sysfs import (
    BRIDGE_CLASS,
    GPU_BASE_CLASSES,
    VENDOR_IDS,
    VENDOR_NAMES,
    bdf_to_rid,
    errno_name,
    is_dma_safe_driver,
    normalize_bdf,
    rid_to_bdf,
    slot_of,
    wait_until,
)

STATE_VERSION = 1
SRIOV_MANAGE = "/usr/lib/nvidia/sriov-manage"
MDEV_NAMESPACE = uuid.UUID("8f3c2a4e-6b1d-5e7f-9a0b-3c4d5e6f7a8b")
# Restore order: the things built on top first.
_RESTORE_RANK = {"mdev": 0, "vf": 1, "function": 2, "group": 2, "gpu": 2, "pf": 3}


class StepError(MadengineError):
    def __init__(self, message, device=None, stage=None, code=None):
        super().__init__(message)
        self.device = device
        self.stage = stage
        self.errno = code


class DeadDeviceError(MadengineError):
    """The device reads all-ones: it fell off the bus and only a host reboot brings it back."""

    def __init__(self, message, device):
        super().__init__(message)
        self.device = device


class Step(object):
    """One change: a sysfs write or a command. ``expect`` is what verification waits for."""

    __slots__ = ("op", "stage", "device", "path", "value", "argv", "expect", "fallback")

    def __init__(self, op, stage, device=None, path=None, value=None, argv=None, expect=None, fallback=None):
        self.op = op
        self.stage = stage
        self.device = device
        self.path = path
        self.value = value
        self.argv = argv
        self.expect = expect
        self.fallback = fallback

    def public(self):
        out = {"op": self.op, "stage": self.stage, "device": self.device}
        if self.op == "command":
            out["argv"] = list(self.argv)
        else:
            out["path"] = self.path
            if self.value is not None:
                out["value"] = self.value
        return out


# ------------------------------------------------------------------------------------------------
# State of the host, live or predicted


_UNSET = object()


class View(object):
    """Reads the live tree; in check mode, predicted effects of planned steps override the reads."""

    def __init__(self, sysfs):
        self.sysfs = sysfs
        self.over = {}

    def _get(self, kind, key, live):
        value = self.over.get((kind, key), _UNSET)
        if value is not _UNSET:
            return value
        if self.over.get(("new", key)):
            return None
        return live()

    def device_exists(self, bdf):
        return self._get("exists", bdf, lambda: self.sysfs.device_exists(bdf))

    def driver(self, bdf):
        return self._get("driver", bdf, lambda: self.sysfs.driver(bdf))

    def override(self, bdf):
        return self._get("override", bdf, lambda: self.sysfs.override(bdf))

    def iommu_group(self, bdf):
        return self._get("group", bdf, lambda: self.sysfs.iommu_group(bdf))

    def virtfns(self, bdf):
        return self._get("virtfns", bdf, lambda: self.sysfs.virtfns(bdf)) or []

    def numvfs(self, bdf):
        return self._get("numvfs", bdf, lambda: self.sysfs.read_int(self.sysfs.dev_path(bdf, "sriov_numvfs"), 0))

    def autoprobe(self, bdf):
        return self._get("autoprobe", bdf, lambda: self.sysfs.read_int(
            self.sysfs.dev_path(bdf, "sriov_drivers_autoprobe"), None))

    def driver_registered(self, name):
        return self._get("registered", name, lambda: self.sysfs.driver_registered(name))

    def module_loaded(self, name):
        return self._get("module", name, lambda: self.sysfs.module_loaded(name))

    def mdev_exists(self, mdev_uuid):
        return self._get("mdev", mdev_uuid, lambda: self.sysfs.exists(self.sysfs.mdev_path(mdev_uuid)))

    def predicted(self):
        return bool(self.over)

    # predictions ------------------------------------------------------------------------------
    def set(self, kind, key, value):
        self.over[(kind, key)] = value

    def create_vfs(self, pf, count):
        for vf in self.virtfns(pf):
            self.set("exists", vf, False)
        vfs = predict_vf_bdfs(self.sysfs, pf, count)
        for vf in vfs:
            self.set("exists", vf, True)
            self.set("new", vf, True)
            for kind in ("driver", "override", "group"):
                self.over.pop((kind, vf), None)
        self.set("virtfns", pf, vfs)
        self.set("numvfs", pf, count)


def predict_vf_bdfs(sysfs, pf, count):
    """VF addresses as the kernel assigns them: PF routing ID + offset + i * stride."""
    offset = sysfs.read_int(sysfs.dev_path(pf, "sriov_offset"))
    stride = sysfs.read_int(sysfs.dev_path(pf, "sriov_stride"))
    if offset is None or stride is None:
        raise MadengineError(
            "Cannot predict the VF addresses of %s: it has no sriov_offset/sriov_stride attributes." % pf)
    domain, rid = bdf_to_rid(pf)
    return [rid_to_bdf(domain, rid + offset + i * stride) for i in range(count)]


# ------------------------------------------------------------------------------------------------
# Per-device state files


class StateStore(object):
    def __init__(self, directory):
        self.directory = directory

    def path(self, key):
        return os.path.join(self.directory, key + ".json")

    def load(self, key):
        path = self.path(key)
        if not os.path.exists(path):
            return None
        try:
            with open(path) as handle:
                record = json.load(handle)
        except (OSError, ValueError) as exc:
            raise MadengineError("Passthrough state file %s cannot be read: %s." % (path, exc))
        if not isinstance(record, dict) or record.get("key") != key:
            raise MadengineError("Passthrough state file %s does not describe %s." % (path, key))
        return record

    def all(self):
        try:
            names = sorted(os.listdir(self.directory))
        except OSError:
            return []
        return [self.load(n[:-5]) for n in names if n.endswith(".json") and not n.startswith(".")]

    def save(self, record):
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise MadengineError("Cannot create the passthrough state directory %s: %s." % (
                self.directory, exc.strerror or exc))
        atomic_write_json(self.path(record["key"]), record, mode=0o600)

    def forget(self, key):
        try:
            os.unlink(self.path(key))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise MadengineError("Cannot remove passthrough state file %s: %s." % (self.path(key), exc.strerror))


# ------------------------------------------------------------------------------------------------
# Discovery and description


def read_vendor(sysfs, bdf):
    return (sysfs.read(sysfs.dev_path(bdf, "vendor")) or "").lower()


def is_dead(sysfs, bdf):
    if read_vendor(sysfs, bdf) == "0xffff":
        return True
    try:
        with open(sysfs.dev_path(bdf, "config"), "rb") as handle:
            head = handle.read(2)
    except OSError:
        return False
    return head == b"\xff\xff"


def is_gpu(sysfs, bdf, vendor="any"):
    vendor_id = read_vendor(sysfs, bdf)
    if vendor != "any" and vendor_id != VENDOR_IDS[vendor]:
        return False
    if vendor == "any" and vendor_id not in VENDOR_NAMES:
        return False
    return (sysfs.class_code(bdf) >> 16) in GPU_BASE_CLASSES


def discover_gpus(sysfs, vendor="any", exclude_boot_vga=True, include_vfs=False):
    """GPUs (AMD or NVIDIA display or accelerator functions) in address order."""
    found = []
    for bdf in sysfs.pci_devices():
        if not is_gpu(sysfs, bdf, vendor):
            continue
        if not include_vfs and sysfs.physfn(bdf):
            continue
        if exclude_boot_vga and sysfs.read(sysfs.dev_path(bdf, "boot_vga")) == "1":
            continue
        found.append(bdf)
    return found


def describe(sysfs, view, bdf, record=None, role=None):
    group = view.iommu_group(bdf)
    info = {
        "bdf": bdf,
        "vendor": sysfs.read(sysfs.dev_path(bdf, "vendor")),
        "device": sysfs.read(sysfs.dev_path(bdf, "device")),
        "class": sysfs.read(sysfs.dev_path(bdf, "class")),
        "numa_node": sysfs.read_int(sysfs.dev_path(bdf, "numa_node"), -1),
        "local_cpulist": sysfs.read(sysfs.dev_path(bdf, "local_cpulist")),
        "iommu_group": group,
        "group_members": sysfs.group_members(group) if group else [],
        "current_driver": view.driver(bdf),
        "current_override": view.override(bdf),
        "original_driver": record.get("original_driver") if record else view.driver(bdf),
        "original_override": record.get("original_override") if record else view.override(bdf),
        "role": (record or {}).get("role") or role or ("vf" if sysfs.physfn(bdf) else "gpu"),
        "parent_pf": (record or {}).get("parent_pf") or sysfs.physfn(bdf),
        "vfs": view.virtfns(bdf),
        "vgpu_uuid": None,
        "recorded": record is not None,
        "dead": is_dead(sysfs, bdf) if view.device_exists(bdf) and not view.over.get(("new", bdf)) else False,
    }
    return info


# ------------------------------------------------------------------------------------------------


class Passthrough(object):
    """One run of the module. ``run`` executes argv lists: ``(argv, timeout) -> (rc, out, err)``."""

    def __init__(self, sysfs, state_dir, run=None, check_mode=False, mode="vfio", driver="vfio-pci",
                 gpu_vendor="any", count=None, exclude_boot_vga=True, include_functions=True,
                 group_policy="fail", num_vfs=1, sriov_provider="auto", vgpu_type=None, vgpu_uuid=None,
                 load_modules=True, timeout=60):
        self.sysfs = sysfs
        self.store = StateStore(state_dir)
        self.run_command = run
        self.check_mode = check_mode
        self.mode = mode
        self.target = driver
        self.gpu_vendor = gpu_vendor
        self.count = count
        self.exclude_boot_vga = exclude_boot_vga
        self.include_functions = include_functions
        self.group_policy = group_policy
        self.num_vfs = num_vfs
        self.sriov_provider = sriov_provider
        self.vgpu_type = vgpu_type
        self.vgpu_uuid = vgpu_uuid
        self.load_modules = load_modules
        self.timeout = timeout
        self.view = View(sysfs)
        self.plan = []
        self.warnings = []
        self.touched = []          # records changed in this run, in order
        self.changed = False
        self.hostdevs = []
        self.mdevs = []
        self.devices = []
        self._before = {}
        self._forgotten = set()    # check mode: state files a real run would have removed by now
        self._planned = {}         # check mode: state files a real run would have written by now

    # ------------------------------------------------------------------ selection
    def select(self, gpu_ids, need_any=True, guard=True):
        if gpu_ids:
            selected = []
            for raw in gpu_ids:
                bdf = normalize_bdf(raw)
                if bdf in selected:
                    continue
                if not self.sysfs.device_exists(bdf):
                    raise MadengineError("PCI device %s does not exist (no %s)." % (
                        bdf, self.sysfs.rel(self.sysfs.dev_path(bdf))))
                vendor_id = read_vendor(self.sysfs, bdf)
                if self.gpu_vendor != "any" and vendor_id != VENDOR_IDS[self.gpu_vendor]:
                    raise MadengineError("PCI device %s has vendor %s, not %s (%s)." % (
                        bdf, vendor_id, self.gpu_vendor, VENDOR_IDS[self.gpu_vendor]))
                if self.exclude_boot_vga and self.sysfs.read(self.sysfs.dev_path(bdf, "boot_vga")) == "1":
                    raise MadengineError(
                        "PCI device %s is the boot VGA device (the host console); passing it through would take "
                        "the console away. Set exclude_boot_vga: false to do it anyway." % bdf)
                selected.append(bdf)
        else:
            if self.mode == "vgpu":
                parents = set(self.sysfs.mdev_parents())
                selected = [b for b in discover_gpus(self.sysfs, self.gpu_vendor, self.exclude_boot_vga, True)
                            if b in parents]
            else:
                selected = discover_gpus(self.sysfs, self.gpu_vendor, self.exclude_boot_vga)
            if not selected and need_any:
                raise MadengineError(
                    "No GPU found: no %s PCI function with class 0x03xxxx or 0x12xxxx under %s%s." % (
                        "AMD or NVIDIA" if self.gpu_vendor == "any" else self.gpu_vendor,
                        self.sysfs.rel(self.sysfs.path("sys/bus/pci/devices")),
                        " that offers mediated device types" if self.mode == "vgpu" else ""))
        if self.count:
            if len(selected) < self.count:
                raise MadengineError("count is %d but only %d GPU(s) were found: %s." % (
                    self.count, len(selected), ", ".join(selected) or "none"))
            selected = selected[:self.count]
        if guard:
            for bdf in selected:
                self._guard_alive(bdf)
        return selected

    def _guard_alive(self, bdf):
        if is_dead(self.sysfs, bdf):
            raise DeadDeviceError(
                "PCI device %s reads vendor 0xffff: it has fallen off the bus (for example after a VFIO reset of "
                "an MI300-class PF) and only a host reboot brings it back." % bdf, bdf)

    # ------------------------------------------------------------------ execution
    def _load(self, key):
        if key in self._forgotten:
            return None
        if key in self._planned:
            return self._planned[key]
        return self.store.load(key)

    def state_files(self):
        """State files that exist after this run (in check mode: those a real run would leave)."""
        keys = set(r["key"] for r in self.store.all()) - self._forgotten
        keys.update(self._planned)
        return [self.store.path(k) for k in sorted(keys)]

    def _capture(self, bdf):
        if bdf and bdf not in self._before:
            self._before[bdf] = self._state_line(bdf)

    def _record(self, record):
        """Save the original state of a device before its first change."""
        record.setdefault("version", STATE_VERSION)
        record.setdefault("recorded", utc_now())
        self._capture(record.get("bdf"))
        self.plan.append({"op": "record", "stage": "record", "device": record.get("bdf") or record.get("uuid"),
                          "path": self.store.path(record["key"])})
        if self.check_mode:
            self._planned[record["key"]] = record
        else:
            self.store.save(record)
        self._forgotten.discard(record["key"])
        self.touched.append(record)
        self.changed = True
        return record

    def _touch(self, record):
        """A device recorded by an earlier run is about to change again."""
        self._capture(record.get("bdf"))
        self.touched.append(record)
        return record

    def _forget(self, record):
        self.plan.append({"op": "forget", "stage": "forget", "device": record.get("bdf") or record.get("uuid"),
                          "path": self.store.path(record["key"])})
        if self.check_mode:
            self._forgotten.add(record["key"])
            self._planned.pop(record["key"], None)
        else:
            self.store.forget(record["key"])

    def _apply(self, step):
        self.plan.append(step.public())
        self.changed = True
        if self.check_mode:
            self._predict(step)
            return
        try:
            if step.op == "write":
                self.sysfs.write(self.sysfs.path(step.path), step.value, timeout=self.timeout)
            else:
                rc, out, err = self.run_command(step.argv, self.timeout)
                if rc == 124:
                    raise StepError("%s did not finish within %s s.%s" % (
                        " ".join(step.argv), self.timeout, _busy_hint(step)), step.device, step.stage, errno.ETIMEDOUT)
                if rc != 0:
                    detail = (err or out or "").strip().splitlines()
                    raise StepError("%s failed (rc %s)%s" % (
                        " ".join(step.argv), rc, ": " + detail[-1] if detail else "."), step.device, step.stage)
        except _sysfs.WriteTimeout as exc:
            raise StepError("%s%s" % (exc, _busy_hint(step)), step.device, step.stage, errno.ETIMEDOUT)
        except OSError as exc:
            raise StepError(self._explain(step, exc), step.device, step.stage, exc.errno)
        try:
            self._verify(step)
        except StepError:
            if step.fallback is None:
                raise
            self._apply(step.fallback)

    def _predict(self, step):
        view = self.view
        stage = step.stage
        if stage in ("override", "restore_override"):
            view.set("override", step.device, step.value.strip() or None)
        elif stage == "unbind":
            view.set("driver", step.device, None)
        elif stage in ("probe", "reprobe", "bind"):
            view.set("driver", step.device, step.expect)
        elif stage == "numvfs":
            view.create_vfs(step.device, int(step.value))
        elif stage == "autoprobe":
            view.set("autoprobe", step.device, int(step.value))
        elif stage == "modprobe":
            view.set("registered", step.expect, True)
            view.set("module", step.expect, True)
        elif stage == "gim_load":
            view.set("registered", "gim", True)
            view.set("module", "gim", True)
            for pf, count in step.expect:
                view.set("driver", pf, "gim")
                view.create_vfs(pf, count)
        elif stage == "gim_unload":
            view.set("registered", "gim", False)
            view.set("module", "gim", False)
            for pf in step.expect:
                view.set("driver", pf, None)
                view.create_vfs(pf, 0)
        elif stage == "sriov_manage_enable":
            view.create_vfs(step.device, step.expect)
        elif stage == "sriov_manage_disable":
            view.create_vfs(step.device, 0)
        elif stage == "mdev_create":
            view.set("mdev", step.value, True)
        elif stage == "mdev_remove":
            view.set("mdev", step.expect, False)

    def _wait(self, predicate):
        return wait_until(predicate, self.timeout)

    def _verify(self, step):
        sysfs = self.sysfs
        bdf = step.device
        stage = step.stage
        if stage in ("override", "restore_override"):
            want = step.value.strip() or None
            if sysfs.override(bdf) != want:
                raise StepError("driver_override of %s reads %s after writing %r." % (
                    bdf, sysfs.override(bdf) or "(null)", step.value), bdf, stage)
        elif stage == "unbind":
            if not self._wait(lambda: sysfs.driver(bdf) is None):
                raise StepError("%s is still bound to %s after unbind." % (bdf, sysfs.driver(bdf)), bdf, stage)
        elif stage in ("probe", "reprobe", "bind"):
            if not self._wait(lambda: sysfs.driver(bdf) == step.expect):
                current = sysfs.driver(bdf)
                raise StepError(
                    "%s reported success but %s is %s, not bound to %s%s." % (
                        "drivers_probe" if stage != "bind" else "bind", bdf,
                        "bound to %s" % current if current else "left without a driver", step.expect,
                        _probe_hint(sysfs, bdf, step.expect)), bdf, stage)
            group = sysfs.iommu_group(bdf)
            if "vfio" in step.expect and group:
                node = sysfs.vfio_group_node(group)
                if not self._wait(lambda: sysfs.exists(node)):
                    raise StepError("%s is bound to %s but %s did not appear." % (
                        bdf, step.expect, sysfs.rel(node)), bdf, stage)
        elif stage == "numvfs":
            want = int(step.value)
            if not self._wait(lambda: len(sysfs.virtfns(bdf)) == want):
                raise StepError("%s shows %d VFs after writing %d to sriov_numvfs." % (
                    bdf, len(sysfs.virtfns(bdf)), want), bdf, stage)
        elif stage == "autoprobe":
            if sysfs.read_int(sysfs.dev_path(bdf, "sriov_drivers_autoprobe")) != int(step.value):
                raise StepError("sriov_drivers_autoprobe of %s did not change to %s." % (bdf, step.value), bdf, stage)
        elif stage == "modprobe":
            if not self._wait(lambda: sysfs.driver_registered(step.expect)):
                raise StepError("modprobe %s succeeded but %s is not registered." % (
                    step.expect, sysfs.rel(sysfs.driver_path(step.expect))), None, stage)
        elif stage == "gim_load":
            for pf, count in step.expect:
                ok = self._wait(lambda pf=pf, count=count: sysfs.driver(pf) == "gim"
                                and len(sysfs.virtfns(pf)) >= count)
                if not ok:
                    raise StepError(
                        "gim was loaded but %s is %s with %d VF(s); %d expected (see gim's messages in dmesg: the "
                        "VF count allowed depends on the partition mode)." % (
                            pf, "bound to %s" % sysfs.driver(pf) if sysfs.driver(pf) else "unbound",
                            len(sysfs.virtfns(pf)), count), pf, stage)
        elif stage == "gim_unload":
            if not self._wait(lambda: not sysfs.module_loaded("gim")):
                raise StepError("gim is still loaded after modprobe -r gim.", None, stage)
        elif stage == "sriov_manage_enable":
            if not self._wait(lambda: len(sysfs.virtfns(bdf)) >= step.expect):
                raise StepError("sriov-manage -e %s enabled %d VF(s), %d expected." % (
                    bdf, len(sysfs.virtfns(bdf)), step.expect), bdf, stage)
        elif stage == "sriov_manage_disable":
            if not self._wait(lambda: not sysfs.virtfns(bdf)):
                raise StepError("%s still has VFs after sriov-manage -d." % bdf, bdf, stage)
        elif stage == "mdev_create":
            if not self._wait(lambda: sysfs.exists(sysfs.mdev_path(step.value))):
                raise StepError("mdev %s did not appear on %s." % (step.value, bdf), bdf, stage)
        elif stage == "mdev_remove":
            if not self._wait(lambda: not sysfs.exists(sysfs.mdev_path(step.expect))):
                raise StepError("mdev %s is still present after remove." % step.expect, bdf, stage)

    def _explain(self, step, exc):
        code = exc.errno
        name = errno_name(code) if code else "error"
        sysfs = self.sysfs
        bdf = step.device
        if step.stage == "numvfs":
            total = sysfs.read(sysfs.dev_path(bdf, "sriov_totalvfs"))
            if code == errno.ERANGE:
                return "PF %s supports at most %s VFs (sriov_totalvfs); writing %s to sriov_numvfs failed (ERANGE)." % (
                    bdf, total, step.value)
            if code == errno.ENOENT:
                return ("PF %s cannot create VFs through sriov_numvfs (ENOENT): its driver (%s) has no SR-IOV "
                        "configuration support; use a PF driver that has it, or sriov_provider gim (AMD) or "
                        "nvidia." % (bdf, sysfs.driver(bdf) or "none"))
            if code == errno.EBUSY:
                return ("PF %s refused to change its VF count to %s (EBUSY): a VF is still in use, for example by a "
                        "running VM; stop the VMs that use its VFs and retry." % (bdf, step.value))
        if step.stage == "mdev_create":
            if code == errno.EUSERS:
                return "No free instance of mdev type %s on %s (EUSERS)." % (os.path.basename(
                    os.path.dirname(step.path)), bdf)
            if code == errno.EEXIST:
                return "An mdev with UUID %s already exists on the host (EEXIST)." % step.value
        if step.stage == "unbind":
            return "Unbinding %s from %s failed: %s (%s)." % (bdf, step.path.split("/")[-2], exc.strerror, name)
        if step.stage in ("probe", "reprobe", "bind"):
            return "Binding %s to %s failed: %s (%s)%s." % (
                bdf, step.expect, exc.strerror, name, _probe_hint(sysfs, bdf, step.expect))
        return "Writing %r to %s for %s failed: %s (%s)." % (step.value, step.path, bdf, exc.strerror, name)

    # ------------------------------------------------------------------ steps per device
    def _pci_bind_steps(self, bdf, target):
        view = self.view
        current = view.driver(bdf)
        if current == target:
            return []
        dev = "/sys/bus/pci/devices/%s" % bdf
        steps = []
        if view.override(bdf) != target:
            steps.append(Step("write", "override", bdf, dev + "/driver_override", target))
        if current:
            steps.append(Step("write", "unbind", bdf, "/sys/bus/pci/drivers/%s/unbind" % current, bdf))
        steps.append(Step("write", "probe", bdf, "/sys/bus/pci/drivers_probe", bdf, expect=target))
        return steps

    def _pci_restore_steps(self, record):
        view = self.view
        bdf = record["bdf"]
        if not view.device_exists(bdf):
            return None
        orig_driver = record.get("original_driver")
        orig_override = record.get("original_override")
        current = view.driver(bdf)
        steps = []
        if view.override(bdf) != orig_override:
            steps.append(Step("write", "restore_override", bdf, "/sys/bus/pci/devices/%s/driver_override" % bdf,
                              orig_override if orig_override else "\n"))
        if current != orig_driver:
            if current:
                steps.append(Step("write", "unbind", bdf, "/sys/bus/pci/drivers/%s/unbind" % current, bdf))
            if orig_driver:
                fallback = Step("write", "bind", bdf, "/sys/bus/pci/drivers/%s/bind" % orig_driver, bdf,
                                expect=orig_driver)
                steps.append(Step("write", "reprobe", bdf, "/sys/bus/pci/drivers_probe", bdf, expect=orig_driver,
                                  fallback=fallback))
        return steps

    def _pci_record(self, bdf, role, owner, **extra):
        record = {"key": bdf, "bdf": bdf, "role": role, "owner": owner, "mode": self.mode,
                  "vendor": self.sysfs.read(self.sysfs.dev_path(bdf, "vendor")),
                  "device": self.sysfs.read(self.sysfs.dev_path(bdf, "device")),
                  "original_driver": self.view.driver(bdf), "original_override": self.view.override(bdf),
                  "target_driver": self.target}
        record.update(extra)
        return record

    def _bind_unit(self, bdf, role, owner, **extra):
        """Bind one function to the target driver, recording its original state first."""
        existing = self._load(bdf)
        steps = self._pci_bind_steps(bdf, self.target)
        if existing is None:
            self._record(self._pci_record(bdf, role, owner, **extra))
        elif steps:
            self._touch(existing)
        for step in steps:
            self._apply(step)

    # ------------------------------------------------------------------ present
    def present(self, gpu_ids):
        targets = self.select(gpu_ids)
        try:
            if self.mode == "vfio":
                self._present_vfio(targets)
            elif self.mode == "sriov":
                self._present_sriov(targets)
            else:
                self._present_vgpu(targets)
        except Exception as exc:
            # Anything short of the process dying: put back what this run changed.
            rolled, problems = self._rollback()
            exc.rolled_back = rolled
            exc.rollback_errors = problems
            raise
        self._finish(targets)

    def _units_vfio(self, targets):
        units = []
        seen = set()

        def add(bdf, role, owner):
            if bdf not in seen:
                seen.add(bdf)
                units.append((bdf, role, owner))

        for gpu in targets:
            add(gpu, "gpu", gpu)
            if self.include_functions:
                for other in self.sysfs.pci_devices():
                    if other != gpu and slot_of(other) == slot_of(gpu) and not self.sysfs.physfn(other):
                        add(other, "function", gpu)
        for bdf, _role, owner in list(units):
            group = self.view.iommu_group(bdf)
            if group is None:
                raise MadengineError(
                    "PCI device %s has no IOMMU group: the IOMMU is off or not enabled on the kernel command line "
                    "(intel_iommu=on on Intel; AMD-Vi enabled in the firmware on AMD). The iommu_kvm_prep role "
                    "reports and fixes this." % bdf)
            offenders = []
            for member in self.sysfs.group_members(group):
                if member in seen:
                    continue
                driver = self.view.driver(member)
                if is_dma_safe_driver(driver) or (self.sysfs.class_code(member) >> 8) == BRIDGE_CLASS:
                    continue
                offenders.append((member, driver))
            if not offenders:
                continue
            listing = ", ".join("%s (%s)" % o for o in offenders)
            if self.group_policy == "bind":
                for member, _driver in offenders:
                    self._guard_alive(member)
                    add(member, "group", owner)
            elif self.group_policy == "ignore":
                self.warnings.append(
                    "IOMMU group %s of %s is not viable for VFIO: %s still use host drivers; QEMU will refuse the "
                    "device until they are unbound." % (group, bdf, listing))
            else:
                raise MadengineError(
                    "IOMMU group %s of %s is not viable for VFIO: %s share%s it with a host driver. Bind %s too "
                    "(group_policy: bind%s), move the card to another slot, or enable ACS in the firmware." % (
                        group, bdf, listing, "s" if len(offenders) == 1 else "",
                        "it" if len(offenders) == 1 else "them",
                        "" if self.include_functions else ", or include_functions: true for functions of the same "
                        "card"))
        return units

    def _ensure_driver(self, name):
        if self.view.driver_registered(name):
            return
        if not self.load_modules:
            raise MadengineError(
                "Driver %s is not registered (%s is missing) and load_modules is false; load it with "
                "modprobe %s or set load_modules: true." % (
                    name, self.sysfs.rel(self.sysfs.driver_path(name)), name))
        self._apply(Step("command", "modprobe", None, argv=["modprobe", name], expect=name))

    def _present_vfio(self, targets):
        units = self._units_vfio(targets)
        self._ensure_driver(self.target)
        for bdf, role, owner in units:
            self._bind_unit(bdf, role, owner)
            if role != "group":
                self.hostdevs.append(bdf)

    # sriov -----------------------------------------------------------------------------------
    def _provider(self, pf):
        if self.sriov_provider != "auto":
            return self.sriov_provider
        return "gim" if read_vendor(self.sysfs, pf) == VENDOR_IDS["AMD"] else "sysfs"

    def _present_sriov(self, targets):
        if self.num_vfs < 1:
            raise MadengineError("num_vfs must be at least 1 for mode sriov, got %d." % self.num_vfs)
        plans = []
        for pf in targets:
            if self.sysfs.physfn(pf):
                raise MadengineError("%s is a VF; mode sriov needs the PF (its physfn is %s)." % (
                    pf, self.sysfs.physfn(pf)))
            total = self.sysfs.read_int(self.sysfs.dev_path(pf, "sriov_totalvfs"))
            if not total:
                raise MadengineError("PCI device %s is not SR-IOV capable (no sriov_totalvfs)." % pf)
            if self.num_vfs > total:
                raise MadengineError("PF %s supports at most %d VFs (sriov_totalvfs), %d requested." % (
                    pf, total, self.num_vfs))
            plans.append((pf, self._provider(pf)))
        self._ensure_driver(self.target)
        for pf, provider in plans:
            if provider == "sysfs":
                vfs = self._sriov_sysfs(pf)
            elif provider == "gim":
                vfs = self._sriov_gim(pf, [p for p, prov in plans if prov == "gim"])
            else:
                vfs = self._sriov_nvidia(pf)
            for vf in vfs[:self.num_vfs]:
                if not self.view.over.get(("new", vf)):
                    self._check_vf_group(vf)
                self._bind_unit(vf, "vf", pf, parent_pf=pf)
                self.hostdevs.append(vf)

    def _check_vf_group(self, vf):
        group = self.view.iommu_group(vf)
        if group is None:
            raise MadengineError("VF %s has no IOMMU group: the IOMMU is off or not enabled." % vf)
        for member in self.sysfs.group_members(group):
            if member == vf:
                continue
            driver = self.view.driver(member)
            if not is_dma_safe_driver(driver) and (self.sysfs.class_code(member) >> 8) != BRIDGE_CLASS:
                raise MadengineError("IOMMU group %s of VF %s is not viable for VFIO: %s (%s) shares it." % (
                    group, vf, member, driver))

    def _pf_record(self, pf, provider, **extra):
        record = {"key": pf, "bdf": pf, "role": "pf", "owner": pf, "mode": self.mode, "provider": provider,
                  "vendor": self.sysfs.read(self.sysfs.dev_path(pf, "vendor")),
                  "device": self.sysfs.read(self.sysfs.dev_path(pf, "device")),
                  "original_driver": self.view.driver(pf), "original_override": self.view.override(pf),
                  "original_numvfs": self.view.numvfs(pf), "original_autoprobe": self.view.autoprobe(pf)}
        record.update(extra)
        return record

    def _release_our_vfs(self, pf):
        """Restore the VFs of ``pf`` that an earlier run bound, before their count changes."""
        for vf in reversed(self.view.virtfns(pf)):
            record = self._load(vf)
            if record is not None:
                self._capture(vf)
                for step in self._pci_restore_steps(record) or []:
                    self._apply(step)
                self._forget(record)

    def _sriov_sysfs(self, pf):
        view = self.view
        want = self.num_vfs
        current = view.numvfs(pf)
        record = self._load(pf)
        if current == want:
            if record is None:
                self._record(self._pf_record(pf, "sysfs"))
            return view.virtfns(pf)
        if view.driver(pf) is None:
            raise MadengineError(
                "PF %s has no driver bound; VFs can only be created through its driver's SR-IOV support "
                "(sriov_numvfs would fail with ENOENT)." % pf)
        if record is None:
            self._record(self._pf_record(pf, "sysfs"))
        else:
            self._touch(record)
        path = "/sys/bus/pci/devices/%s/" % pf
        if current:
            self._release_our_vfs(pf)
            self._apply(Step("write", "numvfs", pf, path + "sriov_numvfs", "0"))
        if view.autoprobe(pf) not in (None, 0):
            self._apply(Step("write", "autoprobe", pf, path + "sriov_drivers_autoprobe", "0"))
        self._apply(Step("write", "numvfs", pf, path + "sriov_numvfs", str(want)))
        return view.virtfns(pf)

    def _sriov_gim(self, pf, gim_pfs):
        view = self.view
        driver = view.driver(pf)
        record = self._load(pf)
        if driver not in (None, "gim"):
            raise MadengineError(
                "AMD PF %s is bound to %s; GIM-managed SR-IOV needs the gim driver to own the PF. Blacklist %s "
                "(the iommu_kvm_prep role does this for mode sriov) and reboot, or unbind it first." % (
                    pf, driver, driver))
        if driver is None:
            if view.module_loaded("gim"):
                raise MadengineError(
                    "gim is loaded but does not own PF %s (is the PF outside gim's enabled_devices?)." % pf)
            if not self.load_modules:
                raise MadengineError("gim is not loaded and load_modules is false; load gim (vf_num=%d) first." % (
                    self.num_vfs))
            claimed = [p for p in self._gim_candidates() if view.driver(p) is None]
            for other in claimed:
                if other in gim_pfs:
                    earlier = self._load(other)
                    if earlier is None:
                        self._record(self._pf_record(other, "gim", gim_loaded=True))
                    else:
                        self._touch(earlier)
            vf_num = ",".join(str(self.num_vfs) for _p in claimed)
            self._apply(Step("command", "gim_load", pf, argv=["modprobe", "gim", "vf_num=%s" % vf_num],
                             expect=[(p, self.num_vfs) for p in claimed]))
        elif record is None:
            self._record(self._pf_record(pf, "gim", gim_loaded=False))
        vfs = view.virtfns(pf)
        if len(vfs) < self.num_vfs:
            raise MadengineError(
                "gim enabled %d VF(s) on %s but %d were requested. GIM sets the VF count from its vf_num module "
                "parameter (never through sriov_numvfs); reload gim with a larger vf_num (the limit depends on the "
                "partition mode)." % (len(vfs), pf, self.num_vfs))
        return vfs

    def _gim_candidates(self):
        return [b for b in self.sysfs.pci_devices()
                if read_vendor(self.sysfs, b) == VENDOR_IDS["AMD"] and not self.sysfs.physfn(b)
                and (self.sysfs.class_code(b) >> 16) in GPU_BASE_CLASSES
                and self.sysfs.read_int(self.sysfs.dev_path(b, "sriov_totalvfs"), 0)]

    def _sriov_nvidia(self, pf):
        view = self.view
        record = self._load(pf)
        if view.driver(pf) != "nvidia":
            raise MadengineError("NVIDIA PF %s must be bound to the nvidia driver for sriov-manage (it is %s)." % (
                pf, view.driver(pf) or "unbound"))
        if record is None:
            self._record(self._pf_record(pf, "nvidia"))
        elif not view.virtfns(pf):
            self._touch(record)
        if not view.virtfns(pf):
            total = self.sysfs.read_int(self.sysfs.dev_path(pf, "sriov_totalvfs"), 0)
            self._apply(Step("command", "sriov_manage_enable", pf, argv=[SRIOV_MANAGE, "-e", pf], expect=total))
        vfs = view.virtfns(pf)
        if len(vfs) < self.num_vfs:
            raise MadengineError("sriov-manage enabled %d VF(s) on %s, %d requested." % (
                len(vfs), pf, self.num_vfs))
        return vfs

    # vgpu ------------------------------------------------------------------------------------
    def _present_vgpu(self, targets):
        if not self.vgpu_type:
            raise MadengineError("mode vgpu needs vgpu_type (an mdev type such as nvidia-474, or its name).")
        if self.vgpu_uuid and len(targets) != 1:
            raise MadengineError("vgpu_uuid names one mediated device; select exactly one parent GPU (got %d)." %
                                 len(targets))
        work = [(parent, self._mdev_type(parent)) for parent in targets]
        for parent, type_dir in work:
            mdev_uuid = self.vgpu_uuid or str(uuid.uuid5(MDEV_NAMESPACE, "%s/%s" % (parent, type_dir)))
            try:
                mdev_uuid = str(uuid.UUID(mdev_uuid))
            except ValueError:
                raise MadengineError("vgpu_uuid %r is not a UUID." % self.vgpu_uuid)
            key = "mdev-" + mdev_uuid
            if self.view.mdev_exists(mdev_uuid):
                current_type = self.sysfs.link_name(self.sysfs.mdev_path(mdev_uuid, "mdev_type"))
                if current_type and current_type != type_dir:
                    raise MadengineError("mdev %s already exists with type %s, not %s." % (
                        mdev_uuid, current_type, type_dir))
                if self._load(key) is None:
                    self._record({"key": key, "uuid": mdev_uuid, "bdf": None, "parent": parent, "type": type_dir,
                                  "role": "mdev", "owner": parent, "mode": "vgpu", "created": False})
            else:
                types = self.sysfs.path("sys/class/mdev_bus", parent, "mdev_supported_types", type_dir)
                available = self.sysfs.read_int(os.path.join(types, "available_instances"), 0)
                if available < 1:
                    raise MadengineError("No free instance of mdev type %s on %s (available_instances is 0)." % (
                        type_dir, parent))
                earlier = self._load(key)
                if earlier is None:
                    self._record({"key": key, "uuid": mdev_uuid, "bdf": None, "parent": parent, "type": type_dir,
                                  "role": "mdev", "owner": parent, "mode": "vgpu", "created": True})
                else:
                    self._touch(earlier)
                self._apply(Step("write", "mdev_create", parent,
                                 "/sys/class/mdev_bus/%s/mdev_supported_types/%s/create" % (parent, type_dir),
                                 mdev_uuid))
            self.mdevs.append(mdev_uuid)

    def _mdev_type(self, parent):
        types_dir = self.sysfs.mdev_types_dir(parent)
        if not os.path.isdir(types_dir):
            if self.sysfs.exists(self.sysfs.dev_path(parent, "nvidia/creatable_vgpu_types")):
                raise MadengineError(
                    "%s uses NVIDIA's vendor-specific VFIO vGPU interface (nvidia/creatable_vgpu_types, no mdev); "
                    "this interface is not supported yet. Use a host driver with mdev support or mode vfio." % parent)
            raise MadengineError(
                "%s offers no mediated device types (no %s): is the vGPU host driver loaded, and on SR-IOV "
                "GPUs were the VFs enabled (sriov-manage -e)?" % (parent, self.sysfs.rel(types_dir)))
        names = {}
        for type_dir in self.sysfs.listdir(types_dir):
            names[type_dir] = self.sysfs.read(os.path.join(types_dir, type_dir, "name")) or type_dir
        if self.vgpu_type in names:
            return self.vgpu_type
        by_name = [t for t, n in names.items() if n == self.vgpu_type]
        if by_name:
            return by_name[0]
        raise MadengineError("mdev type %r is not offered by %s; available: %s." % (
            self.vgpu_type, parent, ", ".join("%s (%s)" % (t, n) for t, n in sorted(names.items())) or "none"))

    # ------------------------------------------------------------------ absent
    def absent(self, gpu_ids):
        wanted = None
        if gpu_ids:
            wanted = set(normalize_bdf(x) for x in gpu_ids)
        records = self.store.all()
        selected = [r for r in records if wanted is None or r.get("owner") in wanted or r.get("bdf") in wanted
                    or r.get("parent_pf") in wanted]
        if wanted:
            recorded = set(r.get("owner") for r in records) | set(r.get("bdf") for r in records)
            for bdf in sorted(wanted - recorded):
                if self.sysfs.device_exists(bdf) and self.sysfs.driver(bdf) == self.target:
                    self.warnings.append(
                        "%s is bound to %s but there is no record of its original driver in %s; it was left as "
                        "it is." % (bdf, self.target, self.store.directory))
        for record in selected:
            self._capture(record.get("bdf"))
        remaining = [r for r in records if r not in selected]
        errors = self._restore(selected, remaining)
        self._finish([])
        if errors:
            raise MadengineError("Restoring failed for %d device(s): %s" % (len(errors), " ".join(errors)))

    def _restore(self, records, remaining=()):
        """Restore ``records`` (any order given); returns error sentences, records of failures are kept."""
        ordered = sorted(records, key=lambda r: (_RESTORE_RANK.get(r.get("role"), 2), r.get("bdf") or r.get("uuid")))
        errors = []
        still = list(remaining)
        for record in ordered:
            try:
                self._restore_one(record, still)
            except MadengineError as exc:
                errors.append(str(exc))
                still.append(record)
        return errors

    def _restore_one(self, record, remaining):
        role = record.get("role")
        if role == "mdev":
            steps = []
            if self.view.mdev_exists(record["uuid"]) and record.get("created", True):
                steps.append(Step("write", "mdev_remove", record["parent"],
                                  "/sys/bus/mdev/devices/%s/remove" % record["uuid"], "1", expect=record["uuid"]))
        elif role == "pf":
            steps = self._pf_restore_steps(record, remaining)
        else:
            steps = self._pci_restore_steps(record)
            if steps is None:
                steps = []
        for step in steps:
            self._apply(step)
        self._forget(record)
        if record.get("role") == "mdev":
            return
        if record.get("bdf") and self.view.device_exists(record["bdf"]):
            self.devices.append(describe(self.sysfs, self.view, record["bdf"], record))

    def _pf_restore_steps(self, record, remaining):
        view = self.view
        pf = record["bdf"]
        provider = record.get("provider")
        steps = []
        if provider == "gim":
            if record.get("gim_loaded") and view.module_loaded("gim"):
                others = [r for r in remaining if r.get("provider") == "gim" and r.get("gim_loaded")
                          and r is not record]
                if others:
                    self.warnings.append("gim stays loaded: %s still use it." % ", ".join(r["bdf"] for r in others))
                else:
                    pfs = [p for p in self._gim_candidates() if view.driver(p) == "gim"]
                    steps.append(Step("command", "gim_unload", pf, argv=["modprobe", "-r", "gim"], expect=pfs))
            return steps
        if provider == "nvidia":
            if not record.get("original_numvfs") and view.virtfns(pf):
                steps.append(Step("command", "sriov_manage_disable", pf, argv=[SRIOV_MANAGE, "-d", pf]))
            return steps
        path = "/sys/bus/pci/devices/%s/" % pf
        original = record.get("original_numvfs") or 0
        autoprobe = record.get("original_autoprobe")
        current = view.numvfs(pf)
        if current != original and current:
            steps.append(Step("write", "numvfs", pf, path + "sriov_numvfs", "0"))
        if autoprobe is not None and view.autoprobe(pf) != autoprobe:
            steps.append(Step("write", "autoprobe", pf, path + "sriov_drivers_autoprobe", str(autoprobe)))
        if current != original and original:
            steps.append(Step("write", "numvfs", pf, path + "sriov_numvfs", str(original)))
        return steps

    def _rollback(self):
        """Restore what this run changed, newest first; returns (restored keys, error sentences)."""
        touched = list(self.touched)
        self.touched = []
        done = []
        problems = []
        seen = set()
        for record in reversed(touched):
            if record["key"] in seen:
                continue
            seen.add(record["key"])
            try:
                self._restore_one(record, [r for r in touched if r["key"] not in seen])
                done.append(record.get("bdf") or record.get("uuid"))
            except MadengineError as exc:
                problems.append(str(exc))
        return done, problems

    # ------------------------------------------------------------------ query and results
    def query(self, gpu_ids):
        records = {r["key"]: r for r in self.store.all()}
        targets = self.select(gpu_ids, need_any=False, guard=False)
        keys = list(targets) + sorted(k for k in records if k not in targets)
        for key in keys:
            record = records.get(key)
            if record and record.get("role") == "mdev":
                info = {"bdf": None, "role": "mdev", "parent_pf": record.get("parent"),
                        "vgpu_uuid": record["uuid"], "recorded": True,
                        "current_driver": None, "original_driver": None,
                        "present": self.view.mdev_exists(record["uuid"])}
                self.devices.append(info)
                continue
            if not self.sysfs.device_exists(key):
                continue
            self.devices.append(describe(self.sysfs, self.view, key, record))
            if record and record.get("role") != "pf" and self.view.driver(key) == record.get("target_driver"):
                self.hostdevs.append(key)
        return sorted(records)

    def _state_line(self, bdf):
        if not self.view.device_exists(bdf):
            return "absent"
        line = "driver=%s driver_override=%s" % (
            self.view.driver(bdf) or "(none)", self.view.override(bdf) or "(null)")
        if self.sysfs.exists(self.sysfs.dev_path(bdf, "sriov_totalvfs")):
            line += " sriov_numvfs=%d" % self.view.numvfs(bdf)
        return line

    def _finish(self, targets):
        seen = set(d["bdf"] for d in self.devices)
        for record in self.touched:
            bdf = record.get("bdf")
            if bdf and bdf not in seen and self.view.device_exists(bdf):
                seen.add(bdf)
                self.devices.append(describe(self.sysfs, self.view, bdf, record))
            elif record.get("role") == "mdev":
                self.devices.append({"bdf": None, "role": "mdev", "parent_pf": record["parent"],
                                     "vgpu_uuid": record["uuid"], "recorded": True, "current_driver": None,
                                     "original_driver": None})
        for bdf in list(targets) + list(self.hostdevs):
            if bdf not in seen and self.view.device_exists(bdf):
                seen.add(bdf)
                self.devices.append(describe(self.sysfs, self.view, bdf, self._load(bdf)))
        for device in self.devices:
            if device.get("bdf"):
                device["vfs"] = self.view.virtfns(device["bdf"])

    def diff(self):
        before, after = [], []
        for bdf in sorted(set(self._before) | set(d["bdf"] for d in self.devices if d.get("bdf"))):
            old = self._before.get(bdf, "absent")
            new = self._state_line(bdf)
            if old != new:
                before.append("%s: %s\n" % (bdf, old))
                after.append("%s: %s\n" % (bdf, new))
        return {"before": "".join(before), "after": "".join(after)}


def _busy_hint(step):
    if step.stage == "unbind":
        return (" The host driver is busy: stop the processes that use the GPU (for example nvidia-persistenced, "
                "or ROCm/KFD users of amdgpu) and retry.")
    if step.stage == "gim_unload":
        return (" gim waits until no VF is in use: stop the VMs that use its VFs, then run state=absent again.")
    return ""


def _probe_hint(sysfs, bdf, driver):
    if driver and "vfio" in driver and not sysfs.iommu_group(bdf):
        return " (the device has no IOMMU group: VFIO needs the IOMMU enabled)"
    if driver and not sysfs.driver_registered(driver):
        return " (driver %s is not loaded)" % driver
    return ""
