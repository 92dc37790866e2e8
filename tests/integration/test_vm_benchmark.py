"""vm_benchmark.yml end to end, run as rocm.madengine.vm_benchmark from the installed tarball.

This machine has no GPU, no IOMMU and no nested KVM, so the VMs are what it can run: a real libvirtd with QEMU in
software emulation booting the tiny guest of ci/libvirtd.sh (a Debian kernel and a busybox initramfs, user-mode
networking, its address read from the console). That guest cannot run Docker, so each VM's inventory host is
reached with a local connection and a madengine_docker_host pointing at a simulated node engine of its own
(madengine_vm_host_vars, the knob that holds a ProxyJump in production): madengine_run runs "in the VM" through
exactly the delegation a real VM gets, and the rows carry the VM's libvirt UUID. The build runs for real on the
controller (main engine, local registry); each node engine pulls from the registry.

1. two nodes, passthrough none (CPU-only VMs): build, two real VMs booted and removed, rows, merged CSV + HTML;
2. --check: everything planned, nothing created;
   bad settings (a relative base image, a bad VM name, unknown option keys, an option the role sets, a value of the
   wrong type, a bad choice) are named first, each with its node;
3. faults: the VM start fails (a hostdev on a host without VFIO) on one node and the wait times out on the other;
4. the play is interrupted (SIGTERM to ansible-playbook's process group) while a model runs in the VM: the next
   run removes what was left, a preserve run keeps its VM, and the vm_cleanup entry point removes it;
5. passthrough on fake sysfs trees (libvirt test driver): GPUs bound for VFIO reach the VM and are given back, and
   a tree whose writes cannot take effect fails the node and is left exactly as found.

Every test checks with libvirt and the filesystem that no domain, overlay, seed, console log or state file (and no
device binding) is left.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

import libvirt
import pytest
import yaml
from conftest import COLLECTION_DIR, MAIN_ENGINE, REGISTRY, SAMPLE_MAD, ansible_env, run_playbook, task_results
from fake_sysfs import FakeKernel
from vm_helpers import GUEST_DIR, ensure_libvirtd, fake_host, hold_vfio, make_base, pci_drivers, private_uri

pytestmark = [pytest.mark.libvirtd, pytest.mark.docker, pytest.mark.slow]

SESSION = uuid.uuid4().hex[:6]
PREFIX = "vmb%s-" % SESSION
URI = "qemu:///system"
NODES = ("vmb%sa" % SESSION, "vmb%sb" % SESSION)
MODELS = ["dummy", "dummy_multi", "dummy_fail"]
NODE_ROWS = [("dummy", "SUCCESS")] + [("dummy_multi_%d" % n, "SUCCESS") for n in range(1, 5)] + [
    ("dummy_fail", "FAILURE")]
START = "Start the VM and wait for it (madengine_vm)"
RUN = "Run each model"
CLEAN = "Check that nothing of the VM is left"
REMOVE = "Remove the VM and everything it owns (madengine_vm absent)"
MARK = "Fail this node with the reason its run failed"


def vm_name(node):
    return "madengine-vm-" + node


@pytest.fixture(scope="module")
def conn():
    ensure_libvirtd(URI)
    handle = libvirt.open(URI)
    yield handle
    # never leave a running QEMU behind, even when an assertion failed
    for dom in handle.listAllDomains(0):
        if dom.name().startswith("madengine-vm-vmb%s" % SESSION):
            if dom.isActive():
                dom.destroy()
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
    handle.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory, conn, main_api, engines):
    root = tmp_path_factory.mktemp("vmb")
    mad = root / "mad"
    shutil.copytree(SAMPLE_MAD, mad)
    return {"root": root, "mad": mad, "base": make_base(root / "base.qcow2"), "engines": engines, "conn": conn}


def tiny_guest(dirs, **extra):
    """madengine_vm options for the test guest: direct kernel boot, user networking, address from the console."""
    options = dict(kernel=os.path.join(GUEST_DIR, "vmlinuz"), initrd=os.path.join(GUEST_DIR, "initramfs.gz"),
                   kernel_args="console=ttyS0 quiet", firmware="bios", disk_cache="writeback", network_type="user",
                   ip_sources=["console"], boot_timeout=90, retries=0, retry_delay=0.2,
                   image_dir=str(dirs["images"]), state_dir=str(dirs["state"]), log_dir=str(dirs["logs"]))
    options.update(extra)
    return options


def make_dirs(root):
    dirs = {k: root / k for k in ("images", "state", "logs", "results")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    return dirs


def write_inventory(site, root, nodes, **common):
    """An inventory: the controller builds; each node gets a VM reached locally, its engine a node engine."""
    dirs = make_dirs(root)
    all_vars = {
        "ansible_connection": "local",
        "madengine_mad_root": str(site["mad"]), "madengine_tags": ",".join(MODELS),
        "madengine_registry": REGISTRY, "madengine_image_prefix": PREFIX,
        "madengine_gpu_vendor": "NONE", "madengine_additional_context": {"gpu_vendor": "NONE", "guest_os": "UBUNTU"},
        "madengine_output_dir": str(dirs["results"]), "madengine_timeout": 120,
        "madengine_vm_base_image": site["base"], "madengine_vm_uri": URI, "madengine_vm_passthrough": "none",
        "madengine_vm_vcpus": 1, "madengine_vm_memory": "256M", "madengine_vm_disk_size": "128M",
        "madengine_vm_wait_for": "ip", "madengine_vm_options": tiny_guest(dirs),
    }
    all_vars.update(common)
    hosts = {}
    for name, extra in nodes.items():
        host = dict(extra)
        if "madengine_vm_host_vars" not in host:
            host["madengine_vm_host_vars"] = {"ansible_connection": "local",
                                              "madengine_docker_host": site["engines"][name].host}
        hosts[name] = host
    inventory = {"all": {"vars": all_vars, "children": {
        "controller": {"hosts": {"localhost": {"madengine_docker_host": MAIN_ENGINE}}},
        "gpu_nodes": {"hosts": hosts}}}}
    path = root / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    return str(path), dirs


def vm_benchmark(inventory, check=False, extra_vars=None, playbook="rocm.madengine.vm_benchmark", args=()):
    started = time.monotonic()
    rc, out, log = run_playbook(playbook, inventory=inventory, check=check, extra_vars=extra_vars, timeout=600,
                                env={"ANSIBLE_SHOW_CUSTOM_STATS": "1"}, args=args)
    assert out is not None, log
    return {"rc": rc, "out": out, "log": log, "seconds": time.monotonic() - started}


def vm_cleanup(inventory, tmp_path, args=()):
    """The role's vm_cleanup entry point on gpu_nodes, as the documentation shows it."""
    playbook = tmp_path / "cleanup.yml"
    playbook.write_text(
        "---\n- name: Remove what VM runs left on the nodes\n  hosts: gpu_nodes\n  gather_facts: false\n  tasks:\n"
        "    - name: Remove the VM and give the GPUs back\n      ansible.builtin.import_role:\n"
        "        name: rocm.madengine.madengine\n        tasks_from: vm_cleanup\n")
    return vm_benchmark(inventory, playbook=str(playbook), args=args)


