#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gpu_info
short_description: Detect a node's GPUs and the profile images are built for it
version_added: 0.2.0
description:
  - Detects the node's GPUs as M(rocm.madengine.madengine_run) does (AMD from the KFD topology in sysfs and
    C(amd-smi) or C(rocm-smi); NVIDIA from C(nvidia-smi), else the PCI devices) and returns them, with the node's
    I(profile) - the GPU vendor, architecture and product that M(rocm.madengine.madengine_build) builds images for
    (its O(rocm.madengine.madengine_build#module:nodes)) and that decides which nodes are equivalent.
  - Detection wins over what the inventory declares in O(gpu_vendor) and O(gpu_arch) - the images must fit the
    hardware that runs them - and a disagreement is a warning naming the node and both values. O(gpu_vendor=NONE)
    is a choice (CPU mode), not a claim, and is never contradicted. The declared architecture fills in what
    detection cannot tell (an NVIDIA node without C(nvidia-smi)), and with O(detect=false) the declared values are
    the profile.
  - AMD GPUs that the PCI bus shows but the KFD topology does not (bound to C(vfio-pci) on a VM host, or C(amdgpu)
    not loaded) are counted with an unknown architecture, which O(gpu_arch) fills in.
  - On a node with GPUs of both vendors, O(gpu_vendor) chooses one; V(auto) fails there, naming the node.
  - Nothing is changed; the tools run are C(amd-smi) or C(rocm-smi), and C(nvidia-smi).
author:
  - ROCm madengine maintainers (@rocm)
extends_documentation_fragment:
  - rocm.madengine.attributes
  - rocm.madengine.attributes.ACTION_GROUP
  - rocm.madengine.attributes.INFO_MODULE
  - rocm.madengine.attributes.ACTION_WORKER
attributes:
  action_group:
    membership:
      - rocm.madengine.host
  action:
    support: full
    details:
      - A node that declares what it is - O(gpu_vendor=NONE) (a CPU node), or O(detect=false) with the vendor and
        architecture - and has a O(node_name) is profiled on the controller by the action plugin of the same name,
        with the module's own code, without connecting to the node or starting a module there. Any other call runs
        the module on the node.
  async:
    support: none
options:
  gpu_vendor:
    description:
      - The vendor the inventory declares for the node (C(madengine_gpu_vendor)) - V(AMD), V(NVIDIA), V(NONE)
        (CPU mode), or V(auto) (nothing declared).
    type: str
    choices: [auto, AMD, NVIDIA, NONE]
    default: auto
  gpu_arch:
    description:
      - The architecture the inventory declares (C(madengine_gpu_arch)) - C(gfx942), C(gfx90a), or an NVIDIA name
        (C(H100), or C(NVIDIA H100 80GB HBM3) which is shortened to C(H100)). Empty declares none.
    type: str
    default: ""
  detect:
    description:
      - Detect the GPUs. With V(false) nothing on the node is read and the profile is what O(gpu_vendor) and
        O(gpu_arch) declare; O(gpu_vendor) must then not be V(auto).
    type: bool
    default: true
  node_name:
    description: The node's name in messages and in the profile (the inventory hostname). Default the host name.
    type: str
  host_root:
    description:
      - The root of the node's filesystem, as O(rocm.madengine.madengine_run#module:host_root) - sysfs, the ROCm
        version and the vendor tools are read under it.
    type: path
    default: /
  sysfs_root:
    description:
      - Where the node's sysfs is, as the (deprecated) O(rocm.madengine.madengine_run#module:sysfs_root) of the runs;
        wins over C(<host_root>/sys). The role passes the one of C(madengine_run_options), so that detection reads
        the GPUs the runs will use.
    type: path
  additional_context:
    description:
      - The node's madengine additional context (a dict, or a JSON / Python dict literal string); only its
        C(MAD_ROCM_PATH) is used (the ROCm root, under O(host_root)).
    type: raw
"""

EXAMPLES = r"""
- name: Learn what this node is for the build
  rocm.madengine.gpu_info:
    gpu_vendor: "{{ madengine_gpu_vendor }}"
    gpu_arch: "{{ madengine_gpu_arch }}"
    node_name: "{{ inventory_hostname }}"

- name: Show the profile
  ansible.builtin.debug:
    msg: "{{ ansible_facts.madengine_gpu.gpu_vendor }} {{ ansible_facts.madengine_gpu.gpu_architecture }}"
"""

RETURN = r"""
gpu:
  description:
    - What detection found, as RV(rocm.madengine.madengine_run#module:gpu) - C(vendor), C(count), C(architecture),
      C(product), C(driver_version), C(rocm_version), C(cuda_version), C(gpus) and C(notes). Null with
      O(detect=false) or O(gpu_vendor=NONE).
  returned: always
  type: dict
  sample:
    vendor: AMD
    count: 8
    architecture: gfx942
    product: AMD Instinct MI300X
    driver_version: 6.8.5
    rocm_version: 6.4.1
    cuda_version: ""
    gpus: []
    notes: []
profile:
  description:
    - The node's profile - C(node), C(gpu_vendor) (V(AMD), V(NVIDIA) or V(NONE)), C(gpu_architecture) (C(gfx942),
      C(H100), empty when unknown or CPU), C(gpu_product), C(gpu_count), C(source) (where the values come from) and
      C(declared) (C(gpu_vendor), C(gpu_architecture) as the inventory gave them).
  returned: always
  type: dict
  sample:
    node: mi300x-01
    gpu_vendor: AMD
    gpu_architecture: gfx942
    gpu_product: AMD Instinct MI300X
    gpu_count: 8
    source: detected
    declared: {gpu_vendor: AMD, gpu_architecture: gfx942}
ansible_facts:
  description: Facts set on the node.
  returned: always
  type: dict
  contains:
    madengine_gpu:
      description: The same dict as RV(profile).
      type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.gpu_info_task import ARGUMENT_SPEC, run


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    run(module)


if __name__ == "__main__":
    main()
