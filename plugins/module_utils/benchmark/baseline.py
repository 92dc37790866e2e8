# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""Baselines, relative changes and verdicts of a run's rows, with pandas, on the controller.

A SUCCESS row with a figure is compared with its baseline: by default the latest earlier run holding the same
series (model, arguments, metric, GPU product and architecture; and node with the ``node`` scope), whose value
is the median of that run's rows of the series; or a pinned baseline (a stored run, or a CSV file). Stored rows
without a GPU product (imported madengine perf.csv files do not record it) stand for every product of their
architecture. ``relative_change`` is in percent; whether a rise is good comes from the metric's direction.
"""

from __future__ import annotations

import re

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.history import figure
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError

try:
    import pandas as pd
except ImportError:  # pragma: no cover - exercised by ansible-test's import sanity test
    pd = None

VERDICTS = ("regressed", "improved", "unchanged", "no baseline")
DEFAULT_THRESHOLD = 5.0
_NEWEST = 2 ** 62  # the position of a run that is not stored yet: after every stored run of the same start time

# Direction of a metric by its name, first match wins; a name that matches nothing is a throughput (higher).
DIRECTION_RULES = (
    (re.compile(r"per_?sec|per_?second|/s(ec)?\b|_ps$|throughput|flops|\bfps\b|qps|tps\b|bandwidth|samples|"
                r"tokens|images|sentences|items|requests|speedup|accuracy|score"), "higher"),
    (re.compile(r"latency|time|duration|seconds?\b|secs?\b|(^|_)(ms|us|ns|s)$|ttft|tpot|itl|loss|memory|error"),
     "lower"),
)
_SERIES = ("model", "args", "gpu_architecture", "metric")
_FRAME_COLUMNS = ("run_id", "order", "host", "model", "args", "gpu_product", "gpu_architecture", "metric",
                  "performance")


def direction(metric, overrides=None):
    """``higher`` or ``lower``: which way is better for ``metric`` (``overrides`` maps names to either)."""
    if overrides and metric in overrides:
        return overrides[metric]
    name = (metric or "").lower()
    for pattern, way in DIRECTION_RULES:
        if pattern.search(name):
            return way
    return "higher"


class Policy(object):
    """How rows are compared: scope (``gpu_class`` or ``node``), thresholds in percent, metric directions."""

    def __init__(self, scope="gpu_class", thresholds=None, directions=None, trend_runs=10):
        thresholds = thresholds or {}
        self.scope = scope
        self.by_host = scope == "node"
        self.default = _percent(thresholds.get("default"), "thresholds.default", DEFAULT_THRESHOLD)
        self.models = _percents(thresholds.get("models"), "thresholds.models")
        self.architectures = _percents(thresholds.get("gpu_architectures"), "thresholds.gpu_architectures")
        self.directions = {}
        for metric, way in (directions or {}).items():
            if way not in ("higher", "lower"):
                raise MadengineError("metric_directions.%s is %r; expected higher or lower." % (metric, way))
            self.directions[metric] = way
        if not isinstance(trend_runs, int) or trend_runs < 1:
            raise MadengineError("trend_runs is %r; it must be 1 or more." % (trend_runs,))
        self.trend_runs = trend_runs

    def threshold(self, model, architecture, base_model=None):
        """Percent: the model's own (also through its base model for multiple_results rows), else the GPU
        architecture's, else the default."""
        for name in (model, base_model):
            if name in self.models:
                return self.models[name]
        return self.architectures.get(architecture, self.default)


def _percent(value, what, default=None):
    if value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if not number >= 0:
        raise MadengineError("%s is %r; a threshold is a percentage, 0 or more." % (what, value))
    return number


def _percents(values, what):
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise MadengineError("%s must map names to percentages." % what)
    return dict((str(k), _percent(v, "%s.%s" % (what, k))) for k, v in values.items())


def history_frame(records, runs_by_pk):
    """The DataFrame of stored rows or series medians (``results_db`` tuples), with their run's id and order."""
    frame = pd.DataFrame.from_records(records, columns=["run_pk", "host", "model", "args", "gpu_product",
                                                        "gpu_architecture", "metric", "performance"])
    frame["run_id"] = frame["run_pk"].map(dict((pk, run[0]) for pk, run in runs_by_pk.items()))
    frame["order"] = frame["run_pk"].map(dict((pk, run[1]) for pk, run in runs_by_pk.items())).astype("int64")
    frame["performance"] = frame["performance"].astype("float64")
    return frame.drop(columns=["run_pk"])


def csv_frame(rows, path, by_host):
    """A pinned baseline CSV's SUCCESS rows as a history frame; its absent columns match anything."""
    frame = pd.DataFrame.from_records(rows)
    if "status" in frame:
        frame = frame[frame["status"] == "SUCCESS"]
    if by_host and "host" not in frame and "machine_name" in frame:
        frame = frame.rename(columns={"machine_name": "host"})
    frame = frame.assign(performance=pd.to_numeric(frame.get("performance"), errors="coerce"),
                         run_id="csv:%s" % path, order=0)
    frame = frame[frame["performance"].notna()]
    return frame[[c for c in _FRAME_COLUMNS if c in frame]]


