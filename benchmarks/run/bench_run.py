"""Benchmark of madengine_run against bare ``docker run``, measured in the same run.

1. Cost per model: N generated models (one image each, built once by madengine_build) are run by
   madengine_run in one call, and each image's command is run by bare ``docker run --rm`` (the docker
   CLI, output captured).  Rounds alternate; medians.  Reported: per-model time of both, the
   marginal cost per model of madengine_run ((T(N) - T(1)) / (N - 1)) and its excess over a bare
   ``docker run``.  Target: the excess is at most 0.5 s per model.
2. Build + run of the three sample models madengine's own timing used (``dummy``, ``dummy_multi``,
   ``dummy2/model2:batch-size=32``): madengine_build (no cache, pull) + madengine_run, against bare
   ``docker build --no-cache --pull`` + ``docker run --rm`` of the same Dockerfiles and scripts, once with
   the scripts mounted and once with them baked into the image as madengine_build does (the same work
   for the engine).  Target: at most 1.5x the latter.

Run with the installed collection (MADCI_INSTALLED, else /opt/madci/collections):
    /opt/madci/venv/bin/python benchmarks/run/bench_run.py [--models N] [--rounds R]
Needs the Docker engine and registry of ci/setup-host.sh.  Everything it creates is removed.
Exits 1 when a target is missed.
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

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _collection import leftover_containers, run_module, use_installed_collection

REGISTRY = os.environ.get("MADCI_REGISTRY", "localhost:5000")
BASE = REGISTRY + "/mad-base:busybox"
TARGET_EXCESS_S = 0.5
TARGET_BUILD_RUN_RATIO = 1.5
SAMPLE_TAGS = ["dummy", "dummy_multi", "dummy2/model2:batch-size=32"]


def run_ok(module, args):
    result = run_module(module, args)
    if result.get("failed"):
        raise SystemExit("%s failed: %s" % (module.__name__, result.get("msg")))
    return result


def make_catalogue(root, count):
    models = []
    os.makedirs(os.path.join(root, "docker"))
    with open(os.path.join(root, "docker", "bench.ubuntu.Dockerfile"), "w") as handle:
        handle.write("# CONTEXT {'guest_os': 'UBUNTU'}\nARG BASE_DOCKER=%s\nFROM ${BASE_DOCKER}\n" % BASE)
    for index in range(count):
        name = "runbench%02d" % index
        models.append({"name": name, "dockerfile": "docker/bench", "scripts": "scripts/%s/run.sh" % name,
                       "tags": ["bench"], "args": "--batch-size %d" % (index + 1), "n_gpus": "1"})
        os.makedirs(os.path.join(root, "scripts", name))
        with open(os.path.join(root, "scripts", name, "run.sh"), "w") as handle:
            handle.write('#!/bin/bash\necho "model %s args $*"\necho "performance: %d.5 samples_per_second"\n'
                         % (name, index + 1))
    with open(os.path.join(root, "models.json"), "w") as handle:
        json.dump(models, handle)
    return [m["name"] for m in models]


def bare_runs(manifest):
    """``docker run --rm`` of every image's command, output captured; returns seconds."""
    started = time.monotonic()
    for key, entry in manifest["built_images"].items():
        model = manifest["built_models"][key]
        scripts = entry["scripts"]
        out = subprocess.run(["docker", "run", "--rm", "--network", "host", "-w", scripts["image_dir"], key,
                              scripts["runner"], scripts["entry"]] + model["args"].split(),
                             check=True, capture_output=True, text=True).stdout
        assert "performance:" in out, out
    return time.monotonic() - started


def timed_run(madengine_run, args):
    started = time.monotonic()
    result = run_ok(madengine_run, args)
    seconds = time.monotonic() - started
    bad = [r for r in result["results"] if r["status"] != "SUCCESS"]
    if bad:
        raise SystemExit("madengine_run gave %s" % bad)
    return seconds, result


SAMPLE_JOBS = (("dummy", "run.sh", []), ("dummy_multi", "run_multi.sh", []),
               ("dummy2_model2", "run.sh", ["--batch-size", "32"]))