def domains(conn, names):
    return sorted(d.name() for d in conn.listAllDomains(0) if d.name() in names)


def files(dirs):
    return sorted(p for key in ("images", "state", "logs") for p in glob.glob(os.path.join(str(dirs[key]), "*")))


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# ---- 1. two nodes, each with a real VM -----------------------------------------------------------

@pytest.fixture(scope="module")
def first(site, tmp_path_factory):
    inventory, dirs = write_inventory(site, tmp_path_factory.mktemp("first"), dict((n, {}) for n in NODES))
    run = vm_benchmark(inventory)
    run["dirs"] = dirs
    print("\nvm_benchmark, 2 nodes with a real VM each: %.1f s" % run["seconds"])
    return run


def test_every_node_runs_its_models_in_its_own_vm_and_is_left_clean(first, site, main_api):
    assert first["rc"] == 0, first["log"]
    out = first["out"]
    assert all(play["play"]["path"].startswith(COLLECTION_DIR) for play in out["plays"])
    build = task_results(out, "Build and push the images, write the manifest")["localhost"]
    assert sorted(build["pushed"]) == sorted("%s/%s%s_cpu.ubuntu" % (REGISTRY, PREFIX, m) for m in MODELS)

    started = task_results(out, START)
    rows = read_csv(first["dirs"]["results"] / "perf.csv")
    assert [(r["host"], r["model"], r["status"]) for r in rows] == [
        (node, model, status) for node in NODES for model, status in NODE_ROWS]
    for node in NODES:
        vm = started[node]
        assert vm["changed"] is True and vm["domain_type"] == "qemu" and vm["ip"] == "10.0.2.15"
        assert vm["overlay"] == str(first["dirs"]["images"] / (vm_name(node) + ".qcow2"))
        # every node's rows come from its own VM: deployment type vm, the VM's UUID, the node as host
        assert set((r["deployment_type"], r["vm_id"]) for r in rows if r["host"] == node) == {("vm", vm["uuid"])}
        # one madengine_run for the node's models, run inside the VM (delegated to the VM's inventory host)
        run = task_results(out, RUN)[node]
        assert [r["model"] for r in run["runs"]] == MODELS
        assert run["_ansible_delegated_vars"]["ansible_delegated_host"] == vm_name(node)
        # the node's facts are its rows
        facts = task_results(out, "Publish this node's rows as its facts (and, in check mode, its plan)")[node]
        assert [(r["model"], r["vm_id"]) for r in facts["ansible_facts"]["madengine_results"]] == [
            (m, vm["uuid"]) for m, _s in NODE_ROWS]
        # the VM's engine pulled the images (each node its own) and kept no container
        engine = site["engines"][node]
        assert len(engine.images()) == len(MODELS) and engine.containers() == []

    # the engines answered, so docker_setup was not applied in the VMs
    pings = task_results(out, "Ask the VM's Docker engine whether it answers")
    assert all(pings[n]["rc"] == 0 and pings[n]["cmd"][:2] == ["docker", "--host"] for n in NODES)
    assert all(r.get("skipped") for r in task_results(out, "Prepare Docker in the VM (docker_setup)").values())
    # the node was validated (iommu_kvm_prep) before anything was created: a CPU-only VM needs only the six checks of
    # a VM without passthrough (the network check skips user-mode networking)
    report = task_results(out, "Run the IOMMU, KVM, VFIO and libvirt checks")
    for node in NODES:
        assert [(c["name"], c["status"]) for c in report[node]["checks"]] == [
            ("libvirt_reachable", "pass"), ("vm_tools", "pass"), ("base_image", "pass"), ("memory_available", "pass"),
            ("disk_space", "pass"), ("libvirt_network", "skip")], report[node]["report"]
    # the VM's inventory host came from madengine_vm (inventory_host), with madengine_vm_host_vars over it
    added = task_results(out, "Add the VMs to the inventory (group madengine_vms)")
    items = [item["add_host"] for result in added.values() for item in result["results"]]
    assert sorted(i["host_name"] for i in items) == sorted(vm_name(n) for n in NODES)
    for item in items:
        node = item["host_vars"]["madengine_vm_node"]
        assert item["groups"] == ["madengine_vms"] and item["host_vars"]["ansible_connection"] == "local"
        assert item["host_vars"]["madengine_vm_uuid"] == started[node]["uuid"]
        assert item["host_vars"]["madengine_docker_host"] == site["engines"][node].host

    # before the run nothing was there to remove; after it everything was removed and checked
    removals = [t for p in out["plays"] for t in p["tasks"] if t["task"]["name"].endswith(REMOVE)]
    assert len(removals) == 2
    assert all(r["changed"] is False for r in removals[0]["hosts"].values())
    for node in NODES:
        after = removals[1]["hosts"][node]
        assert after["changed"] is True and after["clean"] == {"ok": True, "problems": []}
        assert after["removed"][0] == "domain" and started[node]["overlay"] in after["removed"]
    assert domains(site["conn"], [vm_name(n) for n in NODES]) == []
    assert files(first["dirs"]) == []

    html = (first["dirs"]["results"] / "perf.html").read_text()
    assert all(node in html for node in NODES)
    summary = out["global_custom_stats"]["madengine_summary"]
    assert summary["rows"] == 2 * len(NODE_ROWS) and summary["missing_nodes"] == []


