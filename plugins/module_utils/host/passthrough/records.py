# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""What passthrough works with: steps, errors, the (possibly predicted) view of the host, and state files."""

from __future__ import annotations

import json
import os

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError, atomic_write_json
from ansible_collections.rocm.madengine.plugins.module_utils.host.hostfs import bdf_to_rid, rid_to_bdf

STATE_VERSION = 1


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


_UNSET = object()


class View(object):
    """Reads the live host; in check mode, predicted effects of planned steps override the reads."""

    def __init__(self, host):
        self.host = host
        self.over = {}

    def _get(self, kind, key, live):
        value = self.over.get((kind, key), _UNSET)
        if value is not _UNSET:
            return value
        if self.over.get(("new", key)):
            return None
        return live()

    def device_exists(self, bdf):
        return self._get("exists", bdf, lambda: self.host.device_exists(bdf))

    def driver(self, bdf):
        return self._get("driver", bdf, lambda: self.host.driver(bdf))

    def override(self, bdf):
        return self._get("override", bdf, lambda: self.host.override(bdf))

    def iommu_group(self, bdf):
        return self._get("group", bdf, lambda: self.host.iommu_group(bdf))

    def virtfns(self, bdf):
        return self._get("virtfns", bdf, lambda: self.host.virtfns(bdf)) or []

    def numvfs(self, bdf):
        return self._get("numvfs", bdf, lambda: self.host.read_int(self.host.dev_path(bdf, "sriov_numvfs"), 0))

    def autoprobe(self, bdf):
        return self._get("autoprobe", bdf, lambda: self.host.read_int(
            self.host.dev_path(bdf, "sriov_drivers_autoprobe"), None))

    def driver_registered(self, name):
        return self._get("registered", name, lambda: self.host.driver_registered(name))

    def module_loaded(self, name):
        return self._get("module", name, lambda: self.host.module_loaded(name))

    def mdev_exists(self, mdev_uuid):
        return self._get("mdev", mdev_uuid, lambda: self.host.exists(self.host.mdev_path(mdev_uuid)))

    def is_new(self, bdf):
        """True for a VF that only exists in the prediction."""
        return bool(self.over.get(("new", bdf)))

    # predictions ------------------------------------------------------------------------------
    def set(self, kind, key, value):
        self.over[(kind, key)] = value

    def create_vfs(self, pf, count):
        for vf in self.virtfns(pf):
            self.set("exists", vf, False)
        vfs = predict_vf_bdfs(self.host, pf, count)
        for vf in vfs:
            self.set("exists", vf, True)
            self.set("new", vf, True)
            for kind in ("driver", "override", "group"):
                self.over.pop((kind, vf), None)
        self.set("virtfns", pf, vfs)
        self.set("numvfs", pf, count)


def predict_vf_bdfs(host, pf, count):
    """VF addresses as the kernel assigns them: PF routing ID + offset + i * stride."""
    offset = host.read_int(host.dev_path(pf, "sriov_offset"))
    stride = host.read_int(host.dev_path(pf, "sriov_stride"))
    if offset is None or stride is None:
        raise MadengineError(
            "Cannot predict the VF addresses of %s: it has no sriov_offset/sriov_stride attributes." % pf)
    domain, rid = bdf_to_rid(pf)
    return [rid_to_bdf(domain, rid + offset + i * stride) for i in range(count)]


class StateStore(object):
    """One JSON file per changed device (or mdev) with its original state, mode 0600 in a 0700 directory."""

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


def describe(host, view, bdf, record=None, role=None):
    """The device record returned in ``devices``: identity, group, drivers now and as found."""
    group = view.iommu_group(bdf)
    record = record or {}
    return {
        "bdf": bdf,
        "vendor": host.read(host.dev_path(bdf, "vendor")),
        "device": host.read(host.dev_path(bdf, "device")),
        "class": host.read(host.dev_path(bdf, "class")),
        "numa_node": host.read_int(host.dev_path(bdf, "numa_node"), -1),
        "local_cpulist": host.read(host.dev_path(bdf, "local_cpulist")),
        "iommu_group": group,
        "group_members": host.group_members(group) if group else [],
        "current_driver": view.driver(bdf),
        "current_override": view.override(bdf),
        "original_driver": record.get("original_driver") if record else view.driver(bdf),
        "original_override": record.get("original_override") if record else view.override(bdf),
        "role": record.get("role") or role or ("vf" if host.physfn(bdf) else "gpu"),
        "parent_pf": record.get("parent_pf") or host.physfn(bdf),
        "vfs": view.virtfns(bdf),
        "vgpu_uuid": None,
        "recorded": bool(record),
        "dead": host.is_dead(bdf) if view.device_exists(bdf) and not view.is_new(bdf) else False,
    }


def describe_mdev(record, present=None):
    info = {"bdf": None, "role": "mdev", "parent_pf": record.get("parent"), "vgpu_uuid": record["uuid"],
            "recorded": True, "current_driver": None, "original_driver": None}
    if present is not None:
        info["present"] = present
    return info
