"""vm_benchmark.yml end to end in the real Debian guest of ci/guest-image.sh on the real libvirtd (QEMU in software
emulation), run as rocm.madengine.vm_benchmark from the installed tarball.

How the test maps to production:
- A GPU node is this machine, reached with a local connection (in production, over SSH). Its VM sits on a libvirt
  NAT network (here a transient one of the test, with its own bridge and DHCP, as a stock libvirt host's "default"
  network) and gets its address by DHCP; madengine_vm finds it in the network's leases. The controller logs in to
  the VM at that address as the cloud-init user with the seed's key: directly here, because the controller is the
  node (madengine_vm leaves the ProxyJump out for a node with a local connection); through the node with a
  ProxyJump in production. Every module in the VM runs on the guest's own Python (Debian's python3, found by
  interpreter discovery): nothing of the controller's venv is in the guest.
- The build host is this machine with a Docker engine of its own that trusts the registry (the main engine is
  never reconfigured). The registry listens on the NAT bridge, the address at which the guests see this machine,
  as a build host's registry is routed to through the node's NAT in production. madengine_registry is that
  address for the build and in the guests alike; docker_setup makes the guest's engine trust it.

Runs (module-scoped, each shared by the assertions that follow it):
1. two nodes. One boots the image with Docker and Debian's Docker SDK for Python preinstalled; in the other, without
   Docker, docker_setup installs docker.io and python3-docker from Debian's mirror (the package lists of a fresh
   image are empty: it refreshes them first). Both guests trust the registry, pull the built images and run three
   models in their own engine; a model reports the kernel it ran on, the guest's. The rows come back to the nodes
   and the controller with the VM's UUID. The second VM is removed and checked; the first is kept
   (madengine_vm_cleanup: preserve), reached with the command the play prints, and removed by vm_cleanup;
2. the play is killed (SIGTERM to its process group) while a model runs in a guest: the VM is left running;
3. the next run on that node removes it first, then meets two faults: a seed without an SSH key (the VM never lets
   the controller in) and a Docker install that fails in the other guest. Both nodes get FAILURE rows with the
   reason, the first with the end of its VM's console, and both VMs are removed.

Afterwards nothing is left: no domain, overlay, seed, console log, state file, network, bridge, registry or engine.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
import uuid

import libvirt
import pytest
import yaml
from conftest import SAMPLE_MAD, task_results
from real_guest import (
    GuestShell,
    bridge_exists,
    build_engine,
    free_port,
    guest_images,
    guest_registry,
    nat_network,
    port_open,
    vm_mode_vars,
    vm_node_vars,
)
from vm_helpers import libvirt_session
from vm_play import (
    domains,
    make_dirs,
    read_csv,
    slowest_tasks,
    start_in_background,
    vm_benchmark,
    vm_cleanup,
    vm_files,
)

pytestmark = [pytest.mark.libvirtd, pytest.mark.docker, pytest.mark.slow]

SESSION = uuid.uuid4().hex[:6]
PREFIX = "vmg%s-" % SESSION
URI = "qemu:///system"
KEPT, PLAIN = "vmg%sd" % SESSION, "vmg%sp" % SESSION  # the node with the Docker image (kept), the one without
NODES = (KEPT, PLAIN)
MODELS = ["dummy", "dummy_fail", "uname"]
NODE_ROWS = [("dummy", "SUCCESS"), ("dummy_fail", "FAILURE"), ("uname_kernel", "SUCCESS")]
SSH_USER = "madengine"
START = "Start the VM and wait for it (madengine_vm)"
REMOVE = "Remove the VM and everything it owns (madengine_vm absent)"
CLEAN = "Check that nothing of the VM is left"
KEPT_MSG = "Say what was kept (madengine_vm_cleanup is preserve)"
REACH = "Fail when the VM cannot be reached"
MARK = "Fail this node with the reason its run failed"
ENGINE = "Trust the registries, register the runtimes and keep the engine running"
PLAYBOOK_TIMEOUT = 1500


def vm_name(node):
    return "madengine-vm-" + node


@pytest.fixture(scope="module")
def images():
    return guest_images()


@pytest.fixture(scope="module")
def conn():
    with libvirt_session(URI, vm_name(PREFIX[:-1])) as handle:
        yield handle


@pytest.fixture(scope="module")
def network(conn):
    with nat_network(conn, PREFIX[:-1]) as net:
        yield net
    assert not bridge_exists(net["bridge"])


@pytest.fixture(scope="module")
def registry(network, tmp_path_factory):
    """The build host's registry, at the address the guests see this machine at (the NAT bridge)."""
    port = free_port(network["address"])
    work = tmp_path_factory.mktemp("registry")
    with guest_registry("%s:%d" % (network["address"], port), work, storage=work / "data") as reg:
        yield reg
    assert not port_open(network["address"], port)


