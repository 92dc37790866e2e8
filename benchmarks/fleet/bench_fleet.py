#!/usr/bin/env python3
"""benchmark.yml on a simulated fleet: 1 node against 4 nodes, and the 3-model sample end to end.

1. Fleet scaling: rocm.madengine.benchmark (from the installed collection) with the controller on this
   machine's engine (images built once beforehand, so the runs reuse them and push nothing) and 1, then
   4, CPU nodes of a simulated fleet (ci/simulated-fleet.sh: each a Docker engine of its own, with its own
   data root, socket and bridge; the runs take --limit cpu-1 and --limit cpu) that really pull the images
   from the registry: every node's images are removed before every run.  Rounds alternate between the
   two fleet sizes; medians.  Two catalogues:
   - timed: the three sample models, each running --model-seconds (default 3) in its container before
     it prints its result, as a benchmark spends its time on the GPU rather than on the host CPU.
     Targets: 4 nodes take at most 1.15x the time of 1 node, and each node beyond the first costs the
     controller at most 0.53 CPU seconds (half of the 1.06 s measured with a poll every 0.1-2 s).
   - instant: the sample models as they are (they finish in milliseconds).  All 4 simulated nodes share
     this machine's CPUs, so this measures the CPU the orchestration costs per node (Ansible's process
     per task item, the module, the engine), not the fleet's parallelism: printed, with the CPU seconds
     per node, no target.
   The CPU seconds are printed twice: the whole machine's (the nodes' engines and module processes
   included) and the controller's, resource.getrusage of this process's children around each
   ansible-playbook run (ansible-playbook, its workers and what they wait for: on these nodes of a local
   connection the module process that starts a node's run, until it answers; the run itself detaches from
   them, so its process counts as the node's, as it would on a node of its own).
2. End to end, the 3-model sample madengine's own timing used (dummy, dummy_multi,
   dummy2/model2:batch-size=32) with inventories/local (this machine is controller and node) and
   madengine_rebuild=always: discover, build without cache, push, run, merge, report.  Baseline in the
   same rounds: the same modules called in this process (madengine_discover, madengine_build with
   rebuild always and the registry, madengine_run, madengine_report), which is the work without
   Ansible; the ratio to it is printed (no target: benchmarks/overhead/bench_overhead.py times madengine 2.1
   itself against benchmark.yml in the same run).

Run with the installed collection (MADCI_INSTALLED, else /opt/madci/collections):
    /opt/madci/venv/bin/python benchmarks/fleet/bench_fleet.py [--rounds 3] [--nodes 4] [--model-seconds 3]
Needs the Docker engine and registry of ci/setup-host.sh and root (it starts a simulated fleet under /tmp).
Everything it creates is removed.  Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
FLEET_SCRIPT = os.path.join(REPO, "ci", "simulated-fleet.sh")
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "unit"))
from _collection import ansible_env, leftover_containers, run_module, use_installed_collection
from docker_helpers import delete_repositories

REGISTRY = os.environ.get("MADCI_REGISTRY", "localhost:5000")
MAIN_ENGINE = "unix:///var/run/docker.sock"
TARGET_SCALING = 1.15
TARGET_CONTROLLER_CPU_PER_NODE = 0.53  # half of 1.06 s, the controller's CPU per further node with polls every 0.1-2 s
SAMPLE_TAGS = ["dummy", "dummy_multi", "dummy2/model2:batch-size=32"]
SAMPLE_ROWS = 6  # dummy, dummy_multi's four results, dummy2/model2


def system_cpu():
    """CPU seconds this machine has spent (all processes, all cores) so far."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    return (sum(values) - values[3] - values[4]) / float(os.sysconf("SC_CLK_TCK"))


def controller_cpu():
    """CPU seconds of this process's children that have ended (ansible-playbook and what it waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def fleet_script(*args):
    """ci/simulated-fleet.sh with ``args``, which must succeed."""
    proc = subprocess.run([FLEET_SCRIPT] + list(args), capture_output=True, text=True, check=False, timeout=900)
    if proc.returncode != 0:
        raise SystemExit("simulated-fleet.sh %s failed:\n%s%s" % (" ".join(args), proc.stdout, proc.stderr))
    return proc


def node_hosts(inventory, group):
    """{node: its engine} of a group of a simulated fleet's inventory."""
    import yaml

    with open(inventory) as handle:
        document = yaml.safe_load(handle)
    hosts = document["all"]["children"]["gpu_nodes"]["children"][group]["hosts"]
    return dict((name, values["madengine_docker_host"]) for name, values in sorted(hosts.items()))


def remove_images(host):
    """Every image of a node's engine (the node pulls again)."""
    ids = subprocess.run(["docker", "-H", host, "images", "-q"], capture_output=True, text=True,
                         check=False).stdout.split()
    if ids:
        subprocess.run(["docker", "-H", host, "rmi", "-f"] + sorted(set(ids)), check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def playbook(inventory, cwd, extra_vars, args=()):
    """(wall time, CPU seconds of the whole machine, of the controller) of one rocm.madengine.benchmark run, which
    must succeed."""
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory,
               "rocm.madengine.benchmark", "-e", json.dumps(extra_vars)] + list(args)
    cpu, own, started = system_cpu(), controller_cpu(), time.monotonic()
    proc = subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True, check=False)
    elapsed, cpu, own = time.monotonic() - started, system_cpu() - cpu, controller_cpu() - own
    if proc.returncode != 0:
        raise SystemExit("benchmark.yml failed (%s):\n%s" % (inventory, proc.stdout[-4000:] + proc.stderr[-2000:]))
    return elapsed, cpu, own


