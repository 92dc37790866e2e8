# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""Result rows as the runs the results database stores, and madengine perf.csv files as history.

A row belongs to the run of its ``run_id`` column (rows carried over from an earlier merged CSV keep theirs);
a row without one belongs to the run being collected. Within a run a row is identified by its node, model,
arguments and, for the rare duplicates, its occurrence: collecting the same run again finds the same keys.

A madengine perf.csv is appended to by every session and records no time and no session: its rows are cut
into runs where the build number changes or where a (model, arguments, machine) comes again, and each run
is named ``import-`` and a digest of its position and rows, so that importing the grown file again adds
only the new sessions.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.rows import COLUMNS, STATUSES
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError

COMPARISON_COLUMNS = ("baseline_performance", "baseline_run_id", "verdict")
_STORED_EXCLUDED = frozenset(COMPARISON_COLUMNS + ("relative_change",))


def figure(text):
    """A row's performance as a float, or None when it is empty or not a finite number."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) or math.isinf(value) else value


class StoredRun(object):
    """One run as the database stores it: its id, time span, source and row tuples (``results_db.RESULT_COLUMNS``)."""

    def __init__(self, run_id, source, rows, default_started=""):
        self.run_id = run_id
        self.source = source
        starts = sorted(r.get("start_time", "") for r in rows if r.get("start_time"))
        ends = sorted(r.get("end_time", "") for r in rows if r.get("end_time"))
        # Runs are ordered by their first start time; a run whose rows have none is placed at its collection
        # time, an imported session (no times at all) before every timed run.
        self.started = starts[0] if starts else default_started
        self.finished = ends[-1] if ends else ""
        self.records = _records(rows)

    def changed_rows(self, stored):
        """The row tuples whose key is not in ``stored`` ({key: hash}) or whose content differs."""
        return [record for record in self.records if stored.get(record[:4]) != record[10]]


def _records(rows):
    seen = {}
    records = []
    for row in rows:
        key = (row.get("host", ""), row["model"], row.get("args", ""))
        occurrence = seen.get(key, 0)
        seen[key] = occurrence + 1
        kept = dict((k, v) for k, v in row.items() if v not in ("", None) and k not in _STORED_EXCLUDED)
        text = json.dumps(kept, sort_keys=True, separators=(",", ":"))
        records.append(key + (occurrence, row["status"], row.get("gpu_product", ""), row.get("gpu_architecture", ""),
                              row.get("metric", ""), figure(row.get("performance")), row.get("start_time", ""),
                              hashlib.sha256(text.encode("utf-8")).hexdigest()[:32], text))
    return records


def runs_of_rows(rows, run_id, collected_at, source="collected"):
    """[StoredRun] of merged rows: grouped by their run_id (empty: ``run_id``), in order of first appearance."""
    groups = {}
    for row in rows:
        groups.setdefault(row.get("run_id") or run_id, []).append(row)
    return [StoredRun(key, source, members, default_started=collected_at) for key, members in groups.items()]


def row_run_ids(rows, run_id):
    """The run each row belongs to, in row order."""
    return [row.get("run_id") or run_id for row in rows]


def split_sessions(rows):
    """Cut the rows of an appended madengine perf.csv into sessions (lists of rows), in file order."""
    sessions = []
    current, seen, build = [], set(), None
    for row in rows:
        key = (row["model"], row.get("args", ""), row.get("machine_name", ""))
        number = row.get("build_number", "")
        if current and (key in seen or number != build):
            sessions.append(current)
            current, seen = [], set()
        current.append(row)
        seen.add(key)
        build = number
    if current:
        sessions.append(current)
    return sessions


def imported_runs(rows, source):
    """[StoredRun] of a madengine perf.csv's rows (already read and checked): one per session."""
    runs = []
    for index, session in enumerate(split_sessions(rows)):
        digest = hashlib.sha256(("%d\n" % index).encode("utf-8"))
        for row in session:
            digest.update(json.dumps(row, sort_keys=True).encode("utf-8"))
        run_id = "import-%s" % digest.hexdigest()[:12]
        converted = []
        for row in session:
            fields = dict((k, v or "") for k, v in row.items())
            fields["host"] = fields.get("host") or fields.get("machine_name") or "unknown"
            fields["run_id"] = run_id
            for column in COLUMNS:
                fields.setdefault(column, "")
            converted.append(fields)
        runs.append(StoredRun(run_id, source, converted))
    return runs


def read_table_csv(path, what, required, filled=()):
    """(header, rows) of a results CSV, checked: ``required`` columns present, a known status (when the file has
    a status column) and a value in each of ``filled`` on every line. Every problem is a sentence naming ``what``
    (the kind of file and its path) and, for a bad line, its number."""
    if not os.path.exists(path):
        raise MadengineError("%s does not exist." % what)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise MadengineError("Cannot read %s: %s." % (what[0].lower() + what[1:], exc.strerror or exc))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MadengineError("%s is not UTF-8 text (byte %d)." % (what, exc.start))
    if not text.strip():
        raise MadengineError("%s is empty." % what)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = [name.strip() for name in next(reader)]
        missing = [c for c in required if c not in header]
        if missing:
            raise MadengineError("%s has no %s column." % (what, " or ".join("'%s'" % c for c in missing)))
        rows = [row for row in (_checked_line(what, reader.line_num, header, record, filled)
                                for record in reader if record) if row is not None]
    except csv.Error as exc:
        raise MadengineError("%s is malformed: line %d: %s." % (what, reader.line_num, exc))
    return header, rows


def _checked_line(what, line, header, record, filled):
    if len(record) != len(header):
        raise MadengineError("%s is malformed: line %d has %d field%s where the header has %d."
                             % (what, line, len(record), "" if len(record) == 1 else "s", len(header)))
    row = dict(zip(header, record))
    if "status" in row and row["status"] not in STATUSES:
        raise MadengineError("%s is malformed: line %d has status %r; expected one of %s."
                             % (what, line, row["status"], ", ".join(STATUSES)))
    for column in filled:
        if not row[column]:
            raise MadengineError("%s is malformed: line %d has no %s." % (what, line, column))
    return row


def read_madengine_csv(path):
    """The rows of a madengine perf.csv (or a merged CSV of this collection) to import as history."""
    return read_table_csv(path, "madengine perf.csv %s" % path, ("model", "performance", "status"),
                          filled=("model",))[1]