# ---- 2. the dry run ----------------------------------------------------------------------------------

def test_check_mode_plans_everything_and_creates_nothing(first, site, tmp_path):
    assert first["rc"] == 0, first["log"]
    inventory, dirs = write_inventory(site, tmp_path, dict((n, {}) for n in NODES))
    before = dict((n, site["engines"][n].images()) for n in NODES)
    run = vm_benchmark(inventory, check=True)
    assert run["rc"] == 0, run["log"]
    started = task_results(run["out"], START)
    for node in NODES:
        assert started[node]["changed"] is True  # the VM would be created ...
        assert started[node]["uuid"] and not started[node].get("ip")  # ... but it was not started
    matrix = task_results(run["out"], "Show the planned matrix (dry run; no report is written)")["localhost"]["msg"]
    assert matrix == dict((n, dict((m, "run in VM " + vm_name(n)) for m in MODELS)) for n in NODES)
    assert task_results(run["out"], RUN) == {}
    assert domains(site["conn"], [vm_name(n) for n in NODES]) == []
    assert files(dirs) == [] and os.listdir(str(dirs["results"])) == []
    assert dict((n, site["engines"][n].images()) for n in NODES) == before


# ---- bad settings are named before anything starts -------------------------------------------------

def test_bad_vm_settings_are_named_before_anything_starts(site, tmp_path):
    """Each node's bad setting fails that node, named with it, before any VM, binding or file exists."""
    node, other = NODES
    keys, types, choice = node + "keys", node + "types", other
    dirs = make_dirs(tmp_path)
    local = {"ansible_connection": "local", "madengine_docker_host": site["engines"][node].host}
    nodes = {
        node: {"madengine_vm_base_image": "images/base.qcow2", "madengine_vm_name": "bad name!"},
        keys: {"madengine_vm_options": tiny_guest(dirs, boot_timout=5), "madengine_vm_host_vars": local,
               "madengine_vm_passthrough_options": {"numvfs": 2}},
        types: {"madengine_vm_options": tiny_guest(dirs, memory="8G", retries="many"), "madengine_vm_host_vars": local,
                "madengine_vm_passthrough_options": {"group_policy": "always"}},
        choice: {"madengine_vm_passthrough": "gpu"},
    }
    inventory, dirs = write_inventory(site, tmp_path, nodes)
    run = vm_benchmark(inventory, check=True)
    assert run["rc"] != 0, run["log"]
    settings = task_results(run["out"], "Check that the build host published a build and the VM settings")
    message = " ".join(settings[node]["msg"].split())
    assert "needs a build published by the build host" in message
    assert "madengine_vm_base_image, the absolute path of the VM's qcow2 base image on the node " \
           "('images/base.qcow2')" in message, message
    assert "a madengine_vm_name of 1-63 letters" in message and "('bad name!')" in message
    checked = task_results(run["out"], "Check madengine_vm_options and madengine_vm_passthrough_options against the "
                                       "options of their modules")
    assert node not in checked  # it failed before
    msgs = dict((h, [r["msg"] for r in checked[h]["results"]]) for h in (keys, types))
    assert msgs[keys][0].startswith("madengine_vm_options on %s: unknown key(s) boot_timout "
                                    "(rocm.madengine.madengine_vm takes: " % keys), msgs[keys]
    assert msgs[keys][1].startswith("madengine_vm_passthrough_options on %s: unknown key(s) numvfs "
                                    "(rocm.madengine.gpu_passthrough takes: " % keys), msgs[keys]
    assert "boot_timeout" in msgs[keys][0] and "memory" not in msgs[keys][0].split("takes:")[1].split(", ")
    assert msgs[types][0].startswith("madengine_vm_options on %s: the role sets memory itself; " % types)
    assert "retries" in msgs[types][0] and "int" in msgs[types][0], msgs[types]
    assert msgs[types][1].startswith("madengine_vm_passthrough_options on %s: " % types)
    assert "group_policy" in msgs[types][1] and "fail, bind, ignore" in msgs[types][1], msgs[types]
    # a bad choice is named by the entry point's argument specs
    failures = [(task["task"]["name"], task["hosts"][choice]["msg"]) for play in run["out"]["plays"]
                for task in play["tasks"] if task["hosts"].get(choice, {}).get("failed")]
    assert len(failures) == 1, run["log"]
    name, msg = failures[0]
    assert "Validating arguments against arg spec 'vm_node'" in name
    assert "madengine_vm_passthrough" in msg and "gpu" in msg and "vfio, sriov, vgpu, none" in msg, msg
    assert task_results(run["out"], START) == {} and task_results(run["out"], REMOVE) == {}
    assert domains(site["conn"], [vm_name(n) for n in nodes]) == [] and files(dirs) == []


