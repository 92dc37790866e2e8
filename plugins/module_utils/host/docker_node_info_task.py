# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""The docker_node_info module: what docker_setup needs to know about a node, read in one call.

The OS family, distribution and package manager come from Ansible's own fact collectors (the values the setup
module's ``distribution`` and ``pkg_mgr`` facts hold); the Python is the one the module runs with (the node's
interpreter). Which of the packages docker_setup may install are installed is asked of dpkg-query (Debian family)
or rpm (RedHat and Suse families); elsewhere every package counts as missing. The GPU vendor is the setting, or
for ``auto`` the vendor whose device exists. A registry address is asked whether it answers already.
"""

from __future__ import annotations

import os
import sys

from ansible.module_utils.facts.system.distribution import Distribution
from ansible.module_utils.facts.system.pkg_mgr import PkgMgrFactCollector

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError
from ansible_collections.rocm.madengine.plugins.module_utils.host.registry import answers, api_url

# The engine's packages per OS family. Fedora ships the engine as moby-engine; RHEL has none of its own (Docker's
# repository gives docker-ce, docker-ce-cli and containerd.io: set engine_packages).
ENGINE_PACKAGES = {"Debian": ["docker.io"], "RedHat": ["moby-engine"], "Suse": ["docker"]}
# The tool that lists installed packages, per OS family.
PACKAGE_QUERY = {"Debian": "dpkg-query", "RedHat": "rpm", "Suse": "rpm"}
VENDORS = ("AUTO", "AMD", "NVIDIA", "NONE")


def os_facts(module):
    """{os_family, distribution, distribution_version, pkg_mgr} as the setup module finds them."""
    facts = Distribution(module=module).get_distribution_facts()
    collected = dict(("ansible_" + key, value) for key, value in facts.items())
    pkg_mgr = PkgMgrFactCollector().collect(module=module, collected_facts=collected)["pkg_mgr"]
    return {"os_family": facts.get("os_family") or "", "distribution": facts.get("distribution") or "",
            "distribution_version": facts.get("distribution_version") or "", "pkg_mgr": pkg_mgr}


def gpu_vendor(setting, amd_devices, nvidia_device, exists=os.path.exists):
    """(vendor, the AMD devices missing): the setting, or for auto AMD when the first AMD device exists, else NVIDIA
    when the NVIDIA device exists, else NONE. Devices are looked at only when the setting is auto or AMD."""
    vendor = (setting or "auto").upper()
    if vendor not in VENDORS:
        raise MadengineError("gpu_vendor must be auto, AMD, NVIDIA or NONE, not %r." % (setting,))
    if vendor == "AUTO":
        if amd_devices and exists(amd_devices[0]):
            vendor = "AMD"
        else:
            vendor = "NVIDIA" if nvidia_device and exists(nvidia_device) else "NONE"
    missing = [device for device in amd_devices if not exists(device)] if vendor == "AMD" else []
    return vendor, missing


def wanted_packages(os_family, vendor, params):
    """(engine packages, every package docker_setup may install here), in order and without repeats."""
    engine = []
    if params["install_engine"]:
        engine = list(params["engine_packages"] or ENGINE_PACKAGES.get(os_family, []))
    wanted = []
    for name in engine + (list(params["nvidia_packages"]) if vendor == "NVIDIA" else []) + list(params["packages"]):
        if name not in wanted:
            wanted.append(name)
    return engine, wanted


def installed_packages(names, query, run):
    """The names that ``query`` (dpkg-query, rpm or None) lists as installed; ``run(argv)`` gives (rc, out, err)."""
    if not names or not query:
        return []
    if query == "dpkg-query":
        argv = ["dpkg-query", "--show", "--showformat=${Package}\\t${db:Status-Status}\\n"] + list(names)
        rc, out, err = run(argv)
        listed = set(line.split("\t")[0] for line in out.splitlines() if line.endswith("\tinstalled"))
        failed = rc not in (0, 1)  # 1: some name is not known
    else:
        argv = ["rpm", "--query", "--queryformat", "%{NAME}\\n"] + list(names)
        rc, out, err = run(argv)
        listed = set(line.strip() for line in out.splitlines())
        failed = rc != 0 and not out.strip()  # rc: how many are not installed, each named on stdout
    if failed:
        raise MadengineError("%s cannot tell which packages are installed (rc %d): %s"
                             % (" ".join(argv[:2]), rc, (err or out).strip() or "no output"))
    return [name for name in names if name in listed]


def node_info(module):
    p = module.params
    facts = os_facts(module)
    vendor, amd_missing = gpu_vendor(p["gpu_vendor"], p["amd_devices"], p["nvidia_device"])
    engine, wanted = wanted_packages(facts["os_family"], vendor, p)
    query = PACKAGE_QUERY.get(facts["os_family"])
    if query and not module.get_bin_path(query):
        query = None
    installed = installed_packages(wanted, query, lambda argv: module.run_command(argv, environ_update={"LC_ALL": "C"}))
    result = dict(facts, python={"executable": sys.executable, "version": "%d.%d.%d" % sys.version_info[:3]},
                  gpu_vendor=vendor, amd_devices_missing=amd_missing, engine_packages=engine,
                  package_query=query or "", missing_packages=[name for name in wanted if name not in installed],
                  engine_missing=[name for name in engine if name not in installed], registry_url="",
                  registry_answering=False)
    if p["registry_listen"]:
        result["registry_url"] = api_url(p["registry_listen"], "registry_listen")
        result["registry_answering"] = answers(p["registry_listen"])[0]
    return result


def run(module):
    """The module's work; fails the module with one sentence on a MadengineError."""
    try:
        module.exit_json(changed=False, **node_info(module))
    except MadengineError as exc:
        module.fail_json(msg=str(exc))