class Sources(object):
    """What the rows are compared with: the baseline rows, the rows of the trend charts (both DataFrames with
    _FRAME_COLUMNS; a column a pinned CSV lacks matches anything), the order of every run and the run of each
    report row."""

    def __init__(self, baseline, trend, orders, run_ids, newest, pinned=None, collected=None):
        self.baseline = baseline
        self.trend = trend
        self.orders = orders
        self.run_ids = run_ids
        self.newest = newest  # the newest run being collected (rows of older runs were carried over)
        self.pinned = pinned  # None (the latest earlier run), or a description of the pinned baseline
        # every run being collected: one point of the trend charts, never each other's baseline
        self.collected = collected if collected is not None else set([newest])


class Comparison(object):
    """What comparing a report's rows found: the counts per verdict and the regressed rows, worst first."""

    def __init__(self, sources, policy):
        self.sources = sources
        self.policy = policy
        self.verdicts = dict((v, 0) for v in VERDICTS)
        self.regressions = []


def gather(db, rows, run_ids, collected_at, policy, baseline_run=None, baseline_csv=None, collected=None):
    """The Sources of a report's rows: ``db`` (a ResultsDB, or None without a database), ``run_ids`` (the run of
    each row), ``baseline_run`` (a stored run id) or ``baseline_csv`` ((path, rows)) to pin the baseline.

    ``collected`` are the runs being collected (default: the newest run of the report): nodes that ran with
    their own run ids in one collection are compared with what came before all of them, never with each other.
    Older runs of the report are rows carried over from a previous CSV, compared with the run before their own.
    A stored run's rows come from the database, the rows of a run that is not stored (yet) from the report."""
    started = {}
    for row, run_id in zip(rows, run_ids):
        time = row.get("start_time") or ""
        if run_id not in started or (time and (not started[run_id] or time < started[run_id])):
            started[run_id] = time
    report_runs = dict((run_id, time or collected_at) for run_id, time in started.items())
    stored = db.runs() if db is not None else []
    orders, keys = run_orders(stored, report_runs)
    newest = max(report_runs, key=lambda rid: keys[rid]) if report_runs else None
    current = set(collected or ()) & set(report_runs) or set([newest]) - set([None])
    first = min(current, key=lambda rid: keys[rid]) if current else None
    for run_id in current:  # the collection is one run for the order: none of its runs is before another
        orders[run_id], keys[run_id] = orders[first], keys[first]
    by_pk = dict((pk, (run_id, orders[run_id])) for pk, run_id, _started, _source in stored)
    models = set(row["model"] for row in rows)
    known = set(run_id for _pk, run_id, _started, _source in stored)
    unstored = _report_rows(rows, run_ids, orders, set(report_runs) - known - current)
    medians = []
    if db is not None and first is not None:
        medians = db.series_medians(models, keys[first], policy.trend_runs)
    trend = pd.concat([history_frame(medians, by_pk), unstored], ignore_index=True)
    if baseline_run:
        return Sources(history_frame(db.run_rows(baseline_run), by_pk), trend, orders, run_ids, newest,
                       pinned="run %s" % baseline_run, collected=current)
    if baseline_csv:
        return Sources(csv_frame(baseline_csv[1], baseline_csv[0], policy.by_host), trend, orders, run_ids, newest,
                       pinned="CSV %s" % baseline_csv[0], collected=current)
    records = []
    for run_id in (set(report_runs) - current) | set([first]) if db is not None and first is not None else ():
        # the run before each run of the report (rows carried over from an earlier run have their own)
        if policy.by_host:
            records.extend(db.node_rows(models, keys[run_id]))
        elif run_id == first:
            records.extend(medians)
        else:
            records.extend(db.series_medians(models, keys[run_id], 1))
    baseline = pd.concat([history_frame(records, by_pk), unstored], ignore_index=True)
    return Sources(baseline, trend, orders, run_ids, newest, collected=current)


def _report_rows(rows, run_ids, orders, wanted):
    """A history frame of the report's SUCCESS rows with a figure that belong to the ``wanted`` runs."""
    records = [(run_ids[n], orders[run_ids[n]], r["host"], r["model"], r.get("args", ""), r.get("gpu_product", ""),
                r.get("gpu_architecture", ""), r.get("metric", ""), figure(r["performance"]))
               for n, r in enumerate(rows) if run_ids[n] in wanted and r["status"] == "SUCCESS"]
    frame = pd.DataFrame.from_records(records, columns=list(_FRAME_COLUMNS))
    frame["order"] = frame["order"].astype("int64")
    frame["performance"] = frame["performance"].astype("float64")
    return frame[frame["performance"].notna()]


