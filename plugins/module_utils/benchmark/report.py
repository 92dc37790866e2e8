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

import csv
import hashlib
import html
import io
import math
import os
import traceback

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

# Columns shown in the HTML table of all rows.
_HTML_COLUMNS = ("model", "host", "status", "performance", "metric", "gpu_architecture", "gpu_product",
                 "test_duration", "start_time", "error")


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
    what = "Previous results CSV %s" % path
    if not os.path.exists(path):
        raise MadengineError("%s does not exist." % what)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise MadengineError("Cannot read previous results CSV %s: %s." % (path, exc.strerror or exc))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MadengineError("%s is not UTF-8 text (byte %d)." % (what, exc.start))
    if not text.strip():
        raise MadengineError("%s is empty." % what)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
        missing = [c for c in ("model", "status", "host") if c not in header]
        if missing:
            raise MadengineError("%s has no %s column; it is not a merged results CSV of rocm.madengine."
                                 % (what, " or ".join("'%s'" % c for c in missing)))
        rows = []
        for record in reader:
            if not record:
                continue
            if len(record) != len(header):
                raise MadengineError("%s is malformed: line %d has %d field%s where the header has %d."
                                     % (what, reader.line_num, len(record), "" if len(record) == 1 else "s",
                                        len(header)))
            row = dict(zip(header, record))
            if row["status"] not in STATUSES:
                raise MadengineError("%s is malformed: line %d has status %r; expected one of %s."
                                     % (what, reader.line_num, row["status"], ", ".join(STATUSES)))
            if not row["model"] or not row["host"]:
                raise MadengineError("%s is malformed: line %d has no %s."
                                     % (what, reader.line_num, "model" if not row["model"] else "host"))
            rows.append(row)
    except csv.Error as exc:
        raise MadengineError("%s is malformed: line %d: %s." % (what, reader.line_num, exc))
    return header, rows


def rerun_plan(previous_rows, hosts=None, models=None, statuses=RERUN_STATUSES):
    """Failed or missing (model, node) pairs of a previous merged CSV.

    A pair is re-run when any of its rows has one of ``statuses``, or when it has no row at all.
    Expected nodes are ``hosts`` (default: the nodes in the CSV), expected models ``models``
    (default: every model of the CSV).  Returns ({host: [model, ...]}, [{model, host, reason}]):
    every expected node is a key, with an empty list when nothing of it needs a re-run.
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
            elif model not in seen.get(host, ()):
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


def merge(results, hosts=None, models=None, previous_rows=None, fill_missing=True, rerun_statuses=RERUN_STATUSES,
          host_errors=None):
    """Merge every node's rows (with pandas) into one ordered table.

    ``hosts`` are the nodes expected to return rows (default: those in ``results``); a node with no
    rows is *missing*.  ``models`` are the selected models: with them, every expected pair without a
    row gets a FAILURE row saying so (``fill_missing``), and rows are ordered by model within a node.
    ``previous_rows`` (from a previous merged CSV) are carried over for the pairs the new results do
    not cover, which is how a re-run of failed pairs yields a complete table again; a node is then
    missing only when the re-run plan (``rerun_statuses``) gave it something to run. ``host_errors``
    (node -> why it returned no rows) goes into the error of a missing node's FAILURE rows.
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
        planned, _pairs = rerun_plan(previous_rows, hosts=order, models=names, statuses=rerun_statuses)
    missing_hosts = [host for host in order
                     if not by_host.get(host) and (planned is None or planned.get(host, True))]

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
            for name in names:
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
    header = header_for(rows)
    return Report(header, rows, order, missing_hosts, placeholders, carried, notes, names)


def default_run_id(report, csv_bytes):
    ids = sorted(set(row.get("run_id", "") for row in report.rows) - set([""]))
    if len(ids) == 1:
        return ids[0]
    return "merged-" + hashlib.sha256(csv_bytes).hexdigest()[:12]


def summary(report, run_id, csv_path=None, html_path=None, max_failed=20):
    """The compact summary published with set_stats: counts and names, never the rows themselves."""
    failed = report.failed_pairs()
    return dict(
        run_id=run_id,
        rows=len(report.rows),
        nodes=len(report.hosts),
        counts=report.counts(),
        failed=["%s@%s" % (p["model"], p["host"]) for p in failed[:max_failed]],
        failed_total=len(failed),
        missing_nodes=list(report.missing_hosts),
        csv=csv_path,
        html=html_path,
    )


# ---------------------------------------------------------------------------------------------
# HTML report
# ---------------------------------------------------------------------------------------------

