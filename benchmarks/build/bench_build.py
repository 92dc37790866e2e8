"""Benchmark of madengine_build against bare ``docker build``, measured in the same run.

1. First build: N generated models, each with its own Dockerfile, built once with bare
   ``docker build --no-cache --network=host --pull`` (madengine's command shape) and once with
   madengine_build ``rebuild: always`` (no cache either), so the ratio is build against build.
2. Cached second build: madengine_build again with nothing changed (every image reused), without
   and with a registry; per-model time = run time / N, plus the marginal cost per model
   ((T(N) - T(1)) / (N - 1)).  Target: <= 50 ms per model.

Run with the installed collection (MADCI_INSTALLED, else /opt/madci/collections):
    /opt/madci/venv/bin/python benchmarks/build/bench_build.py [--models N] [--repeat R] [--first-rounds F]
Needs the Docker engine and the registry of ci/setup-host.sh.  Everything it creates is removed.
Exits 1 when the target is missed.
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
from _collection import run_module, use_installed_collection

REGISTRY = os.environ.get("MADCI_REGISTRY", "localhost:5000")
BASE = REGISTRY + "/mad-base:busybox"
TARGET_MS_PER_MODEL = 50.0


def make_catalogue(root, count):
    """``count`` models, each with its own Dockerfile (ENV, RUN, COPY of a context file) and scripts dir."""
    models = []
    os.makedirs(os.path.join(root, "docker"))
    for index in range(count):
        name = "bench%02d" % index
        models.append({"name": name, "dockerfile": "docker/%s" % name, "scripts": "scripts/%s/run.sh" % name,
                       "tags": ["bench"], "args": "", "n_gpus": "1"})
        with open(os.path.join(root, "docker", "%s.cfg" % name), "w") as handle:
            handle.write("model=%s\n" % name)
        with open(os.path.join(root, "docker", "%s.ubuntu.Dockerfile" % name), "w") as handle:
            handle.write("# CONTEXT {'guest_os': 'UBUNTU'}\nARG BASE_DOCKER=%s\nFROM ${BASE_DOCKER}\n"
                         "ENV MODEL=%s\nRUN echo built %s > /built.txt\nCOPY %s.cfg /etc/model.cfg\n"
                         % (BASE, name, name, name))
        os.makedirs(os.path.join(root, "scripts", name))
        with open(os.path.join(root, "scripts", name, "run.sh"), "w") as handle:
            handle.write('#!/bin/bash\necho "performance: %d.0 samples_per_second"\n' % (index + 1))
    with open(os.path.join(root, "models.json"), "w") as handle:
        json.dump(models, handle)
    return [m["name"] for m in models]


def bare_docker_build(root, names, prefix, same_layers=False):
    """``docker build`` of each model's Dockerfile; ``same_layers`` adds the scripts COPY and LABEL
    lines madengine_build adds, from a context staged by hand (the same work for the engine)."""
    started = time.monotonic()
    for name in names:
        dockerfile, context = "docker/%s.ubuntu.Dockerfile" % name, "docker"
        if same_layers:
            context = os.path.join(root, "staged-" + name)
            shutil.rmtree(context, ignore_errors=True)
            shutil.copytree(os.path.join(root, "docker"), context)
            shutil.copytree(os.path.join(root, "scripts", name), os.path.join(context, ".madengine-build", "scripts"))
            with open(os.path.join(root, "docker", "%s.ubuntu.Dockerfile" % name)) as handle:
                text = handle.read()
            dockerfile = os.path.join(context, ".madengine-build", "Dockerfile")
            with open(dockerfile, "w") as handle:
                handle.write(text + "COPY .madengine-build/scripts/ /madengine/scripts/\nLABEL %s\n" % " ".join(
                    '"org.rocm.madengine.l%d"="v"' % i for i in range(8)))
        subprocess.run(["docker", "build", "--no-cache", "--network=host", "-q", "-t",
                        "%sbare%s-%s" % (prefix, "same" if same_layers else "", name), "--pull", "-f", dockerfile,
                        context], cwd=root, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env=dict(os.environ, DOCKER_BUILDKIT="0"))
    return time.monotonic() - started


def timed(module, args, repeat=1):
    times, result = [], None
    for _round in range(repeat):
        started = time.monotonic()
        result = run_module(module, args)
        times.append(time.monotonic() - started)
        if result.get("failed"):
            raise SystemExit("madengine_build failed: %s" % result.get("msg"))
    return statistics.median(times), result


def cleanup(prefix):
    out = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter",
                          "label=madci.bench=%s" % prefix], capture_output=True, text=True, check=False).stdout.split()
    bare = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True,
                          text=True, check=False).stdout.split()
    refs = sorted(set(out + [r for r in bare if r.startswith(prefix) or r.startswith(REGISTRY + "/" + prefix)]))
    if refs:
        subprocess.run(["docker", "rmi", "-f"] + refs, check=False, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    subprocess.run(["docker", "image", "prune", "-f", "--filter", "label=madci.bench=%s" % prefix], check=False,
                   stdout=subprocess.DEVNULL)
    for host_repo in _pushed_repos(prefix):
        _delete_tag(host_repo)


_PUSHED = []


def _pushed_repos(prefix):
    return [r for r in _PUSHED if r.split("/", 1)[-1].startswith(prefix)]


def _delete_tag(ref):
    import urllib.request

    host, repo = ref.split("/", 1)
    accept = "application/vnd.docker.distribution.manifest.v2+json"
    try:
        request = urllib.request.Request("http://%s/v2/%s/manifests/latest" % (host, repo), method="HEAD",
                                         headers={"Accept": accept})
        with urllib.request.urlopen(request, timeout=10) as response:
            digest = response.headers["Docker-Content-Digest"]
        request = urllib.request.Request("http://%s/v2/%s/manifests/%s" % (host, repo, digest), method="DELETE")
        urllib.request.urlopen(request, timeout=10).close()
    except OSError:
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=8, help="number of generated models (default 8)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each cached measurement (median; default 5)")
    parser.add_argument("--first-rounds", type=int, default=3,
                        help="rounds of the three first builds (median; default 3)")
    options = parser.parse_args()
    use_installed_collection()
    from ansible_collections.rocm.madengine.plugins.modules import madengine_build

    prefix = "bench%s-" % uuid.uuid4().hex[:6]
    root = tempfile.mkdtemp(prefix="madci-bench-mad-")
    try:
        names = make_catalogue(root, options.models)
        common = {"mad_root": root, "image_prefix": prefix, "labels": {"madci.bench": prefix},
                  "manifest_path": os.path.join(root, "build_manifest.json")}
        one = dict(common, tags=[names[0]], manifest_path=os.path.join(root, "one.json"))
        every = dict(common, tags=["bench"])

        # the three first builds alternate, so drift of a shared machine hits them alike
        rounds = {"bare": [], "same": [], "module": []}
        for _round in range(options.first_rounds):
            rounds["bare"].append(bare_docker_build(root, names, prefix))
            rounds["same"].append(bare_docker_build(root, names, prefix, same_layers=True))
            seconds, result = timed(madengine_build, dict(every, rebuild="always"))
            assert len(result["built"]) == options.models, result
            rounds["module"].append(seconds)
        bare, bare_same, first = (statistics.median(rounds[k]) for k in ("bare", "same", "module"))
        cached, result = timed(madengine_build, every, options.repeat)
        assert result["changed"] is False and len(result["reused"]) == options.models, result
        timed(madengine_build, one)
        cached_one, _result = timed(madengine_build, one, options.repeat)

        registry_run = dict(every, registry=REGISTRY, manifest_path=os.path.join(root, "r.json"))
        pushed, result = timed(madengine_build, registry_run)
        _PUSHED.extend(result["pushed"])
        cached_reg, result = timed(madengine_build, registry_run, options.repeat)
        assert result["changed"] is False and result["pushed"] == [], result
        timed(madengine_build, dict(one, registry=REGISTRY, manifest_path=os.path.join(root, "r1.json")))
        cached_reg_one, _result = timed(madengine_build, dict(one, registry=REGISTRY,
                                                               manifest_path=os.path.join(root, "r1.json")),
                                        options.repeat)
    finally:
        cleanup(prefix)
        shutil.rmtree(root, ignore_errors=True)

    n = options.models
    per_model = cached / n * 1000
    marginal = (cached - cached_one) / (n - 1) * 1000 if n > 1 else per_model
    per_model_reg = cached_reg / n * 1000
    marginal_reg = (cached_reg - cached_reg_one) / (n - 1) * 1000 if n > 1 else per_model_reg
    print("madengine_build benchmark: %d models, base %s; medians of %d first-build rounds and %d cached runs" % (
        n, BASE, options.first_rounds, options.repeat))
    print("")
    print("first build (no cache)")
    print("  bare docker build, %d Dockerfiles     %8.2f s  (%6.0f ms/model)" % (n, bare, bare / n * 1000))
    print("  bare docker build + scripts layer     %8.2f s  (%6.0f ms/model)  (the same layers as below)"
          % (bare_same, bare_same / n * 1000))
    print("  madengine_build rebuild=always        %8.2f s  (%6.0f ms/model)  ratio %.2fx bare, %.2fx bare+scripts"
          % (first, first / n * 1000, first / bare, first / bare_same))
    print("  madengine_build + push to %-12s%8.2f s  (%6.0f ms/model, reusing the images; push only)"
          % (REGISTRY, pushed, pushed / n * 1000))
    print("")
    print("cached second build (nothing changed: no build, no push, changed=false)")
    print("  local only         %7.1f ms total  %6.1f ms/model  marginal %6.1f ms/model" % (
        cached * 1000, per_model, marginal))
    print("  with registry      %7.1f ms total  %6.1f ms/model  marginal %6.1f ms/model" % (
        cached_reg * 1000, per_model_reg, marginal_reg))
    print("  against a bare docker build of the same model: %.1f%% (local), %.1f%% (registry)" % (
        per_model / (bare / n * 1000) * 100, per_model_reg / (bare / n * 1000) * 100))
    worst = max(per_model, per_model_reg)
    verdict = "PASS" if worst <= TARGET_MS_PER_MODEL else "FAIL"
    print("")
    print("target <= %.0f ms/model for a cached build: %s (worst %.1f ms/model)"
          % (TARGET_MS_PER_MODEL, verdict, worst))
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
