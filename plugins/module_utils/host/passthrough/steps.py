# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""What one step does (execute), what check mode assumes it does (predict), and how its effect is checked (verify).

A stage names what a step is for (``override``, ``unbind``, ``probe``, ``numvfs``, ``gim_load``...); each stage
has one prediction and one verification. The kernel reports success for writes that did nothing (a
``drivers_probe`` no driver took), so every step is verified against the tree afterwards.
"""

from __future__ import annotations

import errno
import os

from ansible_collections.rocm.madengine.plugins.module_utils.host import hostfs as _hostfs
from ansible_collections.rocm.madengine.plugins.module_utils.host.hostfs import errno_name
from ansible_collections.rocm.madengine.plugins.module_utils.host.passthrough.records import StepError

BIND_STAGES = ("probe", "reprobe", "bind")


# ---- execute ------------------------------------------------------------------------------------

def execute(host, run, step, timeout):
    """Perform ``step`` through the two host edges; raises StepError naming the device and the stage."""
    try:
        if step.op == "write":
            host.write(host.path(step.path), step.value, timeout=timeout)
            return
        rc, out, err = run(step.argv, timeout)
    except _hostfs.WriteTimeout as exc:
        raise StepError("%s%s" % (exc, busy_hint(step)), step.device, step.stage, errno.ETIMEDOUT)
    except OSError as exc:
        raise StepError(explain(host, step, exc), step.device, step.stage, exc.errno)
    if rc == 124:
        raise StepError("%s did not finish within %s s.%s" % (" ".join(step.argv), timeout, busy_hint(step)),
                        step.device, step.stage, errno.ETIMEDOUT)
    if rc != 0:
        detail = (err or out or "").strip().splitlines()
        raise StepError("%s failed (rc %s)%s" % (" ".join(step.argv), rc, ": " + detail[-1] if detail else "."),
                        step.device, step.stage)


def explain(host, step, exc):
    """A sentence for a write the kernel refused, with what to do for the errors users meet."""
    code = exc.errno
    name = errno_name(code) if code else "error"
    bdf = step.device
    if step.stage == "numvfs":
        if code == errno.ERANGE:
            return "PF %s supports at most %s VFs (sriov_totalvfs); writing %s to sriov_numvfs failed (ERANGE)." % (
                bdf, host.read(host.dev_path(bdf, "sriov_totalvfs")), step.value)
        if code == errno.ENOENT:
            return ("PF %s cannot create VFs through sriov_numvfs (ENOENT): its driver (%s) has no SR-IOV "
                    "configuration support; use a PF driver that has it, or sriov_provider gim (AMD) or "
                    "nvidia." % (bdf, host.driver(bdf) or "none"))
        if code == errno.EBUSY:
            return ("PF %s refused to change its VF count to %s (EBUSY): a VF is still in use, for example by a "
                    "running VM; stop the VMs that use its VFs and retry." % (bdf, step.value))
    if step.stage == "mdev_create":
        if code == errno.EUSERS:
            return "No free instance of mdev type %s on %s (EUSERS)." % (
                os.path.basename(os.path.dirname(step.path)), bdf)
        if code == errno.EEXIST:
            return "An mdev with UUID %s already exists on the host (EEXIST)." % step.value
    if step.stage == "unbind":
        return "Unbinding %s from %s failed: %s (%s)." % (bdf, step.path.split("/")[-2], exc.strerror, name)
    if step.stage in BIND_STAGES:
        return "Binding %s to %s failed: %s (%s)%s." % (
            bdf, step.expect, exc.strerror, name, probe_hint(host, bdf, step.expect))
    return "Writing %r to %s for %s failed: %s (%s)." % (step.value, step.path, bdf, exc.strerror, name)


def busy_hint(step):
    if step.stage == "unbind":
        return (" The host driver is busy: stop the processes that use the GPU (for example nvidia-persistenced, "
                "or ROCm/KFD users of amdgpu) and retry.")
    if step.stage == "gim_unload":
        return " gim waits until no VF is in use: stop the VMs that use its VFs, then run state=absent again."
    return ""


def probe_hint(host, bdf, driver):
    if driver and "vfio" in driver and not host.iommu_group(bdf):
        return " (the device has no IOMMU group: VFIO needs the IOMMU enabled)"
    if driver and not host.driver_registered(driver):
        return " (driver %s is not loaded)" % driver
    return ""


# ---- predict ------------------------------------------------------------------------------------

def _predict_module(view, name, loaded):
    view.set("registered", name, loaded)
    view.set("module", name, loaded)


def _predict_gim_load(view, step):
    _predict_module(view, "gim", True)
    for pf, count in step.expect:
        view.set("driver", pf, "gim")
        view.create_vfs(pf, count)


def _predict_gim_unload(view, step):
    _predict_module(view, "gim", False)
    for pf in step.expect:
        view.set("driver", pf, None)
        view.create_vfs(pf, 0)


PREDICTIONS = {
    "override": lambda view, step: view.set("override", step.device, step.value.strip() or None),
    "restore_override": lambda view, step: view.set("override", step.device, step.value.strip() or None),
    "unbind": lambda view, step: view.set("driver", step.device, None),
    "probe": lambda view, step: view.set("driver", step.device, step.expect),
    "reprobe": lambda view, step: view.set("driver", step.device, step.expect),
    "bind": lambda view, step: view.set("driver", step.device, step.expect),
    "numvfs": lambda view, step: view.create_vfs(step.device, int(step.value)),
    "autoprobe": lambda view, step: view.set("autoprobe", step.device, int(step.value)),
    "modprobe": lambda view, step: _predict_module(view, step.expect, True),
    "gim_load": _predict_gim_load,
    "gim_unload": _predict_gim_unload,
    "sriov_manage_enable": lambda view, step: view.create_vfs(step.device, step.expect),
    "sriov_manage_disable": lambda view, step: view.create_vfs(step.device, 0),
    "mdev_create": lambda view, step: view.set("mdev", step.value, True),
    "mdev_remove": lambda view, step: view.set("mdev", step.expect, False),
}


def predict(view, step):
    """Record in ``view`` what ``step`` would change (check mode)."""
    PREDICTIONS[step.stage](view, step)


# ---- verify -------------------------------------------------------------------------------------

def _verify_override(host, step, wait):
    want = step.value.strip() or None
    if host.override(step.device) != want:
        return "driver_override of %s reads %s after writing %r." % (
            step.device, host.override(step.device) or "(null)", step.value)
    return None


def _verify_unbind(host, step, wait):
    if not wait(lambda: host.driver(step.device) is None):
        return "%s is still bound to %s after unbind." % (step.device, host.driver(step.device))
    return None


def _verify_bound(host, step, wait):
    bdf = step.device
    if not wait(lambda: host.driver(bdf) == step.expect):
        current = host.driver(bdf)
        return "%s reported success but %s is %s, not bound to %s%s." % (
            "drivers_probe" if step.stage != "bind" else "bind", bdf,
            "bound to %s" % current if current else "left without a driver", step.expect,
            probe_hint(host, bdf, step.expect))
    group = host.iommu_group(bdf)
    if "vfio" in step.expect and group:
        node = host.vfio_group_node(group)
        if not wait(lambda: host.exists(node)):
            return "%s is bound to %s but %s did not appear." % (bdf, step.expect, host.rel(node))
    return None


def _verify_numvfs(host, step, wait):
    want = int(step.value)
    if not wait(lambda: len(host.virtfns(step.device)) == want):
        return "%s shows %d VFs after writing %d to sriov_numvfs." % (
            step.device, len(host.virtfns(step.device)), want)
    return None


def _verify_autoprobe(host, step, wait):
    if host.read_int(host.dev_path(step.device, "sriov_drivers_autoprobe")) != int(step.value):
        return "sriov_drivers_autoprobe of %s did not change to %s." % (step.device, step.value)
    return None


def _verify_modprobe(host, step, wait):
    if not wait(lambda: host.driver_registered(step.expect)):
        return "modprobe %s succeeded but %s is not registered." % (
            step.expect, host.rel(host.driver_path(step.expect)))
    return None


def _verify_gim_load(host, step, wait):
    for pf, count in step.expect:
        if not wait(lambda pf=pf, count=count: host.driver(pf) == "gim" and len(host.virtfns(pf)) >= count):
            raise StepError(
                "gim was loaded but %s is %s with %d VF(s); %d expected (see gim's messages in dmesg: the VF count "
                "allowed depends on the partition mode)." % (
                    pf, "bound to %s" % host.driver(pf) if host.driver(pf) else "unbound",
                    len(host.virtfns(pf)), count), pf, step.stage)


def _verify_gim_unload(host, step, wait):
    if not wait(lambda: not host.module_loaded("gim")):
        return "gim is still loaded after modprobe -r gim."
    return None


def _verify_manage_enable(host, step, wait):
    if not wait(lambda: len(host.virtfns(step.device)) >= step.expect):
        return "sriov-manage -e %s enabled %d VF(s), %d expected." % (
            step.device, len(host.virtfns(step.device)), step.expect)
    return None


def _verify_manage_disable(host, step, wait):
    if not wait(lambda: not host.virtfns(step.device)):
        return "%s still has VFs after sriov-manage -d." % step.device
    return None


def _verify_mdev_create(host, step, wait):
    if not wait(lambda: host.exists(host.mdev_path(step.value))):
        return "mdev %s did not appear on %s." % (step.value, step.device)
    return None


def _verify_mdev_remove(host, step, wait):
    if not wait(lambda: not host.exists(host.mdev_path(step.expect))):
        return "mdev %s is still present after remove." % step.expect
    return None


VERIFICATIONS = {
    "override": _verify_override, "restore_override": _verify_override, "unbind": _verify_unbind,
    "probe": _verify_bound, "reprobe": _verify_bound, "bind": _verify_bound, "numvfs": _verify_numvfs,
    "autoprobe": _verify_autoprobe, "modprobe": _verify_modprobe, "gim_load": _verify_gim_load,
    "gim_unload": _verify_gim_unload,
    "sriov_manage_enable": _verify_manage_enable, "sriov_manage_disable": _verify_manage_disable,
    "mdev_create": _verify_mdev_create, "mdev_remove": _verify_mdev_remove,
}


# Stages about a kernel module rather than one device.
MODULE_STAGES = ("modprobe", "gim_unload")


def verify(host, step, wait):
    """Raise StepError unless the tree shows ``step``'s effect (``wait(predicate)`` polls with the timeout)."""
    problem = VERIFICATIONS[step.stage](host, step, wait)
    if problem:
        raise StepError(problem, None if step.stage in MODULE_STAGES else step.device, step.stage)