def test_unknown_host_vars_of_the_vm_are_named_by_the_argument_specs(site, tmp_path):
    node = NODES[0]
    inventory, dirs = write_inventory(site, tmp_path, {node: {"madengine_vm_host_vars": {
        "ansible_connection": "local", "madengine_docker_host": site["engines"][node].host, "ansible_hots": "x"}}})
    run = vm_benchmark(inventory, check=True)
    assert run["rc"] != 0, run["log"]
    failed = [task["hosts"][node]["msg"] for play in run["out"]["plays"] for task in play["tasks"]
              if task["hosts"].get(node, {}).get("failed")]
    assert len(failed) == 1 and "madengine_vm_host_vars.ansible_hots" in failed[0], run["log"]
    assert "Supported parameters include: ansible_become" in failed[0] and "madengine_docker_host" in failed[0]
    assert task_results(run["out"], START) == {} and files(dirs) == []


# ---- 3. faults: the start fails, the wait times out -----------------------------------------------

def test_a_failed_start_and_a_wait_that_times_out_leave_nothing(first, site, tmp_path):
    assert first["rc"] == 0, first["log"]
    refused, slow = NODES
    dirs = make_dirs(tmp_path)
    nodes = {
        # a GPU hostdev on a host without VFIO: libvirt refuses to start the domain
        refused: {"madengine_vm_options": tiny_guest(dirs, hostdevs=["0000:af:00.0"], cpu_pinning="none")},
        # user-mode networking has no DHCP lease: the wait for one times out
        slow: {"madengine_vm_options": tiny_guest(dirs, ip_sources=["lease"], boot_timeout=2)},
    }
    inventory, dirs = write_inventory(site, tmp_path, nodes, madengine_tags="dummy")
    drivers = pci_drivers()
    run = vm_benchmark(inventory)
    assert run["rc"] != 0, run["log"]
    out = run["out"]
    marked = task_results(out, MARK)
    assert marked[refused]["msg"].startswith("%s: VM %s could not be brought up and was not retried: " % (
        START, vm_name(refused)))
    assert marked[slow]["msg"].startswith("%s: VM %s could not be brought up after 1 attempt: VM %s did not report "
                                          "an IP address (sources: lease) within 2 s." % (
                                              START, vm_name(slow), vm_name(slow)))
    assert all(r["changed"] is False for r in task_results(out, CLEAN).values())  # ran, and found nothing
    assert task_results(out, RUN) == {}
    rows = read_csv(dirs["results"] / "perf.csv")
    assert [(r["host"], r["model"], r["status"]) for r in rows] == [(n, "dummy", "FAILURE") for n in NODES]
    assert all(r["error"].startswith("no results from node") for r in rows)
    assert domains(site["conn"], [vm_name(n) for n in NODES]) == []
    assert files(dirs) == [] and pci_drivers() == drivers