@pytest.fixture(scope="module")
def builder(registry):
    """The build host's engine: it trusts the registry (plain HTTP, not on loopback)."""
    with build_engine("/tmp/madci-%sb" % PREFIX, [registry["address"]]) as engine:
        yield engine
    assert not os.path.exists(engine.base)


@pytest.fixture(scope="module")
def site(tmp_path_factory, images, conn, network, registry, builder):
    root = tmp_path_factory.mktemp("vmg")
    mad = root / "mad"
    shutil.copytree(SAMPLE_MAD, mad)
    # a model that reports the kernel its container runs on, in its log and in a column of its row
    script = mad / "scripts" / "sample" / "run_uname.sh"
    script.write_text("#!/bin/bash\necho \"kernel release: $(uname -r)\"\n"
                      "printf 'model,performance,metric,kernel_release\\nkernel,1.0,runs,%s\\n' \"$(uname -r)\" "
                      "> \"${MAD_OUTPUT_CSV:-perf_uname.csv}\"\n")
    script.chmod(0o755)
    catalogue = json.loads((mad / "models.json").read_text())
    catalogue.append({"name": "uname", "url": "", "dockerfile": "docker/cpu", "scripts": "scripts/sample/run_uname.sh",
                      "n_gpus": "1", "owner": "mad-sample@example.com", "training_precision": "",
                      "multiple_results": "perf_uname.csv", "tags": ["cpu"], "args": ""})
    (mad / "models.json").write_text(json.dumps(catalogue, indent=2))
    key = root / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return {"root": root, "mad": mad, "images": images, "conn": conn, "network": network,
            "registry": registry["address"], "builder": builder, "key": str(key)}


def write_inventory(site, root, nodes, **common):
    """Each node (this machine, local connection) boots its VM from the image variant given, on the test's network."""
    dirs = make_dirs(root)
    all_vars = dict(vm_mode_vars(site["key"], URI), **{
        "madengine_mad_root": str(site["mad"]), "madengine_tags": ",".join(MODELS),
        "madengine_registry": site["registry"], "madengine_image_prefix": PREFIX,
        "madengine_gpu_vendor": "NONE", "madengine_additional_context": {"gpu_vendor": "NONE", "guest_os": "UBUNTU"},
        "madengine_output_dir": str(dirs["results"]), "madengine_timeout": 300, "madengine_vm_login_timeout": 120})
    all_vars.update(common)
    hosts = dict((name, vm_node_vars(site["images"], variant, site["network"], dirs, **extra))
                 for name, (variant, extra) in nodes.items())
    inventory = {"all": {"vars": all_vars, "children": {
        "controller": {"hosts": {"localhost": {"ansible_connection": "local",
                                               "madengine_docker_host": site["builder"].host}}},
        "gpu_nodes": {"hosts": hosts}}}}
    path = root / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    return str(path), dirs


def lease_address(conn, name):
    """The VM's IPv4 address from the network's DHCP leases, or None."""
    try:
        dom = conn.lookupByName(name)
        found = dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE, 0) or {}
    except libvirt.libvirtError:
        return None
    return next((a["addr"] for i in found.values() for a in i.get("addrs") or []
                 if a["type"] == libvirt.VIR_IP_ADDR_TYPE_IPV4), None)


