# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""Reading a model run's results: madengine's performance line, its error patterns, multiple_results CSVs.

* :class:`LogScanner` reads a run log once, line by line: the first ``performance: <value> <metric>`` line (madengine's
  regular expression; ``train_samples_per_second`` as fallback) and the first line holding an error
  pattern that no benign pattern excuses.
* :func:`scan_settings` resolves ``log_error_pattern_scan``, ``log_error_patterns`` and
  ``log_error_benign_patterns``: the context wins over the model.
* :func:`parse_multiple_results` reads a model's results CSV (``model``, ``performance``, ``metric``
  plus any extra columns).
"""

from __future__ import annotations

import csv
import io
import re

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError

PERFORMANCE = re.compile(
    r"performance:\s+([+\-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+\-]?[0-9]+)?)(?:,?\s*/[a-zA-Z]+\s*,?|,)?\s+([^\s,]+)")
FALLBACK = re.compile(r"train_samples_per_second[\'\"\s:=]+([0-9][0-9.eE+-]*)")
FALLBACK_METRIC = "samples_per_second"

DEFAULT_ERROR_PATTERNS = (
    "OutOfMemoryError", "HIP out of memory", "CUDA out of memory", "RuntimeError:", "AssertionError:",
    "ValueError:", "SystemExit", "failed (exitcode:", "Traceback (most recent call last)", "FAILED",
    "Exception:", "ImportError:", "ModuleNotFoundError:",
)
# Lines with these substrings never fail a run: warnings and profiler/exporter chatter that quote errors.
BUILTIN_BENIGN_PATTERNS = (
    "FutureWarning", "DeprecationWarning", "UserWarning", "metrics-exporter", "metrics_exporter",
    "rocprof", "rpd_tracer", "[rpd]", "roctracer",
)
REQUIRED_COLUMNS = ("model", "performance", "metric")
_FALSE_WORDS = ("false", "no", "off", "0", "none", "")


class LogScanner(object):
    """Fed one line at a time (while the log streams): the first performance match and error line."""

    def __init__(self, scan_errors=True, patterns=DEFAULT_ERROR_PATTERNS, benign=BUILTIN_BENIGN_PATTERNS):
        self.scan_errors = scan_errors
        self.patterns = tuple(patterns)
        self.benign = tuple(benign)
        self.performance = None
        self.metric = None
        self.error_line = None
        self.error_pattern = None
        self._fallback = None

    def feed(self, line):
        if self.performance is None:
            match = PERFORMANCE.search(line)
            if match:
                self.performance, self.metric = match.group(1), match.group(2)
            elif self._fallback is None:
                match = FALLBACK.search(line)
                if match:
                    self._fallback = match.group(1)
        if self.scan_errors and self.error_line is None:
            for pattern in self.patterns:
                if pattern in line and not any(b in line for b in self.benign):
                    self.error_line, self.error_pattern = line.strip()[:500], pattern
                    break

    def finish(self):
        """Apply the ``train_samples_per_second`` fallback; returns self."""
        if self.performance is None and self._fallback is not None:
            self.performance, self.metric = self._fallback, FALLBACK_METRIC
        return self


def truthy(value):
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_WORDS
    return bool(value)


def scan_settings(ctx, model):
    """``(enabled, patterns, benign)`` for a model: context keys win over the model's."""

    def pick(key):
        if key in ctx and ctx[key] is not None:
            return ctx[key]
        return model.get(key)

    enabled = pick("log_error_pattern_scan")
    enabled = True if enabled is None else truthy(enabled)
    patterns = pick("log_error_patterns")
    if patterns is not None and (not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns)
                                 or not patterns):
        raise MadengineError("Model '%s': log_error_patterns must be a non-empty list of strings."
                             % model.get("name"))
    benign = pick("log_error_benign_patterns") or []
    if not isinstance(benign, list) or not all(isinstance(p, str) for p in benign):
        raise MadengineError("Model '%s': log_error_benign_patterns must be a list of strings." % model.get("name"))
    return enabled, tuple(patterns or DEFAULT_ERROR_PATTERNS), BUILTIN_BENIGN_PATTERNS + tuple(benign)


def scan_lines(lines, **settings):
    """A finished LogScanner over ``lines`` (text)."""
    scanner = LogScanner(**settings)
    for line in lines:
        scanner.feed(line)
    return scanner.finish()


def parse_multiple_results(data, filename):
    """Rows of a multiple_results CSV (``bytes`` or text): dicts with stripped headers and values.

    MadengineError when a required column is missing or the file is not CSV.
    """
    if isinstance(data, bytes):
        data = data.decode("utf-8-sig", "replace")
    try:
        reader = csv.reader(io.StringIO(data), strict=True)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise MadengineError("multiple_results file %s has no %s column%s (header: %s)."
                                 % (filename, ", ".join(missing), "s" if len(missing) > 1 else "",
                                    ",".join(header) or "empty"))
        rows = []
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            rows.append(dict((name, (values[i].strip() if i < len(values) else ""))
                             for i, name in enumerate(header) if name))
        return header, rows
    except csv.Error as exc:
        raise MadengineError("multiple_results file %s is not valid CSV: %s." % (filename, exc))