# ---- 4. an interrupted play ------------------------------------------------------------------------

def start_in_background(inventory, extra_vars):
    """ansible-playbook in its own process group, as a terminal or AWX runs it."""
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory,
           "rocm.madengine.vm_benchmark", "-e", json.dumps(extra_vars)]
    return subprocess.Popen(cmd, env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def running_model(engine, model):
    with engine.api() as api:
        return api.containers(filters={"label": "org.rocm.madengine.model=%s" % model, "status": "running"})


def test_an_interrupted_play_is_cleaned_up_by_the_next_run_and_by_vm_cleanup(first, site, tmp_path):
    assert first["rc"] == 0, first["log"]
    node = NODES[0]
    name = vm_name(node)
    inventory, dirs = write_inventory(site, tmp_path, {node: {}})
    engine = site["engines"][node]
    proc = start_in_background(inventory, {"madengine_tags": "dummy_slow", "madengine_timeout": 300})
    try:
        deadline = time.monotonic() + 180
        while not running_model(engine, "dummy_slow"):  # the model runs in the VM
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "the model never started in the VM"
            time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGTERM)  # Ctrl-C, a cancelled AWX job: the whole process group
        proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(60)
    with engine.api() as api:  # in production the container dies with the VM; here it sleeps on the node engine
        for container in api.containers(all=True, filters={"label": "org.rocm.madengine.model=dummy_slow"}):
            api.remove_container(container["Id"], force=True)
    # the interrupted play left its VM running, with its overlay, seed, console log and state file
    assert domains(site["conn"], [name]) == [name] and site["conn"].lookupByName(name).isActive()
    left = files(dirs)
    assert sorted(os.path.basename(p) for p in left) == sorted(
        [name + ".qcow2", name + "-seed.iso", name + ".console.log", name + ".json"])

    # the next run removes them before it starts its own VM; madengine_vm_cleanup=preserve keeps that one
    run = vm_benchmark(inventory, extra_vars={"madengine_tags": "dummy", "madengine_vm_cleanup": "preserve"})
    assert run["rc"] == 0, run["log"]
    before = task_results(run["out"], REMOVE)[node]
    assert before["changed"] is True and before["removed"][0] == "domain" and sorted(before["removed"][1:]) == left
    started = task_results(run["out"], START)[node]
    assert started["changed"] is True and "defined domain %s" % name in started["actions"]
    rows = read_csv(dirs["results"] / "perf.csv")
    assert [(r["model"], r["status"], r["vm_id"]) for r in rows] == [("dummy", "SUCCESS", started["uuid"])]
    kept = task_results(run["out"], "Say what was kept (madengine_vm_cleanup is preserve)")[node]["msg"]
    assert kept.startswith("VM %s (10.0.2.15) on %s was kept; the next run on this node" % (name, node))
    assert site["conn"].lookupByName(name).isActive() and len(files(dirs)) == 4

    # the vm_cleanup entry point removes what a preserved or killed run left
    cleanup = vm_cleanup(inventory, tmp_path)
    assert cleanup["rc"] == 0, cleanup["log"]
    assert task_results(cleanup["out"], REMOVE)[node]["changed"] is True
    assert domains(site["conn"], [name]) == [] and files(dirs) == []