def flat(text):
    return " ".join(str(text).split())


# ---- 1. two nodes: Docker preinstalled, Docker installed by docker_setup ---------------------------------------

@pytest.fixture(scope="module")
def first(site, tmp_path_factory):
    root = tmp_path_factory.mktemp("first")
    inventory, dirs = write_inventory(site, root, {KEPT: ("docker", {"madengine_vm_cleanup": "preserve"}),
                                                   PLAIN: ("plain", {})})
    run = vm_benchmark(inventory, timeout=PLAYBOOK_TIMEOUT)
    run.update(inventory=inventory, dirs=dirs, root=root)
    print("\nvm_benchmark, 2 nodes with a real guest each (Docker preinstalled / installed): %.1f s, load %.1f; "
          "longest tasks:\n  %s" % (run["seconds"], os.getloadavg()[0], "\n  ".join(slowest_tasks(run["out"]))))
    return run


def test_models_run_in_each_guest_s_engine_and_the_rows_come_back_with_the_vm(first, site, images):
    assert first["rc"] == 0, first["log"]
    out = first["out"]
    started = task_results(out, START)
    rows = read_csv(first["dirs"]["results"] / "perf.csv")
    assert [(r["host"], r["model"], r["status"]) for r in rows] == [
        (node, model, status) for node in NODES for model, status in NODE_ROWS]
    subnet = ipaddress.ip_network(site["network"]["subnet"])
    for node in NODES:
        vm = started[node]
        assert vm["changed"] is True and vm["domain_type"] == "qemu" and vm["attempts"] == 1
        assert ipaddress.ip_address(vm["ip"]) in subnet  # a DHCP lease of the node's NAT network
        mine = [r for r in rows if r["host"] == node]
        # rows of the VM: deployment type vm, the VM's UUID; made by the guest's Python (its hostname is the VM's)
        assert set((r["deployment_type"], r["vm_id"], r["machine_name"]) for r in mine) == {
            ("vm", vm["uuid"], vm_name(node))}
        # the container ran on the guest's kernel, not on this machine's
        kernel = next(r["kernel_release"] for r in mine if r["model"] == "uname_kernel")
        assert kernel == images["kernel_release"] and kernel != os.uname().release
        # the node's facts are its rows
        facts = task_results(out, "Publish this node's rows as its facts (and, in check mode, its plan)")[node]
        assert [(r["model"], r["vm_id"]) for r in facts["ansible_facts"]["madengine_results"]] == [
            (m, vm["uuid"]) for m, _s in NODE_ROWS]
        # each model ran in the VM, with images its engine pulled from the registry at the bridge address
        node_run = task_results(out, "Run each model")[node]
        assert node_run["_ansible_delegated_vars"]["ansible_delegated_host"] == vm_name(node)
        runs = node_run["runs"]
        assert [r["model"] for r in runs] == MODELS
        assert all(r["pulled"] and r["image_digest"].startswith(site["registry"] + "/" + PREFIX) for r in runs)
    html = (first["dirs"]["results"] / "perf.html").read_text()
    assert all(node in html for node in NODES)


