# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""The HTML report: pandas prepares the figures, the Jinja2 template of ``report_template`` lays them out.

Grouped by GPU class (product and architecture); per model the value, baseline, change and verdict with the
regressions first and a trend chart over the last runs; every row linked to its run log; tables that sort and
filter in the page. The same rows and history give the same bytes.
"""

from __future__ import annotations

import math
import os
import re
import traceback
from urllib.parse import quote

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.baseline import VERDICTS, direction
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.report_template import (
    LOG_LINK,
    ROW_LINE,
    SCRIPT,
    STYLE,
    TEMPLATE,
)
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.rows import STATUSES
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError

try:
    import jinja2
except ImportError:  # pragma: no cover - exercised by ansible-test's import sanity test
    jinja2 = None
    JINJA2_IMPORT_ERROR = traceback.format_exc()
else:
    JINJA2_IMPORT_ERROR = None

try:
    import pandas as pd
except ImportError:  # pragma: no cover - exercised by ansible-test's import sanity test
    pd = None

LOG_FIELDS = ("host", "log_path", "log_name", "run_id", "model")
_SERIES = ["gpu_product", "gpu_architecture", "model", "args", "metric"]
# Order of a model line in its GPU class: regressions first.
_RANK = {"regressed": 0, "FAILURE": 1, "TIMEOUT": 1, "improved": 2, "unchanged": 3, "no baseline": 4, "SKIPPED": 5}
_CHART_W, _CHART_H, _PAD = 170, 38, 4
_compiled = {}
_HTML_SPECIAL = re.compile("[&<>'\"]")


def _template():
    if "page" not in _compiled:
        env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
        _compiled["page"] = env.from_string(TEMPLATE)
    return _compiled["page"]


def _fmt(value):
    if value is None or math.isnan(value):
        return ""
    return "%.6g" % value


def gpu_label(product, arch):
    if product and arch:
        return "%s (%s)" % (product, arch)
    return product or arch or "no GPU recorded"


def log_linker(log_url, output_dir):
    """A function giving a row's log link: ``log_url`` formatted with the row's fields, else the log path
    (relative when the log lies under the report's directory)."""
    if log_url:
        try:
            log_url.format(**dict((name, "x") for name in LOG_FIELDS))
        except (KeyError, IndexError, ValueError) as exc:
            raise MadengineError("log_url %r is not a valid template (%s); it may use %s."
                                 % (log_url, exc, ", ".join("{%s}" % f for f in LOG_FIELDS)))
    prefix = os.path.join(output_dir, "") if output_dir else None

    def link(row):
        path = row.get("log_path") or ""
        if not path:
            return ""
        if log_url:
            return log_url.format(host=row.get("host", ""), log_path=path, log_name=os.path.basename(path),
                                  run_id=row.get("run_id", ""), model=row.get("model", ""))
        if prefix and path.startswith(prefix):
            return quote(path[len(prefix):])
        return "file://" + quote(path)
    return link


def to_html(report, title, run_id, comparison=None, database=None, log_url="", output_dir=None, trend_runs=10):
    """The report page as UTF-8 bytes."""
    link = log_linker(log_url, output_dir)
    frame = _row_frame(report)
    counts = report.counts()
    verdicts = comparison.verdicts if comparison is not None else dict((v, 0) for v in VERDICTS)
    starts = sorted(r["start_time"] for r in report.rows if r["start_time"])
    ends = sorted(r["end_time"] for r in report.rows if r["end_time"])
    page = _template().render(
        title=title, run_id=run_id, rows_total=len(report.rows), node_count=len(report.hosts),
        span="%s \u2013 %s" % (starts[0], ends[-1]) if starts and ends else "times not recorded",
        baseline=_baseline_text(comparison), database=database or {"location": "", "error": None},
        counts=[(s, counts[s]) for s in STATUSES], verdicts=[(v, verdicts[v]) for v in VERDICTS],
        missing_nodes=report.missing_hosts, regressions=_regressions(comparison, link), trend_runs=trend_runs,
        classes=_classes(report, frame, comparison, link, trend_runs), nodes=_nodes(report, frame),
        statuses=STATUSES, problems=[dict(r, log=link(r)) for r in report.rows if r["status"] != "SUCCESS"],
        rows=bool(report.rows), all_rows=_all_rows(report.rows, link),
        style=STYLE, script=SCRIPT)
    return page.encode("utf-8")


def escape_cell(value):
    """``value`` as text escaped as the template's autoescape does (same entities, so the same bytes)."""
    text = str(value)
    if not _HTML_SPECIAL.search(text):
        return text
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("'", "&#39;").replace('"', "&#34;"))


