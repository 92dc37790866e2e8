#!/usr/bin/env python3
"""The whole overhead of VM mode with the real guest, phase by phase: rocm.madengine.vm_benchmark on one node.

The guest is the Debian 12 image of ci/guest-image.sh with Docker and Debian's Docker SDK preinstalled, booted by
libvirt in software emulation (QEMU TCG: this machine has no KVM) with 2 vCPUs and 2 GiB, on a libvirt NAT network
of its own; the registry listens on the network's bridge, a build engine of the benchmark's own pushes to it (the
models are built once beforehand, so every run only checks the build). One model (dummy) runs in the guest.

Phases of the node's VM, from the play's own task results (ansible.posix.json callback):
  overlay, seed, define      madengine_vm's timings (qemu-img, the NoCloud ISO, define)
  boot to SSH                madengine_vm's start + wait (QEMU started, DHCP lease, an SSH banner)
  login                      wait_for_connection: the controller logs in as the seed's user
  Docker ready               from the login to the first model's task: the engine probe, a ping of the VM and
                             docker_setup (what the VM has, registry trust, a reload, the SDK check)
  first model starts         the model's task without the model's own run: module transfer, the guest's Python,
                             the pull from the registry, the container's creation and start
  teardown to verified clean madengine_vm absent: destroy, undefine, files removed, the host checked
The sum is the overhead VM mode adds to a run. Target on a 2-core machine without KVM: under 120 s; the original
VM mode documents 3-5 minutes per run for its VM set-up and cleanup (printed for reference).

Baseline in the same run: the same model through rocm.madengine.benchmark on a node engine of this machine (no VM):
the node's play with and without the VM, and the difference.

Usage: python benchmarks/vm/bench_guest.py [--rounds 1]
Needs root, libvirtd (ci/libvirtd.sh), the guest images (ci/guest-image.sh builds them the first time) and the
engine and registry of ci/setup-host.sh. Everything it starts is stopped and removed. Exits 1 when the median
overhead misses the target or anything is left behind.
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
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "unit"))
from _collection import use_installed_collection
from real_guest import (
    build_engine,
    free_port,
    guest_images,
    guest_registry,
    nat_network,
    vm_mode_vars,
    vm_node_vars,
)

URI = "qemu:///system"
TARGET_S = 120.0
ORIGINAL_S = (180.0, 300.0)
PHASES = ("overlay", "seed", "define", "boot to SSH", "login", "Docker ready", "first model starts",
          "teardown to verified clean")
# The one-line split of the overhead: what the guest costs (its boot, the login, Docker, the first model's start)
# and what the host does around it.
SPLIT = (("boot", ("overlay", "seed", "define", "boot to SSH")), ("login", ("login",)),
         ("Docker ready", ("Docker ready",)), ("first model", ("first model starts",)),
         ("teardown", ("teardown to verified clean",)))
START = "Start the VM and wait for it (madengine_vm)"
LOGIN = "Wait until the VM accepts connections"
RUN = "Run each model"
REMOVE = "Remove the VM and everything it owns (madengine_vm absent)"


def ansible_env(collections):
    env = dict(os.environ)
    deps = os.environ.get("MADCI_DEPS", "/opt/madci/collections")
    env.update(ANSIBLE_COLLECTIONS_PATH=os.pathsep.join([collections, deps]), ANSIBLE_NOCOLOR="1",
               ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_LOCALHOST_WARNING="0",
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
               ANSIBLE_LOAD_CALLBACK_PLUGINS="1")
    return env


def playbook(name, inventory, env):
    """The json callback's output of one run, which must succeed."""
    started = time.monotonic()
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory, name],
                          env=env, capture_output=True, text=True, check=False, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit("%s failed (%d):\n%s%s" % (name, proc.returncode, proc.stdout[-6000:], proc.stderr[-3000:]))
    out = json.loads(proc.stdout)
    out["seconds"] = time.monotonic() - started
    return out


def _stamp(text):
    """Seconds since the epoch of the callback's ISO time stamps (2026-12-03T10:15:00.123456Z)."""
    from datetime import datetime, timezone

    return datetime.fromisoformat(text.rstrip("Z")).replace(tzinfo=timezone.utc).timestamp()