def test_the_node_is_checked_and_the_vm_is_reached_as_production_reaches_it(first, site):
    assert first["rc"] == 0, first["log"]
    out = first["out"]
    # a VM without passthrough needs six checks; the NAT network is real, so libvirt_network passes too
    report = task_results(out, "Run the IOMMU, KVM, VFIO and libvirt checks")
    for node in NODES:
        assert [(c["name"], c["status"]) for c in report[node]["checks"]] == [
            ("libvirt_reachable", "pass"), ("vm_tools", "pass"), ("base_image", "pass"), ("memory_available", "pass"),
            ("disk_space", "pass"), ("libvirt_network", "pass")], report[node]["report"]
    started = task_results(out, START)
    added = task_results(out, "Add the VMs to the inventory (group madengine_vms)")
    items = [item["add_host"] for result in added.values() for item in result["results"]]
    assert sorted(i["host_name"] for i in items) == sorted(vm_name(n) for n in NODES)
    for item in items:
        host_vars = item["host_vars"]
        node = host_vars["madengine_vm_node"]
        assert item["groups"] == ["madengine_vms"]
        assert (host_vars["ansible_host"], host_vars["ansible_user"], host_vars["ansible_become"]) == (
            started[node]["ip"], SSH_USER, True)
        assert host_vars["ansible_ssh_private_key_file"] == site["key"] and host_vars["ansible_pipelining"] is True
        # the controller is the node: no ProxyJump; host keys of a new VM are neither checked nor kept
        assert host_vars["ansible_ssh_common_args"] == "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
        assert "ansible_connection" not in host_vars and host_vars["madengine_vm_uuid"] == started[node]["uuid"]


def test_docker_setup_trusts_the_registry_and_installs_what_the_guest_lacks(first, site):
    assert first["rc"] == 0, first["log"]
    out = first["out"]
    engine = task_results(out, ENGINE)
    refresh = task_results(out, "Refresh the package lists before installing (a fresh image has none)")
    install = task_results(out, "Install the engine packages")
    probe = task_results(out, "Ask the node's Python whether its Docker SDK talks to the engine")
    sdk = task_results(out, "Install the Docker SDK packages")
    after = task_results(out, "Ask again whether the Docker SDK talks to the engine")
    for node in NODES:
        assert engine[node]["_ansible_delegated_vars"]["ansible_delegated_host"] == vm_name(node)
        # the guest's engine trusts the registry at the address it sees it at, taken without a restart
        assert engine[node]["daemon_json"]["insecure-registries"] == [site["registry"]]
        assert engine[node]["service_mode"] == "systemd" and "restart" not in engine[node]["actions"]
        assert "write" in engine[node]["actions"]
    # Docker and the SDK preinstalled: no package list refreshed, nothing installed
    assert refresh[KEPT].get("skipped") and install[KEPT].get("skipped")
    assert probe[KEPT]["rc"] == 0 and probe[KEPT]["stdout"].startswith("5.0") and sdk[KEPT].get("skipped")
    # no Docker: the empty package lists are fetched, docker.io and Debian's python3-docker installed
    assert refresh[PLAIN]["changed"] is True and install[PLAIN]["changed"] is True
    assert probe[PLAIN]["rc"] != 0 and sdk[PLAIN]["changed"] is True
    assert after[PLAIN]["rc"] == 0 and after[PLAIN]["stdout"].startswith("5.0")


def test_the_vm_that_was_not_kept_is_removed_and_the_host_checked(first, site):
    assert first["rc"] == 0, first["log"]
    out = first["out"]
    removals = [t["hosts"] for p in out["plays"] for t in p["tasks"] if t["task"]["name"].endswith(REMOVE)]
    assert len(removals) == 2  # before the run (nothing there) and after it (the plain node only)
    assert all(r["changed"] is False for r in removals[0].values())
    after = removals[1][PLAIN]
    started = task_results(out, START)[PLAIN]
    assert after["changed"] is True and after["clean"] == {"ok": True, "problems": []}
    assert after["removed"][0] == "domain" and started["overlay"] in after["removed"]
    assert KEPT not in removals[1] or removals[1][KEPT].get("skipped")
    assert domains(site["conn"], [vm_name(PLAIN)]) == []
    assert not [p for p in vm_files(first["dirs"]) if vm_name(PLAIN) in os.path.basename(p)]


