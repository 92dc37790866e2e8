# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""Binding one PCI function to the VFIO driver and back: what the vfio and SR-IOV strategies share.

Binding is ``driver_override`` -> ``unbind`` -> ``drivers_probe`` (never ``new_id``); restoring writes the
original override back, unbinds, and re-probes, falling back to the original driver's ``bind``.
"""

from __future__ import annotations

from ansible_collections.rocm.madengine.plugins.module_utils.host.hostfs import is_dma_safe_driver
from ansible_collections.rocm.madengine.plugins.module_utils.host.passthrough.records import Step


class PciStrategy(object):
    """Base of the strategies that pass whole PCI functions; ``engine`` is the :class:`Passthrough` run."""

    def __init__(self, engine):
        self.engine = engine
        self.host = engine.host
        self.view = engine.view

    def bind_steps(self, bdf, target):
        view = self.view
        current = view.driver(bdf)
        if current == target:
            return []
        steps = []
        if view.override(bdf) != target:
            steps.append(Step("write", "override", bdf, "/sys/bus/pci/devices/%s/driver_override" % bdf, target))
        if current:
            steps.append(Step("write", "unbind", bdf, "/sys/bus/pci/drivers/%s/unbind" % current, bdf))
        steps.append(Step("write", "probe", bdf, "/sys/bus/pci/drivers_probe", bdf, expect=target))
        return steps

    def restore_steps(self, record, remaining=()):
        """Steps that give a recorded function its original override and driver back."""
        view = self.view
        bdf = record["bdf"]
        if not view.device_exists(bdf):
            return []
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

    def pci_record(self, bdf, role, owner, **extra):
        engine = self.engine
        record = {"key": bdf, "bdf": bdf, "role": role, "owner": owner, "mode": engine.mode,
                  "vendor": self.host.read(self.host.dev_path(bdf, "vendor")),
                  "device": self.host.read(self.host.dev_path(bdf, "device")),
                  "original_driver": self.view.driver(bdf), "original_override": self.view.override(bdf),
                  "target_driver": engine.target}
        record.update(extra)
        return record

    def bind_unit(self, bdf, role, owner, **extra):
        """Bind one function to the target driver, recording its original state first."""
        engine = self.engine
        existing = engine.load(bdf)
        steps = self.bind_steps(bdf, engine.target)
        if existing is None:
            engine.record(self.pci_record(bdf, role, owner, **extra))
        elif steps:
            engine.touch(existing)
        for step in steps:
            engine.apply(step)

    def group_offenders(self, group, passed):
        """Endpoints of IOMMU ``group`` outside ``passed`` whose host driver makes the group non-viable."""
        offenders = []
        for member in self.host.group_members(group):
            if member in passed:
                continue
            driver = self.view.driver(member)
            if not is_dma_safe_driver(driver) and not self.host.is_bridge(member):
                offenders.append((member, driver))
        return offenders
