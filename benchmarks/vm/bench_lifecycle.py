#!/usr/bin/env python3
"""Lifecycle overhead of one ephemeral VM, phase by phase, on a real libvirtd (guest boot excluded).

Phases: overlay (qemu-img), seed (NoCloud ISO), define, start (QEMU up), destroy, cleanup (undefine with the
NVRAM flags + removal of overlay, seed, NVRAM, console log and state file).

Two ways are measured in the same run, on the same host, with the same guest:
  ours      the collection's module_utils (libvirt-python, what madengine_vm runs);
  baseline  the same steps driven through the command line, one process per step (qemu-img, genisoimage,
            virsh define/start/destroy/undefine, rm), the way shell-based tooling does it.
The target is < 5 s for the whole lifecycle without boot; the original VM mode documents 3-5 minutes
per VM end to end (boot and in-guest Docker set-up included), printed for reference only.

Usage: python benchmarks/vm/bench_lifecycle.py [--rounds 5] [--firmware bios|efi]
Needs root, libvirtd on qemu:///system (ci/libvirtd.sh starts it) and the test guest it prepares.
Exit status 1 when the median of ours exceeds the target.
"""

from __future__ import annotations

import argparse
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
TARGET_S = 5.0
ORIGINAL_S = (180.0, 300.0)
PHASES = ("overlay", "seed", "define", "start", "destroy", "cleanup")
GUEST_DIR = os.environ.get("MADCI_GUEST_DIR", "/var/cache/madci/guest")
URI = "qemu:///system"


def _import_collection():
    sys.path.insert(0, os.path.dirname(HERE))
    from _collection import use_installed_collection

    use_installed_collection()
    from ansible_collections.rocm.madengine.plugins.module_utils.vm import lifecycle as _vm_lifecycle
    from ansible_collections.rocm.madengine.plugins.module_utils.vm import spec as _vm_spec
    return _vm_spec, _vm_lifecycle


def run_command(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def params(work, name, firmware):
    return dict(
        name=name, state="running", uri=URI, base_image=os.path.join(work, "base.qcow2"), vcpus=1, memory="256M",
        disk_size="1G", hostdevs=[], managed=False, mdevs=[], ssh_user="root", ssh_pubkey=None, user_data=None,
        wait_for="none", ip_sources=["console"], ssh_port=22, boot_timeout=60, retries=0, retry_delay=1.0,
        recreate=False, stop_timeout=10, verify_clean=True, keep_logs=False, domain_type="auto", firmware=firmware,
        machine="q35", cpu_pinning="none", hugepages=False, hugepage_size="1G", maxphysaddr="passthrough",
        network="default", network_type="user", kernel=os.path.join(GUEST_DIR, "vmlinuz"),
        initrd=os.path.join(GUEST_DIR, "initramfs.gz"), kernel_args="console=ttyS0 quiet", disk_cache="writeback",
        run_id=None, sysfs_root="/", sweep=None, image_dir=os.path.join(work, "images"),
        state_dir=os.path.join(work, "state"), log_dir=os.path.join(work, "logs"),
    )


def ours(vs, lc, conn, work, firmware):
    name = "madengine-vm-bench-%s" % uuid.uuid4().hex[:8]
    spec = vs.build_spec(params(work, name, firmware), run_command)
    life = lc.Lifecycle(conn, run_command)
    life.ensure(spec, "running")
    life.teardown(name, lc.load_record(spec["state_dir"], name))
    t = life.timings
    return dict(overlay=t["overlay"], seed=t["seed"], define=t["define"], start=t["start"], destroy=t["destroy"],
                cleanup=t["undefine"] + t["cleanup"])


def baseline(vs, work, firmware):
    """The same lifecycle, one command per step."""
    name = "madengine-vm-bench-cli-%s" % uuid.uuid4().hex[:8]
    spec = vs.build_spec(params(work, name, firmware), run_command)
    xml_path = os.path.join(work, name + ".xml")
    with open(xml_path, "w") as handle:
        handle.write(vs.render_domain_xml(dict(spec["xml_context"], created="2026-01-01T00:00:00Z")))
    seed_dir = os.path.join(work, name + "-seed")
    os.mkdir(seed_dir)
    for fname, text in (("user-data", spec["user_data"]), ("meta-data", spec["meta_data"])):
        with open(os.path.join(seed_dir, fname), "w") as handle:
            handle.write(text)
    steps = [
        ("overlay", ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", spec["base_image"],
                     spec["overlay"], str(spec["disk_bytes"])]),
        ("seed", ["genisoimage", "-quiet", "-output", spec["seed"], "-volid", "cidata", "-joliet", "-rock",
                  os.path.join(seed_dir, "user-data"), os.path.join(seed_dir, "meta-data")]),
        ("define", ["virsh", "-q", "-c", URI, "define", xml_path]),
        ("start", ["virsh", "-q", "-c", URI, "start", name]),
        ("destroy", ["virsh", "-q", "-c", URI, "destroy", name]),
        ("cleanup", ["virsh", "-q", "-c", URI, "undefine", "--nvram", name]),
        ("cleanup", ["rm", "-f", spec["overlay"], spec["seed"], spec["console_log"]]),
    ]
    times = dict.fromkeys(PHASES, 0.0)
    for phase, argv in steps:
        start = time.monotonic()
        rc, _out, err = run_command(argv)
        times[phase] += time.monotonic() - start
        if rc != 0:
            raise SystemExit("baseline step %s failed: %s" % (" ".join(argv[:4]), err.strip()))
    shutil.rmtree(seed_dir)
    return times


