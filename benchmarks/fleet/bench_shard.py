#!/usr/bin/env python3
"""madengine_matrix shard against all: 12 models of 3 s each on 4 equivalent simulated nodes.

rocm.madengine.benchmark (from the installed collection) on a fleet of ci/simulated-fleet.sh: four MI300X nodes
(amd-gfx942, the same vendor, architecture and product, so one shard group), each a Docker engine of its own with
the fake GPUs of its kind; the controller is this machine's main engine with the local registry.  The catalogue
has 12 models whose script sleeps --model-seconds (default 3) in its container, as a benchmark spends its time on
the GPU, then prints its result.  The images are built, pushed and pulled by every node once beforehand, so the
timed runs build, push and pull nothing; they differ only in what each node runs:

* all (the baseline): every node runs every model - 12 runs per node;
* shard: each model runs once in the group - 3 runs per node, the nodes finishing at about the same time.

Rounds alternate between the two (medians).  Each shard run's rows are checked: every model exactly once, SUCCESS,
three per node.  Target: shard takes at most 0.35x the time of all (4 nodes would give 0.25x without any fixed
cost; the rest is Ansible's start, the GPU detection, the build's reuse check and the merge).

Run with the installed collection (MADCI_INSTALLED, else /opt/madci/collections):
    /opt/madci/venv/bin/python benchmarks/fleet/bench_shard.py [--rounds 3] [--nodes 4] [--models 12]
Needs root and the Docker engine and registry of ci/setup-host.sh.  Everything it creates is removed.  Exits 1
when the target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "unit"))
from _collection import use_installed_collection
from bench_fleet import ansible_env, cleanup, fleet_script, rows_of

REGISTRY = os.environ.get("MADCI_REGISTRY", "localhost:5000")
TARGET = 0.35
DOCKERFILE = """# CONTEXT {'guest_os': 'UBUNTU'}
ARG BASE_DOCKER=%s/mad-base:busybox
FROM ${BASE_DOCKER}
""" % REGISTRY
SCRIPT = """#!/bin/sh
sleep %s  # the time a benchmark spends on its GPU
echo "performance: 42.5 samples_per_second"
"""


def catalogue(root, count, seconds):
    """A MAD tree with ``count`` models of ``seconds`` each, one Dockerfile for all."""
    os.makedirs(os.path.join(root, "docker"))
    os.makedirs(os.path.join(root, "scripts", "timed"))
    with open(os.path.join(root, "docker", "timed.ubuntu.Dockerfile"), "w") as handle:
        handle.write(DOCKERFILE)
    with open(os.path.join(root, "scripts", "timed", "run.sh"), "w") as handle:
        handle.write(SCRIPT % seconds)
    models = [{"name": "timed_%02d" % n, "dockerfile": "docker/timed", "scripts": "scripts/timed/run.sh",
               "n_gpus": "1", "tags": ["timed"], "args": "", "training_precision": "fp32"} for n in range(count)]
    with open(os.path.join(root, "models.json"), "w") as handle:
        json.dump(models, handle, indent=1)
    return [m["name"] for m in models]


def playbook(env, inventory, cwd, extra_vars):
    """Wall time of one rocm.madengine.benchmark run, which must succeed."""
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory,
               "rocm.madengine.benchmark", "-e", json.dumps(extra_vars)]
    started = time.monotonic()
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit("benchmark.yml failed:\n%s" % (proc.stdout[-4000:] + proc.stderr[-2000:]))
    return elapsed


def check_rows(path, models, nodes, matrix):
    rows = rows_of(path)
    if any(r["status"] != "SUCCESS" for r in rows):
        raise SystemExit("the %s run has rows that are not SUCCESS: %s" % (matrix, path))
    ran = sorted((r["host"], r["model"]) for r in rows)
    if matrix == "all":
        expected = sorted((node, model) for node in nodes for model in models)
        if ran != expected:
            raise SystemExit("the all run did not run every model on every node: %s" % path)
        return
    if sorted(m for _h, m in ran) != sorted(models):
        raise SystemExit("the shard run did not run every model once: %s" % ran)
    per_node = dict((node, len([1 for h, _m in ran if h == node])) for node in nodes)
    if max(per_node.values()) - min(per_node.values()) > 1:
        raise SystemExit("the shard is not balanced: %s" % per_node)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds, medians (default 3)")
    parser.add_argument("--nodes", type=int, default=4, help="equivalent nodes (default 4)")
    parser.add_argument("--models", type=int, default=12, help="models (default 12)")
    parser.add_argument("--model-seconds", type=float, default=3, help="run time of each model (default 3)")
    options = parser.parse_args()
    collection = use_installed_collection()
    env = ansible_env(os.path.dirname(os.path.dirname(os.path.dirname(collection))))
    prefix = "benchshard%s-" % uuid.uuid4().hex[:6]
    root = tempfile.mkdtemp(prefix="madci-bench-shard-")
    fleet_dir = os.path.join(root, "fleet")
    times = {"all": [], "shard": []}
    try:
        models = catalogue(os.path.join(root, "mad"), options.models, options.model_seconds)
        fleet_script("up", "--out", fleet_dir, "amd-gfx942:%d" % options.nodes)
        inventory = os.path.join(fleet_dir, "inventory.yml")
        nodes = ["amd-gfx942-%d" % n for n in range(1, options.nodes + 1)]
        common = {"madengine_mad_root": os.path.join(root, "mad"), "madengine_tags": "timed",
                  "madengine_image_prefix": prefix, "madengine_timeout": 300}
        # build, push, and let every node pull every image: the timed runs only run
        playbook(env, inventory, root, dict(common, madengine_output_dir=os.path.join(root, "warm")))
        for index in range(options.rounds):
            for matrix in (("all", "shard") if index % 2 == 0 else ("shard", "all")):
                out = os.path.join(root, "%s-%d" % (matrix, index))
                times[matrix].append(playbook(env, inventory, root, dict(common, madengine_output_dir=out,
                                                                         madengine_matrix=matrix)))
                check_rows(os.path.join(out, "perf.csv"), models, nodes, matrix)
    finally:
        if os.path.exists(os.path.join(fleet_dir, "fleet.json")):
            fleet_script("down", fleet_dir)
        left = cleanup(prefix)
        shutil.rmtree(root, ignore_errors=True)

    every, shard = statistics.median(times["all"]), statistics.median(times["shard"])
    ratio = shard / every
    print("benchmark.yml, %d models of %gs on %d equivalent simulated nodes (amd-gfx942), this machine's %d CPUs; "
          "medians of %d alternating rounds" % (options.models, options.model_seconds, options.nodes,
                                                  os.cpu_count(), options.rounds))
    print("  madengine_matrix all     %6.2f s   rounds %s   (%d runs per node)"
          % (every, " ".join("%.2f" % t for t in times["all"]), options.models))
    print("  madengine_matrix shard   %6.2f s   rounds %s   (%d runs per node)"
          % (shard, " ".join("%.2f" % t for t in times["shard"]), -(-options.models // options.nodes)))
    print("  ratio                    %7.3fx  (no fixed cost at all: %.3fx)"
          % (ratio, float(-(-options.models // options.nodes)) / options.models))
    ok = ratio <= TARGET
    print("target: shard <= %.2fx all: %s (%.3fx)" % (TARGET, "PASS" if ok else "FAIL", ratio))
    if left:
        print("containers left behind: %s" % " ".join(left))
    return 0 if ok and not left else 1


if __name__ == "__main__":
    sys.exit(main())
