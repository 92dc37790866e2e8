# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""Mode vgpu: one mediated device of a given type per parent GPU, named by a stable UUID."""

from __future__ import annotations

import os
import uuid

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError
from ansible_collections.rocm.madengine.plugins.module_utils.host.passthrough.records import Step

MDEV_NAMESPACE = uuid.UUID("8f3c2a4e-6b1d-5e7f-9a0b-3c4d5e6f7a8b")


class VgpuStrategy(object):

    def __init__(self, engine):
        self.engine = engine
        self.host = engine.host
        self.view = engine.view

    def candidates(self, vendor, exclude_boot_vga):
        """Discovered GPUs (VFs included) that offer mediated device types."""
        parents = set(self.host.mdev_parents())
        return [b for b in self.host.gpu_functions(vendor, exclude_boot_vga, include_vfs=True) if b in parents]

    def present(self, targets):
        engine = self.engine
        if not engine.vgpu_type:
            raise MadengineError("mode vgpu needs vgpu_type (an mdev type such as nvidia-474, or its name).")
        if engine.vgpu_uuid and len(targets) != 1:
            raise MadengineError("vgpu_uuid names one mediated device; select exactly one parent GPU (got %d)." %
                                 len(targets))
        for parent, type_dir in [(parent, self.mdev_type(parent)) for parent in targets]:
            mdev_uuid = engine.vgpu_uuid or str(uuid.uuid5(MDEV_NAMESPACE, "%s/%s" % (parent, type_dir)))
            try:
                mdev_uuid = str(uuid.UUID(mdev_uuid))
            except ValueError:
                raise MadengineError("vgpu_uuid %r is not a UUID." % engine.vgpu_uuid)
            if self.view.mdev_exists(mdev_uuid):
                self._adopt(parent, type_dir, mdev_uuid)
            else:
                self._create(parent, type_dir, mdev_uuid)
            engine.mdevs.append(mdev_uuid)

    @staticmethod
    def _record(parent, type_dir, mdev_uuid, created):
        return {"key": "mdev-" + mdev_uuid, "uuid": mdev_uuid, "bdf": None, "parent": parent, "type": type_dir,
                "role": "mdev", "owner": parent, "mode": "vgpu", "created": created}

    def _adopt(self, parent, type_dir, mdev_uuid):
        """An mdev of that UUID exists: use it when its type matches (recorded as not created by us)."""
        current_type = self.host.link_name(self.host.mdev_path(mdev_uuid, "mdev_type"))
        if current_type and current_type != type_dir:
            raise MadengineError("mdev %s already exists with type %s, not %s." % (mdev_uuid, current_type, type_dir))
        if self.engine.load("mdev-" + mdev_uuid) is None:
            self.engine.record(self._record(parent, type_dir, mdev_uuid, False))

    def _create(self, parent, type_dir, mdev_uuid):
        engine = self.engine
        types = self.host.path("sys/class/mdev_bus", parent, "mdev_supported_types", type_dir)
        if self.host.read_int(os.path.join(types, "available_instances"), 0) < 1:
            raise MadengineError("No free instance of mdev type %s on %s (available_instances is 0)." % (
                type_dir, parent))
        earlier = engine.load("mdev-" + mdev_uuid)
        if earlier is None:
            engine.record(self._record(parent, type_dir, mdev_uuid, True))
        else:
            engine.touch(earlier)
        engine.apply(Step("write", "mdev_create", parent,
                          "/sys/class/mdev_bus/%s/mdev_supported_types/%s/create" % (parent, type_dir), mdev_uuid))

    def mdev_type(self, parent):
        """The type directory for ``vgpu_type`` (a directory name or a type's ``name``) on ``parent``."""
        host, wanted = self.host, self.engine.vgpu_type
        types_dir = host.mdev_types_dir(parent)
        if not os.path.isdir(types_dir):
            if host.exists(host.dev_path(parent, "nvidia/creatable_vgpu_types")):
                raise MadengineError(
                    "%s uses NVIDIA's vendor-specific VFIO vGPU interface (nvidia/creatable_vgpu_types, no mdev); "
                    "this interface is not supported yet. Use a host driver with mdev support or mode vfio." % parent)
            raise MadengineError(
                "%s offers no mediated device types (no %s): is the vGPU host driver loaded, and on SR-IOV "
                "GPUs were the VFs enabled (sriov-manage -e)?" % (parent, host.rel(types_dir)))
        names = {}
        for type_dir in host.listdir(types_dir):
            names[type_dir] = host.read(os.path.join(types_dir, type_dir, "name")) or type_dir
        if wanted in names:
            return wanted
        by_name = [t for t, n in names.items() if n == wanted]
        if by_name:
            return by_name[0]
        raise MadengineError("mdev type %r is not offered by %s; available: %s." % (
            wanted, parent, ", ".join("%s (%s)" % (t, n) for t, n in sorted(names.items())) or "none"))

    def restore_steps(self, record, remaining=()):
        """Remove the mdev when this collection created it and it still exists."""
        if self.view.mdev_exists(record["uuid"]) and record.get("created", True):
            return [Step("write", "mdev_remove", record["parent"], "/sys/bus/mdev/devices/%s/remove" % record["uuid"],
                         "1", expect=record["uuid"])]
        return []