def _all_rows(rows, link):
    """The lines of the "All rows" table."""
    lines = []
    for r in rows:
        log = link(r)
        cells = [escape_cell(v) for v in (
            r["model"], r["host"], gpu_label(r["gpu_product"], r["gpu_architecture"]), r["status"],
            r["performance"], r["metric"], r["baseline_performance"], r["relative_change"], r["verdict"],
            r["run_id"], r["start_time"])]
        cells.append(LOG_LINK.format(escape_cell(log)) if log else "")
        cells.append(escape_cell(r["verdict"].replace(" ", "")))
        lines.append(ROW_LINE.format(*cells))
    return "".join(lines)


def _baseline_text(comparison):
    if comparison is None:
        return "none"
    policy = comparison.policy
    if comparison.sources.pinned:
        what = "pinned to %s" % comparison.sources.pinned
    else:
        what = "latest earlier run of the same model, arguments and %s" % (
            "node" if policy.by_host else "GPU class")
    return "%s; threshold %s %%" % (what, _fmt(policy.default))


def _row_frame(report):
    """The rows with their GPU class: a row without GPU fields (a placeholder) takes its node's."""
    frame = report.frame
    known = frame[frame["gpu_architecture"] != ""].drop_duplicates("host").set_index("host")
    product = frame["gpu_product"].where(frame["gpu_architecture"] != "", frame["host"].map(known["gpu_product"]))
    arch = frame["gpu_architecture"].where(frame["gpu_architecture"] != "",
                                           frame["host"].map(known["gpu_architecture"]))
    out = frame[["model", "args", "metric", "host", "status", "verdict", "baseline_run_id", "log_path",
                 "run_id"]].copy()
    out["gpu_product"] = product.fillna("")
    out["gpu_architecture"] = arch.fillna("")
    out["value"] = pd.to_numeric(frame["performance"], errors="coerce").where(frame["status"] == "SUCCESS")
    out["base"] = pd.to_numeric(frame["baseline_performance"], errors="coerce")
    out["change"] = pd.to_numeric(frame["relative_change"], errors="coerce")
    out["pos"] = range(len(out))
    return out


def _regressions(comparison, link):
    if comparison is None:
        return []
    return [dict(r, gpu=gpu_label(r["gpu_product"], r["gpu_architecture"]), threshold=_fmt(r["threshold"]),
                 log=link(r)) for r in comparison.regressions]


def _nodes(report, frame):
    by_status = pd.crosstab(frame["host"], frame["status"]) if len(frame) else None
    first = frame.drop_duplicates("host").set_index("host") if len(frame) else None
    nodes = []
    for host in report.hosts:
        counts = [0] * len(STATUSES)
        if by_status is not None and host in by_status.index:
            counts = [int(by_status.loc[host].get(s, 0)) for s in STATUSES]
        known = first.loc[host] if first is not None and host in first.index else None
        nodes.append(dict(host=host, rows=sum(counts), by_status=counts, missing=host in report.missing_hosts,
                          product=known["gpu_product"] if known is not None else "",
                          arch=known["gpu_architecture"] if known is not None else ""))
    return nodes


def _classes(report, frame, comparison, link, trend_runs):
    """[{label, nodes, models}] in order of first appearance; each class's models with regressions first."""
    if not len(frame):
        return []
    charts = trend_charts(frame, comparison, trend_runs)
    stats = frame.groupby(_SERIES, sort=False).agg(
        total=("pos", "size"), ok=("value", "count"), value=("value", "median"), base=("base", "median"),
        change=("change", "median"), first=("pos", "min"))
    verdicts = frame[frame["verdict"] != ""].groupby(_SERIES + ["verdict"], sort=False).size().to_dict()
    statuses = frame[frame["status"] != "SUCCESS"].groupby(_SERIES + ["status"], sort=False).size().to_dict()
    classes = {}
    for key, line in stats.iterrows():
        product, arch, model, args, metric = key
        group = classes.setdefault((product, arch), dict(label=gpu_label(product, arch), nodes=[], models=[]))
        found = dict((v, int(verdicts.get(key + (v,), 0))) for v in VERDICTS)
        failed = dict((s, int(statuses.get(key + (s,), 0))) for s in STATUSES[1:])
        verdict = next((v for v in ("regressed", "improved", "unchanged", "no baseline") if found[v]), None) or \
            next((s for s in STATUSES[1:] if failed[s]), "")
        counted = found.get(verdict, failed.get(verdict, 0))
        way = direction(metric, comparison.policy.directions if comparison is not None else None)
        only = report.rows[int(line["first"])] if int(line["total"]) == 1 else None
        group["models"].append(dict(
            model=model, args=args, metric=metric, direction=way, arrow="\u2191" if way == "higher" else "\u2193",
            ok=int(line["ok"]), total=int(line["total"]), value=_fmt(line["value"]), base_value=line["base"],
            baseline=_fmt(line["base"]), change="" if math.isnan(line["change"]) else "%.2f" % line["change"],
            verdict=verdict, rank=_RANK.get(verdict, 6), first=int(line["first"]),
            verdict_text=_verdict_text(verdict, counted, int(line["total"])),
            chart=charts.get(key), log=link(only) if only is not None else ""))
    for (product, arch), group in classes.items():
        in_class = frame[(frame["gpu_product"] == product) & (frame["gpu_architecture"] == arch)]
        group["nodes"] = list(dict.fromkeys(in_class["host"]))
        group["models"].sort(key=lambda m: (m["rank"] != 0, m["first"]))
    return list(classes.values())