def task(out, name, host, nth=-1):
    """(result, start, end) of the nth task whose name (without its role) starts with ``name`` that ran on ``host``."""
    found = [t for p in out["plays"] for t in p["tasks"]
             if t["task"]["name"].split(" : ", 1)[-1].startswith(name) and host in t["hosts"]]
    if not found:
        raise SystemExit("no task %r ran on %s" % (name, host))
    chosen = found[nth]
    duration = chosen["task"]["duration"]
    return chosen["hosts"][host], _stamp(duration["start"]), _stamp(duration["end"])


def node_play_seconds(out, prefix):
    play = next(p for p in out["plays"] if p["play"]["name"].startswith(prefix))
    return _stamp(play["play"]["duration"]["end"]) - _stamp(play["play"]["duration"]["start"])


def tasks_between(out, host, start, end):
    """(seconds, name) of the tasks that ran on ``host`` between two time stamps, longest first."""
    found = []
    for play in out["plays"]:
        for entry in play["tasks"]:
            span = entry["task"]["duration"]
            begin, finish = _stamp(span["start"]), _stamp(span["end"])
            if host in entry["hosts"] and begin >= start - 0.01 and finish <= end + 0.01 \
                    and not entry["hosts"][host].get("skipped"):
                found.append((finish - begin, entry["task"]["name"].split(" : ", 1)[-1]))
    return sorted(found, reverse=True)


