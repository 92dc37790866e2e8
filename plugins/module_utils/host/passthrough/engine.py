# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""Give host GPUs to VMs through sysfs and put them back exactly as they were found.

The engine applies steps, predicts them in check mode, verifies each one, and rolls back; what to do
for a mode is a strategy:

* ``vfio``  - bind whole functions to vfio-pci (or a variant): ``driver_override`` -> ``unbind`` ->
  ``drivers_probe``, each write verified, never ``new_id`` (:mod:`.vfio`);
* ``sriov`` - create virtual functions (generic ``sriov_numvfs``, AMD GIM through its module
  parameter, NVIDIA through ``sriov-manage``) and bind the VFs as in ``vfio`` (:mod:`.sriov`);
* ``vgpu``  - create a mediated device of a given type on its parent (:mod:`.vgpu`).

Every change is one :class:`Step`. Steps are computed from the state they apply to; in check mode
a :class:`View` predicts each step's effect instead of performing it, so the plan returned in check
mode is the plan a real run executes. Before a device's first step its original state is saved in
``state_dir`` (one JSON file per device), so ``absent`` works from any later process, also after a
crash. If a step fails, the devices changed so far are restored in reverse order.
"""

from __future__ import annotations

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError, utc_now
from ansible_collections.rocm.madengine.plugins.module_utils.host.hostfs import (
    VENDOR_IDS,
    normalize_bdf,
    vendor_filter,
    wait_until,
)
from ansible_collections.rocm.madengine.plugins.module_utils.host.passthrough import steps as _steps
from ansible_collections.rocm.madengine.plugins.module_utils.host.passthrough.records import (
    STATE_VERSION,
    DeadDeviceError,
    StateStore,
    Step,
    StepError,
    View,
    describe,
    describe_mdev,
)
from ansible_collections.rocm.madengine.plugins.module_utils.host.passthrough.sriov import SriovStrategy
from ansible_collections.rocm.madengine.plugins.module_utils.host.passthrough.vfio import VfioStrategy
from ansible_collections.rocm.madengine.plugins.module_utils.host.passthrough.vgpu import VgpuStrategy

__all__ = ["DeadDeviceError", "Passthrough", "Step", "StepError"]

# Restore order: the things built on top first.
_RESTORE_RANK = {"mdev": 0, "vf": 1, "function": 2, "group": 2, "gpu": 2, "pf": 3}


class Passthrough(object):
    """One run of the module on ``host`` (a HostFs).

    ``run`` executes argv lists: ``(argv, timeout) -> (rc, out, err)``.
    """

    def __init__(self, host, state_dir, run=None, check_mode=False, mode="vfio", driver="vfio-pci",
                 gpu_vendor="auto", count=None, exclude_boot_vga=True, include_functions=True,
                 group_policy="fail", num_vfs=1, sriov_provider="auto", vgpu_type=None, vgpu_uuid=None,
                 load_modules=True, timeout=60):
        self.host = host
        self.store = StateStore(state_dir)
        self.run_command = run
        self.check_mode = check_mode
        self.mode = mode
        self.target = driver
        self.vendor = vendor_filter(gpu_vendor)
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
        self.view = View(host)
        self.plan = []
        self.warnings = []
        self.touched = []          # records changed in this run, in order
        self.changed = False
        self.hostdevs = []
        self.mdevs = []
        self.devices = []
        self.errors = []           # restore failures (absent), one sentence each
        self._before = {}
        self._forgotten = set()    # check mode: state files a real run would have removed by now
        self._planned = {}         # check mode: state files a real run would have written by now
        self.strategies = {"vfio": VfioStrategy(self), "sriov": SriovStrategy(self), "vgpu": VgpuStrategy(self)}

    # ------------------------------------------------------------------ selection
    def select(self, gpu_ids, need_any=True, guard=True):
        """The GPUs of this run: ``gpu_ids`` checked, or discovered; the first ``count``; none fallen off the bus."""
        ids = [g for g in gpu_ids or [] if str(g).strip()]
        selected = self._given(ids) if ids else self._discovered(need_any)
        if self.count:
            if len(selected) < self.count:
                raise MadengineError("count is %d but only %d GPU(s) were found: %s." % (
                    self.count, len(selected), ", ".join(selected) or "none"))
            selected = selected[:self.count]
        if guard:
            for bdf in selected:
                self.guard_alive(bdf)
        return selected

    def _given(self, gpu_ids):
        host = self.host
        selected = []
        for raw in gpu_ids:
            bdf = normalize_bdf(raw)
            if bdf in selected:
                continue
            if not host.device_exists(bdf):
                raise MadengineError("PCI device %s does not exist (no %s)." % (bdf, host.rel(host.dev_path(bdf))))
            if self.vendor and host.vendor(bdf) != VENDOR_IDS[self.vendor]:
                raise MadengineError("PCI device %s has vendor %s, not %s (%s)." % (
                    bdf, host.vendor(bdf), self.vendor, VENDOR_IDS[self.vendor]))
            if self.exclude_boot_vga and host.is_boot_vga(bdf):
                raise MadengineError(
                    "PCI device %s is the boot VGA device (the host console); passing it through would take "
                    "the console away. Set exclude_boot_vga: false to do it anyway." % bdf)
            selected.append(bdf)
        return selected

    def _discovered(self, need_any):
        if self.mode == "vgpu":
            selected = self.strategies["vgpu"].candidates(self.vendor, self.exclude_boot_vga)
        else:
            selected = self.host.gpu_functions(self.vendor, self.exclude_boot_vga, include_vfs=False)
        if not selected and need_any:
            raise MadengineError(
                "No GPU found: no %s PCI function with class 0x03xxxx or 0x12xxxx under %s%s." % (
                    self.vendor or "AMD or NVIDIA", self.host.rel(self.host.path("sys/bus/pci/devices")),
                    " that offers mediated device types" if self.mode == "vgpu" else ""))
        return selected

    def guard_alive(self, bdf):
        if self.host.is_dead(bdf):
            raise DeadDeviceError(
                "PCI device %s reads vendor 0xffff: it has fallen off the bus (for example after a VFIO reset of "
                "an MI300-class PF) and only a host reboot brings it back." % bdf, bdf)

    # ------------------------------------------------------------------ state records
    def load(self, key):
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

    def capture(self, bdf):
        if bdf and bdf not in self._before:
            self._before[bdf] = self.state_line(bdf)

    def record(self, record):
        """Save the original state of a device before its first change."""
        record.setdefault("version", STATE_VERSION)
        record.setdefault("recorded", utc_now())
        self.capture(record.get("bdf"))
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

    def touch(self, record):
        """A device recorded by an earlier run is about to change again."""
        self.capture(record.get("bdf"))
        self.touched.append(record)
        return record

    def forget(self, record):
        self.plan.append({"op": "forget", "stage": "forget", "device": record.get("bdf") or record.get("uuid"),
                          "path": self.store.path(record["key"])})
        if self.check_mode:
            self._forgotten.add(record["key"])
            self._planned.pop(record["key"], None)
        else:
            self.store.forget(record["key"])

    # ------------------------------------------------------------------ apply / predict / verify
    def apply(self, step):
        """Perform ``step`` and verify it (its fallback when verification fails); in check mode predict it."""
        self.plan.append(step.public())
        self.changed = True
        if self.check_mode:
            _steps.predict(self.view, step)
            return
        _steps.execute(self.host, self.run_command, step, self.timeout)
        try:
            _steps.verify(self.host, step, lambda predicate: wait_until(predicate, self.timeout))
        except StepError:
            if step.fallback is None:
                raise
            self.apply(step.fallback)

    def ensure_driver(self, name):
        """Load the VFIO driver module when it is not registered (and load_modules allows it)."""
        if self.view.driver_registered(name):
            return
        if not self.load_modules:
            raise MadengineError(
                "Driver %s is not registered (%s is missing) and load_modules is false; load it with "
                "modprobe %s or set load_modules: true." % (name, self.host.rel(self.host.driver_path(name)), name))
        self.apply(Step("command", "modprobe", None, argv=["modprobe", name], expect=name))

    # ------------------------------------------------------------------ present
    def present(self, gpu_ids):
        targets = self.select(gpu_ids)
        try:
            self.strategies[self.mode].present(targets)
        except Exception as exc:
            # Anything short of the process dying: put back what this run changed.
            rolled, problems = self.rollback()
            exc.rolled_back = rolled
            exc.rollback_errors = problems
            raise
        self.finish(targets)

    def rollback(self):
        """Restore what this run changed, newest first; returns (restored devices, error sentences)."""
        touched = list(self.touched)
        self.touched = []
        done, problems, seen = [], [], set()
        for record in reversed(touched):
            if record["key"] in seen:
                continue
            seen.add(record["key"])
            try:
                self.restore(record, [r for r in touched if r["key"] not in seen])
                done.append(record.get("bdf") or record.get("uuid"))
            except MadengineError as exc:
                problems.append(str(exc))
        return done, problems

    # ------------------------------------------------------------------ absent
    def absent(self, gpu_ids):
        """Restore every recorded device, or those of ``gpu_ids`` and what was bound with them."""
        wanted = set(normalize_bdf(x) for x in gpu_ids or [] if str(x).strip()) or None
        records = self.store.all()
        selected = [r for r in records if wanted is None or r.get("owner") in wanted or r.get("bdf") in wanted
                    or r.get("parent_pf") in wanted]
        if wanted:
            recorded = set(r.get("owner") for r in records) | set(r.get("bdf") for r in records)
            for bdf in sorted(wanted - recorded):
                if self.host.device_exists(bdf) and self.host.driver(bdf) == self.target:
                    self.warnings.append(
                        "%s is bound to %s but there is no record of its original driver in %s; it was left as "
                        "it is." % (bdf, self.target, self.store.directory))
        for record in selected:
            self.capture(record.get("bdf"))
        still = [r for r in records if r not in selected]
        ordered = sorted(selected, key=lambda r: (_RESTORE_RANK.get(r.get("role"), 2), r.get("bdf") or r.get("uuid")))
        for record in ordered:
            try:
                self._check_released(record)
                self.restore(record, still)
            except MadengineError as exc:
                self.errors.append(str(exc))
                still.append(record)
        self.finish([])
        if self.errors:
            raise MadengineError("Restoring failed for %d device(s): %s" % (len(self.errors), " ".join(self.errors)))

    def _check_released(self, record):
        """A function whose VFIO group a process (QEMU) still holds cannot be rebound: say who holds it."""
        bdf = record.get("bdf")
        if record.get("role") in ("mdev", "pf") or not bdf or not self.view.device_exists(bdf):
            return
        group, holders = self.host.vfio_holders(bdf)
        if holders:
            raise MadengineError(
                "%s was not given back: /dev/vfio/%s (its IOMMU group) is still open by PID %s; stop the VM that "
                "uses it, then run state=absent again." % (bdf, group, ", ".join(holders)))

    def restore(self, record, remaining):
        """Apply the restore steps of one record (its strategy's), then forget it."""
        role = record.get("role")
        if role == "mdev":
            steps = self.strategies["vgpu"].restore_steps(record)
        elif role == "pf":
            steps = self.strategies["sriov"].pf_restore_steps(record, remaining)
        else:
            steps = self.strategies["vfio"].restore_steps(record)
        for step in steps:
            self.apply(step)
        self.forget(record)
        if role != "mdev" and record.get("bdf") and self.view.device_exists(record["bdf"]):
            self.devices.append(describe(self.host, self.view, record["bdf"], record))

    # ------------------------------------------------------------------ query and results
    def query(self, gpu_ids):
        records = {r["key"]: r for r in self.store.all()}
        targets = self.select(gpu_ids, need_any=False, guard=False)
        for key in list(targets) + sorted(k for k in records if k not in targets):
            record = records.get(key)
            if record and record.get("role") == "mdev":
                self.devices.append(describe_mdev(record, present=self.view.mdev_exists(record["uuid"])))
                continue
            if not self.host.device_exists(key):
                continue
            self.devices.append(describe(self.host, self.view, key, record))
            if record and record.get("role") != "pf" and self.view.driver(key) == record.get("target_driver"):
                self.hostdevs.append(key)
        return sorted(records)

    def state_line(self, bdf):
        if not self.view.device_exists(bdf):
            return "absent"
        line = "driver=%s driver_override=%s" % (self.view.driver(bdf) or "(none)", self.view.override(bdf) or "(null)")
        if self.host.exists(self.host.dev_path(bdf, "sriov_totalvfs")):
            line += " sriov_numvfs=%d" % self.view.numvfs(bdf)
        return line

    def finish(self, targets):
        """Describe every device changed, selected or handed over, as it is now (or is predicted to be)."""
        seen = set(d["bdf"] for d in self.devices)
        for record in self.touched:
            bdf = record.get("bdf")
            if bdf and bdf not in seen and self.view.device_exists(bdf):
                seen.add(bdf)
                self.devices.append(describe(self.host, self.view, bdf, record))
            elif record.get("role") == "mdev":
                self.devices.append(describe_mdev(record))
        for bdf in list(targets) + list(self.hostdevs):
            if bdf not in seen and self.view.device_exists(bdf):
                seen.add(bdf)
                self.devices.append(describe(self.host, self.view, bdf, self.load(bdf)))
        for device in self.devices:
            if device.get("bdf"):
                device["vfs"] = self.view.virtfns(device["bdf"])

    def diff(self):
        before, after = [], []
        for bdf in sorted(set(self._before) | set(d["bdf"] for d in self.devices if d.get("bdf"))):
            old = self._before.get(bdf, "absent")
            new = self.state_line(bdf)
            if old != new:
                before.append("%s: %s\n" % (bdf, old))
                after.append("%s: %s\n" % (bdf, new))
        return {"before": "".join(before), "after": "".join(after)}

    def leftovers(self):
        """What passthrough still holds after the run: restore failures, and the state files left."""
        return list(self.errors) + ["the GPU state file %s" % path for path in self.state_files()]