def _verdict_text(verdict, counted, total):
    return verdict if counted == total else "%s (%d of %d)" % (verdict, counted, total)


def trend_charts(frame, comparison, trend_runs):
    """{series: chart} over the last ``trend_runs`` runs: stored history and this report's SUCCESS rows, one
    point per run (the median of the run's rows of the GPU class)."""
    sources = comparison.sources if comparison is not None else None
    current = frame[frame["value"].notna()]
    if sources is not None:  # rows carried over from older runs are in the sources' trend rows
        run = current["run_id"].where(current["run_id"] != "", sources.newest)
        # the runs being collected are one point: this run
        current = current[run.isin(sources.collected)].assign(run_id=sources.newest)
    current = current[_SERIES + ["run_id", "value", "baseline_run_id"]]
    if current.empty:
        return {}
    orders = sources.orders if sources is not None else {}
    current = current.assign(order=current["run_id"].map(orders).fillna(0).astype("int64"),
                             performance=current["value"])
    history = sources.trend if sources is not None else None
    parts = [current[_SERIES + ["run_id", "order", "performance"]]]
    if history is not None and not history.empty:
        parts.append(history[_SERIES + ["run_id", "order", "performance"]])
        # history without a GPU product (imported) stands for every product of its architecture
        classes = current[["gpu_product", "gpu_architecture"]].drop_duplicates()
        blank = history[history["gpu_product"] == ""].drop(columns=["gpu_product"])
        parts.append(blank.merge(classes[classes["gpu_product"] != ""], on="gpu_architecture")[
            _SERIES + ["run_id", "order", "performance"]])
    points = pd.concat(parts, ignore_index=True)
    medians = points.groupby(_SERIES + ["order", "run_id"], sort=False)["performance"].median().reset_index()
    medians = medians.sort_values("order").groupby(_SERIES, sort=False).tail(max(trend_runs, 1))
    now = set(current["run_id"])
    baselines = current.groupby(_SERIES, sort=False)["baseline_run_id"].first()
    charts = {}
    for key, series in medians.groupby(_SERIES, sort=False):
        charts[key] = _chart(key[2], list(series["run_id"]), list(series["performance"]), now,
                             baselines.get(key, ""))
    return charts


def _chart(model, runs, values, now, baseline_run):
    """Geometry of one trend chart (the template draws it)."""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = (_CHART_W - 2 * _PAD - 34) / max(len(values) - 1, 1)
    marks, points = [], []
    for index, (run, value) in enumerate(zip(runs, values)):
        x = 34 + _PAD + index * step if len(values) > 1 else _CHART_W / 2.0
        y = _CHART_H / 2.0 if high == low else _PAD + (_CHART_H - 2 * _PAD) * (high - value) / span
        points.append("%.1f,%.1f" % (x, y))
        kind = "now" if run in now else "base" if run == baseline_run else "pt"
        marks.append(dict(x="%.1f" % x, y="%.1f" % y, r=3.2 if kind != "pt" else 2.2, kind=kind,
                          title="%s: %s" % (run, _fmt(value))))
    return dict(width=_CHART_W, height=_CHART_H, points=" ".join(points), marks=marks, top=_fmt(high),
                bottom=_fmt(low), label="%s over %d run%s" % (model, len(values), "" if len(values) == 1 else "s"))
