#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: madengine_report
short_description: Merge every node's result rows into one CSV and an HTML report, or plan a re-run
version_added: 0.1.0
description:
  - Runs on the controller (use C(delegate_to) and C(run_once)). Merges the rows every node returned
    (the C(madengine_results) facts of M(rocm.madengine.madengine_run)) into one CSV with the collection's
    row schema, and writes a self-contained HTML report with a summary table, counts per status, the
    nodes, and one chart per model across nodes.
  - Failed rows are kept. A node that returned nothing is named in RV(missing_hosts) and the summary and,
    when O(models) is given, every expected (model, node) pair without a row gets a C(FAILURE) row that says
    why (O(fill_missing)).
  - The same inputs give byte-identical files; the only times in them are the ones the rows carry.
    Files are rewritten (atomically) only when their content changes, so C(changed) is honest.
  - With O(previous_csv), reads a previous merged CSV and returns in RV(rerun) the failed or missing
    (model, node) pairs, per node, so a playbook can run only those. When O(results) is given as well,
    the rows of the previous CSV are kept for every pair the new results do not cover.
author:
  - ROCm madengine maintainers (@rocm)
extends_documentation_fragment:
  - rocm.madengine.attributes
attributes:
  check_mode:
    support: full
    details:
      - Everything is computed; nothing is written.
  diff_mode:
    support: none
  idempotent:
    support: full
requirements:
  - pandas >= 1.3 on the controller
options:
  results:
    description:
      - "Rows per node, C({node: [row, ...]}); C(null) or an empty list for a node that returned nothing."
      - Each row is a mapping of column to value with at least C(model) and C(status)
        (C(SUCCESS), C(FAILURE), C(TIMEOUT) or C(SKIPPED)); missing schema columns are left empty and an empty
        C(host) is set to the node's name.
      - Required unless O(previous_csv) is given alone, which only plans a re-run.
    type: dict
  hosts:
    description:
      - Nodes expected to return rows, in report order (usually C(groups['gpu_nodes'])). A comma-separated
        string is accepted.
      - Defaults to the nodes of O(results) (or, when planning, of O(previous_csv)).
    type: list
    elements: str
  models:
    description:
      - The selected models, as names or as model dicts (the RV(rocm.madengine.madengine_discover#module:models)
        return value). A comma-separated string is accepted.
      - Used to trace C(multiple_results) rows (C(<model>_<row>)) back to their model, to order rows, and to know
        which (model, node) pairs are missing.
    type: list
    elements: raw
    default: []
  output_dir:
    description:
      - Directory of the merged CSV and the HTML report; created when missing. A relative path is relative to the
        working directory of the module (where the play runs, for a task on the controller).
      - Required with O(results).
    type: path
  csv_name:
    description: File name of the merged CSV in O(output_dir).
    type: str
    default: perf.csv
  html_name:
    description: File name of the HTML report in O(output_dir).
    type: str
    default: perf.html
  html:
    description: Write the HTML report.
    type: bool
    default: true
  title:
    description: Title of the HTML report.
    type: str
    default: madengine results
  run_id:
    description:
      - Run id shown in the report and the summary.
      - By default the rows' C(run_id) when they all share one, else C(merged-) and the first 12 hex digits of
        the SHA-256 of the merged CSV.
    type: str
  fill_missing:
    description:
      - Add a C(FAILURE) row for every expected (model, node) pair without a row. Needs O(models).
    type: bool
    default: true
  previous_csv:
    description:
      - A merged CSV of an earlier run (this module's output). Its failed or missing pairs are returned in RV(rerun).
      - With O(results), its rows are carried over for the pairs the new results do not cover.
    type: path
  rerun_statuses:
    description: Row statuses that make a pair of O(previous_csv) run again.
    type: list
    elements: str
    choices: [FAILURE, TIMEOUT, SKIPPED]
    default: [FAILURE, TIMEOUT]
  max_failed:
    description: At most this many failed pairs are named in RV(summary.failed) (the total is always given).
    type: int
    default: 20
notes:
  - Keep the summary small for AWX; the full table is in the CSV and the nodes' facts.
seealso:
  - module: rocm.madengine.madengine_discover
  - name: The rocm.madengine.result_collection role
    description: Collects every node's facts with this module and publishes the summary with C(set_stats).
    link: https://github.com/rocm/madengine-ansible/blob/main/docs/results.md
"""

EXAMPLES = r"""
---
- name: Merge the rows of every GPU node on the controller
  rocm.madengine.madengine_report:
    results: "{{ dict(groups['gpu_nodes'] | zip(groups['gpu_nodes'] | map('extract', hostvars)
                 | map(attribute='ansible_facts') | map(attribute='madengine_results', default=[]))) }}"
    hosts: "{{ groups['gpu_nodes'] }}"
    models: "{{ discovered.models }}"
    output_dir: results
  delegate_to: localhost
  run_once: true
  register: report

