#!/usr/bin/env python3
"""benchmark.yml over SSH nodes of ci/simulated-fleet.sh: 1, 2, ... N nodes, wall time and controller CPU.

Each node is a container with a Debian root of its own, sshd and its own dockerd, reached over SSH (key
authentication, strict host keys) from the installed collection.  docker_setup prepares the nodes once
(the Docker SDK for Debian's python3, trust of the fleet's registry address) and the images are built once
beforehand; then every run pulls again (each node's images are removed first) and runs the sample models,
each spending --model-seconds in its container, as a benchmark spends its time on the GPU.  Fleet sizes
alternate over the rounds (1..N, then N..1); medians.

Printed per fleet size: the wall time of the playbook, the controller's CPU seconds (ansible-playbook, its
workers and the ssh clients: this process's children), and what each node beyond the first adds.
Target: N nodes (default 4) within 1.3x the wall time of one node.

Run as root with the installed collection (MADCI_INSTALLED, else /opt/madci/collections), on a machine
prepared by ci/setup-host.sh:
    /opt/madci/venv/bin/python benchmarks/fleet/bench_ssh_fleet.py [--rounds 2] [--nodes 4] [--model-seconds 3]
Everything it creates (the fleet, images, registry repositories) is removed.  Exits 1 when the target is missed.
"""

from __future__ import annotations

import argparse
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

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import bench_fleet  # the timed catalogue, the clean-up and the environment of the local benchmark

# N SSH nodes within this many times the wall time of one (the local fleet's target is its own, bench_fleet)
TARGET_SCALING = 1.3

FLEET = os.path.join(REPO, "ci", "simulated-fleet.sh")
KIND = "amd-gfx942"


def fleet(*args):
    proc = subprocess.run([FLEET, *args], capture_output=True, text=True, check=False, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit("simulated-fleet.sh %s failed:\n%s%s" % (" ".join(args), proc.stdout, proc.stderr))
    return proc


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def playbook(inventory, cwd, extra_vars):
    """(wall time, controller CPU seconds) of one rocm.madengine.benchmark run, which must succeed."""
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory,
               "rocm.madengine.benchmark", "-e", json.dumps(extra_vars)]
    cpu, started = children_cpu(), time.monotonic()
    proc = subprocess.run(command, cwd=cwd, env=bench_fleet.ENV, capture_output=True, text=True, check=False)
    elapsed, cpu = time.monotonic() - started, children_cpu() - cpu
    if proc.returncode != 0:
        raise SystemExit("benchmark.yml failed (%s):\n%s" % (inventory, proc.stdout[-4000:] + proc.stderr[-2000:]))
    return elapsed, cpu


def sized_inventory(document, names, path):
    """The fleet's inventory with only the nodes ``names``."""
    sized = json.loads(json.dumps(document))
    hosts = sized["all"]["children"]["gpu_nodes"]["children"][KIND.replace("-", "_")]["hosts"]
    for name in list(hosts):
        if name not in names:
            del hosts[name]
    with open(path, "w") as handle:
        yaml.safe_dump(sized, handle)
    return path


