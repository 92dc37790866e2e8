# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""Mode vfio: whole GPU functions (and the other functions of their cards) bound to the VFIO driver."""

from __future__ import annotations

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError
from ansible_collections.rocm.madengine.plugins.module_utils.host.hostfs import slot_of
from ansible_collections.rocm.madengine.plugins.module_utils.host.passthrough.pci import PciStrategy


class VfioStrategy(PciStrategy):

    def present(self, targets):
        units = self.units(targets)
        self.engine.ensure_driver(self.engine.target)
        for bdf, role, owner in units:
            self.bind_unit(bdf, role, owner)
            if role != "group":
                self.engine.hostdevs.append(bdf)

    def units(self, targets):
        """``(bdf, role, owner)`` of every function to bind: the GPUs, their cards' functions, group members."""
        units = []
        seen = set()

        def add(bdf, role, owner):
            if bdf not in seen:
                seen.add(bdf)
                units.append((bdf, role, owner))

        for gpu in targets:
            add(gpu, "gpu", gpu)
            if self.engine.include_functions:
                for other in self.host.pci_devices():
                    if other != gpu and slot_of(other) == slot_of(gpu) and not self.host.physfn(other):
                        add(other, "function", gpu)
        for bdf, _role, owner in list(units):
            for member in self._group_extra(bdf, seen):
                self.engine.guard_alive(member)
                add(member, "group", owner)
        return units

    def _group_extra(self, bdf, seen):
        """Members of ``bdf``'s IOMMU group to bind too (group_policy bind); fails or warns per the policy."""
        group = self.view.iommu_group(bdf)
        if group is None:
            raise MadengineError(
                "PCI device %s has no IOMMU group: the IOMMU is off or not enabled on the kernel command line "
                "(intel_iommu=on on Intel; AMD-Vi enabled in the firmware on AMD). The iommu_kvm_prep role "
                "reports and fixes this." % bdf)
        offenders = self.group_offenders(group, seen)
        if not offenders:
            return []
        listing = ", ".join("%s (%s)" % o for o in offenders)
        policy = self.engine.group_policy
        if policy == "bind":
            return [member for member, _driver in offenders]
        if policy == "ignore":
            self.engine.warnings.append(
                "IOMMU group %s of %s is not viable for VFIO: %s still use host drivers; QEMU will refuse the "
                "device until they are unbound." % (group, bdf, listing))
            return []
        raise MadengineError(
            "IOMMU group %s of %s is not viable for VFIO: %s share%s it with a host driver. Bind %s too "
            "(group_policy: bind%s), move the card to another slot, or enable ACS in the firmware." % (
                group, bdf, listing, "s" if len(offenders) == 1 else "", "it" if len(offenders) == 1 else "them",
                "" if self.engine.include_functions else ", or include_functions: true for functions of the same "
                "card"))