# ---- 5. passthrough on fake sysfs trees -------------------------------------------------------------

GPU = "0000:83:00.0"


def tree_state(root):
    """Every path of a tree with its link target or content: what "exactly as found" is compared on."""
    found = {}
    for directory, dirs, names in os.walk(root):
        for name in dirs + names:
            path = os.path.join(directory, name)
            if os.path.islink(path):
                found[path] = "-> " + os.readlink(path)
            elif os.path.isfile(path):
                with open(path, "rb") as handle:
                    found[path] = handle.read()
    return found


def gpu_host(root, driver, override=None):
    """A host with one MI300X-class GPU alone in IOMMU group 40, vfio-pci registered, and what QEMU reads."""
    kernel = FakeKernel(root)
    kernel.add_driver("vfio-pci")
    kernel.add_device(GPU, vendor="0x1002", device="0x74a1", cls="0x120000", driver=driver, group=40,
                      matches=["amdgpu"], numa_node=0, override=override)
    fake_host(root)  # /proc/cpuinfo (no vmx: software emulation), /sys/module, /dev
    return kernel


def test_passthrough_hands_the_gpus_to_the_vm_and_a_tree_that_refuses_writes_is_left_as_found(first, site, tmp_path):
    """libvirt's test driver (a private test:///<file>) stands in for the hypervisor; the GPUs live in fake trees.

    bound: the GPU is on vfio-pci already (bound at boot by vfio-pci.ids): passthrough records it, hands it to the
    VM, and gives it back as it was; docker_setup is applied in the VM (madengine_vm_docker_setup: always), its
    handler included. stuck: every write to the GPU fails (an immutable driver_override): the node fails, the
    cleanup runs, and the tree is left exactly as found.
    """
    assert first["rc"] == 0, first["log"]
    bound, stuck = NODES
    held = bound + "held"
    uri = private_uri(tmp_path)
    trees = {bound: gpu_host(tmp_path / "host-bound", "vfio-pci", override="vfio-pci"),
             stuck: gpu_host(tmp_path / "host-stuck", "amdgpu"),
             held: gpu_host(tmp_path / "host-held", "vfio-pci", override="vfio-pci")}
    # held: a process (QEMU that did not exit, say) still holds the GPU's VFIO group when the VM has been removed
    hold_vfio(trees[held].root, 4242, 40)
    dirs = make_dirs(tmp_path)

    def node_vars(node):
        root = trees[node].root
        return {
            "madengine_vm_passthrough": "vfio", "madengine_vm_gpu_ids": GPU, "madengine_vm_uri": uri,
            # host_root, and its older name sysfs_root, reach both modules through the option dicts
            "madengine_vm_passthrough_options": {"host_root": root, "state_dir": str(tmp_path / ("pt-" + node)),
                                                 "load_modules": False, "timeout": 2},
            "madengine_vm_options": {"sysfs_root": root, "image_dir": str(dirs["images"]),
                                     "state_dir": str(dirs["state"]), "log_dir": str(dirs["logs"]), "retry_delay": 0},
            # this machine has no IOMMU: the checks report, they do not stop the run
            "iommu_kvm_prep_fail": False,
        }

    engine = site["engines"][bound]
    docker_setup = {"madengine_vm_docker_setup": "always", "docker_setup_install_engine": False,
                    "docker_setup_python_sdk": False, "docker_setup_gpu_vendor": "NONE",
                    "docker_setup_service_mode": "background", "docker_setup_pidfile": engine.base + "/docker.pid",
                    "docker_setup_daemon_json": str(tmp_path / "vm-daemon.json"),
                    "docker_setup_daemon_options": {"labels": ["madengine-vm-test=" + SESSION]}}
    nodes = {bound: dict(node_vars(bound), **docker_setup), stuck: node_vars(stuck),
             # it runs nothing (madengine_skip_model_run), so it may share the first node's engine
             held: dict(node_vars(held), madengine_skip_model_run=True,
                        madengine_vm_host_vars={"ansible_connection": "local", "madengine_docker_host": engine.host})}
    inventory, dirs = write_inventory(site, tmp_path, nodes, madengine_tags="dummy")
    override = os.path.join(trees[stuck].devdir(GPU), "driver_override")
    subprocess.run(["chattr", "+i", override], check=True)
    before = dict((n, tree_state(trees[n].root)) for n in trees)
    try:
        run = vm_benchmark(inventory, args=("--diff",))
    finally:
        subprocess.run(["chattr", "-i", override], check=True)
    assert run["rc"] != 0, run["log"]
    out = run["out"]

    # bound: the GPU was recorded, reached the VM as a VFIO hostdev, and was given back
    present = task_results(out, "Give the GPUs to the VM's driver (gpu_passthrough)")
    assert present[bound]["hostdevs"] == [GPU] and present[bound]["state_files"]
    started = task_results(out, START)[bound]
    xml = started["diff"]["after"]
    assert "<hostdev mode='subsystem' type='pci' managed='no'>" in xml and "bus='0x83'" in xml
    rows = read_csv(dirs["results"] / "perf.csv")
    assert sorted((r["host"], r["model"], r["status"], r["vm_id"]) for r in rows) == sorted([
        (bound, "dummy", "SUCCESS", started["uuid"]), (stuck, "dummy", "FAILURE", ""),
        (held, "dummy", "SKIPPED", task_results(out, START)[held]["uuid"])])
    restored = task_results(out, "Give the GPUs back to their drivers (gpu_passthrough absent)")[bound]
    assert restored["clean"] is True and restored["leftovers"] == [] and not restored.get("failed")
    assert [d["bdf"] for d in restored["devices"]] == [GPU] and restored["devices"][0]["current_driver"] == "vfio-pci"
    # docker_setup ran in the VM, and its engine re-read its configuration (a reload)
    engine_setup = task_results(out, "Trust the registries, register the runtimes and keep the engine running")
    assert engine_setup[bound]["_ansible_delegated_vars"]["ansible_delegated_host"] == vm_name(bound)
    assert engine_setup[bound]["actions"] == ["write", "reload"]
    assert json.loads((tmp_path / "vm-daemon.json").read_text()) == {"labels": ["madengine-vm-test=" + SESSION]}

    # stuck: the first write failed, nothing was changed, the cleanup ran and found nothing, the node failed
    assert present[stuck]["failed"] and "driver_override" in present[stuck]["msg"]
    assert "Operation not permitted" in present[stuck]["msg"], present[stuck]["msg"]
    assert task_results(out, START).get(stuck) is None
    assert task_results(out, MARK)[stuck]["msg"].startswith("Give the GPUs to the VM's driver (gpu_passthrough): ")
    assert out["stats"][bound]["failures"] == 0

    for node in NODES:
        assert task_results(out, CLEAN)[node].get("failed") is not True
        assert tree_state(trees[node].root) == before[node]  # the tree, bytes and links, as found
        assert os.listdir(str(tmp_path / ("pt-" + node))) == []  # no passthrough state left

    # held: the VM was removed but its GPU's group is still held, so the GPU was not given back and the node fails
    left = task_results(out, CLEAN)[held]
    assert left["failed"] and left["msg"].startswith("%s is not clean after the run: " % held)
    assert "/dev/vfio/40 (IOMMU group of 0000:83:00.0) is still open by PID 4242" in left["msg"], left["msg"]
    assert "0000:83:00.0 was not given back: /dev/vfio/40 (its IOMMU group) is still open by PID 4242" in left["msg"]
    assert "the GPU state file %s" % (tmp_path / ("pt-" + held) / (GPU + ".json")) in left["msg"]
    assert out["stats"][held]["failures"] == 1
    # once the holder is gone, the vm_cleanup entry point gives the GPU back
    shutil.rmtree(os.path.join(trees[held].root, "proc", "4242"))
    cleanup = vm_cleanup(inventory, tmp_path, args=("--limit", held))
    assert cleanup["rc"] == 0, cleanup["log"]
    assert os.listdir(str(tmp_path / ("pt-" + held))) == []
    holder = os.path.join(trees[held].root, "proc", "4242") + os.sep
    assert tree_state(trees[held].root) == dict((p, v) for p, v in before[held].items() if not p.startswith(holder))
    assert files(dirs) == []


