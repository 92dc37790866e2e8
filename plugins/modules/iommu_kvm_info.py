#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: iommu_kvm_info
short_description: Check whether a host can run KVM guests with GPU passthrough
version_added: 0.1.0
description:
  - Runs twenty read-only checks and reports each as C(pass), C(fail), C(warn) or C(skip), with what to do
    about every failure.
  - 1 CPU virtualisation flags (vmx/svm); 2 KVM modules and C(/dev/kvm); 3 IOMMU active; 4 IOMMU kernel command
    line; 5 interrupt remapping; 6 VFIO; 7 libvirt reachable; 8 libvirt KVM features (VFIO host devices, EFI,
    host-passthrough); 9 tools (QEMU, qemu-img, virsh, ISO tool, OVMF); 10 base image; 11 memory (and huge pages);
    12 disk space; 13 libvirt default network; 14 IOMMU group viability per GPU; 15 GPUs present and sane;
    16 SR-IOV readiness; 17 vGPU readiness; 18 large-BAR address space; 19 host driver ownership per mode; 20 LSM.
  - The task itself does not fail when checks fail; the C(rocm.madengine.iommu_kvm_prep) role turns failures into
    one actionable error.
  - Nothing is changed; commands run are C(virsh) (version, domcapabilities, net-info), C(qemu-img info),
    C(modinfo) and C(dmesg).
author:
  - ROCm madengine maintainers (@rocm)
extends_documentation_fragment:
  - rocm.madengine.attributes
  - rocm.madengine.attributes.ACTION_GROUP
  - rocm.madengine.attributes.INFO_MODULE
