#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gpu_passthrough
short_description: Prepare host GPUs for a VM through sysfs and restore them exactly as found
version_added: 0.1.0
description:
  - Binds GPUs to vfio-pci (O(mode=vfio)), creates SR-IOV virtual functions and binds them
    (O(mode=sriov)), or creates mediated devices (O(mode=vgpu)), using sysfs only (no libvirt).
  - Binding uses C(driver_override), then C(unbind), then C(drivers_probe), and verifies the C(driver) link
    after every write, because C(drivers_probe) reports success even when no driver took the device.
    C(new_id) is never used.
  - Before the first change to a device its original driver, C(driver_override), VF count and
    C(sriov_drivers_autoprobe) are saved to one JSON file per device in O(state_dir). O(state=absent)
    restores from these files, so it works from another process or after a crash.
  - If changing device k fails, devices 1..k are put back in reverse order before the task fails.
  - With O(gpu_ids) empty, GPUs are discovered by vendor (AMD C(0x1002), NVIDIA C(0x10de)) and class
    (display C(0x03xxxx) and processing accelerator C(0x12xxxx), as MI300-class Instinct GPUs report),
    skipping the boot VGA device.
  - A device whose vendor reads C(0xffff) has fallen off the bus; the task fails with
    RV(reboot_required=true).
author:
  - ROCm madengine maintainers (@rocm)
extends_documentation_fragment:
  - rocm.madengine.attributes
  - rocm.madengine.attributes.ACTION_GROUP
attributes:
  action_group:
    membership:
      - rocm.madengine.host
      - rocm.madengine.passthrough
  check_mode:
    support: full
    details:
      - Returns in RV(plan) the exact ordered list of writes and commands a real run would perform.
  diff_mode:
    support: full
    details:
      - One line per device with its driver, C(driver_override) and, for PFs, C(sriov_numvfs).
  idempotent:
    support: full
options:
  state:
    description:
      - V(present) binds or creates, V(absent) restores every recorded device (or those of O(gpu_ids)),
        V(query) only reports.
    type: str
    choices: [present, absent, query]
    default: present
  mode:
    description:
      - V(vfio) passes whole PCI functions; V(sriov) creates VFs and passes them; V(vgpu) creates mediated devices.
    type: str
    choices: [vfio, sriov, vgpu]
    default: vfio
  gpu_ids:
    description:
      - PCI addresses, full (C(0000:83:00.0)) or short (C(83:00.0)). Empty means discover them.
      - With O(state=absent), limits the restore to these devices and what was bound with them.
    type: list
    elements: str
    default: []
  gpu_vendor:
    description:
      - V(AMD) or V(NVIDIA) limits discovery to that vendor, and a device of another vendor in O(gpu_ids) is an error.
      - V(auto) takes GPUs of both vendors. V(NONE) does the same here, so that a node's C(madengine_gpu_vendor)
        can be handed over unchanged (a CPU-mode benchmark may still run in a VM with GPUs). V(any) is the older
        name of V(auto).
      - The same choices as M(rocm.madengine.madengine_run) and M(rocm.madengine.iommu_kvm_info).
    type: str
    choices: [auto, AMD, NVIDIA, NONE, any]
    default: auto
  count:
    description:
      - Use only the first O(count) GPUs (in address order when discovered).
    type: int
  exclude_boot_vga:
    description:
      - Skip (discovery) or refuse (O(gpu_ids)) the boot VGA device, which carries the host console.
    type: bool
    default: true
  include_functions:
    description:
      - In O(mode=vfio), also bind the other functions of the same card (such as the HD-audio function
        C(.1)); they are returned in RV(hostdevs).
    type: bool
    default: true
  group_policy:
    description:
      - What to do when another endpoint in a GPU's IOMMU group still uses a host driver.
      - V(fail) stops before any change; V(bind) binds those endpoints to O(driver) too (they are
        restored with the GPU but not returned in RV(hostdevs)); V(ignore) warns.
      - Devices without a driver, bridges, and devices on vfio drivers, C(pci-stub) or C(pcieport) never block.
    type: str
    choices: [fail, bind, ignore]
    default: fail
  driver:
    description:
      - The VFIO driver to bind, for example C(amd-vfio-pci) or C(nvgrace-gpu-vfio-pci).
    type: str
    default: vfio-pci
  num_vfs:
    description:
      - Number of VFs per PF to create and pass through in O(mode=sriov).
    type: int
    default: 1
  sriov_provider:
    description:
      - How VFs are created. V(sysfs) writes C(sriov_numvfs) (V(0) first when another count is set).
      - V(gim) uses AMD's GIM driver, which enables VFs itself from its C(vf_num) module parameter;
        C(sriov_numvfs) is never written on a GIM PF. The module loads C(gim) if it is not loaded
        (and unloads it on restore).
      - V(nvidia) runs C(/usr/lib/nvidia/sriov-manage -e) (and C(-d) on restore).
      - V(auto) picks V(gim) for AMD and V(sysfs) otherwise.
    type: str
    choices: [auto, sysfs, gim, nvidia]
    default: auto
  vgpu_type:
    description:
      - In O(mode=vgpu), the mdev type directory (such as C(nvidia-474)) or its C(name).
    type: str
  vgpu_uuid:
    description:
      - UUID of the mediated device; by default a stable UUID derived from the parent and the type.
    type: str
  state_dir:
    description:
      - Directory of the per-device state files (created with mode C(0700)).
    type: path
    default: /var/lib/madengine/passthrough
  host_root:
    description:
      - The root of the host's filesystem, under which C(sys/), C(dev/) and C(proc/) are read and C(sys/) is
        written. V(/) on a real host; another directory holds a copy or a fake of a host (tests, fleets).
    type: path
    default: /
    aliases: [sysfs_root]
  load_modules:
    description:
      - Run C(modprobe) for O(driver) when it is not registered, and for C(gim) with V(gim) VFs.
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait for a sysfs write (an unbind blocks while the host driver is busy), for the driver
        link or the VFs to appear, and for C(modprobe) and C(sriov-manage).
    type: int
    default: 60
