#!/usr/bin/env python3
"""Merging 10,000 result rows on the controller: the target is under 1 s for the whole report.

Measures, interleaved, on the same generated rows (50 nodes x 200 rows: single-result and multiple-results models,
2 % failures, one node that returned nothing), the median of several repetitions of:

  baseline   a plain pandas concat of the per-node frames + to_csv (what any merge must at least do)
  merge+csv  madengine_report's merge: row checks, pairs, FAILURE rows for what is missing, ordering,
             then the CSV bytes, written to disk
  report     merge+csv plus the HTML report (tables and one SVG chart per model) and the summary

Prints the figures and the ratios to the baseline; exits 1 when `report` misses the target.
Usage: benchmarks/fleet/bench_merge.py [--rows 10000] [--nodes 50] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

TARGET_S = 1.0


def import_collection():
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from _collection import use_installed_collection

    use_installed_collection()
    from ansible_collections.rocm.madengine.plugins.module_utils import common as _common
    from ansible_collections.rocm.madengine.plugins.module_utils.benchmark import report as _report
    from ansible_collections.rocm.madengine.plugins.module_utils.benchmark import rows as _rows
    return _common, _report, _rows


def generate(rows_module, nodes, rows_total):
    per_node = rows_total // nodes
    singles = per_node // 8
    multis = (per_node - singles) // 5
    models = ["model_%03d" % n for n in range(singles)] + ["multi_%03d" % n for n in range(multis)]
    results = {}
    for index in range(nodes):
        host = "node%03d" % index
        rows = []
        for m, name in enumerate(models):
            count = 1 if name.startswith("model_") else 5
            for r in range(count):
                failed = (index * 31 + m * 7 + r) % 50 == 0
                rows.append(rows_module.make_row(
                    model=name if count == 1 else "%s_%d" % (name, r + 1), host=host,
                    status="FAILURE" if failed else "SUCCESS",
                    performance="" if failed else 1000.0 + index + m + r / 10.0,
                    metric="samples_per_second", n_gpus=8, gpu_architecture="gfx942",
                    gpu_product="AMD Instinct MI300X", docker_image="ci-%s_cpu.ubuntu" % name,
                    run_id="run-%s" % host, start_time="2026-11-22T10:%02d:00Z" % (m % 60),
                    end_time="2026-11-22T10:%02d:30Z" % (m % 60), exit_code=1 if failed else 0,
                    error="exit code 1" if failed else "", log_path="/var/tmp/madengine/%s.log" % name,
                    temperature=20 + r if count > 1 else None))
        results[host] = rows
    results["node%03d" % nodes] = []  # one node returned nothing
    return results, models


def interleaved(functions, repeat):
    """Median and minimum seconds of each function, run in turn so that load weighs on all alike."""
    times = [[] for _ in functions]
    for _ in range(repeat):
        for index, fn in enumerate(functions):
            start = time.perf_counter()
            fn()
            times[index].append(time.perf_counter() - start)
    return [(statistics.median(t), min(t)) for t in times]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    common_mod, report_mod, rows_mod = import_collection()
    import pandas as pd

    results, models = generate(rows_mod, args.nodes, args.rows)
    hosts = sorted(results)
    total = sum(len(v) for v in results.values())
    out = tempfile.mkdtemp(prefix="madbench-out-")

    def baseline():
        frame = pd.concat([pd.DataFrame(rows) for rows in results.values() if rows], ignore_index=True)
        frame.to_csv(os.path.join(out, "baseline.csv"), index=False)

    def merge_csv():
        report = report_mod.merge(results, hosts=hosts, models=models)
        common_mod.write_if_changed(os.path.join(out, "perf.csv"), report.to_csv())
        os.unlink(os.path.join(out, "perf.csv"))
        return report

    def full_report():
        report = report_mod.merge(results, hosts=hosts, models=models)
        data = report.to_csv()
        run_id = report_mod.default_run_id(report, data)
        common_mod.write_if_changed(os.path.join(out, "perf.csv"), data)
        common_mod.write_if_changed(os.path.join(out, "perf.html"), report_mod.to_html(report, "benchmark", run_id))
        report_mod.summary(report, run_id)
        for name in ("perf.csv", "perf.html"):
            os.unlink(os.path.join(out, name))

    # warm-up (imports, pandas caches)
    baseline()
    full_report()
    check = merge_csv()
    (base_med, base_min), (merge_med, merge_min), (full_med, full_min) = interleaved(
        [baseline, merge_csv, full_report], args.repeat)
    html_size = len(report_mod.to_html(check, "benchmark", "r"))

    print("merging %d rows from %d nodes (%d models, %d rows in the merged CSV incl. %d FAILURE rows for the "
          "node that returned nothing); median of %d runs, min in brackets"
          % (total, len(hosts), len(models), len(check.rows), check.placeholders, args.repeat))
    print("  baseline  pandas concat + to_csv      %7.3f s  (%.3f)" % (base_med, base_min))
    print("  merge+csv madengine_report merge       %7.3f s  (%.3f)  %.2fx baseline" % (merge_med, merge_min,
                                                                                       merge_med / base_med))
    print("  report    merge + CSV + HTML + summary %7.3f s  (%.3f)  %.2fx baseline, HTML %.1f MB"
          % (full_med, full_min, full_med / base_med, html_size / 1e6))
    verdict = "PASS" if full_med < TARGET_S else "FAIL"
    print("target: report < %.1f s -> %s (%.3f s)" % (TARGET_S, verdict, full_med))
    shutil.rmtree(out)
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
