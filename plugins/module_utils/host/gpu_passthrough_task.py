# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""What the gpu_passthrough module does with its options: one passthrough run, reported as the module's result."""

from __future__ import annotations

import functools
import os
import traceback

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError
from ansible_collections.rocm.madengine.plugins.module_utils.host import hostfs as _hostfs
from ansible_collections.rocm.madengine.plugins.module_utils.host.passthrough.engine import (
    DeadDeviceError,
    Passthrough,
    StepError,
)


def _run(module, argv, timeout):
    # looked up at call time: tests replace the edge with a fake kernel
    return _hostfs.run_command(module, argv, timeout)


def engine_for(module):
    """The passthrough engine for the module's options."""
    p = module.params
    return Passthrough(
        _hostfs.HostFs(p["host_root"]), p["state_dir"], run=functools.partial(_run, module),
        check_mode=module.check_mode, mode=p["mode"], driver=p["driver"], gpu_vendor=p["gpu_vendor"],
        count=p["count"], exclude_boot_vga=p["exclude_boot_vga"], include_functions=p["include_functions"],
        group_policy=p["group_policy"], num_vfs=p["num_vfs"], sriov_provider=p["sriov_provider"],
        vgpu_type=p["vgpu_type"], vgpu_uuid=p["vgpu_uuid"], load_modules=p["load_modules"], timeout=p["timeout"],
    )


def _failure(engine, exc):
    """``fail_json`` fields for a failed run: what was done, what was put back, and the failed step."""
    fields = dict(plan=engine.plan, devices=engine.devices, reboot_required=isinstance(exc, DeadDeviceError),
                  rolled_back=getattr(exc, "rolled_back", []), rollback_errors=getattr(exc, "rollback_errors", []))
    if isinstance(exc, DeadDeviceError):
        fields["failed_device"] = exc.device
    if isinstance(exc, StepError):
        fields.update(failed_device=exc.device, stage=exc.stage,
                      errno=_hostfs.errno_name(exc.errno) if exc.errno else None)
    try:
        fields["state_files"] = engine.state_files()
        # restore failures are sentences of their own; any other failure is one
        fields["leftovers"] = ([] if engine.errors else [str(exc)]) + engine.leftovers()
    except MadengineError:  # the state directory itself cannot be read
        fields["leftovers"] = [str(exc)]
    message = str(exc)
    if fields["rolled_back"]:
        message += " Restored: %s." % ", ".join(fields["rolled_back"])
    if fields["rollback_errors"]:
        message += " Could not restore: %s" % " ".join(fields["rollback_errors"])
    return message, fields


def run(module):
    p = module.params
    if p["count"] is not None and p["count"] < 1:
        module.fail_json(msg="count must be at least 1, got %d." % p["count"])
    if p["timeout"] < 1:
        module.fail_json(msg="timeout must be at least 1 second, got %d." % p["timeout"])
    if not os.path.isdir(os.path.join(p["host_root"], "sys", "bus", "pci")):
        module.fail_json(msg="host_root %s has no sys/bus/pci directory." % p["host_root"])
    engine = engine_for(module)
    try:
        getattr(engine, p["state"])(p["gpu_ids"])
        state_files = engine.state_files()
    except MadengineError as exc:
        message, fields = _failure(engine, exc)
        module.fail_json(msg=message, **fields)
    except Exception as exc:  # an unexpected failure still reports what was done
        module.fail_json(msg="gpu_passthrough failed unexpectedly: %s" % exc, plan=engine.plan,
                         exception=traceback.format_exc())
    for warning in engine.warnings:
        module.warn(warning)
    changed = engine.changed and p["state"] != "query"
    result = dict(changed=changed, devices=engine.devices, hostdevs=engine.hostdevs, mdevs=engine.mdevs,
                  plan=engine.plan, state_files=state_files, clean=not state_files, reboot_required=False,
                  leftovers=engine.leftovers())
    if module._diff and changed:
        result["diff"] = engine.diff()
    module.exit_json(**result)