def report(label, rounds):
    med = {p: statistics.median(r[p] for r in rounds) for p in PHASES}
    total = statistics.median(sum(r[p] for p in PHASES) for r in rounds)
    print("%-9s " % label + " ".join("%8.3f" % med[p] for p in PHASES) + " %8.3f" % total)
    return med, total


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--firmware", choices=["bios", "efi"], default="bios")
    args = parser.parse_args()
    if subprocess.run(["virsh", "-c", URI, "version"], capture_output=True, check=False).returncode != 0:
        subprocess.run(["bash", os.path.join(SRC, "ci", "libvirtd.sh")], check=True)
    vs, lc = _import_collection()
    conn = lc.connect(URI)
    work = tempfile.mkdtemp(prefix="bench-vm-")
    try:
        for sub in ("images", "state", "logs"):
            os.mkdir(os.path.join(work, sub))
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", os.path.join(work, "base.qcow2"), "1G"],
                       check=True)
        ours(vs, lc, conn, work, args.firmware)  # warm-up: page cache, QEMU binary, firmware files
        mine, cli = [], []
        for _ in range(args.rounds):
            mine.append(ours(vs, lc, conn, work, args.firmware))
            cli.append(baseline(vs, work, args.firmware))
        leftover = [d.name() for d in conn.listAllDomains(0) if d.name().startswith("madengine-vm-bench-")]
        left_files = [f for sub in ("images", "state", "logs") for f in os.listdir(os.path.join(work, sub))]
    finally:
        conn.close()
        shutil.rmtree(work, ignore_errors=True)
    print("VM lifecycle overhead without guest boot: median of %d rounds, seconds, firmware %s"
          % (args.rounds, args.firmware))
    print("%-9s " % "" + " ".join("%8s" % p for p in PHASES) + " %8s" % "total")
    _m, total = report("ours", mine)
    _b, base_total = report("baseline", cli)
    print("ours / baseline (CLI, same run): %.2fx" % (total / base_total))
    print("target < %.1f s: %s (%.2f s)" % (TARGET_S, "PASS" if total < TARGET_S else "FAIL", total))
    print("original VM mode, documented 3-5 min per VM end to end (reference, not measured here): "
          "%.0f-%.0fx the overhead measured here" % (ORIGINAL_S[0] / total, ORIGINAL_S[1] / total))
    if leftover or left_files:
        print("LEFT BEHIND: %s %s" % (leftover, left_files))
        return 1
    return 0 if total < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
