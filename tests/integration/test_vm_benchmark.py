"""vm_benchmark.yml around the guest it boots, run as rocm.madengine.vm_benchmark from the installed tarball.

The real guest, Docker in it and the models run in it are tested in test_vm_real_guest.py. This file tests what
does not need them, on the tiny guest of ci/libvirtd.sh (a Debian kernel and a busybox initramfs, user-mode
networking, its address read from the console), which boots in seconds but cannot run Docker: each VM's inventory
host is reached with a local connection and a madengine_docker_host pointing at a simulated node engine of its own
(madengine_vm_host_vars, the knob that holds a ProxyJump in production), so madengine_run runs "in the VM" through
the delegation a real VM gets, and the rows carry the VM's libvirt UUID.

1. --check: everything planned, nothing created;
   bad settings (a relative base image, a bad VM name, unknown option keys, an option the role sets, a value of the
   wrong type, a bad choice) are named first, each with its node;
2. faults: the VM start fails (a hostdev on a host without VFIO) on one node and the wait times out on the other;
3. passthrough on fake sysfs trees (libvirt test driver): GPUs bound for VFIO reach the VM and are given back, and
   a tree whose writes cannot take effect fails the node and is left exactly as found.

Every test checks with libvirt and the filesystem that no domain, overlay, seed, console log or state file (and no
device binding) is left.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid

import pytest
import yaml
from conftest import COLLECTION_DIR, MAIN_ENGINE, REGISTRY, SAMPLE_MAD, run_playbook, task_results
from fake_sysfs import FakeKernel
from vm_helpers import (
    GUEST_DIR,
    fake_host,
    hold_vfio,
    libvirt_session,
    make_base,
    pci_drivers,
    private_uri,
    vm_name,
)
from vm_play import domains, make_dirs, read_csv, vm_benchmark, vm_cleanup, vm_files

pytestmark = [pytest.mark.libvirtd, pytest.mark.docker, pytest.mark.slow]

SESSION = uuid.uuid4().hex[:6]
PREFIX = "vmb%s-" % SESSION
URI = "qemu:///system"
NODES = ("vmb%sa" % SESSION, "vmb%sb" % SESSION)
MODELS = ["dummy", "dummy_multi", "dummy_fail"]
START = "Start the VM and wait for it (madengine_vm)"
RUN = "Run each model"
CLEAN = "Check that nothing of the VM is left"
REMOVE = "Remove the VM and everything it owns (madengine_vm absent)"
MARK = "Fail this node with the reason its run failed"


@pytest.fixture(scope="module")
def conn():
    with libvirt_session(URI, "madengine-vm-vmb%s" % SESSION) as handle:
        yield handle


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
        # the stand-in engines answer; docker_setup must not touch this machine
        "madengine_vm_docker_setup": "auto",
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


# ---- 1. the dry run ----------------------------------------------------------------------------------

def test_check_mode_plans_everything_and_creates_nothing(site, tmp_path):
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
    assert vm_files(dirs) == [] and os.listdir(str(dirs["results"])) == []
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
    assert domains(site["conn"], [vm_name(n) for n in nodes]) == [] and vm_files(dirs) == []


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
    assert task_results(run["out"], START) == {} and vm_files(dirs) == []


# ---- 2. faults: the start fails, the wait times out -----------------------------------------------

def test_a_failed_start_and_a_wait_that_times_out_leave_nothing(site, tmp_path):
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
    assert vm_files(dirs) == [] and pci_drivers() == drivers


# ---- 3. passthrough on fake sysfs trees -------------------------------------------------------------

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


def test_passthrough_hands_the_gpus_to_the_vm_and_a_tree_that_refuses_writes_is_left_as_found(site, tmp_path):
    """libvirt's test driver (a private test:///<file>) stands in for the hypervisor; the GPUs live in fake trees.

    bound: the GPU is on vfio-pci already (bound at boot by vfio-pci.ids): passthrough records it, hands it to the
    VM, and gives it back as it was; docker_setup is applied in the VM (madengine_vm_docker_setup: always), its
    handler included. stuck: every write to the GPU fails (an immutable driver_override): the node fails, the
    cleanup runs, and the tree is left exactly as found.
    """
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
    assert vm_files(dirs) == []


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