def run_orders(stored_runs, report_runs):
    """{run_id: order}: stored runs (pk, run_id, started) and the report's runs ({run_id: started}) sorted by
    first start time, then by when they were stored (unstored runs last)."""
    keys = dict((run_id, (started or "", pk)) for pk, run_id, started, _source in stored_runs)
    for run_id, started in report_runs.items():
        keys.setdefault(run_id, (started or "", _NEWEST))
    ordered = sorted(keys, key=lambda rid: keys[rid])
    return dict((rid, position) for position, rid in enumerate(ordered)), keys


def compare(report, sources, policy, base_model=None):
    """Fill ``relative_change``, ``baseline_performance``, ``baseline_run_id`` and ``verdict`` of every row of
    ``report`` (SUCCESS rows get a verdict; the others none) and return the Comparison. ``base_model`` maps a
    row's model to its selected model (for the thresholds of multiple_results rows)."""
    result = Comparison(sources, policy)
    current = _current_frame(report.rows, sources.run_ids, sources.orders)
    best = _baselines(current, sources.baseline, policy, sources.pinned)
    matched = dict((int(pos), (float(value), run)) for pos, value, run in
                   zip(best["pos"], best["performance_b"], best["run_id_b"]))
    ways, limits = {}, {}
    for position, row in enumerate(report.rows):
        for column in ("relative_change", "baseline_performance", "baseline_run_id", "verdict"):
            row[column] = ""
        if row["status"] != "SUCCESS":
            continue
        value = figure(row["performance"])
        found = matched.get(position)
        if value is None or found is None or found[0] == 0:
            row["verdict"] = "no baseline"
            result.verdicts["no baseline"] += 1
            continue
        base, base_run = found
        change = round(100.0 * (value - base) / abs(base), 6)
        if row["metric"] not in ways:
            ways[row["metric"]] = direction(row["metric"], policy.directions)
        gain = change if ways[row["metric"]] == "higher" else -change
        key = (row["model"], row["gpu_architecture"])
        if key not in limits:
            limits[key] = policy.threshold(key[0], key[1], base_model(key[0]) if base_model else None)
        limit = limits[key]
        verdict = "regressed" if gain <= -limit and gain < 0 else "improved" if gain >= limit and gain > 0 \
            else "unchanged"
        row.update(relative_change="%.2f" % change, baseline_performance=repr(base), baseline_run_id=base_run,
                   verdict=verdict)
        result.verdicts[verdict] += 1
        if verdict == "regressed":
            result.regressions.append(dict(model=row["model"], host=row["host"], gpu_product=row["gpu_product"],
                                           gpu_architecture=row["gpu_architecture"], metric=row["metric"],
                                           performance=row["performance"], baseline=repr(base),
                                           baseline_run_id=base_run, relative_change=row["relative_change"],
                                           threshold=limit, log_path=row["log_path"]))
    result.regressions.sort(key=lambda r: (-abs(float(r["relative_change"])), r["model"], r["host"]))
    report.forget_frame()
    return result


def _current_frame(rows, run_ids, orders):
    frame = pd.DataFrame.from_records(
        [(n, r["model"], r.get("args", ""), r.get("gpu_product", ""), r.get("gpu_architecture", ""),
          r.get("metric", ""), r["host"], figure(r["performance"]) if r["status"] == "SUCCESS" else None,
          orders[run_ids[n]]) for n, r in enumerate(rows)],
        columns=["pos", "model", "args", "gpu_product", "gpu_architecture", "metric", "host", "performance", "order"])
    return frame[frame["performance"].notna()]


def _baselines(current, history, policy, pinned):
    """One line per matched current row: pos, performance_b, run_id_b."""
    empty = pd.DataFrame({"pos": [], "performance_b": [], "run_id_b": []})
    if history is None or history.empty or current.empty:
        return empty
    keys = [c for c in _SERIES + (("host",) if policy.by_host else ()) if c in history]
    group = keys + [c for c in ("gpu_product",) if c in history] + ["order", "run_id"]
    medians = history.groupby(group, sort=False)["performance"].median().reset_index().rename(
        columns={"gpu_product": "gpu_product_b", "order": "order_b", "run_id": "run_id_b",
                 "performance": "performance_b"})
    candidates = current.merge(medians, on=keys)
    if "gpu_product_b" in candidates:
        exact = candidates["gpu_product_b"] == candidates["gpu_product"]
        candidates = candidates.assign(exact=exact)[exact | (candidates["gpu_product_b"] == "")]
    else:
        candidates = candidates.assign(exact=True)
    if pinned is None:
        candidates = candidates[candidates["order_b"] < candidates["order"]]
    if candidates.empty:
        return empty
    best = candidates.sort_values(["pos", "order_b", "exact"]).groupby("pos").tail(1)
    return best[["pos", "performance_b", "run_id_b"]]