def test_the_kept_vm_is_reached_as_printed_then_vm_cleanup_removes_it(first, site, images):
    assert first["rc"] == 0, first["log"]
    name = vm_name(KEPT)
    started = task_results(first["out"], START)[KEPT]
    message = task_results(first["out"], KEPT_MSG)[KEPT]["msg"]
    assert message.startswith("VM %s (%s) on %s was kept; reach it with \"" % (name, started["ip"], KEPT)), message
    assert "the vm_cleanup entry point of the rocm.madengine.madengine role, removes it" in message
    command = re.search(r'reach it with "([^"]+)"', message).group(1)
    assert command == started["ssh_command"] and site["key"] in command
    assert site["conn"].lookupByName(name).isActive()
    kept = sorted(os.path.basename(p) for p in vm_files(first["dirs"]))
    assert kept == sorted([name + ".qcow2", name + "-seed.iso", name + ".console.log", name + ".json"])

    # what the play printed reaches the guest, which holds the run logs and the pulled images, and whose seed
    # (cloud-init's NoCloud volume, label cidata) is its second virtio disk
    log = next(r["node_log_path"] for r in read_csv(first["dirs"]["results"] / "perf.csv")
               if r["host"] == KEPT and r["model"] == "uname_kernel")
    remote = ("hostname; sudo blkid -s LABEL -o value /dev/vdb; sudo cat %s; "
              "sudo docker images --format '{{.Repository}}'" % shlex.quote(log))
    argv = shlex.split(command)
    argv[1:1] = ["-o", "BatchMode=yes"]
    proc = subprocess.run(argv + [remote], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:2] == [name, "cidata"], lines
    assert any("kernel release: %s" % images["kernel_release"] in line for line in lines), lines
    assert {"%s/%s%s_cpu.ubuntu" % (site["registry"], PREFIX, m) for m in MODELS} <= set(lines)

    cleanup = vm_cleanup(first["inventory"], first["root"])
    assert cleanup["rc"] == 0, cleanup["log"]
    removed = task_results(cleanup["out"], REMOVE)
    assert removed[KEPT]["changed"] is True and removed[KEPT]["clean"] == {"ok": True, "problems": []}
    assert removed[PLAIN]["changed"] is False  # removed by its run already
    assert domains(site["conn"], [vm_name(n) for n in NODES]) == [] and vm_files(first["dirs"]) == []


# ---- 2. the play killed while a model runs in the guest ----------------------------------------------------------

