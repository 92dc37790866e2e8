# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""What the iommu_kvm_info module does with its options: run the host checks asked for and report them."""

from __future__ import annotations

import functools

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError
from ansible_collections.rocm.madengine.plugins.module_utils.host import hostfs as _hostfs
from ansible_collections.rocm.madengine.plugins.module_utils.host.checks import HostChecks, summarize
from ansible_collections.rocm.madengine.plugins.module_utils.host.sizes import parse_size

# Where the host's own tools are, besides PATH.
TOOL_DIRS = ("/usr/sbin", "/sbin", "/usr/libexec")


def _run(module, argv, timeout):
    return _hostfs.run_command(module, argv, timeout)


def host_checks(module):
    """The checks for the module's options; paths of the VM are read under host_root, like the rest of the host."""
    p = module.params
    host = _hostfs.HostFs(p["host_root"])
    return HostChecks(
        host, run=functools.partial(_run, module), which=lambda name: host.find_tool(name, TOOL_DIRS),
        mode=p["mode"], gpu_ids=p["gpu_ids"], gpu_vendor=p["gpu_vendor"], include_functions=p["include_functions"],
        base_image=host.path(p["base_image"]) if p["base_image"] else None,
        memory=parse_size(p["memory"], "memory", default_unit="m"),
        disk_size=parse_size(p["disk_size"], "disk_size", default_unit="g"), image_dir=host.path(p["image_dir"]),
        hugepages=p["hugepages"], hugepage_size=parse_size(p["hugepage_size"], "hugepage_size", default_unit="m"),
        network=p["network"], network_type=p["network_type"], libvirt_uri=p["libvirt_uri"], timeout=p["timeout"],
    )


def run(module):
    if module.params["timeout"] < 1:
        module.fail_json(msg="timeout must be at least 1, got %d." % module.params["timeout"])
    try:
        checker = host_checks(module)
        checks = checker.run(module.params["checks"])
    except MadengineError as exc:
        module.fail_json(msg=str(exc))
    failures, advisories, report = summarize(checks)
    module.exit_json(changed=False, checks=checks, failures=failures, advisories=advisories, report=report,
                     ready=not failures, reboot_would_help=any(c["reboot"] for c in checks),
                     gpus=checker.gpu_details(), cpu_vendor=checker.host.cpuinfo()[1],
                     kernel_args=checker.kernel_args(), blacklist=checker.blacklist())
