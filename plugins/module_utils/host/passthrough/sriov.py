# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""Mode sriov: virtual functions created on the PFs, then bound to the VFIO driver like whole functions.

Three providers create VFs: ``sysfs`` writes ``sriov_numvfs`` (``0`` first when another count is set);
``gim`` (AMD's GIM driver) enables them itself from its ``vf_num`` module parameter when it loads, so
``sriov_numvfs`` is never written on a GIM PF; ``nvidia`` runs ``sriov-manage -e``. A PF record keeps the
original VF count and autoprobe setting, and whether this collection loaded gim.
"""

from __future__ import annotations

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError
from ansible_collections.rocm.madengine.plugins.module_utils.host.hostfs import GPU_BASE_CLASSES, VENDOR_IDS
from ansible_collections.rocm.madengine.plugins.module_utils.host.passthrough.pci import PciStrategy
from ansible_collections.rocm.madengine.plugins.module_utils.host.passthrough.records import Step

SRIOV_MANAGE = "/usr/lib/nvidia/sriov-manage"


class SriovStrategy(PciStrategy):

    def present(self, targets):
        engine = self.engine
        if engine.num_vfs < 1:
            raise MadengineError("num_vfs must be at least 1 for mode sriov, got %d." % engine.num_vfs)
        plans = [(pf, self._provider(pf)) for pf in targets if self._check_pf(pf)]
        engine.ensure_driver(engine.target)
        for pf, provider in plans:
            if provider == "sysfs":
                vfs = self._sysfs(pf)
            elif provider == "gim":
                vfs = self._gim(pf, [p for p, prov in plans if prov == "gim"])
            else:
                vfs = self._nvidia(pf)
            for vf in vfs[:engine.num_vfs]:
                if not self.view.is_new(vf):
                    self._check_vf_group(vf)
                self.bind_unit(vf, "vf", pf, parent_pf=pf)
                engine.hostdevs.append(vf)

    def _check_pf(self, pf):
        host, wanted = self.host, self.engine.num_vfs
        if host.physfn(pf):
            raise MadengineError("%s is a VF; mode sriov needs the PF (its physfn is %s)." % (pf, host.physfn(pf)))
        total = host.read_int(host.dev_path(pf, "sriov_totalvfs"))
        if not total:
            raise MadengineError("PCI device %s is not SR-IOV capable (no sriov_totalvfs)." % pf)
        if wanted > total:
            raise MadengineError("PF %s supports at most %d VFs (sriov_totalvfs), %d requested." % (pf, total, wanted))
        return True

    def _provider(self, pf):
        if self.engine.sriov_provider != "auto":
            return self.engine.sriov_provider
        return "gim" if self.host.vendor(pf) == VENDOR_IDS["AMD"] else "sysfs"

    def _check_vf_group(self, vf):
        group = self.view.iommu_group(vf)
        if group is None:
            raise MadengineError("VF %s has no IOMMU group: the IOMMU is off or not enabled." % vf)
        offenders = self.group_offenders(group, {vf})
        if offenders:
            raise MadengineError("IOMMU group %s of VF %s is not viable for VFIO: %s (%s) shares it." % (
                group, vf, offenders[0][0], offenders[0][1]))

    def pf_record(self, pf, provider, **extra):
        view = self.view
        record = {"key": pf, "bdf": pf, "role": "pf", "owner": pf, "mode": self.engine.mode, "provider": provider,
                  "vendor": self.host.read(self.host.dev_path(pf, "vendor")),
                  "device": self.host.read(self.host.dev_path(pf, "device")),
                  "original_driver": view.driver(pf), "original_override": view.override(pf),
                  "original_numvfs": view.numvfs(pf), "original_autoprobe": view.autoprobe(pf)}
        record.update(extra)
        return record

    def _record_pf(self, pf, provider, record, **extra):
        """Record ``pf`` before its first change, or note that a recorded PF changes again."""
        if record is None:
            self.engine.record(self.pf_record(pf, provider, **extra))
        else:
            self.engine.touch(record)

    def _release_our_vfs(self, pf):
        """Restore the VFs of ``pf`` that an earlier run bound, before their count changes."""
        engine = self.engine
        for vf in reversed(self.view.virtfns(pf)):
            record = engine.load(vf)
            if record is not None:
                engine.capture(vf)
                for step in self.restore_steps(record):
                    engine.apply(step)
                engine.forget(record)

    # providers -------------------------------------------------------------------------------
    def _sysfs(self, pf):
        view, engine = self.view, self.engine
        want = engine.num_vfs
        current = view.numvfs(pf)
        record = engine.load(pf)
        if current == want:
            if record is None:
                engine.record(self.pf_record(pf, "sysfs"))
            return view.virtfns(pf)
        if view.driver(pf) is None:
            raise MadengineError(
                "PF %s has no driver bound; VFs can only be created through its driver's SR-IOV support "
                "(sriov_numvfs would fail with ENOENT)." % pf)
        self._record_pf(pf, "sysfs", record)
        path = "/sys/bus/pci/devices/%s/" % pf
        if current:
            self._release_our_vfs(pf)
            engine.apply(Step("write", "numvfs", pf, path + "sriov_numvfs", "0"))
        if view.autoprobe(pf) not in (None, 0):
            engine.apply(Step("write", "autoprobe", pf, path + "sriov_drivers_autoprobe", "0"))
        engine.apply(Step("write", "numvfs", pf, path + "sriov_numvfs", str(want)))
        return view.virtfns(pf)

    def _gim(self, pf, gim_pfs):
        view, engine = self.view, self.engine
        driver = view.driver(pf)
        if driver not in (None, "gim"):
            raise MadengineError(
                "AMD PF %s is bound to %s; GIM-managed SR-IOV needs the gim driver to own the PF. Blacklist %s "
                "(the iommu_kvm_prep role does this for mode sriov) and reboot, or unbind it first." % (
                    pf, driver, driver))
        if driver is None:
            self._load_gim(pf, gim_pfs)
        elif engine.load(pf) is None:
            engine.record(self.pf_record(pf, "gim", gim_loaded=False))
        vfs = view.virtfns(pf)
        if len(vfs) < engine.num_vfs:
            raise MadengineError(
                "gim enabled %d VF(s) on %s but %d were requested. GIM sets the VF count from its vf_num module "
                "parameter (never through sriov_numvfs); reload gim with a larger vf_num (the limit depends on the "
                "partition mode)." % (len(vfs), pf, engine.num_vfs))
        return vfs

    def _load_gim(self, pf, gim_pfs):
        """Load gim with vf_num for every PF it will claim; the PFs of this run are recorded first."""
        view, engine = self.view, self.engine
        if view.module_loaded("gim"):
            raise MadengineError("gim is loaded but does not own PF %s (is the PF outside gim's enabled_devices?)."
                                 % pf)
        if not engine.load_modules:
            raise MadengineError("gim is not loaded and load_modules is false; load gim (vf_num=%d) first." % (
                engine.num_vfs))
        claimed = [p for p in self.gim_candidates() if view.driver(p) is None]
        for other in claimed:
            if other in gim_pfs:
                self._record_pf(other, "gim", engine.load(other), gim_loaded=True)
        vf_num = ",".join(str(engine.num_vfs) for _p in claimed)
        engine.apply(Step("command", "gim_load", pf, argv=["modprobe", "gim", "vf_num=%s" % vf_num],
                          expect=[(p, engine.num_vfs) for p in claimed]))

    def gim_candidates(self):
        host = self.host
        return [b for b in host.pci_devices()
                if host.vendor(b) == VENDOR_IDS["AMD"] and not host.physfn(b)
                and (host.class_code(b) >> 16) in GPU_BASE_CLASSES
                and host.read_int(host.dev_path(b, "sriov_totalvfs"), 0)]

    def _nvidia(self, pf):
        view, engine = self.view, self.engine
        record = engine.load(pf)
        if view.driver(pf) != "nvidia":
            raise MadengineError("NVIDIA PF %s must be bound to the nvidia driver for sriov-manage (it is %s)." % (
                pf, view.driver(pf) or "unbound"))
        if record is None:
            engine.record(self.pf_record(pf, "nvidia"))
        elif not view.virtfns(pf):
            engine.touch(record)
        if not view.virtfns(pf):
            total = self.host.read_int(self.host.dev_path(pf, "sriov_totalvfs"), 0)
            engine.apply(Step("command", "sriov_manage_enable", pf, argv=[SRIOV_MANAGE, "-e", pf], expect=total))
        vfs = view.virtfns(pf)
        if len(vfs) < engine.num_vfs:
            raise MadengineError("sriov-manage enabled %d VF(s) on %s, %d requested." % (len(vfs), pf, engine.num_vfs))
        return vfs

    # restore ---------------------------------------------------------------------------------
    def pf_restore_steps(self, record, remaining):
        """Steps that give a recorded PF its original VF count (or unload gim when nothing else uses it)."""
        provider = record.get("provider")
        if provider == "gim":
            return self._gim_restore_steps(record, remaining)
        view, pf = self.view, record["bdf"]
        if provider == "nvidia":
            if not record.get("original_numvfs") and view.virtfns(pf):
                return [Step("command", "sriov_manage_disable", pf, argv=[SRIOV_MANAGE, "-d", pf])]
            return []
        path = "/sys/bus/pci/devices/%s/" % pf
        original = record.get("original_numvfs") or 0
        autoprobe = record.get("original_autoprobe")
        current = view.numvfs(pf)
        steps = []
        if current != original and current:
            steps.append(Step("write", "numvfs", pf, path + "sriov_numvfs", "0"))
        if autoprobe is not None and view.autoprobe(pf) != autoprobe:
            steps.append(Step("write", "autoprobe", pf, path + "sriov_drivers_autoprobe", str(autoprobe)))
        if current != original and original:
            steps.append(Step("write", "numvfs", pf, path + "sriov_numvfs", str(original)))
        return steps

    def _gim_restore_steps(self, record, remaining):
        if not (record.get("gim_loaded") and self.view.module_loaded("gim")):
            return []
        others = [r for r in remaining if r.get("provider") == "gim" and r.get("gim_loaded") and r is not record]
        if others:
            self.engine.warnings.append("gim stays loaded: %s still use it." % ", ".join(r["bdf"] for r in others))
            return []
        pfs = [p for p in self.gim_candidates() if self.view.driver(p) == "gim"]
        return [Step("command", "gim_unload", record["bdf"], argv=["modprobe", "-r", "gim"], expect=pfs)]