@pytest.fixture(scope="module")
def killed(site, tmp_path_factory):
    root = tmp_path_factory.mktemp("killed")
    inventory, dirs = write_inventory(site, root, {KEPT: ("docker", {})})
    name = vm_name(KEPT)
    proc = start_in_background(inventory, {"madengine_tags": "dummy_slow"}, root)
    shell = None
    try:
        deadline = time.monotonic() + 900
        while True:  # until the model's container runs in the guest's engine
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "the model never started in the VM"
            address = lease_address(site["conn"], name)
            if address:
                shell = GuestShell(address, SSH_USER, site["key"])
                try:
                    running = shell.run("sudo -n docker ps -q --filter label=org.rocm.madengine.model=dummy_slow "
                                        "--filter status=running", timeout=60, check=False)
                except subprocess.TimeoutExpired:  # a guest busy booting under emulation: ask again
                    continue
                if running.returncode == 0 and running.stdout.strip():
                    break
            time.sleep(3)
        os.killpg(proc.pid, signal.SIGTERM)  # Ctrl-C, a cancelled AWX job: the whole process group
        proc.wait(120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(60)
    return {"root": root, "dirs": dirs, "name": name, "files": vm_files(dirs), "shell": shell}


def test_a_killed_play_leaves_its_vm_running_with_the_model(killed, site):
    name = killed["name"]
    assert domains(site["conn"], [name]) == [name] and site["conn"].lookupByName(name).isActive()
    assert sorted(os.path.basename(p) for p in killed["files"]) == sorted(
        [name + ".qcow2", name + "-seed.iso", name + ".console.log", name + ".json"])
    still = killed["shell"].run("sudo -n docker ps -q --filter label=org.rocm.madengine.model=dummy_slow")
    assert still.stdout.strip()  # the model still runs in the guest: only the VM's removal stops it


# ---- 3. the next run: the leftovers first, then a seed without SSH key and a failed Docker install --------------

@pytest.fixture(scope="module")
def faults(killed, site):
    inventory, dirs = write_inventory(site, killed["root"], {
        # no key in the seed (nor a key file for the controller): the guest never lets the controller in
        KEPT: ("docker", {"madengine_vm_ssh_private_key_file": "", "madengine_vm_ssh_pubkey": ""}),
        # the Docker install fails in the guest: one of the packages does not exist
        PLAIN: ("plain", {"docker_setup_engine_packages": ["docker.io", "madengine-no-such-package"]}),
    }, madengine_tags="dummy", madengine_vm_login_timeout=30)
    run = vm_benchmark(inventory, timeout=PLAYBOOK_TIMEOUT)
    run.update(dirs=dirs)
    print("\nvm_benchmark with two faults: %.1f s, load %.1f; longest tasks:\n  %s" % (
        run["seconds"], os.getloadavg()[0], "\n  ".join(slowest_tasks(run["out"]))))
    return run


def test_the_next_run_removes_what_the_killed_play_left(faults, killed):
    assert faults["rc"] != 0, faults["log"]
    removals = [t["hosts"] for p in faults["out"]["plays"] for t in p["tasks"] if t["task"]["name"].endswith(REMOVE)]
    before = removals[0][KEPT]
    assert before["changed"] is True and before["clean"]["ok"] is True
    assert before["removed"][0] == "domain" and sorted(before["removed"][1:]) == killed["files"]


def test_a_seed_without_a_key_and_a_failed_docker_install_fail_their_nodes_with_the_reason(faults, site):
    out = faults["out"]
    assert faults["rc"] != 0, faults["log"]
    started = task_results(out, START)
    # no key: the VM answered SSH but never let the controller in; the failure names it, with its console's end
    login = task_results(out, "Wait until the VM accepts connections (a login every second, for "
                              "madengine_vm_login_timeout seconds)")[KEPT]
    assert login["failed"] and login["elapsed"] >= 30
    unreachable = flat(task_results(out, REACH)[KEPT]["msg"])
    assert unreachable.startswith("VM %s of %s is unreachable as %s@%s: " % (
        vm_name(KEPT), KEPT, SSH_USER, started[KEPT]["ip"])), unreachable
    assert "Its console ends: " in unreachable
    assert "no authorized SSH keys fingerprints found for user %s" % SSH_USER in unreachable, unreachable
    # the install failed in the guest, after the empty package lists were fetched
    failed_install = task_results(out, "Install the engine packages")[PLAIN]
    assert failed_install["failed"] and failed_install["_ansible_delegated_vars"]["ansible_delegated_host"] == \
        vm_name(PLAIN)
    assert "No package matching 'madengine-no-such-package' is available" in failed_install["msg"]

    rows = read_csv(faults["dirs"]["results"] / "perf.csv")
    assert [(r["host"], r["model"], r["status"]) for r in rows] == [
        (KEPT, "dummy", "FAILURE"), (PLAIN, "dummy", "FAILURE")]
    errors = dict((r["host"], flat(r["error"])) for r in rows)
    assert errors[KEPT].startswith("no results from node %s: %s: VM %s of %s is unreachable" % (
        KEPT, REACH, vm_name(KEPT), KEPT)) and "no authorized SSH keys" in errors[KEPT], errors[KEPT]
    assert "No package matching 'madengine-no-such-package'" in errors[PLAIN], errors[PLAIN]
    marked = task_results(out, MARK)
    assert set(marked) == set(NODES) and all(marked[n]["failed"] for n in NODES)
    # both VMs were removed and checked, whatever failed
    for node in NODES:
        assert task_results(out, CLEAN)[node].get("failed") is not True
        after = [t["hosts"][node] for p in out["plays"] for t in p["tasks"]
                 if t["task"]["name"].endswith(REMOVE) and node in t["hosts"]][-1]
        assert after["changed"] is True and after["clean"] == {"ok": True, "problems": []}
    assert domains(site["conn"], [vm_name(n) for n in NODES]) == [] and vm_files(faults["dirs"]) == []