def bare_build_and_run(mad, prefix, work, same_layers=False):
    """The 3 sample models with bare docker commands.

    Plain: build the model's Dockerfile, run its script from a mounted copy of the scripts directory.
    ``same_layers``: build the Dockerfile plus the scripts layer and label step madengine_build adds (the
    same work for the engine) and run the script from the image, printing the results CSV.
    """
    started = time.monotonic()
    scripts = os.path.join(mad, "scripts", "sample")
    for name, entry, args in SAMPLE_JOBS:
        image = "%sbare%s-%s" % (prefix, "same" if same_layers else "", name)
        dockerfile, context = "docker/cpu.ubuntu.Dockerfile", os.path.join(mad, "docker")
        if same_layers:
            context = os.path.join(work, "context-" + name)
            shutil.copytree(os.path.join(mad, "docker"), context)
            shutil.copytree(scripts, os.path.join(context, ".madengine-build", "scripts"))
            with open(os.path.join(mad, dockerfile)) as handle:
                text = handle.read()
            dockerfile = os.path.join(context, ".madengine-build", "Dockerfile")
            with open(dockerfile, "w") as handle:
                handle.write(text + "COPY .madengine-build/scripts/ /madengine/scripts/\n"
                             'LABEL "org.rocm.madengine.content-key"="bench"\n')
        subprocess.run(["docker", "build", "--no-cache", "--network=host", "-q", "-t", image, "--pull", "-f",
                        dockerfile, "--label", "madci.bench=%s" % prefix, context], cwd=mad, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, DOCKER_BUILDKIT="0"))
        env = ["-e", "MAD_OUTPUT_CSV=perf_dummy.csv"] if name == "dummy_multi" else []
        if same_layers:
            command = ["-w", "/madengine/scripts"] + env + [image, "sh", "-c", " ".join(
                ["bash", entry] + args + (["&& cat perf_dummy.csv"] if name == "dummy_multi" else []))]
        else:
            out_dir = os.path.join(work, name)
            shutil.copytree(scripts, out_dir)
            command = ["-v", "%s:/w" % out_dir, "-w", "/w"] + env + [image, "bash", entry] + args
        out = subprocess.run(["docker", "run", "--rm", "--network", "host"] + command, check=True,
                             capture_output=True, text=True).stdout
        if name == "dummy_multi":
            if not same_layers:
                with open(os.path.join(work, name, "perf_dummy.csv")) as handle:
                    out = handle.read()
            assert out.count(",samples_per_second") == 4, out
        else:
            assert "performance:" in out, out
    return time.monotonic() - started


