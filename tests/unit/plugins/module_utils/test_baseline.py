"""Baselines, relative changes and verdicts, against a real SQLite results database."""

from __future__ import annotations

import pytest
from fleet_rows import row

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark import baseline as _baseline
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark import history as _history
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark import report as _report
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark import results_db as _db
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError

MI300X = dict(gpu_product="AMD Instinct MI300X", gpu_architecture="gfx942")
MI250X = dict(gpu_product="AMD Instinct MI250X", gpu_architecture="gfx90a")


def fleet_rows(run_id, day, values, metric="samples_per_second"):
    """{node: [rows]}: ``values`` maps (node, model) to a figure; node1/node2 are MI300X, node3 MI250X."""
    results = {}
    for (node, model), value in values.items():
        gpu = MI250X if node == "node3" else MI300X
        status = "SUCCESS" if value is not None else "FAILURE"
        results.setdefault(node, []).append(row(model, node, status, "" if value is None else value, metric=metric,
                                                run_id=run_id, start_time="2026-11-%02dT10:00:00Z" % day, **gpu))
    return results


def collect(db, results, run_id, policy=None, **pin):
    """Merge, compare and store one run, the way madengine_report does; returns (report, comparison)."""
    policy = policy or _baseline.Policy()
    report = _report.merge(results)
    run_ids = _history.row_run_ids(report.rows, run_id)
    sources = _baseline.gather(db, report.rows, run_ids, "2026-12-01T00:00:00Z", policy, **pin)
    comparison = _baseline.compare(report, sources, policy)
    if db is not None:
        db.store(_history.runs_of_rows(report.rows, run_id, "2026-12-01T00:00:00Z"))
    return report, comparison


def verdicts(report):
    return dict(((r["host"], r["model"]), (r["verdict"], r["relative_change"], r["baseline_run_id"]))
                for r in report.rows)


@pytest.fixture
def db(tmp_path):
    opened = _db.open_db(_db.parse_location("", str(tmp_path)))
    yield opened
    opened.close()


BASE = {("node1", "bert"): 100.0, ("node2", "bert"): 110.0, ("node3", "bert"): 50.0,
        ("node1", "gpt"): 200.0, ("node2", "gpt"): 200.0, ("node3", "gpt"): 90.0}


def test_second_run_twenty_percent_lower_for_one_model_regresses_only_that_model(db):
    first, comparison = collect(db, fleet_rows("r1", 1, BASE), "r1")
    assert set(v for v, _c, _b in verdicts(first).values()) == {"no baseline"}
    assert comparison.verdicts == {"regressed": 0, "improved": 0, "unchanged": 0, "no baseline": 6}
    second_values = dict(BASE)
    second_values[("node1", "bert")] = 84.0    # 20 % under the MI300X median 105
    second_values[("node2", "bert")] = 84.0
    second, comparison = collect(db, fleet_rows("r2", 2, second_values), "r2")
    found = verdicts(second)
    assert found[("node1", "bert")] == ("regressed", "-20.00", "r1")
    assert found[("node2", "bert")] == ("regressed", "-20.00", "r1")
    # the MI250X node is compared with MI250X figures only
    assert found[("node3", "bert")] == ("unchanged", "0.00", "r1")
    assert found[("node1", "gpt")] == ("unchanged", "0.00", "r1")
    assert comparison.verdicts == {"regressed": 2, "improved": 0, "unchanged": 4, "no baseline": 0}
    assert [(r["model"], r["host"], r["relative_change"], r["baseline"], r["threshold"])
            for r in comparison.regressions] == [("bert", "node1", "-20.00", "105.0", 5.0),
                                                 ("bert", "node2", "-20.00", "105.0", 5.0)]
    # a third run compares with the second, not the first
    third, _comparison = collect(db, fleet_rows("r3", 3, second_values), "r3")
    assert verdicts(third)[("node1", "bert")] == ("unchanged", "0.00", "r2")


