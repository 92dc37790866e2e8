# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""The gpu_info module's task: what a node's GPUs are, and the profile the build makes images for.

Detection is the same as madengine_run's (host/gpu.py, read through the node's host root).  A declared vendor
the node has no GPU of is not an error here: the node is detected as it is and the profile says so, with a
warning (fleet.py decides; detection wins).
"""

from __future__ import annotations

import socket

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.context import load_context
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.fleet import declared_vendor, node_profile
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError
from ansible_collections.rocm.madengine.plugins.module_utils.host.gpu import (
    Gpu,
    GpuInventory,
    detect,
    rocm_root,
    tool_runner,
)
from ansible_collections.rocm.madengine.plugins.module_utils.host.hostfs import HostFs

# the module's options; its action plugin checks a task's arguments against them on the controller too
ARGUMENT_SPEC = dict(
    gpu_vendor=dict(type="str", choices=["auto", "AMD", "NVIDIA", "NONE"], default="auto"),
    gpu_arch=dict(type="str", default=""),
    detect=dict(type="bool", default=True),
    node_name=dict(type="str"),
    host_root=dict(type="path", default="/"),
    sysfs_root=dict(type="path"),
    additional_context=dict(type="raw"),
)


def needs_the_node(params):
    """Whether the answer needs the node: its GPUs to detect, or its host name (no node_name given)."""
    return not params.get("node_name") or (params.get("detect", True) and params.get("gpu_vendor") != "NONE")


def run(module):
    """The whole module after AnsibleModule: exit_json or fail_json."""
    try:
        result = gpu_info(module.params, tool_runner(module))
    except MadengineError as exc:
        module.fail_json(msg=str(exc))
    for warning in result.pop("warnings"):
        module.warn(warning)
    module.exit_json(**result)


def detect_node(declared, host, rocm_path, runner, node):
    """The node's GPUs of the declared vendor, else of the vendor it has (GpuInventory)."""
    if declared is not None:
        try:
            return detect(declared, host, rocm_path, runner)
        except MadengineError:
            pass  # the declared vendor is not there: see what is (node_profile warns)
    try:
        found = detect("auto", host, rocm_path, runner)
    except MadengineError as exc:
        raise MadengineError("Node %s: %s (madengine_gpu_vendor)" % (node, str(exc).rstrip(".")))
    if found.vendor == "NONE":
        return amd_on_pci(host) or found
    return found


def amd_on_pci(host):
    """AMD GPUs the PCI bus shows but the KFD topology does not (bound to vfio-pci for a VM, or amdgpu not
    loaded): the vendor is known, the architecture is not (the inventory's madengine_gpu_arch fills it in)."""
    functions = host.gpu_functions("AMD", include_vfs=False)
    if not functions:
        return None
    return GpuInventory("AMD", [Gpu(index, "AMD", pci_bdf=bdf) for index, bdf in enumerate(functions)],
                        notes=["%d AMD GPU(s) on the PCI bus are not in the KFD topology (amdgpu not bound to them); "
                               "their architecture is unknown." % len(functions)], sysfs_root=host.path("sys"))


def gpu_info(params, runner):
    node = params.get("node_name") or socket.gethostname()
    declared = declared_vendor(params.get("gpu_vendor"), node)
    found = None
    if params.get("detect", True) and declared != "NONE":
        ctx, _source = load_context(params.get("additional_context"))
        host = HostFs(params.get("host_root") or "/", sys_dir=params.get("sysfs_root"))
        found = detect_node(declared, host, rocm_root(ctx), runner, node)
    profile, warnings = node_profile(node, params.get("gpu_vendor"), params.get("gpu_arch"), found)
    return {"changed": False, "gpu": found.as_dict() if found is not None else None, "profile": profile,
            "ansible_facts": {"madengine_gpu": profile}, "warnings": warnings}
