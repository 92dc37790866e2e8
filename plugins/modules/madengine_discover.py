#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: madengine_discover
short_description: Select models from a MAD model catalogue
version_added: 0.1.0
description:
  - Reads a MAD catalogue (C(models.json), C(scripts/<dir>/models.json) and C(scripts/<dir>/get_models_json.py))
    and returns the models that O(tags) select, in a deterministic order.
  - The tag grammar is madengine's, including C(dir/tag), C(dir/all) and C(selector:key=value) arguments,
    which are appended to the model's C(args) as C( --key value).
  - Unlike madengine, a model selected twice is returned once (the first selection wins), scripts
    directories are read in name order, and malformed catalogues fail with a message naming the file and entry.
  - C(get_models_json.py) files import C(madengine.utils.discover_models.CustomModel); the module
    provides a compatible class, so madengine need not be installed.
  - Discovery executes the catalogue's C(get_models_json.py) files, as madengine does; only point
    O(mad_root) at catalogues you trust.
author:
  - ROCm madengine maintainers (@rocm)
extends_documentation_fragment:
  - rocm.madengine.attributes
  - rocm.madengine.attributes.ACTION_GROUP
  - rocm.madengine.attributes.INFO_MODULE
attributes:
  action_group:
    membership:
      - rocm.madengine.catalogue
options:
  mad_root:
    description:
      - Root directory of the MAD catalogue, the directory that holds C(models.json).
    type: path
    required: true
  tags:
    description:
      - Tags, model names or selectors; each element may be a comma-separated list.
      - C(all), C(<tag>), C(<model name>), C(<dir>/all), C(<dir>/<tag>), C(<dir>/<model>),
        C(<selector>:k=v:k2=v2) and C(<dir>:<model>[:k=v]).
      - When empty, every model of the catalogue is returned.
    type: list
    elements: str
    default: []
notes:
  - A tag that selects nothing fails the task and suggests close names.
seealso:
  - module: rocm.madengine.madengine_build
"""

EXAMPLES = r"""
---
- name: Select the models tagged pyt, plus one model with extra arguments
  rocm.madengine.madengine_discover:
    mad_root: /srv/MAD
    tags:
      - pyt
      - dummy2/model2:batch-size=32
  register: discovered

- name: Show what was selected
  ansible.builtin.debug:
    msg: "{{ discovered.models | map(attribute='name') | list }}"

- name: Every model of one scripts directory (facts are set as well)
  rocm.madengine.madengine_discover:
    mad_root: /srv/MAD
    tags: dummy3/all

- name: Use the facts in a later task
  ansible.builtin.debug:
    msg: "{{ ansible_facts.madengine_models | length }} models selected"
"""

RETURN = r"""
models:
  description:
    - The selected models as discovered, in selection order, with C(args) augmented by tag arguments.
    - Names of models from C(scripts/<dir>) are prefixed with C(<dir>/) and their C(dockerfile) and
      C(scripts) paths are relative to O(mad_root).
  returned: success
  type: list
  elements: dict
  sample:
    - name: dummy2/model2
      dockerfile: docker/dummy
      scripts: scripts/dummy2/run.sh
      tags: [dummies]
      args: " --batch-size 32"
      n_gpus: "1"
ansible_facts:
  description: Facts set for later tasks.
  returned: success
  type: dict
  contains:
    madengine_models:
      description: The same list as RV(models).
      returned: success
      type: list
      elements: dict
available:
  description: Number of models in the whole catalogue.
  returned: success
  type: int
  sample: 38
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.madengine_discover_task import run


def main():
    module = AnsibleModule(
        argument_spec=dict(
            mad_root=dict(type="path", required=True),
            tags=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    run(module)


if __name__ == "__main__":
    main()