def remove_node_images(fid, names, prefix):
    for name in names:
        subprocess.run(["docker", "exec", "madfleet-%s-%s" % (fid, name), "sh", "-c",
                        "docker images --format '{{.ID}} {{.Repository}}' | grep '/%s' | cut -d' ' -f1 | sort -u "
                        "| xargs -r docker rmi -f" % prefix], capture_output=True, check=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="rounds over the fleet sizes, medians (default 2)")
    parser.add_argument("--nodes", type=int, default=4, help="the largest fleet (default 4)")
    parser.add_argument("--model-seconds", type=float, default=3, help="run time of each timed model (default 3)")
    options = parser.parse_args()
    collection = bench_fleet.use_installed_collection()
    bench_fleet.ENV.update(bench_fleet.ansible_env(os.path.dirname(os.path.dirname(os.path.dirname(collection)))))

    prefix = "benchssh%s-" % uuid.uuid4().hex[:6]
    root = tempfile.mkdtemp(prefix="madci-bench-ssh-")
    directory = os.path.join(root, "fleet")
    found = dict((size, []) for size in range(1, options.nodes + 1))
    setup_s = 0.0
    try:
        fleet("image")
        fleet("up", "--ssh", "--out", directory, "%s:%d" % (KIND, options.nodes))
        with open(os.path.join(directory, "inventory.yml")) as handle:
            document = yaml.safe_load(handle)
        with open(os.path.join(directory, "fleet.json")) as handle:
            fid = json.load(handle)["fid"]
        names = sorted(document["all"]["children"]["gpu_nodes"]["children"][KIND.replace("-", "_")]["hosts"])
        mad = os.path.join(root, "timed")
        bench_fleet.timed_catalogue(os.path.join(collection, "examples", "sample_mad"), mad, options.model_seconds)
        common = {"madengine_mad_root": mad, "madengine_tags": ",".join(bench_fleet.SAMPLE_TAGS),
                  "madengine_image_prefix": prefix, "madengine_additional_context": {"guest_os": "UBUNTU"}}
        full = os.path.join(directory, "inventory.yml")
        started = time.monotonic()  # docker_setup on every node, and the build: once
        playbook(full, root, dict(common, madengine_docker_setup=True, madengine_output_dir=os.path.join(root, "warm")))
        setup_s = time.monotonic() - started
        for index in range(options.rounds):
            sizes = range(1, options.nodes + 1) if index % 2 == 0 else range(options.nodes, 0, -1)
            for size in sizes:
                chosen = names[:size]
                inventory = sized_inventory(document, chosen, os.path.join(root, "inventory-%d.yml" % size))
                remove_node_images(fid, names, prefix)
                out = os.path.join(root, "run-%d-%d" % (size, index))
                found[size].append(playbook(inventory, root, dict(common, madengine_output_dir=out)))
                rows = bench_fleet.rows_of(os.path.join(out, "perf.csv"))
                if len(rows) != bench_fleet.SAMPLE_ROWS * size or any(r["status"] != "SUCCESS" for r in rows):
                    raise SystemExit("the %d-node run did not give %d SUCCESS rows"
                                     % (size, bench_fleet.SAMPLE_ROWS * size))
                if sorted({r["host"] for r in rows}) != chosen:
                    raise SystemExit("the %d-node run has rows of %s" % (size, sorted({r["host"] for r in rows})))
    finally:
        if os.path.exists(directory):
            fleet("down", directory)
        left = bench_fleet.cleanup(prefix)
        shutil.rmtree(root, ignore_errors=True)

    print("benchmark.yml over SSH nodes (%s containers with their own dockerd, on this machine's %d CPUs); each "
          "model runs %gs in its container; medians of %d rounds; docker_setup and the build once before: %.1f s"
          % (KIND, os.cpu_count(), options.model_seconds, options.rounds, setup_s))
    print("")
    print("  nodes   wall s   controller CPU s   rounds (wall)      + per extra node: wall s, CPU s")
    one_wall = statistics.median(w for w, _c in found[1])
    one_cpu = statistics.median(c for _w, c in found[1])
    for size in sorted(found):
        wall = statistics.median(w for w, _c in found[size])
        cpu = statistics.median(c for _w, c in found[size])
        extra = "" if size == 1 else "%+6.2f   %+6.2f" % ((wall - one_wall) / (size - 1), (cpu - one_cpu) / (size - 1))
        print("  %5d   %6.2f   %16.2f   %-17s  %s" % (size, wall, cpu, bench_fleet.fmt(w for w, _c in found[size]),
                                                      extra))
    ratio = statistics.median(w for w, _c in found[options.nodes]) / one_wall
    print("")
    passed = ratio <= TARGET_SCALING
    print("target: %d SSH nodes <= %.1fx 1 node (timed models): %s (%.2fx)"
          % (options.nodes, TARGET_SCALING, "PASS" if passed else "FAIL", ratio))
    if left:
        print("containers left behind: %s" % " ".join(left))
    return 0 if passed and not left else 1


if __name__ == "__main__":
    sys.exit(main())