_STATUS_COLOURS = {"SUCCESS": "#2e7d32", "FAILURE": "#c62828", "TIMEOUT": "#ef6c00", "SKIPPED": "#757575"}

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em;color:#212121}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
.SUCCESS{color:#2e7d32}.FAILURE{color:#c62828}.TIMEOUT{color:#ef6c00}.SKIPPED{color:#757575}
.missing{background:#ffebee}.plot{display:inline-block;margin:0 1.5em 1.5em 0;vertical-align:top}
.meta{color:#555}
"""


def _esc(value):
    return html.escape("" if value is None else str(value), quote=True)


def _number(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    if math.isnan(value) or math.isinf(value):
        return None
    return value


def _fmt(value):
    if value is None:
        return ""
    return "%.6g" % value


def _table(headings, rows, numeric=(), row_classes=None):
    out = ["<table><thead><tr>"]
    out.extend("<th>%s</th>" % _esc(h) for h in headings)
    out.append("</tr></thead><tbody>")
    for index, row in enumerate(rows):
        cls = row_classes[index] if row_classes else ""
        out.append('<tr class="%s">' % cls if cls else "<tr>")
        for position, cell in enumerate(row):
            if headings[position] == "status":
                out.append('<td class="%s">%s</td>' % (_esc(cell), _esc(cell)))
            elif position in numeric:
                out.append('<td class="num">%s</td>' % _esc(cell))
            else:
                out.append("<td>%s</td>" % _esc(cell))
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _status_bar(counts, total):
    """One stacked horizontal bar of the status counts."""
    width, height = 600, 22
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" '
             'aria-label="rows per status">' % (width, height, width, height)]
    x = 0.0
    for status in STATUSES:
        number = counts.get(status, 0)
        if not number or not total:
            continue
        w = width * number / total
        parts.append('<rect x="%.2f" y="0" width="%.2f" height="%d" fill="%s"><title>%s: %d</title></rect>'
                     % (x, w, height, _STATUS_COLOURS[status], status, number))
        x += w
    parts.append("</svg>")
    return "".join(parts)


def _bar_chart(model, metric, bars):
    """Horizontal bars, one per node: ``bars`` is a list of (label, status, value or None)."""
    label_w, plot_w, value_w, bar_h, gap, top = 170, 320, 90, 14, 4, 22
    height = top + len(bars) * (bar_h + gap) + 6
    width = label_w + plot_w + value_w
    top_value = max([entry[2] for entry in bars if entry[2] is not None and entry[2] > 0] or [1.0])
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" '
           'aria-label="%s">' % (width, height, width, height, _esc("%s per node" % model)),
           '<text x="0" y="14" font-size="13" font-weight="bold">%s</text>' % _esc(model),
           '<text x="%d" y="14" font-size="11" text-anchor="end" fill="#555">%s</text>'
           % (width, _esc(metric or ""))]
    for index, (label, status, value) in enumerate(bars):
        y = top + index * (bar_h + gap)
        short = label if len(label) <= 24 else label[:23] + "\u2026"
        out.append('<text x="%d" y="%d" font-size="11" text-anchor="end">%s<title>%s</title></text>'
                   % (label_w - 6, y + bar_h - 3, _esc(short), _esc(label)))
        if value is not None and status == "SUCCESS":
            w = max(plot_w * max(value, 0.0) / top_value, 1.0)
            out.append('<rect x="%d" y="%d" width="%.2f" height="%d" fill="%s"><title>%s: %s</title></rect>'
                       % (label_w, y, w, bar_h, _STATUS_COLOURS["SUCCESS"], _esc(label), _fmt(value)))
            out.append('<text x="%.2f" y="%d" font-size="11">%s</text>' % (label_w + w + 4, y + bar_h - 3,
                                                                           _fmt(value)))
        else:
            out.append('<text x="%d" y="%d" font-size="11" fill="%s">%s</text>'
                       % (label_w + 2, y + bar_h - 3, _STATUS_COLOURS.get(status, "#000"), _esc(status)))
    out.append("</svg>")
    return "".join(out)


def to_html(report, title, run_id):
    """A self-contained HTML page: summary, status counts, nodes, models, one chart per model, rows."""
    frame = report.frame
    counts = report.counts()
    total = len(report.rows)
    starts = sorted(r["start_time"] for r in report.rows if r["start_time"])
    ends = sorted(r["end_time"] for r in report.rows if r["end_time"])
    span = "%s \u2013 %s" % (starts[0], ends[-1]) if starts and ends else "not recorded"
    out = ['<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
           "<title>%s</title><style>%s</style></head><body>" % (_esc(title), _CSS),
           "<h1>%s</h1>" % _esc(title),
           '<p class="meta">run %s &middot; %d rows from %d nodes &middot; %s</p>'
           % (_esc(run_id), total, len(report.hosts), _esc(span))]

    out.append("<h2>Status</h2>")
    out.append(_table(["status", "rows"], [(s, counts[s]) for s in STATUSES], numeric=(1,)))
    out.append(_status_bar(counts, total))
    if report.missing_hosts:
        out.append('<p class="FAILURE">No results from: %s</p>' % _esc(", ".join(report.missing_hosts)))

    out.extend(_nodes_section(report, frame, total))
    out.extend(_models_section(report, frame, total))

    # Failures and all rows.
    problems = [r for r in report.rows if r["status"] != "SUCCESS"]
    out.append("<h2>Failures and skips (%d)</h2>" % len(problems))
    if problems:
        out.append(_table(["model", "host", "status", "error", "log_path"],
                          [(r["model"], r["host"], r["status"], r["error"], r["log_path"]) for r in problems]))
    out.append("<h2>All rows (%d)</h2>" % total)
    out.append("<details><summary>show</summary>")
    out.append(_table(list(_HTML_COLUMNS), [tuple(r.get(c, "") for c in _HTML_COLUMNS) for r in report.rows],
                      numeric=(3, 7)))
    out.append("</details></body></html>\n")
    return "".join(out).encode("utf-8")


def _nodes_section(report, frame, total):
    """The nodes table: rows per status, GPU product and architecture of each node."""
    out = ["<h2>Nodes</h2>"]
    per_node = pd.crosstab(frame["host"], frame["status"]) if total else None
    first = {}
    for row in report.rows:
        known = first.setdefault(row["host"], ["", ""])
        known[0] = known[0] or row["gpu_product"]
        known[1] = known[1] or row["gpu_architecture"]
    node_rows, classes = [], []
    for host in report.hosts:
        if per_node is not None and host in per_node.index:
            line = per_node.loc[host]
            by_status = tuple(int(line.get(s, 0)) for s in STATUSES)
        else:
            by_status = (0,) * len(STATUSES)
        node_rows.append((host, sum(by_status)) + by_status + tuple(first.get(host, ("", ""))))
        classes.append("missing" if host in report.missing_hosts else "")
    out.append(_table(["node", "rows"] + list(STATUSES) + ["gpu_product", "gpu_architecture"], node_rows,
                      numeric=(1, 2, 3, 4, 5), row_classes=classes))
    return out


def _models_section(report, frame, total):
    """One line per model (statistics of its successful rows) and one chart each."""
    out = ["<h2>Models across nodes</h2>"]
    model_rows, charts = [], []
    if total:
        values = pd.to_numeric(frame["performance"], errors="coerce").where(frame["status"] == "SUCCESS")
        stats = values.groupby(frame["model"], sort=False).agg(["count", "min", "median", "max"])
        by_model = {}
        for row in report.rows:
            by_model.setdefault(row["model"], []).append(row)
        for model, rows in by_model.items():
            count, low, mid, high = stats.loc[model, ["count", "min", "median", "max"]]
            low, mid, high = (None if math.isnan(v) else float(v) for v in (low, mid, high))
            spread = "%.1f%%" % (100.0 * (high - low) / mid) if mid else ""
            metric = _first(r["metric"] for r in rows)
            failing = sorted(set(r["host"] for r in rows if r["status"] in RERUN_STATUSES))
            model_rows.append((model, metric, "%d/%d" % (int(count), len(rows)), _fmt(low), _fmt(mid), _fmt(high),
                               spread, ", ".join(failing)))
            bars, seen = [], {}
            for row in rows:
                host = row["host"]
                seen[host] = seen.get(host, 0) + 1
                label = host if seen[host] == 1 else "%s #%d" % (host, seen[host])
                bars.append((label, row["status"], _number(row["performance"])))
            charts.append('<div class="plot">%s</div>' % _bar_chart(model, metric, bars))
    out.append(_table(["model", "metric", "ok/rows", "min", "median", "max", "spread", "failed on"], model_rows,
                      numeric=(2, 3, 4, 5, 6)))
    out.append("<h2>Performance per model</h2>")
    out.extend(charts or ["<p>No rows.</p>"])
    return out


def _first(series):
    for value in series:
        if value:
            return value
    return ""


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