def phases(out, node):
    """The phases of the node's VM in one vm_benchmark run (seconds)."""
    vm, _s, _e = task(out, START, node)
    timings = vm["timings"]
    _login, login_start, login_end = task(out, LOGIN, node)
    run, run_start, run_end = task(out, RUN, node)
    model_run = sum(r["timings"].get("run", 0.0) for r in run["runs"])
    _gone, gone_start, gone_end = task(out, REMOVE, node)
    return {
        "overlay": timings["overlay"], "seed": timings["seed"], "define": timings["define"],
        "boot to SSH": timings["start"] + timings["wait"], "login": login_end - login_start,
        "Docker ready": run_start - login_end, "first model starts": run_end - run_start - model_run,
        "teardown to verified clean": gone_end - gone_start,
        "_docker_tasks": tasks_between(out, node, login_end, run_start),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    collections = os.path.dirname(os.path.dirname(os.path.dirname(use_installed_collection())))
    env = ansible_env(collections)
    subprocess.run(["bash", os.path.join(SRC, "ci", "libvirtd.sh")], check=True, stdout=subprocess.DEVNULL)
    import libvirt

    images = guest_images()
    session = uuid.uuid4().hex[:6]
    node, bare = "benchvm%s" % session, "benchbare%s" % session
    work = tempfile.mkdtemp(prefix="bench-guest-")
    load_before = os.getloadavg()
    conn = libvirt.open(URI)
    rounds, bare_seconds, vm_seconds, left = [], [], [], []
    try:
        with nat_network(conn, "benchvm" + session) as network:
            listen = "%s:%d" % (network["address"], free_port(network["address"]))
            with guest_registry(listen, work, storage=os.path.join(work, "registry")) as registry, \
                    build_engine("/tmp/madci-bvm%sb" % session, [registry["address"]]) as builder, \
                    build_engine("/tmp/madci-bvm%sn" % session, [registry["address"]]) as bare_engine:
                inventory = write_inventory(work, images, network, registry["address"], builder, bare_engine,
                                            node, bare, session)
                playbook(os.path.join(SRC, "playbooks", "build.yml"), inventory["vm"], env)  # build once
                for _ in range(args.rounds):
                    bare_out = playbook("rocm.madengine.benchmark", inventory["bare"], env)
                    bare_seconds.append(node_play_seconds(bare_out, "Run"))
                    vm_out = playbook("rocm.madengine.vm_benchmark", inventory["vm"], env)
                    vm_seconds.append(node_play_seconds(vm_out, "Run every model in an ephemeral VM"))
                    rounds.append(phases(vm_out, node))
                left = [d.name() for d in conn.listAllDomains(0) if d.name().endswith(session)]
                left += [f for sub in ("images", "state", "logs") for f in os.listdir(os.path.join(work, sub))]
    finally:
        conn.close()
        shutil.rmtree(work, ignore_errors=True)
    report(rounds, bare_seconds, vm_seconds, load_before, os.getloadavg(), images)
    total = statistics.median(sum(r[p] for p in PHASES) for r in rounds)
    if left:
        print("LEFT BEHIND: %s" % left)
        return 1
    return 0 if total < TARGET_S else 1


def write_inventory(work, images, network, registry, builder, bare_engine, node, bare, session):
    """Two inventories over one catalogue: the node with its VM, and the node itself (the baseline)."""
    import yaml

    mad = os.path.join(work, "mad")
    shutil.copytree(os.path.join(use_installed_collection(), "examples", "sample_mad"), mad)
    key = os.path.join(work, "id_ed25519")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    dirs = {}
    for sub in ("images", "state", "logs", "results"):
        dirs[sub] = os.path.join(work, sub)
        os.mkdir(dirs[sub])
    common = {"madengine_mad_root": mad, "madengine_tags": "dummy", "madengine_registry": registry,
              "madengine_image_prefix": "benchvm%s-" % session, "madengine_gpu_vendor": "NONE",
              "madengine_additional_context": {"gpu_vendor": "NONE", "guest_os": "UBUNTU"},
              "madengine_output_dir": dirs["results"], "madengine_timeout": 300}
    controller = {"localhost": {"ansible_connection": "local", "madengine_docker_host": builder.host}}
    paths = {}
    for kind, hosts in (
            ("vm", {node: vm_node_vars(images, "docker", network, dirs)}),
            ("bare", {bare: {"ansible_connection": "local", "madengine_docker_host": bare_engine.host,
                             "madengine_pull": "always"}})):
        all_vars = dict(common, **vm_mode_vars(key, URI)) if kind == "vm" else dict(common)
        path = os.path.join(work, "%s.yml" % kind)
        with open(path, "w") as handle:
            yaml.safe_dump({"all": {"vars": all_vars, "children": {"controller": {"hosts": controller},
                                                                   "gpu_nodes": {"hosts": hosts}}}}, handle)
        paths[kind] = path
    return paths


def report(rounds, bare_seconds, vm_seconds, load_before, load_after, images):
    med = dict((p, statistics.median(r[p] for r in rounds)) for p in PHASES)
    total = statistics.median(sum(r[p] for p in PHASES) for r in rounds)
    print("VM mode's overhead with the real guest (%s, kernel %s; QEMU TCG, 2 vCPUs, 2 GiB; Docker preinstalled), "
          "median of %d round(s), seconds:" % (images["distribution"], images["kernel_release"], len(rounds)))
    for phase in PHASES:
        print("  %-27s %7.2f" % (phase, med[phase]))
    print("  %-27s %7.2f" % ("total overhead", total))
    print("split: " + ", ".join("%s %.1f" % (name, sum(med[p] for p in parts)) for name, parts in SPLIT)
          + " = %.1f s" % total)
    print("the tasks of 'Docker ready' (last round): %s" % ", ".join(
        "%s %.1f" % (name, seconds) for seconds, name in rounds[-1]["_docker_tasks"]))
    print("target < %.0f s: %s (%.1f s)" % (TARGET_S, "PASS" if total < TARGET_S else "FAIL", total))
    print("the original VM mode's 3-5 minutes per run for VM set-up and cleanup: %.1f-%.1fx this overhead"
          % (ORIGINAL_S[0] / total, ORIGINAL_S[1] / total))
    bare, in_vm = statistics.median(bare_seconds), statistics.median(vm_seconds)
    print("baseline, same run: the node's play on the node itself %.1f s, in a VM %.1f s (+%.1f s, %.1fx)"
          % (bare, in_vm, in_vm - bare, in_vm / bare))
    print("load average (1, 5, 15 min) before %s, after %s, on %d CPUs" % (
        " ".join("%.2f" % v for v in load_before), " ".join("%.2f" % v for v in load_after), os.cpu_count()))


if __name__ == "__main__":
    sys.exit(main())