def cleanup(prefix):
    listing = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True,
                             text=True, check=False).stdout.split()
    refs = [r for r in listing if r.startswith(prefix) or r.startswith(REGISTRY + "/" + prefix)]
    if refs:
        subprocess.run(["docker", "rmi", "-f"] + refs, check=False, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    subprocess.run(["docker", "image", "prune", "-f", "--filter", "label=madci.bench=%s" % prefix], check=False,
                   stdout=subprocess.DEVNULL)
    return leftover_containers(prefix)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=6, help="generated models for the per-model cost (default 6)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds, medians (default 3)")
    options = parser.parse_args()
    collection = use_installed_collection()
    from ansible_collections.rocm.madengine.plugins.modules import madengine_build, madengine_run

    prefix = "benchrun%s-" % uuid.uuid4().hex[:6]
    root = tempfile.mkdtemp(prefix="madci-bench-run-")
    sysfs = os.path.join(root, "sys")  # an empty sysfs: CPU mode, whatever this machine has
    os.makedirs(sysfs)
    try:
        mad = os.path.join(root, "mad")
        os.makedirs(mad)
        names = make_catalogue(mad, options.models)
        build = run_ok(madengine_build, {"mad_root": mad, "tags": ["bench"], "image_prefix": prefix,
                                             "labels": {"madci.bench": prefix},
                                             "manifest_path": os.path.join(root, "bench.json")})
        manifest = build["manifest"]
        common = {"manifest_path": os.path.join(root, "bench.json"), "results_dir": os.path.join(root, "results"),
                  "sysfs_root": sysfs, "pull": "missing", "run_id": prefix + "per-model"}
        rounds = {"bare": [], "all": [], "one": []}
        timed_run(madengine_run, dict(common, tags=[names[0]]))  # warm-up: imports, first connection
        for _round in range(options.rounds):
            rounds["bare"].append(bare_runs(manifest))
            rounds["all"].append(timed_run(madengine_run, common)[0])
            rounds["one"].append(timed_run(madengine_run, dict(common, tags=[names[0]]))[0])
        bare, ours_all, ours_one = (statistics.median(rounds[k]) for k in ("bare", "all", "one"))
        n = options.models
        bare_per_model = bare / n
        marginal = (ours_all - ours_one) / (n - 1)
        excess = marginal - bare_per_model

        sample = os.path.join(root, "sample")
        shutil.copytree(os.path.join(collection, "examples", "sample_mad"), sample)
        flow_rounds = {"bare": [], "same": [], "ours": []}
        for index in range(options.rounds):
            work = os.path.join(root, "bare-%d" % index)
            os.makedirs(work)
            flow_rounds["bare"].append(bare_build_and_run(sample, prefix, work))
            flow_rounds["same"].append(bare_build_and_run(sample, prefix, work, same_layers=True))
            started = time.monotonic()
            built = run_ok(madengine_build, {"mad_root": sample, "tags": SAMPLE_TAGS, "image_prefix": prefix,
                                                 "labels": {"madci.bench": prefix}, "rebuild": "always",
                                                 "manifest_path": os.path.join(root, "sample.json")})
            result = run_ok(madengine_run, {"manifest_path": os.path.join(root, "sample.json"),
                                                "results_dir": os.path.join(root, "sample-results-%d" % index),
                                                "sysfs_root": sysfs, "run_id": prefix + "sample%d" % index})
            flow_rounds["ours"].append(time.monotonic() - started)
            assert len(built["built"]) == 3, built
            statuses = [r["status"] for r in result["results"]]
            assert statuses == ["SUCCESS"] * 6, statuses
        flow_bare, flow_same, flow_ours = (statistics.median(flow_rounds[k]) for k in ("bare", "same", "ours"))
    finally:
        left = cleanup(prefix)
        shutil.rmtree(root, ignore_errors=True)

    print("madengine_run benchmark: base %s, CPU mode; medians of %d alternating rounds" % (BASE, options.rounds))
    print("")
    print("cost per model (%d models, one image each)" % n)
    print("  bare docker run --rm, %d models       %7.2f s  (%5.0f ms/model)" % (n, bare, bare_per_model * 1000))
    print("  madengine_run, one call, %d models     %7.2f s  (%5.0f ms/model)" % (n, ours_all, ours_all / n * 1000))
    print("  madengine_run, one call, 1 model       %7.2f s" % ours_one)
    print("  marginal cost per model               %7.0f ms  = bare %+.0f ms" % (marginal * 1000, excess * 1000))
    print("")
    print("build + run of %s" % ", ".join(SAMPLE_TAGS))
    print("  bare docker build --no-cache --pull + docker run --rm     %6.2f s  (scripts mounted)" % flow_bare)
    print("  the same, scripts baked like madengine_build does         %6.2f s  (the same engine work as below)"
          % flow_same)
    print("  madengine_build rebuild=always + madengine_run            %6.2f s  ratio %.2fx bare, %.2fx same layers"
          % (flow_ours, flow_ours / flow_bare, flow_ours / flow_same))
    print("")
    ok_excess = excess <= TARGET_EXCESS_S
    ok_flow = flow_ours <= TARGET_BUILD_RUN_RATIO * flow_same
    print("target: marginal cost <= bare docker run + %.1f s: %s (%+.0f ms)"
          % (TARGET_EXCESS_S, "PASS" if ok_excess else "FAIL", excess * 1000))
    print("target: build + run <= %.1fx bare docker commands doing the same work: %s (%.2fx)"
          % (TARGET_BUILD_RUN_RATIO, "PASS" if ok_flow else "FAIL", flow_ours / flow_same))
    if left:
        print("containers left behind: %s" % " ".join(left))
    return 0 if ok_excess and ok_flow and not left else 1


if __name__ == "__main__":
    sys.exit(main())
