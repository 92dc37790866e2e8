#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: fetch_run_logs
short_description: Bring the models' run logs of a node home to the controller, each cut to its tail
version_added: 0.3.0
description:
  - Reads the run logs O(paths) on the node in one module call and writes them on the controller under O(dest),
    each by its file name. A log longer than O(max_size) bytes keeps its last O(max_size) bytes, after a first
    line saying how much was cut and where the whole log is on the node.
  - Give it the C(log_path) of rows a node returned; C(madengine_report) then names the controller's copy in
    C(log_path) and the node's path in C(node_log_path). The benchmark playbooks need no such task, since
    their M(rocm.madengine.madengine_run) brings its logs home with its rows (its
    O(rocm.madengine.madengine_run#module:logs_dest) option); this module is for the logs of other runs.
  - On a host with a local connection a log already at its destination is left as it is.
  - The logs travel gzip-compressed in the module's result; the task's result holds no log content.
author:
  - ROCm madengine maintainers (@rocm)
options:
  paths:
    description:
      - The run logs on the node. A log that does not exist is reported with C(missing) and not written.
    type: list
    elements: path
    required: true
  dest:
    description:
      - The directory on the controller the logs are written to (made when missing); relative to the directory
        C(ansible-playbook) runs in.
    type: path
    required: true
  max_size:
    description:
      - The most bytes kept of each log (its tail).
    type: int
    default: 4194304
extends_documentation_fragment:
  - rocm.madengine.attributes
  - rocm.madengine.attributes.ACTION_PLUGIN
attributes:
  check_mode:
    support: full
    details: Reads the logs and writes nothing; RV(logs) says what would change.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: A copy that already holds what the node's log gives is not written again.
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: Fetch the node's run logs
  rocm.madengine.fetch_run_logs:
    paths: "{{ madengine_results | map(attribute='log_path') | select | unique | list }}"
    dest: "results/{{ inventory_hostname }}"
    max_size: 1048576
"""

RETURN = r"""
logs:
  description: One item per log of O(paths).
  returned: always
  type: list
  elements: dict
  contains:
    node_path:
      description: The log on the node.
      type: str
    path:
      description: The controller's copy (absolute); empty when the log is missing on the node.
      type: str
    size:
      description: The log's size on the node, in bytes.
      type: int
    truncated:
      description: Only its last O(max_size) bytes were kept.
      type: bool
    changed:
      description: The controller's copy was written (or would be, in check mode).
      type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.run_logs import read_tails
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError


def main():
    module = AnsibleModule(
        argument_spec=dict(paths=dict(type="list", elements="path", required=True),
                           dest=dict(type="path", required=True),
                           max_size=dict(type="int", default=4 * 1024 * 1024)),
        supports_check_mode=True,
    )
    try:
        logs = read_tails(module.params["paths"], module.params["max_size"])
    except MadengineError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, logs=logs)


if __name__ == "__main__":
    main()