- name: Plan a re-run of what failed or is missing in the previous results
  rocm.madengine.madengine_report:
    previous_csv: results/perf.csv
    hosts: "{{ groups['gpu_nodes'] }}"
    models: dummy,dummy_multi
  delegate_to: localhost
  run_once: true
  register: plan

- name: Each node runs only its failed or missing models
  ansible.builtin.debug:
    msg: "{{ plan.rerun[inventory_hostname] | default([]) }}"
"""

RETURN = r"""
csv_path:
  description: Absolute path of the merged CSV.
  returned: when O(results) is given
  type: str
  sample: /home/user/results/perf.csv
html_path:
  description: Absolute path of the HTML report.
  returned: when O(results) is given and O(html) is true
  type: str
  sample: /home/user/results/perf.html
rows:
  description: Number of rows in the merged CSV (placeholders and carried-over rows included).
  returned: when O(results) is given
  type: int
  sample: 12
missing_hosts:
  description:
    - Expected nodes that returned no row. With O(previous_csv), only nodes that had pairs to run again count.
  returned: when O(results) is given
  type: list
  elements: str
  sample: [node3]
failed_pairs:
  description: Every (model, node) pair with a C(FAILURE) or C(TIMEOUT) row, in table order.
  returned: when O(results) is given
  type: list
  elements: dict
  sample:
    - {model: dummy_fail, host: node1, status: FAILURE}
placeholders:
  description: Number of C(FAILURE) rows added for expected pairs without a row.
  returned: when O(results) is given
  type: int
  sample: 2
carried:
  description: Number of rows kept from O(previous_csv).
  returned: when O(results) is given
  type: int
  sample: 0
summary:
  description: The compact summary the result_collection role publishes with C(set_stats).
  returned: when O(results) is given
  type: dict
  contains:
    run_id:
      description: The run id (O(run_id) or its default).
      type: str
      sample: merged-3f2a9c0d1b7e
    rows:
      description: Number of rows.
      type: int
      sample: 12
    nodes:
      description: Number of nodes in the report.
      type: int
      sample: 2
    counts:
      description: Rows per status; every status is present.
      type: dict
      sample: {SUCCESS: 10, FAILURE: 2, TIMEOUT: 0, SKIPPED: 0}
    failed:
      description: Up to O(max_failed) failed pairs as C(model@node).
      type: list
      elements: str
      sample: [dummy_fail@node1]
    failed_total:
      description: Number of failed pairs.
      type: int
      sample: 1
    missing_nodes:
      description: Nodes that returned nothing.
      type: list
      elements: str
      sample: []
    csv:
      description: Path of the merged CSV.
      type: str
      sample: /home/user/results/perf.csv
    html:
      description: Path of the HTML report, null when not written.
      type: str
      sample: /home/user/results/perf.html
rerun:
  description:
    - Models to run again per node, for every expected node (an empty list when nothing of it needs a re-run).
      The names are model names, usable as O(rocm.madengine.madengine_run#module:tags).
  returned: when O(previous_csv) is given
  type: dict
  sample: {node1: [dummy_fail], node2: []}
rerun_pairs:
  description: The same pairs as a list, with the reason (the failed status, or C(missing)).
  returned: when O(previous_csv) is given
  type: list
  elements: dict
  sample:
    - {model: dummy_fail, host: node1, reason: FAILURE}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.madengine_report_task import run


def main():
    module = AnsibleModule(
        argument_spec=dict(
            results=dict(type="dict"),
            hosts=dict(type="list", elements="str"),
            models=dict(type="list", elements="raw", default=[]),
            output_dir=dict(type="path"),
            csv_name=dict(type="str", default="perf.csv"),
            html_name=dict(type="str", default="perf.html"),
            html=dict(type="bool", default=True),
            title=dict(type="str", default="madengine results"),
            run_id=dict(type="str"),
            fill_missing=dict(type="bool", default=True),
            previous_csv=dict(type="path"),
            rerun_statuses=dict(type="list", elements="str", choices=["FAILURE", "TIMEOUT", "SKIPPED"],
                                default=["FAILURE", "TIMEOUT"]),
            max_failed=dict(type="int", default=20),
        ),
        required_one_of=[("results", "previous_csv")],
        required_by=dict(results="output_dir"),
        supports_check_mode=True,
    )
    run(module)


if __name__ == "__main__":
    main()
