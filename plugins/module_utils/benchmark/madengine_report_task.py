# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""The madengine_report module's task: every node's rows in; the CSV, the HTML report, the JSON summary and the
run in the results database out, each row compared with its baseline (or a re-run plan, or imported history).

A results database that cannot be used is a warning and ``database.error`` in the summary, found before anything
is written: the CSV and the report are written all the same, without history.
"""

from __future__ import annotations

import json
import os

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark import baseline as _baseline
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark import history as _history
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark import report as _report
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark import report_html as _html
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark import results_db as _db
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.fleet import durations_from_rows
from ansible_collections.rocm.madengine.plugins.module_utils.common import (
    MadengineError,
    absolute_paths,
    as_list,
    mask_only,
    utc_now,
    write_if_changed,
)

# the module's options; its action plugin checks a task's arguments against them when it runs the task itself
ARGUMENT_SPEC = dict(
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
    host_errors=dict(type="dict", default={}),
    unreachable=dict(type="dict", default={}),
    previous_csv=dict(type="path"),
    rerun_statuses=dict(type="list", elements="str", choices=["FAILURE", "TIMEOUT", "SKIPPED"],
                        default=["FAILURE", "TIMEOUT"]),
    max_failed=dict(type="int", default=20),
    json_name=dict(type="str", default=""),
    history=dict(type="bool", default=True),
    results_db=dict(type="str", default="", no_log=True),
    baseline_scope=dict(type="str", choices=["gpu_class", "node"], default="gpu_class"),
    baseline_run=dict(type="str"),
    baseline_csv=dict(type="path"),
    thresholds=dict(type="dict", default={}, options=dict(
        default=dict(type="float", default=5.0),
        models=dict(type="dict", default={}),
        gpu_architectures=dict(type="dict", default={}),
    )),
    metric_directions=dict(type="dict", default={}),
    trend_runs=dict(type="int", default=10),
    log_url=dict(type="str", default=""),
    import_csv=dict(type="path"),
    matrix=dict(type="str", choices=["all", "shard"], default="all"),
    assignments=dict(type="dict"),
    durations_from=dict(type="path"),
)
CONSTRAINTS = dict(
    required_one_of=[("results", "previous_csv", "import_csv", "durations_from")],
    required_by=dict(results="output_dir", import_csv="output_dir"),
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


def database_location(module):
    """The results database's Location (None when none is used); its password is masked from here on."""
    params = module.params
    wanted = params["history"] or params["import_csv"] or params["baseline_run"]
    value = params["results_db"]
    if not wanted:
        mask_only(module, "results_db", [])
        return None
    base = params["output_dir"] or os.getcwd()
    location = _db.parse_location(value, base)
    mask_only(module, "results_db", location.secrets)
    if location.kind == "postgresql" and _db.postgresql_library()[0] is None:
        module.fail_json(msg=missing_required_lib("psycopg"), exception=_db.postgresql_library()[1])
    return location


def _durations(path):
    """The median test_duration of each row model's SUCCESS rows in a merged CSV; {} when the file does not exist."""
    if not os.path.exists(path):
        return {}
    _header, rows = _report.read_previous_csv(path)
    return durations_from_rows(rows)


def report_task(module):
    params = module.params
    result = dict(changed=False)
    hosts = as_list(params["hosts"]) if params["hosts"] is not None else None
    models = model_list(params["models"])
    location = database_location(module)

    matrix = params.get("matrix") or "all"
    previous_rows = None
    if params["previous_csv"]:
        _header, previous_rows = _report.read_previous_csv(params["previous_csv"])
        plan, pairs = _report.rerun_plan(previous_rows, hosts=hosts, models=models,
                                         statuses=tuple(params["rerun_statuses"]), matrix=matrix)
        result.update(rerun=plan, rerun_pairs=pairs)
    if params["import_csv"]:
        result["imported"] = import_history(module, location, params["import_csv"])
        result["changed"] = result["imported"]["rows_written"] > 0
    if params.get("durations_from"):
        result["durations"] = _durations(params["durations_from"])

    if params["results"] is None:
        return result

    if _report.pd is None:
        module.fail_json(msg=missing_required_lib("pandas"), exception=_report.PANDAS_IMPORT_ERROR)
    if params["html"] and _html.jinja2 is None:
        module.fail_json(msg=missing_required_lib("Jinja2"), exception=_html.JINJA2_IMPORT_ERROR)
    for name in ("csv_name", "html_name", "json_name"):
        value = params[name]
        if (value or name != "json_name") and (not value or os.sep in value or value in (".", "..")):
            raise MadengineError("%s must be a plain file name, not %r." % (name, value))
    if params["baseline_run"] and params["baseline_csv"]:
        raise MadengineError("baseline_run and baseline_csv both pin the baseline; give one of them.")
    policy = _baseline.Policy(params["baseline_scope"], params["thresholds"], params["metric_directions"],
                              params["trend_runs"])
    baseline_csv = None
    if params["baseline_csv"]:
        baseline_csv = (params["baseline_csv"], _history.read_table_csv(
            params["baseline_csv"], "Baseline CSV %s" % params["baseline_csv"], ("model", "performance"),
            filled=("model",))[1])
    _html.log_linker(params["log_url"], None)  # a bad template is an error before anything is written
    report = _report.merge(params["results"], hosts=hosts, models=models, previous_rows=previous_rows,
                           fill_missing=params["fill_missing"], rerun_statuses=tuple(params["rerun_statuses"]),
                           assignments=params.get("assignments") or None, matrix=matrix,
                           host_errors=params.get("host_errors"), unreachable=params["unreachable"])
    for note in report.notes:
        module.warn(note)
    _report.logs_at_home(report.rows, params["output_dir"])

    # the default SQLite file lives in the output directory: make it first
    created = _report.ensure_directory(params["output_dir"], check_mode=module.check_mode)
    db, db_error = open_database(module, location)
    try:
        merged = merge_and_write(module, report, db, db_error, location, baseline_csv, policy)
        merged["changed"] = merged["changed"] or result["changed"] or created
        result.update(merged)
    finally:
        if db is not None:
            db.close()
    return result


