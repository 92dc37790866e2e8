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
  - Runs read-only checks and reports each as C(pass), C(fail), C(warn) or C(skip), with what to do about every
    failure. O(checks) picks the checks by name (the checks they depend on run too); by default all twenty run.
  - The checks, in display order - C(cpu_virtualization) (vmx/svm flags); C(kvm_usable) (KVM modules and
    C(/dev/kvm)); C(iommu_enabled); C(iommu_cmdline) (the kernel command line); C(interrupt_remapping);
    C(vfio_available); C(libvirt_reachable); C(hypervisor_features) (libvirt's VFIO host devices, EFI,
    host-passthrough); C(vm_tools) (QEMU, qemu-img, virsh, an ISO tool, OVMF); C(base_image); C(memory_available)
    (and huge pages); C(disk_space); C(libvirt_network) (the VM's libvirt network); C(iommu_groups_viable) (per
    GPU); C(gpus_usable) (present and sane); C(sriov_ready); C(vgpu_ready); C(bar_address_space) (large BARs);
    C(host_driver_ownership) (per mode); C(lsm_image_labels).
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
attributes:
  action_group:
    membership:
      - rocm.madengine.host
      - rocm.madengine.passthrough
options:
  checks:
    description:
      - The checks to run, by name; the checks they depend on run too (for example C(hypervisor_features) needs
        C(libvirt_reachable), the GPU checks need C(gpus_usable)).
      - Empty runs all of them, or with O(mode=none) those a VM without passthrough needs (C(libvirt_reachable),
        C(vm_tools), C(base_image), C(memory_available), C(disk_space), C(libvirt_network)).
    type: list
    elements: str
    choices: [cpu_virtualization, kvm_usable, iommu_enabled, iommu_cmdline, interrupt_remapping, vfio_available,
              libvirt_reachable, hypervisor_features, vm_tools, base_image, memory_available, disk_space,
              libvirt_network, iommu_groups_viable, gpus_usable, sriov_ready, vgpu_ready, bar_address_space,
              host_driver_ownership, lsm_image_labels]
    default: []
  mode:
    description:
      - The passthrough mode to check for (as O(rocm.madengine.gpu_passthrough#module:mode)), or V(none) for VMs
        without GPU passthrough.
    type: str
    choices: [vfio, sriov, vgpu, none]
    default: vfio
  gpu_ids:
    description: GPU PCI addresses to check; empty means every AMD or NVIDIA GPU except the boot VGA.
    type: list
    elements: str
    default: []
  gpu_vendor:
    description:
      - Vendor filter for discovery, as O(rocm.madengine.gpu_passthrough#module:gpu_vendor) - V(AMD) or V(NVIDIA);
        V(auto) and V(NONE) take both vendors; V(any) is the older name of V(auto).
    type: str
    choices: [auto, AMD, NVIDIA, NONE, any]
    default: auto
  include_functions:
    description: Functions of the same card do not make a group non-viable (they are passed together).
    type: bool
    default: true
  base_image:
    description: The VM base image to check (C(base_image) is skipped without it).
    type: path
  memory:
    description:
      - Memory of one VM (C(memory_available)), a size such as V(32G) or V(8192M); a bare number is MiB, as
        O(rocm.madengine.madengine_vm#module:memory).
    type: str
    default: 4G
    aliases: [vm_memory_mb]
  disk_size:
    description:
      - Disk size of one VM (C(base_image), C(disk_space)), a size such as V(100G); a bare number is GiB, as
        O(rocm.madengine.madengine_vm#module:disk_size).
    type: str
    default: 20G
    aliases: [disk_size_gb]
  image_dir:
    description: Where VM disks are created (C(disk_space), C(lsm_image_labels)).
    type: path
    default: /var/lib/libvirt/images
  hugepages:
    description: Whether VMs use huge pages of O(hugepage_size) (C(memory_available)).
    type: bool
    default: false
  hugepage_size:
    description: Huge page size of the VMs, such as V(1G) or V(2M).
    type: str
    default: 1G
  network:
    description: The libvirt network (or host bridge) the VMs use (C(libvirt_network)).
    type: str
    default: default
  network_type:
    description:
      - How the VMs are networked, as O(rocm.madengine.madengine_vm#module:network_type); C(libvirt_network) is
        skipped for V(bridge) and V(user).
    type: str
    choices: [network, bridge, user]
    default: network
  libvirt_uri:
    description: The libvirt connection to check.
    type: str
    default: qemu:///system
  host_root:
    description:
      - The root of the host's filesystem, under which C(/proc), C(/sys), C(/dev), C(/etc), C(/lib/modules), the
        tools and O(base_image) and O(image_dir) are read.
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
    memory: 256G
    disk_size: 200G
  register: host_check

- name: Only what a VM without passthrough needs
  rocm.madengine.iommu_kvm_info:
    checks: [libvirt_reachable, vm_tools, base_image, memory_available, disk_space, libvirt_network]
    base_image: /var/lib/libvirt/images/ubuntu-22.04.qcow2
  register: plain_vm_check

- name: Show what is missing
  ansible.builtin.debug:
    var: host_check.failures
"""

RETURN = r"""
checks:
  description: The checks run (those of O(checks) and what they depend on), in display order.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Display number of the check, 1 to 20 (the texts name other checks by it).
      type: int
    name:
      description: What the check checks, as O(checks) names it.
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
  sample: ["[3] iommu_enabled: No active IOMMU: /sys/class/iommu and /sys/kernel/iommu_groups are empty. Fix: ..."]
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
kernel_args:
  description: The IOMMU kernel arguments this host needs (C(intel_iommu=on) on Intel CPUs, C(iommu=pt)).
  returned: always
  type: list
  elements: str
  sample: [intel_iommu=on, iommu=pt]
blacklist:
  description: Host drivers that must not load for O(mode) (C(amdgpu) for V(sriov) on AMD GPUs, where GIM owns the PFs).
  returned: always
  type: list
  elements: str
  sample: [amdgpu]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rocm.madengine.plugins.module_utils.host.checks import check_names
from ansible_collections.rocm.madengine.plugins.module_utils.host.hostfs import GPU_VENDOR_CHOICES
from ansible_collections.rocm.madengine.plugins.module_utils.host.iommu_kvm_info_task import run


def main():
    module = AnsibleModule(
        argument_spec=dict(
            checks=dict(type="list", elements="str", choices=check_names(), default=[]),
            mode=dict(type="str", choices=["vfio", "sriov", "vgpu", "none"], default="vfio"),
            gpu_ids=dict(type="list", elements="str", default=[]),
            gpu_vendor=dict(type="str", choices=GPU_VENDOR_CHOICES, default="auto"),
            include_functions=dict(type="bool", default=True),
            base_image=dict(type="path"),
            memory=dict(type="str", default="4G", aliases=["vm_memory_mb"]),
            disk_size=dict(type="str", default="20G", aliases=["disk_size_gb"]),
            image_dir=dict(type="path", default="/var/lib/libvirt/images"),
            hugepages=dict(type="bool", default=False),
            hugepage_size=dict(type="str", default="1G"),
            network=dict(type="str", default="default"),
            network_type=dict(type="str", choices=["network", "bridge", "user"], default="network"),
            libvirt_uri=dict(type="str", default="qemu:///system"),
            host_root=dict(type="path", default="/"),
            timeout=dict(type="int", default=30),
        ),
        supports_check_mode=True,
    )
    run(module)


if __name__ == "__main__":
    main()