notes:
  - Restore only after the VM is gone; a device still held by QEMU cannot be rebound.
  - Binding is not persistent across reboots; a reboot brings every device back to its native driver.
  - The NVIDIA vendor-specific VFIO vGPU interface (C(nvidia/current_vgpu_type), without mdev) is not supported
    and fails with a clear message.
seealso:
  - module: rocm.madengine.iommu_kvm_info
  - name: VM mode (docs/vm-mode.md)
    description: Preparing hosts with the iommu_kvm_prep role, passthrough modes, and what is restored when.
    link: https://github.com/rocm/madengine-ansible/blob/main/docs/vm-mode.md
"""

EXAMPLES = r"""
---
- name: Bind every AMD GPU of the host (and its audio function) to vfio-pci
  rocm.madengine.gpu_passthrough:
    gpu_vendor: AMD
  register: passthrough

- name: Hand the functions to the VM module
  ansible.builtin.debug:
    msg: "{{ passthrough.hostdevs }}"

- name: Two GIM-managed VFs of one MI300X PF
  rocm.madengine.gpu_passthrough:
    mode: sriov
    gpu_ids: ["83:00.0"]
    num_vfs: 2

- name: Show the writes a run would do, without doing them
  rocm.madengine.gpu_passthrough:
    gpu_ids: ["0000:03:00.0"]
  check_mode: true
  register: would

- name: Put every recorded device back as it was found
  rocm.madengine.gpu_passthrough:
    state: absent

- name: Is anything still bound?
  rocm.madengine.gpu_passthrough:
    state: query
  register: passthrough_state
"""

RETURN = r"""
devices:
  description:
    - One record per device selected, changed or recorded. In check mode, the predicted state.
  returned: always
  type: list
  elements: dict
  sample:
    - bdf: "0000:83:00.0"
      vendor: "0x1002"
      device: "0x74a1"
      class: "0x120000"
      numa_node: 0
      local_cpulist: "0-47"
      iommu_group: "42"
      group_members: ["0000:83:00.0"]
      original_driver: amdgpu
      original_override: null
      current_driver: vfio-pci
      current_override: vfio-pci
      role: gpu
      parent_pf: null
      vfs: []
      vgpu_uuid: null
      recorded: true
      dead: false
