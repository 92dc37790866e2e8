# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Test stand-in for a node's run: returns the rows it is given as ansible_facts.madengine_results."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: node_rows
short_description: Return rows as the madengine_results fact (tests only)
description: Returns O(rows) as C(ansible_facts.madengine_results), the way madengine_run hands rows to the controller.
options:
  rows:
    description: The rows.
    type: list
    elements: dict
    required: true
author: rocm.madengine maintainers
"""

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(argument_spec=dict(rows=dict(type="list", elements="dict", required=True)),
                           supports_check_mode=True)
    module.exit_json(changed=False, ansible_facts=dict(madengine_results=module.params["rows"]))


if __name__ == "__main__":
    main()
