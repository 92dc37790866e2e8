#!/usr/bin/env python3
"""Merging 10,000 result rows on the controller, comparing them with 20 stored runs, and storing the run.

On the same generated rows (50 nodes x 200 rows: single-result and multiple-results models, 2 % failures, one
node that returned nothing) and a SQLite results database already holding 20 runs of the same fleet, measures,
interleaved, the median of several repetitions of:

  baseline   a plain pandas concat of the per-node frames + to_csv (what any merge must at least do)
  merge+csv  madengine_report's merge: row checks, pairs, FAILURE rows for what is missing, ordering, the CSV
  report     what madengine_report does before storing: open and check the database, merge, read the history
             (latest earlier run per series, trend rows of the last 10 runs), baselines and verdicts, the CSV,
             the HTML report (GPU classes, trend charts, all rows) and the summary -- target under 2 s
  insert     storing the run (10,000 rows) in that database; and storing it again (nothing changes)

and the same insert into a private PostgreSQL server when Debian's server binaries are installed.
Prints the figures and the ratios to the baseline; exits 1 when `report` misses the target.
Usage: benchmarks/fleet/bench_merge.py [--rows 10000] [--nodes 50] [--runs 20] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

TARGET_S = 2.0
HERE = os.path.dirname(os.path.abspath(__file__))


def import_collection():
    sys.path.insert(0, os.path.dirname(HERE))
    from _collection import use_installed_collection

    use_installed_collection()
    from ansible_collections.rocm.madengine.plugins.module_utils import common
    from ansible_collections.rocm.madengine.plugins.module_utils.benchmark import (
        baseline,
        history,
        report,
        report_html,
        results_db,
        rows,
    )
    return dict(common=common, baseline=baseline, history=history, report=report, html=report_html,
                db=results_db, rows=rows)


def generate(rows_module, nodes, rows_total, run_id="run-new", day=22, scale=1.0):
    per_node = rows_total // nodes
    singles = per_node // 8
    multis = (per_node - singles) // 5
    models = ["model_%03d" % n for n in range(singles)] + ["multi_%03d" % n for n in range(multis)]
    results = {}
    for index in range(nodes):
        host = "node%03d" % index
        gpu = ("AMD Instinct MI300X", "gfx942") if index % 5 else ("AMD Instinct MI250X", "gfx90a")
        node = []
        for m, name in enumerate(models):
            count = 1 if name.startswith("model_") else 5
            for r in range(count):
                failed = (index * 31 + m * 7 + r) % 50 == 0
                node.append(rows_module.make_row(
                    model=name if count == 1 else "%s_%d" % (name, r + 1), host=host,
                    status="FAILURE" if failed else "SUCCESS",
                    performance="" if failed else (1000.0 + index + m + r / 10.0) * scale,
                    metric="samples_per_second", n_gpus=8, gpu_architecture=gpu[1], gpu_product=gpu[0],
                    docker_image="ci-%s_cpu.ubuntu" % name, run_id=run_id,
                    start_time="2026-11-%02dT10:%02d:00Z" % (day, m % 60),
                    end_time="2026-11-%02dT10:%02d:30Z" % (day, m % 60), exit_code=1 if failed else 0,
                    error="exit code 1" if failed else "", log_path="/var/tmp/madengine/%s.log" % name,
                    temperature=20 + r if count > 1 else None))
        results[host] = node
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


def fill_history(mods, location, args):
    """A database holding ``args.runs`` earlier runs of the fleet (each a few % apart)."""
    db = mods["db"].open_db(location)
    try:
        for number in range(args.runs):
            results, _models = generate(mods["rows"], args.nodes, args.rows, run_id="run-%02d" % number,
                                        day=1 + number, scale=1.0 + (number % 3) / 100.0)
            merged = mods["report"].merge(results)
            db.store(mods["history"].runs_of_rows(merged.rows, "run-%02d" % number, "x"))
    finally:
        db.close()


def report_once(mods, location, results, hosts, models, out):
    """What madengine_report does before it stores the run; returns (report, database)."""
    policy = mods["baseline"].Policy()
    db = mods["db"].open_db(location)
    merged = mods["report"].merge(results, hosts=hosts, models=models)
    run_ids = mods["history"].row_run_ids(merged.rows, "run-new")
    sources = mods["baseline"].gather(db, merged.rows, run_ids, "2026-11-22T00:00:00Z", policy)
    comparison = mods["baseline"].compare(merged, sources, policy, base_model=mods["report"].Pair(models).base)
    mods["common"].write_if_changed(os.path.join(out, "perf.csv"), merged.to_csv())
    page = mods["html"].to_html(merged, "benchmark", "run-new", comparison=comparison,
                                database={"location": location.display, "error": None}, output_dir=out)
    mods["common"].write_if_changed(os.path.join(out, "perf.html"), page)
    mods["report"].summary(merged, "run-new", comparison=comparison)
    for name in ("perf.csv", "perf.html"):
        os.unlink(os.path.join(out, name))
    return merged, comparison, db, len(page)


def insert_times(mods, location, runs, repeat):
    """(median seconds of storing ``runs`` new, median seconds of storing them again)."""
    fresh, again = [], []
    for _ in range(repeat):
        db = mods["db"].open_db(location)
        try:
            start = time.perf_counter()
            assert db.store(runs)[1] > 0
            fresh.append(time.perf_counter() - start)
            start = time.perf_counter()
            assert db.store(runs) == (0, 0)
            again.append(time.perf_counter() - start)
            db._query("DELETE FROM madengine_results WHERE run_pk IN (SELECT pk FROM madengine_runs"
                      " WHERE run_id = 'run-new')", doing="clean-up")
            db._query("DELETE FROM madengine_runs WHERE run_id = 'run-new'", doing="clean-up")
        finally:
            db.close()
    return statistics.median(fresh), statistics.median(again)


def postgres_inserts(mods, runs, args):
    """Insert times into a private PostgreSQL server, or None without Debian's server binaries."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "tests", "unit"))
    from pg_server import postgres_server, server_bindir

    try:
        server_bindir()
    except RuntimeError:
        return None
    with postgres_server() as server:
        location = mods["db"].parse_location(server.url(server.create_database()), "/")
        mods["db"].open_db(location).close()
        return insert_times(mods, location, runs, args.repeat)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    mods = import_collection()
    import pandas as pd

    results, models = generate(mods["rows"], args.nodes, args.rows)
    hosts = sorted(results)
    total = sum(len(v) for v in results.values())
    out = tempfile.mkdtemp(prefix="madbench-out-")
    try:
        location = mods["db"].parse_location("", out)
        started = time.perf_counter()
        fill_history(mods, location, args)
        filled = time.perf_counter() - started

        def baseline():
            frame = pd.concat([pd.DataFrame(rows) for rows in results.values() if rows], ignore_index=True)
            frame.to_csv(os.path.join(out, "baseline.csv"), index=False)

        def merge_csv():
            merged = mods["report"].merge(results, hosts=hosts, models=models)
            mods["common"].write_if_changed(os.path.join(out, "perf.csv"), merged.to_csv())
            os.unlink(os.path.join(out, "perf.csv"))

        def full_report():
            report_once(mods, location, results, hosts, models, out)[2].close()

        baseline()
        merged, comparison, db, html_size = report_once(mods, location, results, hosts, models, out)  # warm-up
        db.close()
        (base_med, base_min), (merge_med, merge_min), (full_med, full_min) = interleaved(
            [baseline, merge_csv, full_report], args.repeat)
        runs = mods["history"].runs_of_rows(merged.rows, "run-new", "x")
        sqlite_new, sqlite_again = insert_times(mods, location, runs, args.repeat)
        pg = postgres_inserts(mods, runs, args)
        db_size = os.path.getsize(location.target)
    finally:
        shutil.rmtree(out)

    print("merging %d rows from %d nodes (%d models, %d rows in the merged CSV incl. %d FAILURE rows for the node"
          " that returned nothing), against %d stored runs (%d rows, SQLite %.0f MB, filled in %.1f s); median of"
          " %d runs, min in brackets" % (total, len(hosts), len(models), len(merged.rows), merged.placeholders,
                                         args.runs, args.runs * len(merged.rows), db_size / 1e6, filled,
                                         args.repeat))
    print("  verdicts of the new run: %s" % comparison.verdicts)
    print("  baseline  pandas concat + to_csv               %7.3f s  (%.3f)" % (base_med, base_min))
    print("  merge+csv madengine_report merge               %7.3f s  (%.3f)  %.2fx baseline"
          % (merge_med, merge_min, merge_med / base_med))
    print("  report    history + verdicts + CSV + HTML      %7.3f s  (%.3f)  %.2fx baseline, HTML %.1f MB"
          % (full_med, full_min, full_med / base_med, html_size / 1e6))
    print("  insert    SQLite: the run %.3f s, again (no change) %.3f s" % (sqlite_new, sqlite_again))
    if pg is None:
        print("  insert    PostgreSQL: skipped (no server binaries under /usr/lib/postgresql)")
    else:
        print("  insert    PostgreSQL: the run %.3f s, again (no change) %.3f s" % pg)
    verdict = "PASS" if full_med < TARGET_S else "FAIL"
    print("target: report < %.1f s -> %s (%.3f s)" % (TARGET_S, verdict, full_med))
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