# ---- a new module option needs no role change -------------------------------------------------------

def test_a_new_option_of_gpu_passthrough_reaches_it_from_the_option_dict_without_a_role_change(tmp_path):
    """A copy of the collection whose gpu_passthrough has one more option (it only warns with its value): the
    vm_cleanup entry point hands madengine_vm_passthrough_options to it unchanged, roles untouched. The same
    variable against the collection as shipped is refused, naming the key, before the node is touched."""
    copy = tmp_path / "cols" / "ansible_collections" / "rocm" / "madengine"
    shutil.copytree(COLLECTION_DIR, copy, ignore=shutil.ignore_patterns(".git", "tests", "__pycache__", "benchmarks"))
    module = copy / "plugins" / "modules" / "gpu_passthrough.py"
    text = module.read_text()
    text = text.replace("options:\n  state:\n", "options:\n  note:\n    description: A note the module repeats as a "
                        "warning.\n    type: str\n  state:\n", 1)
    text = text.replace("        argument_spec=dict(\n",
                        "        argument_spec=dict(\n            note=dict(type='str'),\n", 1)
    text = text.replace("    run(module)\n", "    if module.params['note']:\n        module.warn('note: ' + "
                        "module.params['note'])\n    run(module)\n", 1)
    module.write_text(text)
    kernel = FakeKernel(str(tmp_path / "host"))
    dirs = make_dirs(tmp_path)
    playbook = tmp_path / "cleanup.yml"
    playbook.write_text(
        "---\n- name: Remove what VM runs left\n  hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: Remove the VM and give the GPUs back\n      ansible.builtin.import_role:\n"
        "        name: rocm.madengine.madengine\n        tasks_from: vm_cleanup\n")
    extra = {"madengine_vm_uri": private_uri(tmp_path), "madengine_vm_passthrough": "vfio",
             "madengine_vm_options": {"image_dir": str(dirs["images"]), "state_dir": str(dirs["state"]),
                                      "log_dir": str(dirs["logs"])},
             "madengine_vm_passthrough_options": {"note": "reached", "host_root": kernel.root,
                                                  "state_dir": str(tmp_path / "pt")}}
    paths = os.pathsep.join([str(tmp_path / "cols"), os.environ.get("MADCI_DEPS", "/opt/madci/collections")])
    rc, out, log = run_playbook(str(playbook), inventory="node1,", extra_vars=dict(extra, ansible_connection="local"),
                                env={"ANSIBLE_COLLECTIONS_PATH": paths})
    assert rc == 0, log
    given_back = task_results(out, "Give the GPUs back to their drivers (gpu_passthrough absent)")["node1"]
    assert "note: reached" in given_back["warnings"] and given_back["leftovers"] == []
    assert (tmp_path / "pt").exists() is False  # nothing was recorded, so nothing was restored
    # the collection as shipped has no such option: the module refuses the key before it touches the node
    rc, out, log = run_playbook(str(playbook), inventory="node1,", extra_vars=dict(extra, ansible_connection="local"))
    assert rc != 0, log
    left = task_results(out, "Check that nothing of the VM is left")["node1"]["msg"]
    assert "Unsupported parameters for (rocm.madengine.gpu_passthrough) module: note." in left, left
