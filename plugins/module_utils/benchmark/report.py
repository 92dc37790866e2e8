# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""Merging every node's result rows into one table, the merged CSV, the HTML report, the compact
summary published for AWX, and the plan for re-running failed or missing (model, node) pairs.

Everything here runs on the controller.  The output depends only on the input: the same rows give
byte-identical files (the only times shown are the ones the rows carry).

A *pair* is (model, node).  A model with ``multiple_results`` returns several rows named
``<model>_<row>``; given the list of selected model names, each row is traced back to its model by
exact name, else by the longest selected name followed by ``_``.  Without that list a row's model
is its own name.
"""

from __future__ import annotations

import hashlib
import io
import os
import traceback

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.history import (
    COMPARISON_COLUMNS,
    read_table_csv,
)
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.rows import (
    COLUMNS,
    STATUSES,
    header_for,
    make_row,
)
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError

try:
    import pandas as pd
except ImportError:  # pragma: no cover - exercised by ansible-test's import sanity test
    pd = None
    PANDAS_IMPORT_ERROR = traceback.format_exc()
else:
    PANDAS_IMPORT_ERROR = None

RERUN_STATUSES = ("FAILURE", "TIMEOUT")
NO_RESULTS = "no results from node %s (unreachable, or it failed before returning rows)"
NO_ROW = "node %s returned no row for this model"
REQUIRED = ("model", "status")
_COLUMN_SET = frozenset(COLUMNS)


class Pair(object):
    """Ordering helper: models in selection order, unknown ones after them in order of appearance."""

    def __init__(self, models):
        self.names = []
        self.index = {}
        for name in models:
            self.add(name)
        self._by_length = sorted(self.names, key=lambda n: (-len(n), n))
        self.known = frozenset(self.names)
        self._cache = {}

    def add(self, name):
        if name not in self.index:
            self.index[name] = len(self.names)
            self.names.append(name)

    def base(self, row_model):
        """The selected model a row belongs to (``dummy_multi`` for ``dummy_multi_3``)."""
        found = self._cache.get(row_model)
        if found is None:
            found = row_model
            if row_model not in self.known:
                for name in self._by_length:
                    if row_model.startswith(name + "_"):
                        found = name
                        break
            self._cache[row_model] = found
        return found


def model_names(models):
    """Names from a list of model names or model dicts (madengine_discover's ``models``)."""
    names = []
    for position, model in enumerate(models or (), 1):
        if isinstance(model, dict):
            name = model.get("name")
            if not isinstance(name, str) or not name:
                raise MadengineError("Entry %d of models has no 'name'." % position)
        elif isinstance(model, str) and model.strip():
            name = model.strip()
        else:
            raise MadengineError("Entry %d of models is %s; expected a model name or a model dict."
                                 % (position, _describe(model)))
        if name not in names:
            names.append(name)
    return names


def _describe(value):
    if value is None:
        return "null"
    return "a %s" % type(value).__name__


def normalise_results(results):
    """Check every node's rows; returns ({host: [rows]}, notes).

    ``results`` maps a node to its list of rows (``None`` or ``[]`` when it returned nothing).
    Rows get every schema column (missing ones empty, values as text); a row without ``model`` or
    ``status``, or with an unknown status, is an error naming the node and the row.
    """
    if results is None:
        return {}, []
    if not isinstance(results, dict):
        raise MadengineError("results must map each node to its list of rows, not %s." % _describe(results))
    by_host = {}
    notes = []
    for host, given in results.items():
        rows = [] if given is None else given
        if not isinstance(rows, (list, tuple)):
            raise MadengineError("The results of node %s are %s, not a list of rows." % (host, _describe(rows)))
        clean = []
        absent = set()
        for position, row in enumerate(rows, 1):
            if not isinstance(row, dict):
                raise MadengineError("Row %d of node %s is %s, not a mapping of column to value."
                                     % (position, host, _describe(row)))
            # Rows from madengine_run already hold every column as text: keep them as they are.
            missing = _COLUMN_SET.difference(row)
            if not missing and row["status"] in STATUSES and row["model"].strip() and all(
                    isinstance(value, str) for value in row.values()):
                fields = dict(row)
                if not fields["host"]:
                    fields["host"] = str(host)
                clean.append(fields)
                continue
            for column in REQUIRED:
                value = row.get(column)
                if value is None or (isinstance(value, str) and not value.strip()):
                    raise MadengineError("Row %d of node %s has no '%s' column." % (position, host, column))
            if row["status"] not in STATUSES:
                raise MadengineError("Row %d of node %s (model %s) has status %r; expected one of %s."
                                     % (position, host, row["model"], row["status"], ", ".join(STATUSES)))
            absent.update(missing)
            fields = dict((str(key), value) for key, value in row.items())
            if not fields.get("host"):
                fields["host"] = str(host)
            clean.append(make_row(**fields))
        if absent:
            notes.append("Rows of node %s lack the columns %s; they are left empty."
                         % (host, ", ".join(c for c in COLUMNS if c in absent)))
        by_host[str(host)] = clean
    return by_host, notes


def read_previous_csv(path):
    """(header, rows) of a merged results CSV; every problem is a sentence naming the file."""
    try:
        return read_table_csv(path, "Previous results CSV %s" % path, ("model", "status", "host"),
                              filled=("model", "host"))
    except MadengineError as exc:
        if " has no '" in str(exc) and str(exc).endswith(" column."):
            raise MadengineError("%s; it is not a merged results CSV of rocm.madengine." % str(exc)[:-1])
        raise


def rerun_plan(previous_rows, hosts=None, models=None, statuses=RERUN_STATUSES, matrix="all"):
    """Failed or missing (model, node) pairs of a previous merged CSV.

    A pair is re-run when any of its rows has one of ``statuses``, or (``matrix`` all) when it has no row
    at all.  With ``matrix`` shard not every model ran on every node: only pairs with rows are expected (a
    node's missing share has FAILURE rows in a merged CSV).  Expected nodes are ``hosts`` (default: the
    nodes in the CSV), expected models ``models`` (default: every model of the CSV).  Returns
    ({host: [model, ...]}, [{model, host, reason}]): every expected node is a key, with an empty list when
    nothing of it needs a re-run.
    """
    pairs = Pair(model_names(models))
    seen = {}
    failed = {}
    node_order = list(hosts or ())
    for row in previous_rows:
        host = row["host"]
        model = pairs.base(row["model"])
        if not hosts and host not in node_order:
            node_order.append(host)
        if not models:
            pairs.add(model)
        seen.setdefault(host, set()).add(model)
        if row["status"] in statuses and (model, host) not in failed:
            failed[(model, host)] = row["status"]
    plan = dict((host, []) for host in node_order)
    listed = []
    for host in node_order:
        for model in pairs.names:
            if (model, host) in failed:
                reason = failed[(model, host)]
            elif model not in seen.get(host, ()) and matrix == "all":
                reason = "missing"
            else:
                continue
            plan[host].append(model)
            listed.append(dict(model=model, host=host, reason=reason))
    return plan, listed


class Report(object):
    """The merged table and everything derived from it."""

    def __init__(self, header, rows, hosts, missing_hosts, placeholders, carried, notes, models):
        self.header = header
        self.rows = rows
        self.hosts = hosts
        self.missing_hosts = missing_hosts
        self.placeholders = placeholders
        self.carried = carried
        self.notes = notes
        self.models = models
        self._frame = None

    @property
    def frame(self):
        if self._frame is None:
            self._frame = pd.DataFrame.from_records(self.rows, columns=self.header).fillna("")
        return self._frame

    def forget_frame(self):
        """The rows changed (comparison columns filled in): the frame is made again when next needed."""
        self._frame = None

    def failed_pairs(self):
        seen = []
        for row in self.rows:
            if row["status"] in RERUN_STATUSES:
                key = (row["model"], row["host"], row["status"])
                if key not in seen:
                    seen.append(key)
        return [dict(model=m, host=h, status=s) for m, h, s in seen]

    def to_csv(self):
        buffer = io.StringIO()
        self.frame.to_csv(buffer, index=False, lineterminator="\n")
        return buffer.getvalue().encode("utf-8")

    def counts(self):
        counts = dict((status, 0) for status in STATUSES)
        if self.rows:
            for status, number in self.frame["status"].value_counts().items():
                counts[status] = int(number)
        return counts


def require_pandas():
    if pd is None:
        raise MadengineError("The pandas Python library is needed on the controller to merge results.")


def expected_pairs(assignments, hosts, names):
    """``{host: [model, ...]}``: the models each expected node was to run (``assignments``, else every model)."""
    if assignments is None:
        return dict((host, list(names)) for host in hosts)
    if not isinstance(assignments, dict):
        raise MadengineError("assignments must map each node to the list of models it runs.")
    expected = {}
    for host, given in assignments.items():
        expected[str(host)] = model_names(given if isinstance(given, (list, tuple)) else [given])
    return expected


def merge(results, hosts=None, models=None, previous_rows=None, fill_missing=True, rerun_statuses=RERUN_STATUSES,
          assignments=None, matrix="all", host_errors=None):
    """Merge every node's rows (with pandas) into one ordered table.

    ``hosts`` are the nodes expected to return rows (default: those in ``results``); a node with no
    rows is *missing*.  ``models`` are the selected models: with them, every expected pair without a
    row gets a FAILURE row saying so (``fill_missing``), and rows are ordered by model within a node.
    The expected pairs are every model on every node, or ``assignments`` ({node: [model, ...]}) when not
    every node ran every model (a shard, a re-run); a node with nothing assigned is not missing.
    ``previous_rows`` (from a previous merged CSV) are carried over for the pairs the new results do
    not cover, which is how a re-run of failed pairs yields a complete table again; a node is then
    missing only when the re-run plan (``rerun_statuses``, ``matrix``) gave it something to run.
    ``host_errors`` (node -> why it returned no rows) goes into the error of a missing node's FAILURE rows.
    """
    require_pandas()
    by_host, notes = normalise_results(results)
    names = model_names(models)
    pairs = Pair(names)
    order = list(hosts or ())
    for host in sorted(by_host):
        if host not in order:
            order.append(host)
    planned = None
    if previous_rows is not None:
        planned, _pairs = rerun_plan(previous_rows, hosts=order, models=names, statuses=rerun_statuses,
                                     matrix=matrix)
    expected = expected_pairs(assignments, hosts or sorted(by_host), names)
    missing_hosts = [host for host in order
                     if not by_host.get(host) and (planned is None or planned.get(host, True))
                     and (assignments is None or expected.get(host))]

    fresh = {}
    covered = set()
    for host in order:
        for row in by_host.get(host, ()):
            node = row["host"] or host
            fresh.setdefault(node, []).append(row)
            covered.add((pairs.base(row["model"]), node))
    carried = 0
    for row in previous_rows or ():
        key = (pairs.base(row["model"]), row["host"])
        if key not in covered:
            fresh.setdefault(row["host"], []).append(row)
            carried += 1
    for node in sorted(fresh):
        if node not in order:
            order.append(node)

    placeholders = 0
    if fill_missing and names:
        for host in (hosts or sorted(by_host)):
            have = set(pairs.base(row["model"]) for row in fresh.get(host, ()))
            for name in expected.get(host, ()):
                if name not in have:
                    reason = (NO_RESULTS if host in missing_hosts else NO_ROW) % host
                    if host in missing_hosts and (host_errors or {}).get(host):
                        reason = "no results from node %s: %s" % (host, host_errors[host])
                    fresh.setdefault(host, []).append(make_row(model=name, host=host, status="FAILURE",
                                                               error=reason))
                    placeholders += 1

    rows = []
    for host in order:
        node_rows = fresh.get(host, [])
        if names:
            rank = dict((id(row), (pairs.index.get(pairs.base(row["model"]), len(names)), n))
                        for n, row in enumerate(node_rows))
            node_rows = sorted(node_rows, key=lambda r: rank[id(r)])
        rows.extend(node_rows)
    # madengine's columns, the provenance columns, the comparison columns, then the extras of multiple_results
    header = header_for(rows, COLUMNS + COMPARISON_COLUMNS)
    return Report(header, rows, order, missing_hosts, placeholders, carried, notes, names)


def default_run_id(report, csv_bytes):
    ids = sorted(set(row.get("run_id", "") for row in report.rows) - set([""]))
    if len(ids) == 1:
        return ids[0]
    return "merged-" + hashlib.sha256(csv_bytes).hexdigest()[:12]


def summary(report, run_id, csv_path=None, html_path=None, max_failed=20, comparison=None, database=None,
            json_path=None):
    """The compact summary published with set_stats: counts and names, never the rows themselves."""
    failed = report.failed_pairs()
    regressions = comparison.regressions if comparison is not None else []
    verdicts = dict(comparison.verdicts) if comparison is not None else dict(
        (v, 0) for v in ("regressed", "improved", "unchanged", "no baseline"))
    return dict(
        run_id=run_id,
        rows=len(report.rows),
        nodes=len(report.hosts),
        hosts=list(report.hosts),
        counts=report.counts(),
        failed=["%s@%s" % (p["model"], p["host"]) for p in failed[:max_failed]],
        failed_total=len(failed),
        missing_nodes=list(report.missing_hosts),
        verdicts=verdicts,
        regressed=["%s@%s %s%%" % (r["model"], r["host"], r["relative_change"]) for r in regressions[:max_failed]],
        regressed_total=len(regressions),
        database=database,
        csv=csv_path,
        html=html_path,
        json=json_path,
    )


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------

def ensure_directory(path, check_mode=False):
    """Create the output directory if needed; True when it had to be created."""
    if os.path.isdir(path):
        return False
    if os.path.exists(path):
        raise MadengineError("Output directory %s exists and is not a directory." % path)
    if not check_mode:
        try:
            os.makedirs(path)
        except OSError as exc:
            raise MadengineError("Cannot create output directory %s: %s." % (path, exc.strerror or exc))
    return True
