"""Performance lines, error patterns and multiple_results CSVs (_perf module_utils)."""

from __future__ import annotations

import pytest

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.perf import (
    DEFAULT_ERROR_PATTERNS,
    parse_multiple_results,
    scan_lines,
    scan_settings,
)
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError


@pytest.mark.parametrize("line, performance, metric", [
    ("performance: 14164 samples_per_second", "14164", "samples_per_second"),
    ("performance: 1.2e3 tokens/sec", "1.2e3", "tokens/sec"),
    ("performance: 123/s, samples_per_second", "123", "samples_per_second"),
    ("performance: 5, x", "5", "x"),
    ("  [rank0] performance: -0.5 ms", "-0.5", "ms"),
    ("performance: .25 images_per_second extra words", ".25", "images_per_second"),
])
def test_madengine_performance_lines(line, performance, metric):
    scan = scan_lines([line + "\n"])
    assert (scan.performance, scan.metric) == (performance, metric)


def test_first_match_wins_and_fallback_only_without_one():
    scan = scan_lines(["train_samples_per_second = 7.5\n", "performance: 1 a\n", "performance: 2 b\n"])
    assert (scan.performance, scan.metric) == ("1", "a")
    fallback = scan_lines(["{'train_samples_per_second': 41.25, 'epoch': 1}\n"])
    assert (fallback.performance, fallback.metric) == ("41.25", "samples_per_second")
    assert scan_lines(["performance: fast\n", "no numbers here\n"]).performance is None


def test_error_patterns_and_benign_lines():
    scan = scan_lines(["FutureWarning: ValueError: will change\n", "step 1\n", "Traceback (most recent call last):\n",
                       "performance: 3 x\n"])
    assert scan.error_pattern == "Traceback (most recent call last)"
    assert scan.error_line == "Traceback (most recent call last):"
    assert scan.performance == "3"
    quiet = scan_lines(["FAILED\n"], scan_errors=False)
    assert quiet.error_line is None
    custom = scan_lines(["boom here\n", "FAILED\n"], patterns=("boom",))
    assert custom.error_pattern == "boom"
    excused = scan_lines(["FAILED (expected by test)\n"], benign=("expected by test",))
    assert excused.error_line is None


def test_scan_settings_context_wins_over_model():
    model = {"name": "m", "log_error_pattern_scan": False, "log_error_patterns": ["model-pattern"],
             "log_error_benign_patterns": ["model-benign"]}
    enabled, patterns, benign = scan_settings({}, model)
    assert (enabled, patterns) == (False, ("model-pattern",)) and benign[-1] == "model-benign"
    enabled, patterns, benign = scan_settings({"log_error_pattern_scan": "true", "log_error_patterns": ["ctx"],
                                               "log_error_benign_patterns": ["ctx-benign"]}, model)
    assert (enabled, patterns, benign[-1]) == (True, ("ctx",), "ctx-benign")
    assert scan_settings({"log_error_pattern_scan": "false"}, {"name": "m"})[0] is False
    assert scan_settings({}, {"name": "m"})[1] == DEFAULT_ERROR_PATTERNS


@pytest.mark.parametrize("ctx, message", [
    ({"log_error_patterns": []}, r"^Model 'm': log_error_patterns must be a non-empty list of strings\.$"),
    ({"log_error_benign_patterns": "x"}, r"^Model 'm': log_error_benign_patterns must be a list of strings\.$"),
])
def test_scan_settings_bad_values(ctx, message):
    with pytest.raises(MadengineError, match=message):
        scan_settings(ctx, {"name": "m"})


def test_multiple_results_rows_keep_extra_columns():
    header, rows = parse_multiple_results(b" model , temperature,performance,metric\n1,20,1001.5,sps\n\n2,40,,sps\n",
                                          "/w/perf.csv")
    assert header == ["model", "temperature", "performance", "metric"]
    assert rows == [{"model": "1", "temperature": "20", "performance": "1001.5", "metric": "sps"},
                    {"model": "2", "temperature": "40", "performance": "", "metric": "sps"}]


@pytest.mark.parametrize("data, message", [
    ("model,perf\n1,2\n",
     r"^multiple_results file f\.csv has no performance, metric columns \(header: model,perf\)\.$"),
    ("", r"^multiple_results file f\.csv has no model, performance, metric columns \(header: empty\)\.$"),
    ('model,performance,metric\n"1,2,3\n', r"^multiple_results file f\.csv is not valid CSV: "),
])
def test_multiple_results_errors(data, message):
    with pytest.raises(MadengineError, match=message):
        parse_multiple_results(data, "f.csv")
