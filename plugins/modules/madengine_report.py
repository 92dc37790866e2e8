#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: madengine_report
short_description: Merge every node's rows into one CSV and an HTML report, compare them with history, or plan a re-run
version_added: 0.1.0
description:
  - Runs on the controller (use C(delegate_to) and C(run_once)). Merges the rows every node returned
    (the C(madengine_results) facts of M(rocm.madengine.madengine_run)) into one CSV with the collection's
    row schema, and writes a self-contained HTML report (a Jinja2 template) with counts per status and verdict,
    the regressions first, one section per GPU class with a trend chart per model, the nodes, the failures and
    every row linked to its run log, in tables that sort and filter in the page.
  - Failed rows are kept. A node that returned nothing is named in RV(missing_hosts) and the summary and,
    when O(models) is given, every expected (model, node) pair without a row gets a C(FAILURE) row that says
    why (O(fill_missing)).
  - The same inputs give byte-identical files; the only times in them are the ones the rows carry.
    Files are rewritten (atomically) only when their content changes, so C(changed) is honest.
  - With O(previous_csv), reads a previous merged CSV and returns in RV(rerun) the failed or missing
    (model, node) pairs, per node, so a playbook can run only those. When O(results) is given as well,
    the rows of the previous CSV are kept for every pair the new results do not cover.
  - Stores the run in a results database (O(results_db); by default a SQLite file in O(output_dir), or a
    PostgreSQL database) and compares each C(SUCCESS) row with its baseline, by default the latest earlier run
    of the same model, arguments and GPU class (O(baseline_scope)), or a pinned run (O(baseline_run)) or CSV
    (O(baseline_csv)). Each row gets C(relative_change) (percent), C(baseline_performance), C(baseline_run_id)
    and a C(verdict) (C(improved), C(unchanged), C(regressed) or C(no baseline)), judged against O(thresholds)
    in the direction of the metric (O(metric_directions)).
  - A results database that cannot be opened, is damaged or has a newer schema is found before anything is
    written; it is a warning and RV(database.error) (also in RV(summary)), and the CSV and the report are
    written without history.
  - With O(import_csv), stores the sessions of a madengine C(perf.csv) in the results database as history.
  - With O(durations_from), returns in RV(durations) how long each model ran in an earlier run, for the shards of
    M(rocm.madengine.madengine_build).
author:
  - ROCm madengine maintainers (@rocm)
extends_documentation_fragment:
  - rocm.madengine.attributes
  - rocm.madengine.attributes.ON_CONTROLLER
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
  - Jinja2 on the controller, for the HTML report
  - psycopg >= 3.1 on the controller, for a PostgreSQL results database
