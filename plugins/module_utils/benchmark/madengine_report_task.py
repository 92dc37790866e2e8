# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""The madengine_report module's task: every node's rows in, one CSV and an HTML report (or a re-run plan) out."""

from __future__ import annotations

import os

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark import report as _report
from ansible_collections.rocm.madengine.plugins.module_utils.common import (
    MadengineError,
    absolute_paths,
    as_list,
    write_if_changed,
)


def run(module):
    """The whole module after AnsibleModule: exit_json or fail_json."""
    absolute_paths(module)
    try:
        result = report_task(module)
    except MadengineError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


def model_list(value):
    """Accept names, model dicts, or comma-separated strings in the list."""
    out = []
    for item in value or ():
        out.extend(as_list(item) if isinstance(item, str) else [item])
    return out


def report_task(module):
    params = module.params
    check = module.check_mode
    result = dict(changed=False)
    hosts = as_list(params["hosts"]) if params["hosts"] is not None else None
    models = model_list(params["models"])

    previous_rows = None
    if params["previous_csv"]:
        _header, previous_rows = _report.read_previous_csv(params["previous_csv"])
        plan, pairs = _report.rerun_plan(previous_rows, hosts=hosts, models=models,
                                         statuses=tuple(params["rerun_statuses"]))
        result.update(rerun=plan, rerun_pairs=pairs)

    if params["results"] is None:
        return result

    if _report.pd is None:
        module.fail_json(msg=missing_required_lib("pandas"), exception=_report.PANDAS_IMPORT_ERROR)
    output_dir = params["output_dir"]
    for name in ("csv_name", "html_name"):
        if not params[name] or os.sep in params[name] or params[name] in (".", ".."):
            raise MadengineError("%s must be a plain file name, not %r." % (name, params[name]))
    report = _report.merge(params["results"], hosts=hosts, models=models, previous_rows=previous_rows,
                           fill_missing=params["fill_missing"], rerun_statuses=tuple(params["rerun_statuses"]),
                           host_errors=params.get("host_errors"))
    for note in report.notes:
        module.warn(note)
    csv_bytes = report.to_csv()
    run_id = params["run_id"] or _report.default_run_id(report, csv_bytes)
    csv_path = os.path.join(output_dir, params["csv_name"])
    html_path = os.path.join(output_dir, params["html_name"]) if params["html"] else None

    changed = _report.ensure_directory(output_dir, check_mode=check)
    changed = write_if_changed(csv_path, csv_bytes, check_mode=check) or changed
    if html_path:
        html_bytes = _report.to_html(report, params["title"], run_id)
        changed = write_if_changed(html_path, html_bytes, check_mode=check) or changed
    result.update(
        changed=changed,
        csv_path=csv_path,
        rows=len(report.rows),
        missing_hosts=report.missing_hosts,
        failed_pairs=report.failed_pairs(),
        placeholders=report.placeholders,
        carried=report.carried,
        summary=_report.summary(report, run_id, csv_path, html_path, max_failed=params["max_failed"]),
    )
    if html_path:
        result["html_path"] = html_path
    return result