def rows_of(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def timed_catalogue(source, dest, seconds):
    """The sample catalogue whose models run ``seconds`` in their container before they print results."""
    shutil.copytree(source, dest)
    for name in ("run.sh", "run_multi.sh"):
        path = os.path.join(dest, "scripts", "sample", name)
        with open(path) as handle:
            lines = handle.readlines()
        lines.insert(1, "sleep %s  # the time a benchmark spends on its GPU\n" % seconds)
        with open(path, "w") as handle:
            handle.writelines(lines)


def scaling(fleet, root, name, mad, prefix, count, rounds):
    """Alternating 1-node and ``count``-node runs: {1: [(wall, machine cpu, controller cpu)], count: [...]}."""
    inventory = os.path.join(fleet, "inventory.yml")
    nodes = node_hosts(inventory, "cpu")
    limits = {1: sorted(nodes)[0], count: "cpu"}
    variables = {"madengine_mad_root": mad, "madengine_tags": ",".join(SAMPLE_TAGS), "madengine_image_prefix": prefix}
    playbook(inventory, root, dict(variables, madengine_output_dir=os.path.join(root, name + "-warm")),
             ("--limit", "cpu"))  # build once
    found = {1: [], count: []}
    for index in range(rounds):
        for size in ((1, count) if index % 2 == 0 else (count, 1)):
            for host in nodes.values():
                remove_images(host)
            out = os.path.join(root, "%s-%d-%d" % (name, size, index))
            found[size].append(playbook(inventory, root, dict(variables, madengine_output_dir=out),
                                        ("--limit", limits[size])))
            rows = rows_of(os.path.join(out, "perf.csv"))
            if len(rows) != SAMPLE_ROWS * size or any(r["status"] != "SUCCESS" for r in rows):
                raise SystemExit("the %d-node run (%s) did not give %d SUCCESS rows" % (size, name, SAMPLE_ROWS * size))
    return found


def modules_flow(modules, mad, root, prefix, index):
    """The work of benchmark.yml without Ansible: the same modules, called in this process."""
    discover, build, run, report = modules
    out = os.path.join(root, "modules-%d" % index)
    os.makedirs(out)
    started = time.monotonic()
    models = ok(run_module(discover, {"mad_root": mad, "tags": SAMPLE_TAGS}))["models"]
    manifest = ok(run_module(build, {"mad_root": mad, "models": models, "registry": REGISTRY, "rebuild": "always",
                                     "image_prefix": prefix, "additional_context": {"gpu_vendor": "NONE"},
                                     "manifest_path": os.path.join(out, "build_manifest.json")}))["manifest"]
    rows = ok(run_module(run, {"manifest": manifest, "gpu_vendor": "NONE", "results_dir": os.path.join(out, "node"),
                               "run_id": "%sm%d" % (prefix, index), "node_name": "localhost"}))["results"]
    merged = ok(run_module(report, {"results": {"localhost": rows}, "models": models, "output_dir": out}))
    elapsed = time.monotonic() - started
    if merged["summary"]["counts"]["SUCCESS"] != SAMPLE_ROWS:
        raise SystemExit("the in-process flow did not give %d SUCCESS rows: %s" % (SAMPLE_ROWS, merged["summary"]))
    return elapsed


def ok(result):
    if result.get("failed"):
        raise SystemExit("module failed: %s" % result.get("msg"))
    return result


def cleanup(prefix):
    """Remove this run's images (by name: a rebuilt image keeps only its registry name) and registry tags;
    return the containers of its runs that are left."""
    listing = subprocess.run(["docker", "images", "--no-trunc", "--format", "{{.ID}} {{.Repository}}"],
                             capture_output=True, text=True, check=False).stdout.splitlines()
    ids = sorted(set(line.split()[0] for line in listing if len(line.split()) == 2 and (
        line.split()[1].startswith(prefix) or line.split()[1].startswith(REGISTRY + "/" + prefix))))
    if ids:
        subprocess.run(["docker", "rmi", "-f"] + ids, check=False, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    delete_repositories(REGISTRY, prefix)
    return leftover_containers(prefix)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds, medians (default 3)")
    parser.add_argument("--nodes", type=int, default=4, help="nodes of the larger fleet (default 4)")
    parser.add_argument("--model-seconds", type=float, default=3, help="run time of each timed model (default 3)")
    options = parser.parse_args()
    collection = use_installed_collection()
    ENV.update(ansible_env(os.path.dirname(os.path.dirname(os.path.dirname(collection)))))
    from ansible_collections.rocm.madengine.plugins.modules import (
        madengine_build,
        madengine_discover,
        madengine_report,
        madengine_run,
    )

    session = uuid.uuid4().hex[:6]
    prefix = "benchfleet%s-" % session
    root = tempfile.mkdtemp(prefix="madci-bench-fleet-")
    sample = os.path.join(collection, "examples", "sample_mad")
    fleet = os.path.join(root, "fleet")
    flow = {"playbook": [], "modules": []}
    try:
        fleet_script("up", "--out", fleet, "cpu:%d" % options.nodes)
        timed_catalogue(sample, os.path.join(root, "timed"), options.model_seconds)
        timed = scaling(fleet, root, "timed", os.path.join(root, "timed"), prefix + "t-", options.nodes,
                        options.rounds)
        shutil.copytree(sample, os.path.join(root, "instant"))
        instant = scaling(fleet, root, "instant", os.path.join(root, "instant"), prefix + "i-", options.nodes,
                          options.rounds)

        local = os.path.join(collection, "inventories", "local")
        modules = (madengine_discover, madengine_build, madengine_run, madengine_report)
        for index in range(options.rounds):
            out = os.path.join(root, "e2e-%d" % index)
            flow["playbook"].append(playbook(local, root, {"madengine_output_dir": out, "madengine_rebuild": "always",
                                                           "madengine_image_prefix": prefix})[0])
            rows = rows_of(os.path.join(out, "perf.csv"))
            if [r["status"] for r in rows] != ["SUCCESS"] * SAMPLE_ROWS:
                raise SystemExit("the end-to-end run did not give %d SUCCESS rows" % SAMPLE_ROWS)
            flow["modules"].append(modules_flow(modules, sample, root, prefix, index))
    finally:
        if os.path.exists(os.path.join(fleet, "fleet.json")):
            fleet_script("down", fleet)
        left = cleanup(prefix)
        shutil.rmtree(root, ignore_errors=True)

    n = options.nodes
    print("benchmark.yml on a simulated fleet (ci/simulated-fleet.sh: one Docker engine per node, all on this "
          "machine's %d CPUs); medians of %d "
          "alternating rounds" % (os.cpu_count(), options.rounds))
    print("")
    ratios, per_node = {}, {}
    for label, found in (("timed: each model runs %gs in its container" % options.model_seconds, timed),
                         ("instant: the sample models as they are (CPU-bound here, no target)", instant)):
        one, many = (statistics.median(w for w, _c, _o in found[k]) for k in (1, n))
        cpu_one, cpu_many = (statistics.median(c for _w, c, _o in found[k]) for k in (1, n))
        own_one, own_many = (statistics.median(o for _w, _c, o in found[k]) for k in (1, n))
        ratios[found is timed] = many / one
        per_node[found is timed] = (own_many - own_one) / (n - 1)
        print("fleet scaling, %s" % label)
        print("  1 node    %6.2f s   rounds %s   CPU %.1f s, controller %.2f s"
              % (one, fmt(w for w, _c, _o in found[1]), cpu_one, own_one))
        print("  %d nodes   %6.2f s   rounds %s   CPU %.1f s, controller %.2f s" % (
            n, many, fmt(w for w, _c, _o in found[n]), cpu_many, own_many))
        print("  per more node: %.2f CPU s, controller %.2f CPU s (rounds %s)"
              % ((cpu_many - cpu_one) / (n - 1), per_node[found is timed],
                 fmt((m[2] - o[2]) / (n - 1) for o, m in zip(found[1], found[n]))))
        print("  ratio     %6.2fx" % (many / one))
        print("")
    e2e, bare = statistics.median(flow["playbook"]), statistics.median(flow["modules"])
    print("end to end, %s, inventories/local, rebuild always" % ", ".join(SAMPLE_TAGS))
    print("  ansible-playbook rocm.madengine.benchmark %6.2f s   rounds %s" % (e2e, fmt(flow["playbook"])))
    print("  the same modules in-process (no Ansible)  %6.2f s   rounds %s  -> Ansible adds %.2f s (%.2fx)"
          % (bare, fmt(flow["modules"]), e2e - bare, e2e / bare))
    print("")
    ok_scaling = ratios[True] <= TARGET_SCALING
    ok_cpu = per_node[True] <= TARGET_CONTROLLER_CPU_PER_NODE
    print("target: %d nodes <= %.2fx 1 node (timed models): %s (%.2fx)"
          % (n, TARGET_SCALING, "PASS" if ok_scaling else "FAIL", ratios[True]))
    print("target: controller CPU per more node <= %.2f s (timed models): %s (%.2f s)"
          % (TARGET_CONTROLLER_CPU_PER_NODE, "PASS" if ok_cpu else "FAIL", per_node[True]))
    if left:
        print("containers left behind: %s" % " ".join(left))
    print("load average at the end: %s" % " ".join("%.2f" % v for v in os.getloadavg()))
    return 0 if ok_scaling and ok_cpu and not left else 1


def fmt(values):
    return " ".join("%.2f" % v for v in values)


ENV = {}  # environment of every ansible-playbook run, set once the installed collection is found

if __name__ == "__main__":
    sys.exit(main())