options:
  results:
    description:
      - "Rows per node, C({node: [row, ...]}); C(null) or an empty list for a node that returned nothing."
      - Each row is a mapping of column to value with at least C(model) and C(status)
        (C(SUCCESS), C(FAILURE), C(TIMEOUT) or C(SKIPPED)); missing schema columns are left empty and an empty
        C(host) is set to the node's name.
      - Required unless O(previous_csv), O(durations_from) or O(import_csv) is given alone, which only plans or imports.
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
  host_errors:
    description:
      - Why a node returned no rows, by node (the role passes each node's C(madengine_node_error)); the reason goes
        into the C(error) of that node's C(FAILURE) rows. Empty values are ignored.
    type: dict
    default: {}
  unreachable:
    description:
      - Nodes that became unreachable during the run, each with the time it was noticed (UTC, ISO 8601). Their
        missing pairs get C(FAILURE) rows saying C(unreachable) and the time; the rows they returned before are
        kept. Nodes with an empty time are ignored.
    type: dict
    default: {}
  previous_csv:
    description:
      - A merged CSV of an earlier run (this module's output). Its failed or missing pairs are returned in RV(rerun).
      - With O(results), its rows are carried over for the pairs the new results do not cover.
    type: path
  matrix:
    description:
      - Whether every model ran on every node (V(all)) or only the pairs of O(assignments) (V(shard), each model once
        per group of equivalent nodes).
      - With V(shard), a re-run plan takes only the failed pairs of O(previous_csv) (in a merged CSV every pair that
        ran, or was to run, has a row); with V(all) also the pairs without a row.
    type: str
    choices: [all, shard]
    default: all
  assignments:
    description:
      - "The models each node was to run, C({node: [model, ...]}), when not every node ran every model (a shard, a
        re-run): only these pairs are expected - a missing one gets a C(FAILURE) row (O(fill_missing)) and a node
        with nothing assigned is not missing."
      - Empty expects every model of O(models) on every node of O(hosts).
    type: dict
  durations_from:
    description:
      - A merged CSV of an earlier run; RV(durations) returns the median C(test_duration) of each row model's
        C(SUCCESS) rows. A file that does not exist gives no durations and no error.
    type: path
  rerun_statuses:
    description: Row statuses that make a pair of O(previous_csv) run again.
    type: list
    elements: str
    choices: [FAILURE, TIMEOUT, SKIPPED]
    default: [FAILURE, TIMEOUT]
  max_failed:
    description:
      - At most this many failed pairs are named in RV(summary.failed), and regressions in RV(summary.regressed)
        (the totals are always given).
    type: int
    default: 20
  json_name:
    description:
      - File name in O(output_dir) of the summary as JSON (RV(summary) and every regression) for other tools.
      - Empty writes no JSON file.
    type: str
    default: ""
  history:
    description:
      - Store the run in the results database and compare the rows with the runs before it.
      - False opens no database; rows are then compared only with O(baseline_csv).
    type: bool
    default: true
  results_db:
    description:
      - The results database. Empty is C(history.sqlite) in O(output_dir). A C(postgresql://) (or C(postgres://))
        URL is a PostgreSQL database (libpq URL, for example
        C(postgresql://bench@db.lab:5432/results?sslmode=require)); anything else a SQLite file, relative to
        O(output_dir).
      - A password in the URL never appears in results or messages; prefer C(PGPASSWORD) or C(~/.pgpass) of the
        controller.
      - The schema (tables C(madengine_schema), C(madengine_runs), C(madengine_results)) is created or migrated
        when needed; a database with a newer schema is not touched.
    type: str
    default: ""
  baseline_scope:
    description:
      - What a row is compared with when the baseline is not pinned. C(gpu_class) is the latest earlier run with
        the same model, arguments, metric and GPU class (product and architecture); C(node) also requires the
        same node.
    type: str
    choices: [gpu_class, node]
    default: gpu_class
  baseline_run:
    description:
      - Pin the baseline to this stored run id (every row is compared with that run's rows of its series).
      - An id that is not in the results database fails the task before anything is written. Not with
        O(baseline_csv).
    type: str
  baseline_csv:
    description:
      - Pin the baseline to the SUCCESS rows of this CSV (a merged CSV, or a madengine C(perf.csv)). It needs
        C(model) and C(performance) columns; columns it lacks (C(gpu_product), C(args), ...) match any row.
    type: path
  thresholds:
    description:
      - When a change counts, in percent of the baseline (at least this much worse is C(regressed), at least
        this much better C(improved)).
    type: dict
    default: {}
    suboptions:
      default:
        description: Threshold of every row without a more specific one.
        type: float
        default: 5.0
      models:
        description:
          - "Per model, C({model: percent}); a selected model's threshold also holds for its C(multiple_results)
            rows. Wins over O(thresholds.gpu_architectures)."
        type: dict
        default: {}
      gpu_architectures:
        description: "Per GPU architecture, C({gfx942: 3})."
        type: dict
        default: {}
  metric_directions:
    description:
      - "Whether a higher or a lower figure is better, per metric name: C({latency_ms: lower})."
      - Without an entry, names with C(per_second), C(/s), C(throughput), C(tokens), C(samples), C(flops), ... are
        higher-is-better and names with C(latency), C(time), C(duration), C(seconds), C(_ms), ... lower-is-better;
        any other name is higher-is-better.
    type: dict
    default: {}
  trend_runs:
    description: Number of runs the report's trend charts show (this one included).
    type: int
    default: 10
  log_url:
    description:
      - Link of a row's run log in the report, a template with C({host}), C({log_path}), C({log_name}),
        C({run_id}) and C({model}), for example C(https://logs.lab/{host}{log_path}).
      - Empty links the log path (relative when the log is under O(output_dir)).
    type: str
    default: ""
  import_csv:
    description:
      - A madengine C(perf.csv), appended to over many sessions, to store in the results database as history.
        Its rows are cut into sessions where the C(build_number) changes or a (model, args, machine) comes
        again; each session is a run C(import-<digest>) placed before every timed run. Importing the same
        (or a grown) file again adds only what is new.
      - A results database that cannot be used fails the task.
    type: path
notes:
  - Keep the summary small for AWX; the full table is in the CSV and the nodes' facts.
  - Rows are stored under their own C(run_id) (rows carried over from O(previous_csv) keep theirs); collecting
    the same run again adds or updates rows and never deletes any. Runs are ordered by their first start time;
    the runs of the rows in O(results) are compared with the runs before the first of them, never with each other.
  - Writers lock the database (C(BEGIN IMMEDIATE) in SQLite, an advisory lock in PostgreSQL), so runs collected
    at the same time are all stored.
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

- name: Merge into a lab's PostgreSQL history, with stricter thresholds on MI300X, and fail on regressions
  rocm.madengine.madengine_report:
    results: "{{ rows_per_node }}"
    output_dir: results
    results_db: postgresql://bench@db.lab.example/results
    thresholds:
      default: 5
      gpu_architectures: {gfx942: 3}
      models: {pyt_huggingface_bert: 10}
    json_name: summary.json
  delegate_to: localhost
  run_once: true
  register: report

- name: Stop when anything regressed
  ansible.builtin.assert:
    that: report.summary.regressed_total == 0
    fail_msg: "Regressed: {{ report.summary.regressed | join(', ') }}"
  run_once: true

- name: Import the history of a madengine perf.csv
  rocm.madengine.madengine_report:
    import_csv: /srv/mad/perf.csv
    output_dir: results
  delegate_to: localhost
  run_once: true
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
json_path:
  description: Absolute path of the JSON summary.
  returned: when O(results) and O(json_name) are given
  type: str
  sample: /home/user/results/summary.json
regressions:
  description: Every regressed row, the largest change first.
  returned: when O(results) is given
  type: list
  elements: dict
  sample:
    - {model: dummy, host: node1, gpu_product: AMD Instinct MI300X, gpu_architecture: gfx942,
       metric: samples_per_second, performance: "80.0", baseline: "100.0", baseline_run_id: job-41,
       relative_change: "-20.00", threshold: 5.0, log_path: /var/tmp/madengine/dummy.log}
database:
  description: The results database of this run.
  returned: when O(results) is given
  type: dict
  contains:
    location:
      description: SQLite path, or the PostgreSQL URL without its password; null without a database.
      type: str
      sample: /home/user/results/history.sqlite
    stored:
      description: Whether the run is stored (false in check mode and when the database could not be used).
      type: bool
      sample: true
    error:
      description: Why the database could not be used, or null.
      type: str
      sample: null
    rows_written:
      description: Rows added or changed (that would be, in check mode); 0 when the run was already stored.
      type: int
      sample: 12
imported:
  description: What O(import_csv) stored.
  returned: when O(import_csv) is given
  type: dict
  contains:
    path:
      description: The imported file.
      type: str
      sample: /srv/mad/perf.csv
    runs:
      description: The run ids of its sessions, in file order.
      type: list
      elements: str
      sample: [import-3f2a9c0d1b7e]
    runs_added:
      description: Sessions that were not stored before.
      type: int
      sample: 1
    rows_written:
      description: Rows added or changed.
      type: int
      sample: 4
    database:
      description: Where they were stored (without password).
      type: str
      sample: /home/user/results/history.sqlite
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
    hosts:
      description: The nodes of the report, in its order - the nodes in the run (and those carried over).
      type: list
      elements: str
      sample: [node1, node2]
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
    unreachable_nodes:
      description: Nodes that became unreachable during the run (O(unreachable)).
      type: list
      elements: str
      sample: [node7]
    missing_nodes:
      description: Nodes that returned nothing.
      type: list
      elements: str
      sample: []
    verdicts:
      description: SUCCESS rows per verdict; every verdict is present.
      type: dict
      sample: {regressed: 1, improved: 0, unchanged: 9, no baseline: 0}
    regressed:
      description: Up to O(max_failed) regressed rows as C(model@node change%), the largest change first.
      type: list
      elements: str
      sample: [dummy@node1 -20.00%]
    regressed_total:
      description: Number of regressed rows.
      type: int
      sample: 1
    database:
      description: "The results database: C(location) (without password, null without one), C(stored) and C(error)
        (null, or why it could not be used: the run is then neither stored nor compared with history)."
      type: dict
      sample: {location: /home/user/results/history.sqlite, stored: true, error: null}
    json:
      description: Path of the JSON summary, null when not written.
      type: str
      sample: null
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
durations:
  description:
    - With O(durations_from), the median C(test_duration) in seconds of each row model's C(SUCCESS) rows (a
      C(multiple_results) model's rows are C(<model>_<row>)); empty when the file does not exist.
  returned: when O(durations_from) is given
  type: dict
  sample: {dummy: 3.012, dummy_multi_1: 3.104}
rerun_pairs:
  description: The same pairs as a list, with the reason (the failed status, or C(missing)).
  returned: when O(previous_csv) is given
  type: list
  elements: dict
  sample:
    - {model: dummy_fail, host: node1, reason: FAILURE}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.madengine_report_task import (
    ARGUMENT_SPEC,
    CONSTRAINTS,
    run,
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True, **CONSTRAINTS)
    run(module)


if __name__ == "__main__":
    main()