hostdevs:
  description:
    - PCI addresses to pass to the VM (GPUs and their functions, or the VFs), in order.
  returned: always
  type: list
  elements: str
  sample: ["0000:83:00.0", "0000:83:00.1"]
mdevs:
  description: UUIDs of the mediated devices for the VM (O(mode=vgpu)).
  returned: always
  type: list
  elements: str
  sample: ["0b5a6d8e-3f0c-5d8a-9c43-2f1b1f6f0d11"]
plan:
  description:
    - The ordered operations performed, or in check mode those a real run would perform.
    - C(op) is C(write) (C(path) relative to O(host_root), C(value)), C(command) (C(argv)),
      C(record) or C(forget) (a state file).
  returned: always
  type: list
  elements: dict
  sample:
    - {op: record, stage: record, device: "0000:83:00.0", path: /var/lib/madengine/passthrough/0000:83:00.0.json}
    - {op: write, stage: override, device: "0000:83:00.0",
       path: /sys/bus/pci/devices/0000:83:00.0/driver_override, value: vfio-pci}
    - {op: write, stage: unbind, device: "0000:83:00.0", path: /sys/bus/pci/drivers/amdgpu/unbind,
       value: "0000:83:00.0"}
    - {op: write, stage: probe, device: "0000:83:00.0", path: /sys/bus/pci/drivers_probe, value: "0000:83:00.0"}
state_files:
  description: State files present after the run (devices not yet restored).
  returned: always
  type: list
  elements: str
  sample: ["/var/lib/madengine/passthrough/0000:83:00.0.json"]
clean:
  description: True when no state file is left, that is every device changed by this module was restored.
  returned: always
  type: bool
  sample: false
leftovers:
  description:
    - What passthrough still holds after the run, one sentence each - devices that could not be given back and
      why (for example a process still holding a device's VFIO group), then every state file left
      (C(the GPU state file <path>)). Empty when O(state=absent) restored everything.
  returned: always
  type: list
  elements: str
  sample: ["the GPU state file /var/lib/madengine/passthrough/0000:83:00.0.json"]
reboot_required:
  description: True when a device has fallen off the bus (vendor C(0xffff)).
  returned: always
  type: bool
  sample: false
failed_device:
  description: The device whose step failed.
  returned: failure
  type: str
  sample: "0000:83:00.0"
stage:
  description: The failed step (C(override), C(unbind), C(probe), C(numvfs), C(modprobe), ...).
  returned: failure
  type: str
  sample: unbind
errno:
  description: Symbolic errno of the failed write, when the kernel returned one.
  returned: failure
  type: str
  sample: EBUSY
rolled_back:
  description: Devices restored after the failure, newest first.
  returned: failure
  type: list
  elements: str
  sample: ["0000:83:00.1", "0000:83:00.0"]
rollback_errors:
  description: Devices that could not be restored after the failure (their state files are kept).
  returned: failure
  type: list
  elements: str
  sample: []
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rocm.madengine.plugins.module_utils.host.gpu_passthrough_task import run
from ansible_collections.rocm.madengine.plugins.module_utils.host.hostfs import GPU_VENDOR_CHOICES


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["present", "absent", "query"], default="present"),
            mode=dict(type="str", choices=["vfio", "sriov", "vgpu"], default="vfio"),
            gpu_ids=dict(type="list", elements="str", default=[]),
            gpu_vendor=dict(type="str", choices=GPU_VENDOR_CHOICES, default="auto"),
            count=dict(type="int"),
            exclude_boot_vga=dict(type="bool", default=True),
            include_functions=dict(type="bool", default=True),
            group_policy=dict(type="str", choices=["fail", "bind", "ignore"], default="fail"),
            driver=dict(type="str", default="vfio-pci"),
            num_vfs=dict(type="int", default=1),
            sriov_provider=dict(type="str", choices=["auto", "sysfs", "gim", "nvidia"], default="auto"),
            vgpu_type=dict(type="str"),
            vgpu_uuid=dict(type="str"),
            state_dir=dict(type="path", default="/var/lib/madengine/passthrough"),
            host_root=dict(type="path", default="/", aliases=["sysfs_root"]),
            load_modules=dict(type="bool", default=True),
            timeout=dict(type="int", default=60),
        ),
        supports_check_mode=True,
    )
    run(module)


if __name__ == "__main__":
    main()