def test_collecting_an_earlier_run_again_keeps_its_own_baseline(db):
    collect(db, fleet_rows("r1", 1, BASE), "r1")
    lower = dict((k, v * 0.5) for k, v in BASE.items())
    second, _c = collect(db, fleet_rows("r2", 2, lower), "r2")
    collect(db, fleet_rows("r3", 3, BASE), "r3")
    again, _c = collect(db, fleet_rows("r2", 2, lower), "r2")
    assert verdicts(again) == verdicts(second)
    assert verdicts(again)[("node1", "gpt")] == ("regressed", "-50.00", "r1")


def test_node_scope_compares_each_node_with_itself(db):
    collect(db, fleet_rows("r1", 1, BASE), "r1")
    values = dict(BASE)
    values[("node1", "bert")] = 110.0  # +10 % on node1 alone, but equal to the class median of 105 +4.8 %
    policy = _baseline.Policy(scope="node")
    report, _c = collect(db, fleet_rows("r2", 2, values), "r2", policy=policy)
    assert verdicts(report)[("node1", "bert")] == ("improved", "10.00", "r1")
    report, _c = collect(db, fleet_rows("r3", 3, values), "r3")
    assert verdicts(report)[("node1", "bert")] == ("unchanged", "0.00", "r2")  # class median 110 -> 110


def test_direction_thresholds_and_failed_rows(db):
    collect(db, fleet_rows("r1", 1, {("node1", "lat"): 10.0, ("node1", "bert"): 100.0, ("node3", "bert"): 50.0},
                           metric="latency_ms"), "r1")
    report, _c = collect(db, fleet_rows("r2", 2, {("node1", "lat"): 10.4, ("node1", "bert"): None,
                                                  ("node3", "bert"): 52.0}, metric="latency_ms"), "r2")
    found = verdicts(report)
    # latency: 4 % more is worse, under the 5 % default
    assert found[("node1", "lat")] == ("unchanged", "4.00", "r1")
    assert found[("node1", "bert")] == ("", "", "")  # a failed row has no verdict
    policy = _baseline.Policy(thresholds={"default": 5, "gpu_architectures": {"gfx942": 3},
                                          "models": {"bert": 1}})
    report, _c = collect(db, fleet_rows("r3", 3, {("node1", "lat"): 10.8, ("node3", "bert"): 51.0},
                                        metric="latency_ms"), "r3", policy=policy)
    found = verdicts(report)
    assert found[("node1", "lat")] == ("regressed", "3.85", "r2")    # gfx942: 3 %
    # lower is better for latency_ms: -1.92 % is better, and the model's 1 % wins over the default
    assert found[("node3", "bert")] == ("improved", "-1.92", "r2")


def test_pinned_baselines(db, tmp_path):
    collect(db, fleet_rows("r1", 1, BASE), "r1")
    collect(db, fleet_rows("r2", 2, dict((k, v * 2) for k, v in BASE.items())), "r2")
    report, comparison = collect(db, fleet_rows("r3", 3, BASE), "r3", baseline_run="r1")
    assert comparison.sources.pinned == "run r1"
    found = verdicts(report)
    assert found[("node1", "bert")] == ("unchanged", "-4.76", "r1")  # the MI300X median of r1 is 105
    assert found[("node3", "gpt")] == ("unchanged", "0.00", "r1")
    # a madengine perf.csv: no GPU product, no host; what it lacks matches anything
    csv_rows = [dict(model="bert", performance="120.0", metric="samples_per_second", status="SUCCESS",
                     gpu_architecture="gfx942", machine_name="old1"),
                dict(model="bert", performance="", metric="samples_per_second", status="FAILURE",
                     gpu_architecture="gfx942", machine_name="old1")]
    report, comparison = collect(None, fleet_rows("r4", 4, BASE), "r4", baseline_csv=("/x/perf.csv", csv_rows))
    found = verdicts(report)
    assert found[("node1", "bert")] == ("regressed", "-16.67", "csv:/x/perf.csv")
    assert found[("node3", "bert")] == ("no baseline", "", "")  # gfx90a is not in the file
    assert found[("node1", "gpt")] == ("no baseline", "", "")