def open_database(module, location):
    """(ResultsDB or None, error message or None): a database that cannot be used is a warning, not a failure."""
    if location is None or not module.params["history"]:
        return None, None
    try:
        return _db.open_db(location, check_mode=module.check_mode), None
    except _db.DatabaseError as exc:
        module.warn("%s The run is not stored and has no history; the CSV and the report are written." % exc)
        return None, str(exc)


def merge_and_write(module, report, db, db_error, location, baseline_csv, policy):
    params = module.params
    check = module.check_mode
    run_id = params["run_id"] or _report.default_run_id(report, report.to_csv())
    collected_at = utc_now()
    run_ids = _history.row_run_ids(report.rows, run_id)
    # the runs of the rows the nodes returned (and of the rows added for what they did not): not carried over
    collected = set(_history.row_run_ids([row for rows in params["results"].values() for row in rows or ()
                                          if isinstance(row, dict)], run_id)) | set([run_id])
    if params["baseline_run"] and db is None:
        raise MadengineError("baseline_run %s needs the results database%s." % (
            params["baseline_run"], ": %s" % db_error if db_error else " (history is off)"))
    try:
        sources = _baseline.gather(db, report.rows, run_ids, collected_at, policy, baseline_run=params["baseline_run"],
                                   baseline_csv=baseline_csv, collected=collected)
    except _db.DatabaseError as exc:
        if params["baseline_run"]:
            raise
        module.warn("%s The run is not stored and has no history; the CSV and the report are written." % exc)
        db, db_error = None, str(exc)
        sources = _baseline.gather(None, report.rows, run_ids, collected_at, policy, baseline_csv=baseline_csv,
                                   collected=collected)
    comparison = _baseline.compare(report, sources, policy, base_model=_report.Pair(report.models).base)

    written, db_error = store_run(module, db, db_error, report.rows, run_id, collected_at)
    database = dict(location=location.display if db is not None or db_error else None,
                    stored=db is not None and not db_error and not check, error=db_error)
    output_dir = params["output_dir"]
    paths = dict((kind, os.path.join(output_dir, params[kind + "_name"]) if enabled else None)
                 for kind, enabled in (("csv", True), ("html", params["html"]), ("json", params["json_name"])))
    changed = write_if_changed(paths["csv"], report.to_csv(), check_mode=check)
    if paths["html"]:
        page = _html.to_html(report, params["title"], run_id, comparison=comparison, database=database,
                             log_url=params["log_url"], output_dir=output_dir, trend_runs=params["trend_runs"])
        changed = write_if_changed(paths["html"], page, check_mode=check) or changed
    summary = _report.summary(report, run_id, paths["csv"], paths["html"], max_failed=params["max_failed"],
                              comparison=comparison, database=database, json_path=paths["json"])
    if paths["json"]:
        document = dict(summary, regressions=comparison.regressions)
        text = json.dumps(document, indent=2, sort_keys=True) + "\n"
        changed = write_if_changed(paths["json"], text.encode("utf-8"), check_mode=check) or changed
    result = dict(
        changed=changed or written > 0, csv_path=paths["csv"], rows=len(report.rows),
        missing_hosts=report.missing_hosts, failed_pairs=report.failed_pairs(), placeholders=report.placeholders,
        carried=report.carried, summary=summary, regressions=comparison.regressions,
        database=dict(database, rows_written=written))
    for kind in ("html", "json"):
        if paths[kind]:
            result[kind + "_path"] = paths[kind]
    return result


def store_run(module, db, db_error, rows, run_id, collected_at):
    """(rows written, or that would be in check mode; the database error): a failure to store is a warning too."""
    if db is None:
        return 0, db_error
    runs = _history.runs_of_rows(rows, run_id, collected_at)
    try:
        return (db.pending(runs) if module.check_mode else db.store(runs, title=module.params["title"])[1]), None
    except _db.DatabaseError as exc:
        module.warn("%s The run is not stored; the CSV and the report are written." % exc)
        return 0, str(exc)


def import_history(module, location, path):
    """Store the sessions of a madengine perf.csv as runs; a database that cannot be used fails the task."""
    runs = _history.imported_runs(_history.read_madengine_csv(path), "import:%s" % os.path.basename(path))
    if location.kind == "sqlite":
        _report.ensure_directory(module.params["output_dir"], check_mode=module.check_mode)
    db = _db.open_db(location, check_mode=module.check_mode)
    try:
        if module.check_mode:
            written = db.pending(runs)
            added = sum(1 for run in runs if not db.stored_hashes(run.run_id))
        else:
            added, written = db.store(runs, title="imported from %s" % path)
    finally:
        db.close()
    return dict(path=path, runs=[run.run_id for run in runs], runs_added=added, rows_written=written,
                database=location.display)
