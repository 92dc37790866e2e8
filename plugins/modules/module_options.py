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
  - The roles of this collection take option dicts (for example C(madengine_run_options) or C(madengine_vm_options))
    and hand them to a module with C(module_defaults), so that every option the module documents can be set without
    a role change.
  - This action checks such a dict on the controller first, against the module's documented options. Unknown
    keys, keys the role sets itself, and values of the wrong type or outside the choices fail the task with a
    message naming the variable, the host and the keys, before anything on the host changes.
  - It also checks O(defaults), the options a role derives from its own variables, and returns RV(paths) - on a
    host with a local connection (also through C(delegate_to)) the relative values of path options made absolute
    against the directory C(ansible-playbook) runs in, to combine over both dicts. Ansible runs local modules in
    the playbook's directory; a user means the directory the command started in. On other hosts a relative path
    stays relative, to the module's working directory there.
  - It never contacts the host, and returns no option value but those paths (some options are secrets).
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
      - The option dict a user gave, checked strictly.
    type: dict
    default: {}
  defaults:
    description:
      - The options the calling role sets from its own variables; O(options) win over them. Checked too (a problem
        in them is a problem of the role).
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
extends_documentation_fragment:
  - rocm.madengine.attributes
  - rocm.madengine.attributes.ACTION_PLUGIN
attributes:
  check_mode:
    support: full
    details:
      - Nothing is changed in either mode.
  diff_mode:
    support: none
  idempotent:
    support: full
  platform:
    platforms: all
notes:
  - Runs on the controller as an action plugin; there is no module code to run on the host.
  - Documented aliases are accepted, and a reserved option is reserved under its aliases too.
"""

EXAMPLES = r"""
---
- name: Check madengine_run_options before anything on the node changes
  rocm.madengine.module_options:
    module: madengine_run
    name: madengine_run_options
    options: "{{ madengine_run_options }}"
    defaults:
      gpu_vendor: "{{ madengine_gpu_vendor }}"
      results_dir: "{{ madengine_results_dir }}"
    reserved: [manifest, tags]
  register: run_checked

- name: Run with the checked options as defaults
  module_defaults:
    rocm.madengine.madengine_run: >-
      {{ {'gpu_vendor': madengine_gpu_vendor, 'results_dir': madengine_results_dir}
         | combine(madengine_run_options, run_checked.paths) }}
  block:
    - name: Run every model of the manifest
      rocm.madengine.madengine_run:
        manifest: "{{ manifest }}"
        tags: [dummy]

- name: Check the options of a module of another collection
  rocm.madengine.module_options:
    module: ansible.builtin.file
    options: "{{ file_options }}"
    name: file_options
"""

RETURN = r"""
module:
  description: The fully qualified name of the module the options were checked against.
  returned: always
  type: str
  sample: rocm.madengine.madengine_vm
option_keys:
  description: The keys of O(options), sorted.
  returned: success
  type: list
  elements: str
  sample: [boot_timeout, firmware]
paths:
  description:
    - The path options of O(defaults) and O(options) (O(options) winning) whose value is relative, made absolute
      against the directory C(ansible-playbook) runs in; empty unless the host's connection is local. Values starting
      with C(~) or C($) are left to the module.
  returned: success
  type: dict
  sample: {results_dir: /home/me/bench/results/node1}
problems:
  description: What is wrong with the dicts, one sentence each.
  returned: failure
  type: list
  elements: str
  sample: ["unknown key(s) firmwre (rocm.madengine.madengine_vm takes: boot_timeout, firmware, ...)"]
"""