options:
  mode:
    description: The passthrough mode to check for (as O(rocm.madengine.gpu_passthrough#module:mode)).
    type: str
    choices: [vfio, sriov, vgpu]
    default: vfio
  gpu_ids:
    description: GPU PCI addresses to check; empty means every AMD or NVIDIA GPU except the boot VGA.
    type: list
    elements: str
    default: []
  gpu_vendor:
    description: Vendor filter for discovery.
    type: str
    choices: [AMD, NVIDIA, any]
    default: any
  include_functions:
    description: Functions of the same card do not make a group non-viable (they are passed together).
    type: bool
    default: true
  base_image:
    description: The VM base image to check (check 10 is skipped without it).
    type: path
  vm_memory_mb:
    description: Memory of one VM in MiB (checks 11 and 18).
    type: int
    default: 4096
  disk_size_gb:
    description: Disk size of one VM in GiB (checks 10 and 12).
    type: int
    default: 20
  image_dir:
    description: Where VM disks are created (checks 12 and 20).
    type: path
    default: /var/lib/libvirt/images
  hugepages:
    description: Whether VMs use 1 GiB huge pages (check 11).
    type: bool
    default: false
  libvirt_uri:
    description: The libvirt connection to check.
    type: str
    default: qemu:///system
  host_root:
    description: Directory under which C(/proc), C(/sys), C(/dev), C(/etc), C(/lib/modules) and images are read.
    type: path
    default: /
  timeout:
    description: Seconds each command may take.
    type: int
    default: 30
seealso:
  - name: VM mode (docs/vm-mode.md)
    description: The iommu_kvm_prep role runs these checks and can configure the host.
    link: https://github.com/rocm/madengine-ansible/blob/main/docs/vm-mode.md
  - module: rocm.madengine.gpu_passthrough
"""

EXAMPLES = r"""
---
- name: Check a node for SR-IOV passthrough
  rocm.madengine.iommu_kvm_info:
    mode: sriov
    gpu_vendor: AMD
    base_image: /var/lib/libvirt/images/ubuntu-22.04.qcow2
  register: host_check

- name: Show what is missing
  ansible.builtin.debug:
    var: host_check.failures
"""

RETURN = r"""
checks:
  description: The twenty checks in order.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Check number, 1 to 20.
      type: int
    name:
      description: Short name.
      type: str
    status:
      description: C(pass), C(fail), C(warn) or C(skip).
      type: str
    detail:
      description: What was found.
      type: str
    fix:
      description: What to do (for C(fail) and C(warn)).
      type: str
    reboot:
      description: Whether the fix of a failure only takes effect after a reboot.
      type: bool
  sample:
    - {id: 1, name: cpu_virtualization, status: fail, reboot: false,
       detail: "/proc/cpuinfo has neither the vmx (Intel VT-x) nor the svm (AMD-V) flag, ...",
       fix: "Enable Intel VT-x or AMD-V (SVM) in the firmware setup; ..."}
failures:
  description: One sentence per failed check, with its fix.
  returned: always
  type: list
  elements: str
  sample: ["[3] iommu: No active IOMMU: /sys/class/iommu and /sys/kernel/iommu_groups are empty. Fix: ..."]
advisories:
  description: One sentence per check that passed with a warning.
  returned: always
  type: list
  elements: str
report:
  description: One line per check, prefixed with its status, for display.
  returned: always
  type: list
  elements: str
ready:
  description: True when no check failed.
  returned: always
  type: bool
reboot_would_help:
  description: True when a failed check is fixed by configuration that a reboot activates (IOMMU, blacklists).
  returned: always
  type: bool
gpus:
  description: The GPUs checked.
  returned: always
  type: list
  elements: dict
  contains:
    bdf:
      description: PCI address.
      type: str
    vendor:
      description: PCI vendor ID (C(0x1002) AMD, C(0x10de) NVIDIA).
      type: str
    device:
      description: PCI device ID.
      type: str
    driver:
      description: The driver bound now, or null.
      type: str
    iommu_group:
      description: IOMMU group number, or null without an active IOMMU.
      type: str
  sample:
    - {bdf: "0000:83:00.0", vendor: "0x1002", device: "0x74a1", driver: amdgpu, iommu_group: "40"}
cpu_vendor:
  description: C(vendor_id) from C(/proc/cpuinfo) (C(GenuineIntel), C(AuthenticAMD)).
  returned: always
  type: str
"""

import functools

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rocm.madengine.plugins.module_utils.host import sysfs as _sysfs
from ansible_collections.rocm.madengine.plugins.module_utils.host.checks import HostCheck, summarize


def main():
    module = AnsibleModule(
        argument_spec=dict(
            mode=dict(type="str", choices=["vfio", "sriov", "vgpu"], default="vfio"),
            gpu_ids=dict(type="list", elements="str", default=[]),
            gpu_vendor=dict(type="str", choices=["AMD", "NVIDIA", "any"], default="any"),
            include_functions=dict(type="bool", default=True),
            base_image=dict(type="path"),
            vm_memory_mb=dict(type="int", default=4096),
            disk_size_gb=dict(type="int", default=20),
            image_dir=dict(type="path", default="/var/lib/libvirt/images"),
            hugepages=dict(type="bool", default=False),
            libvirt_uri=dict(type="str", default="qemu:///system"),
            host_root=dict(type="path", default="/"),
            timeout=dict(type="int", default=30),
        ),
        supports_check_mode=True,
    )
    p = module.params
    for key in ("vm_memory_mb", "disk_size_gb", "timeout"):
        if p[key] < 1:
            module.fail_json(msg="%s must be at least 1, got %d." % (key, p[key]))
    check = HostCheck(
        root=p["host_root"], run=functools.partial(_run, module), which=functools.partial(_which, module),
        mode=p["mode"], gpu_ids=p["gpu_ids"], gpu_vendor=p["gpu_vendor"], include_functions=p["include_functions"],
        base_image=p["base_image"], vm_memory_mb=p["vm_memory_mb"], disk_size_gb=p["disk_size_gb"],
        image_dir=p["image_dir"], hugepages=p["hugepages"], libvirt_uri=p["libvirt_uri"], timeout=p["timeout"],
    )
    checks = check.run_all()
    failures, advisories, report = summarize(checks)
    module.exit_json(changed=False, checks=checks, failures=failures, advisories=advisories, report=report,
                     ready=not failures, reboot_would_help=any(c["reboot"] for c in checks), gpus=check.gpu_details(),
                     cpu_vendor=check.cpuinfo()[1])


def _run(module, argv, timeout):
    return _sysfs.run_command(module, argv, timeout)


def _which(module, name):
    return module.get_bin_path(name, required=False, opt_dirs=["/usr/sbin", "/sbin", "/usr/libexec"])


if __name__ == "__main__":
    main()
