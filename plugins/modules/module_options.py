#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: module_options
short_description: Check a dict of module options before module_defaults hands it over
version_added: 0.2.0
description:
  - The roles of this collection take option dicts (for example C(madengine_vm_options)) and hand them to
    a module with C(module_defaults), so that every option the module documents can be set without a role change.
  - This action checks such a dict on the controller first, against the module's documented options. Unknown
    keys, keys the role sets itself, and values of the wrong type or outside the choices fail the task with a
    message naming the variable, the host and the keys, before anything on the host changes.
  - It never contacts the host.
author:
  - ROCm madengine maintainers (@rocm)
options:
  module:
    description:
      - The module the options are for; a short name means a module of this collection.
    type: str
    required: true
  options:
    description:
      - The option dict.
    type: dict
    default: {}
  name:
    description:
      - The variable the dict comes from, for the messages.
    type: str
    default: options
  reserved:
    description:
      - Options the calling role sets itself; a dict that sets one of them fails.
    type: list
    elements: str
    default: []
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details:
      - Nothing is changed in either mode.
  diff_mode:
    support: none
  platform:
    platforms: all
notes:
  - Runs on the controller as an action plugin; there is no module code to run on the host.
"""

EXAMPLES = r"""
---
- name: Check madengine_vm_options before anything on the node changes
  rocm.madengine.module_options:
    module: madengine_vm
    options: "{{ madengine_vm_options }}"
    name: madengine_vm_options
    reserved: [name, state]

- name: Start the VM with the checked options as defaults
  module_defaults:
    rocm.madengine.madengine_vm: "{{ madengine_vm_options }}"
  block:
    - name: Start the VM
      rocm.madengine.madengine_vm:
        name: bench-vm
        state: running
        base_image: /var/lib/libvirt/images/base.qcow2
"""

RETURN = r"""
options:
  description: The options, unchanged.
  returned: success
  type: dict
  sample: {firmware: uefi, boot_timeout: 600}
module:
  description: The fully qualified name of the module the options were checked against.
  returned: always
  type: str
  sample: rocm.madengine.madengine_vm
problems:
  description: What is wrong with the dict, one sentence each.
  returned: failure
  type: list
  elements: str
  sample: ["unknown key(s) firmwre (rocm.madengine.madengine_vm takes: boot_timeout, firmware, ...)"]
"""