def test_imported_history_without_gpu_product_is_a_baseline_of_its_architecture(db):
    imported = [dict(model="bert", performance="100.0", metric="samples_per_second", status="SUCCESS",
                     gpu_architecture="gfx942", machine_name="old1", args="", build_number="7")]
    db.store(_history.imported_runs(imported, "import:perf.csv"))
    report, _c = collect(db, fleet_rows("r1", 1, {("node1", "bert"): 90.0, ("node3", "bert"): 90.0}), "r1")
    found = verdicts(report)
    run_id = db.runs()[0][1]
    assert found[("node1", "bert")] == ("regressed", "-10.00", run_id)
    assert found[("node3", "bert")] == ("no baseline", "", "")


def test_carried_rows_are_compared_with_the_run_before_their_own(db):
    collect(db, fleet_rows("r1", 1, BASE), "r1")
    collect(db, fleet_rows("r2", 2, dict((k, v * 0.5) for k, v in BASE.items())), "r2")
    results = fleet_rows("r3", 3, {("node1", "bert"): 50.0})
    carried = fleet_rows("r2", 2, {("node1", "gpt"): 100.0})["node1"]
    results["node1"] += carried
    report, _c = collect(db, results, "r3")
    found = verdicts(report)
    assert found[("node1", "bert")] == ("unchanged", "-4.76", "r2")
    assert found[("node1", "gpt")] == ("regressed", "-50.00", "r1")


@pytest.mark.parametrize("metric, way", [
    ("samples_per_second", "higher"), ("tokens/sec", "higher"), ("images_per_sec", "higher"), ("TFLOPS", "higher"),
    ("throughput", "higher"), ("latency_ms", "lower"), ("time_to_first_token", "lower"), ("seconds", "lower"),
    ("train_runtime", "lower"), ("p99_ms", "lower"), ("accuracy", "higher"), ("whatever", "higher"), ("", "higher"),
])
def test_metric_directions(metric, way):
    assert _baseline.direction(metric) == way
    assert _baseline.direction(metric, {metric: "lower" if way == "higher" else "higher"}) != way


@pytest.mark.parametrize("kwargs, message", [
    ({"thresholds": {"default": -1}}, "thresholds.default is -1; a threshold is a percentage, 0 or more."),
    ({"thresholds": {"models": {"bert": "x"}}}, "thresholds.models.bert is 'x'; a threshold is a percentage"),
    ({"thresholds": {"gpu_architectures": ["gfx942"]}}, "thresholds.gpu_architectures must map names to"),
    ({"directions": {"tps": "up"}}, "metric_directions.tps is 'up'; expected higher or lower."),
    ({"trend_runs": 0}, "trend_runs is 0; it must be 1 or more."),
])
def test_bad_policies_are_named(kwargs, message):
    with pytest.raises(MadengineError) as caught:
        _baseline.Policy(**kwargs)
    assert str(caught.value).startswith(message)


def test_threshold_precedence():
    policy = _baseline.Policy(thresholds={"default": 5, "models": {"multi": 8, "bert": 2},
                                          "gpu_architectures": {"gfx942": 3}})
    assert policy.threshold("bert", "gfx942") == 2
    assert policy.threshold("multi_3", "gfx942", base_model="multi") == 8
    assert policy.threshold("gpt", "gfx942") == 3 and policy.threshold("gpt", "gfx90a") == 5


def test_sessions_of_an_appended_perf_csv():
    def line(model, machine="m1", build="1"):
        return dict(model=model, machine_name=machine, build_number=build, args="", status="SUCCESS",
                    performance="1")
    rows = [line("a"), line("b"), line("a", "m2"),   # one session on two machines
            line("a"), line("b"),                    # a comes again: a new session
            line("a", build="2")]                    # a new build number: a new session
    sessions = _history.split_sessions(rows)
    assert [len(s) for s in sessions] == [3, 2, 1]
    runs = _history.imported_runs(rows, "import:perf.csv")
    assert len(set(r.run_id for r in runs)) == 3 and all(r.run_id.startswith("import-") for r in runs)
    assert [r.started for r in runs] == ["", "", ""]
    # the grown file keeps the ids of the sessions it had
    grown = _history.imported_runs(rows + [line("c", build="3")], "import:perf.csv")
    assert [r.run_id for r in grown[:3]] == [r.run_id for r in runs] and len(grown) == 4
    assert runs[0].records[2][0] == "m2"  # the machine is the node
