"""Result rows shaped like madengine_run's, for the merge and report tests."""

from __future__ import annotations

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.rows import make_row


def row(model, host, status="SUCCESS", performance="", **fields):
    base = dict(model=model, host=host, status=status, performance=performance,
                metric="samples_per_second" if performance != "" else "", machine_name=host,
                gpu_architecture="gfx942", gpu_product="AMD Instinct MI300X", run_id="run-" + host,
                start_time="2026-11-22T10:00:00Z", end_time="2026-11-22T10:00:05Z",
                log_path="/var/tmp/madengine/%s.log" % model.replace("/", "_"))
    if status != "SUCCESS":
        base.setdefault("error", "exit code 3")
    base.update(fields)
    return make_row(**base)


def node_rows(host, fail=(), perf=100.0):
    """The sample demo on one node: dummy, the four dummy_multi rows, dummy2/model2."""
    rows = [row("dummy", host, "FAILURE" if "dummy" in fail else "SUCCESS", "" if "dummy" in fail else perf)]
    for n in range(1, 5):
        rows.append(row("dummy_multi_%d" % n, host, "SUCCESS", perf + n, temperature=20 * n))
    status = "TIMEOUT" if "dummy2/model2" in fail else "SUCCESS"
    rows.append(row("dummy2/model2", host, status, "" if status != "SUCCESS" else perf * 2, args=" --batch-size 32"))
    return rows


MODELS = ["dummy", "dummy_multi", "dummy2/model2"]
