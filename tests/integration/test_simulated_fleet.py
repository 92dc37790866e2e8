"""ci/simulated-fleet.sh: mixed fleets of simulated GPU nodes, local and over SSH, up and down.

Local mode: one Docker engine per node (own data root, socket and bridge) with the node kind's fake GPUs
under its host root.  SSH mode: every node a container with a Debian root filesystem, sshd and its own
dockerd, reached at an address of the fleet's bridge.  The current benchmark.yml runs against a local
fleet of CPU nodes as the inventory is written.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import docker
import pytest
from conftest import BASE_IMAGE, MAIN_ENGINE, REGISTRY, SAMPLE_MAD, run_playbook
from docker_helpers import delete_repositories
from fleet_helpers import SCRIPT, fleet, leftovers, snapshot, ssh, up

from ansible_collections.rocm.madengine.plugins.module_utils.host import gpu
from ansible_collections.rocm.madengine.plugins.module_utils.host.hostfs import HostFs

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SESSION = uuid.uuid4().hex[:8]
PREFIX = "fleet%s-" % SESSION
KINDS = ("amd-gfx942", "amd-gfx90a", "nvidia-h100:2", "cpu")
LOCAL_NODES = ["amd-gfx942-1", "amd-gfx90a-1", "nvidia-h100-1", "nvidia-h100-2", "cpu-1"]


def api(host):
    return docker.APIClient(base_url=host, version="auto", timeout=120)


def detect(host_root, vendor="auto"):
    """The collection's own GPU detection, reading the node's host root (tools from its usr/bin, opt/rocm/bin)."""

    def runner(argv):
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    return gpu.detect(vendor, HostFs(host_root), "/opt/rocm", runner)


def docker_cli(host, *args):
    return subprocess.run(["docker", "-H", host, *args], capture_output=True, text=True, timeout=300, check=False)


# ---- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("words, message", [
    (["amd-gfx942", "amd-mi400:2"], "unknown node kind 'amd-mi400' (in 'amd-mi400:2'); kinds: amd-gfx942, "
                                    "amd-gfx90a, nvidia-h100, cpu"),
    (["cpu:0"], "the count of 'cpu:0' must be a whole number above 0"),
    (["cpu", "cpu:2"], "node kind 'cpu' is given twice"),
])
def test_bad_kinds_fail_naming_them_and_start_nothing(tmp_path, words, message):
    directory = tmp_path / "fleet"
    links = set(os.listdir("/sys/class/net"))
    for ssh_mode in ([], ["--ssh"]):
        proc = fleet("up", *ssh_mode, "--out", str(directory), *words, check=False)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert message in proc.stderr
    assert not directory.exists()
    assert set(os.listdir("/sys/class/net")) - links == set()


# ---- local mode --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def local_fleet(tmp_path_factory):
    directory = tmp_path_factory.mktemp("local") / "fleet"
    started = time.monotonic()
    document, nodes, state = up(directory, *KINDS)
    seconds = time.monotonic() - started
    try:
        yield {"dir": directory, "inventory": document, "nodes": nodes, "state": state, "up_seconds": seconds}
    finally:
        fleet("down", str(directory))


def test_local_inventory_has_the_groups_and_node_variables(local_fleet):
    children = local_fleet["inventory"]["all"]["children"]
    assert children["controller"]["hosts"]["localhost"]["ansible_connection"] == "local"
    assert children["controller"]["hosts"]["localhost"]["madengine_registry"] == REGISTRY
    groups = children["gpu_nodes"]["children"]
    assert sorted(groups) == ["amd_gfx90a", "amd_gfx942", "cpu", "nvidia_h100"]
    assert sorted(groups["nvidia_h100"]["hosts"]) == ["nvidia-h100-1", "nvidia-h100-2"]
    assert sorted(local_fleet["nodes"]) == sorted(LOCAL_NODES)
    expected = {"amd-gfx942-1": ("AMD", "gfx942"), "amd-gfx90a-1": ("AMD", "gfx90a"),
                "nvidia-h100-1": ("NVIDIA", "H100"), "cpu-1": ("NONE", "")}
    for name, (vendor, arch) in expected.items():
        host = local_fleet["nodes"][name]
        assert (host["madengine_gpu_vendor"], host["madengine_gpu_arch"]) == (vendor, arch)
        assert host["ansible_connection"] == "local"
        assert host["madengine_registry"] == REGISTRY
        assert host["madengine_run_options"]["host_root"] == str(local_fleet["dir"] / name / "root")
        # docker_setup manages the node's engine, not this machine's
        assert host["docker_setup_docker_host"] == host["madengine_docker_host"] != MAIN_ENGINE
        assert not host["docker_setup_daemon_json"].startswith("/etc/")
    hosts = [h["madengine_docker_host"] for h in local_fleet["nodes"].values()]
    assert len(set(hosts)) == len(hosts)


def test_every_local_engine_answers_with_its_own_store_and_bridge(local_fleet):
    bridges, stores = set(), set()
    for name, host in local_fleet["nodes"].items():
        with api(host["madengine_docker_host"]) as client:
            info = client.info()
        assert info["Name"] and info["DockerRootDir"] == str(local_fleet["dir"] / name / "data")
        stores.add(info["DockerRootDir"])
        (bridge,) = [a.split("=", 1)[1] for a in host["docker_setup_dockerd_args"] if a.startswith("--bridge=")]
        assert bridge not in ("none", "docker0") and os.path.exists("/sys/class/net/%s/bridge" % bridge)
        bridges.add(bridge)
        with open(host["docker_setup_pidfile"]) as handle:
            pid = int(handle.read())
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            assert b"--bridge=" + bridge.encode() in handle.read()
    assert len(bridges) == len(stores) == len(LOCAL_NODES)


def test_an_nvidia_node_starts_gpu_containers_through_the_hook(local_fleet):
    host = local_fleet["nodes"]["nvidia-h100-1"]
    engine = host["madengine_docker_host"]
    assert docker_cli(engine, "pull", "-q", BASE_IMAGE).returncode == 0
    run = docker_cli(engine, "run", "--rm", "--network", "host", "--gpus", '"device=0,1"', BASE_IMAGE,
                     "sh", "-c", "echo visible=$NVIDIA_VISIBLE_DEVICES")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "visible=0,1"
    with open(local_fleet["dir"] / "nvidia-h100-1" / "hook.log") as handle:
        calls = handle.read().splitlines()
    assert calls and calls[-1].startswith("prestart NVIDIA_VISIBLE_DEVICES=0,1 bundle=")
    # nvidia-smi of the node: the GPUs, driver and CUDA version madengine's rows carry
    found = detect(host["madengine_run_options"]["host_root"])
    assert (found.vendor, found.count, found.product) == ("NVIDIA", 8, "NVIDIA H100 80GB HBM3")
    assert ({g.arch for g in found.gpus}, found.driver_version, found.cuda_version) == ({"H100"}, "550.54.15", "12.4")


def test_a_node_without_the_hook_refuses_gpu_containers(local_fleet):
    engine = local_fleet["nodes"]["cpu-1"]["madengine_docker_host"]
    assert docker_cli(engine, "pull", "-q", BASE_IMAGE).returncode == 0
    run = docker_cli(engine, "run", "--rm", "--gpus", "all", BASE_IMAGE, "true")
    assert run.returncode != 0 and "could not select device driver" in run.stderr


@pytest.mark.parametrize("node, arch, product, tool", [
    ("amd-gfx942-1", "gfx942", "AMD Instinct MI300X", "amd-smi"),
    ("amd-gfx90a-1", "gfx90a", "AMD Instinct MI250X", "rocm-smi"),
])
def test_an_amd_node_has_the_tree_and_devices_of_its_architecture(local_fleet, node, arch, product, tool):
    host = local_fleet["nodes"][node]
    root = host["madengine_run_options"]["host_root"]
    found = detect(root)
    assert (found.vendor, found.count, found.arch, found.product) == ("AMD", 8, arch, product)
    assert {g.arch for g in found.gpus} == {arch}
    assert found.driver_version and found.rocm_version
    assert os.path.isfile(os.path.join(root, "usr", "bin", tool))
    devices = [os.path.join(root, "dev", "kfd")] + [os.path.join(root, "dev", "dri", "renderD%d" % g.render_minor)
                                                    for g in found.gpus]
    assert all(os.path.exists(d) and (os.stat(d).st_mode & 0o170000) == 0o020000 for d in devices)
    engine = host["madengine_docker_host"]
    assert docker_cli(engine, "pull", "-q", BASE_IMAGE).returncode == 0
    run = docker_cli(engine, "run", "--rm", "--network", "host", "--device", devices[0] + ":/dev/kfd",
                     "--device", devices[1] + ":/dev/dri/renderD128", BASE_IMAGE, "sh", "-c",
                     "test -c /dev/kfd && test -c /dev/dri/renderD128 && echo devices-ok")
    assert run.stdout.strip() == "devices-ok", run.stderr
    assert detect(local_fleet["nodes"]["cpu-1"]["madengine_run_options"]["host_root"]).vendor == "NONE"


def test_up_again_is_the_same_fleet(local_fleet):
    directory = local_fleet["dir"]
    before = (directory / "inventory.yml").read_text()
    pids = sorted(open(h["docker_setup_pidfile"]).read() for h in local_fleet["nodes"].values())
    links = sorted(os.listdir("/sys/class/net"))
    started = time.monotonic()
    fleet("up", "--out", str(directory), *KINDS)
    seconds = time.monotonic() - started
    assert (directory / "inventory.yml").read_text() == before
    assert sorted(open(h["docker_setup_pidfile"]).read() for h in local_fleet["nodes"].values()) == pids
    assert sorted(os.listdir("/sys/class/net")) == links
    print("local fleet, %d nodes: up %.1f s, up again %.1f s" % (len(LOCAL_NODES), local_fleet["up_seconds"], seconds))


def test_an_ssh_fleet_cannot_replace_a_local_one(local_fleet):
    proc = fleet("up", "--ssh", "--out", str(local_fleet["dir"]), "cpu", check=False)
    assert proc.returncode == 1 and "holds a local fleet" in proc.stderr


def test_down_removes_everything_and_twice_is_fine(tmp_path):
    directory = tmp_path / "fleet"
    _document, nodes, _state = up(directory, "nvidia-h100", "cpu:2")
    engine = nodes["nvidia-h100-1"]["madengine_docker_host"]
    assert docker_cli(engine, "pull", "-q", BASE_IMAGE).returncode == 0
    # a running container (shim, mounts) and a stopped one
    assert docker_cli(engine, "run", "-d", "--gpus", "all", BASE_IMAGE, "sleep", "600").returncode == 0
    assert docker_cli(engine, "create", BASE_IMAGE, "true").returncode == 0
    snap = snapshot(directory)
    assert leftovers(snap)  # the check sees a fleet that is up
    started = time.monotonic()
    fleet("down", str(directory))
    seconds = time.monotonic() - started
    assert leftovers(snap) == []
    assert not directory.exists()
    fleet("down", str(directory))
    assert leftovers(snap) == []
    print("local fleet, 3 nodes with containers: down %.1f s" % seconds)


def test_up_with_fewer_nodes_removes_the_others(tmp_path):
    directory = tmp_path / "fleet"
    _document, nodes, _state = up(directory, "cpu:3")
    gone = nodes["cpu-3"]
    _document, nodes, _state = up(directory, "cpu:2")
    try:
        assert sorted(nodes) == ["cpu-1", "cpu-2"]
        assert not os.path.exists(gone["docker_setup_pidfile"])
        assert not (directory / "cpu-3").exists()
    finally:
        fleet("down", str(directory))


def test_down_after_a_killed_up_removes_what_exists(tmp_path):
    directory = tmp_path / "fleet"
    proc = subprocess.Popen([SCRIPT, "up", "--out", str(directory), "cpu:3"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list(directory.glob("cpu-*/dockerd.log")) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (directory / "fleet.json").exists()
    with open(directory / "fleet.json") as handle:
        fid = json.load(handle)["fid"]
    snap = {"dir": os.path.realpath(str(directory)), "fid": fid, "run_dir": "/run/madfleet-%s" % fid,
            "networks": [], "nodes": []}
    fleet("down", str(directory))
    assert leftovers(snap) == []
    assert not [n for n in os.listdir("/sys/class/net") if n.startswith("mf" + fid)]


# ---- the current benchmark.yml on a local fleet of CPU nodes ---------------------------------------

def test_benchmark_playbook_runs_on_a_local_cpu_fleet_as_written(tmp_path, main_api):
    directory = tmp_path / "fleet"
    _document, nodes, _state = up(directory, "cpu:2")
    try:
        mad = tmp_path / "mad"
        subprocess.run(["cp", "-a", SAMPLE_MAD, str(mad)], check=True)
        out = tmp_path / "results"
        rc, _parsed, log = run_playbook(
            "rocm.madengine.benchmark", inventory=str(directory / "inventory.yml"), cwd=str(tmp_path),
            extra_vars={"madengine_mad_root": str(mad), "madengine_tags": "dummy", "madengine_image_prefix": PREFIX,
                        "madengine_output_dir": str(out), "madengine_timeout": 120,
                        "madengine_additional_context": {"gpu_vendor": "NONE", "guest_os": "UBUNTU"}})
        assert rc == 0, log
        with open(out / "perf.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert sorted((r["host"], r["model"], r["status"]) for r in rows) == [
            ("cpu-1", "dummy", "SUCCESS"), ("cpu-2", "dummy", "SUCCESS")]
        for host in nodes.values():  # each node pulled the image into its own store
            with api(host["madengine_docker_host"]) as client:
                refs = [r for i in client.images() for r in (i.get("RepoTags") or []) + (i.get("RepoDigests") or [])]
            assert any(r.startswith("%s/%s" % (REGISTRY, PREFIX)) for r in refs), refs
    finally:
        fleet("down", str(directory))


# ---- SSH mode ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ssh_fleet(tmp_path_factory):
    image = fleet("image", timeout=1800)
    directory = tmp_path_factory.mktemp("ssh") / "fleet"
    started = time.monotonic()
    document, nodes, state = up(directory, "amd-gfx90a", "nvidia-h100", ssh=True)
    seconds = time.monotonic() - started
    snap = snapshot(directory)
    try:
        yield {"dir": directory, "inventory": document, "nodes": nodes, "state": state, "snap": snap,
               "up_seconds": seconds, "image": image.stderr.strip()}
    finally:
        fleet("down", str(directory))


def test_ssh_nodes_answer_as_the_inventory_says(ssh_fleet):
    assert sorted(ssh_fleet["nodes"]) == ["amd-gfx90a-1", "nvidia-h100-1"]
    addresses = set()
    for name, host in ssh_fleet["nodes"].items():
        assert host["ansible_python_interpreter"] == "/usr/bin/python3"
        assert host["ansible_host"] not in ("127.0.0.1", "localhost")
        addresses.add(host["ansible_host"])
        out = ssh(host, "hostname; python3 -c 'import sys; print(sys.prefix, sys.executable)'; "
                        "python3 -c 'import docker' 2>&1 | tail -n 1; docker info --format '{{.ID}} {{.DockerRootDir}}'"
                  ).stdout.splitlines()
        assert out[0] == name
        assert out[1] == "/usr /usr/bin/python3"            # Debian's Python, not the controller's venv
        assert "No module named 'docker'" in out[2]       # docker_setup installs the SDK
        with api(MAIN_ENGINE) as client:
            assert out[3].split()[0] != client.info()["ID"]  # the node's own engine
    assert len(addresses) == 2
    # the node's file system is its own: the controller's venv and this checkout are not there
    host = ssh_fleet["nodes"]["amd-gfx90a-1"]
    assert ssh(host, "test -e /opt/madci/venv || test -e %s" % ssh_fleet["dir"], check=False).returncode == 1
    # a host key that is not the node's is refused: known_hosts is checked strictly
    known = ssh_fleet["dir"] / "ssh" / "known_hosts"
    text = known.read_text()
    try:
        lines = text.splitlines()
        # the second node's address with the first node's key
        known.write_text("%s\n%s %s\n" % (lines[0], lines[1].split()[0], " ".join(lines[0].split()[1:])))
        refused = ssh(ssh_fleet["nodes"]["nvidia-h100-1"], "true", check=False)
        assert refused.returncode == 255 and "HOST IDENTIFICATION HAS CHANGED" in refused.stderr
    finally:
        known.write_text(text)


def test_ansible_reaches_the_ssh_nodes_with_their_python(ssh_fleet):
    from conftest import ansible_env

    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible"), "gpu_nodes", "-i",
                           str(ssh_fleet["dir"] / "inventory.yml"), "-m", "ansible.builtin.setup", "-a",
                           "gather_subset=!all,min"], capture_output=True, text=True, timeout=300,
                          env=ansible_env(ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal"), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count('"executable": "/usr/bin/python3"') == 2
    assert proc.stdout.count('"ansible_distribution": "Debian"') == 2


def test_an_ssh_node_pulls_from_the_controller_registry_once_it_trusts_it(ssh_fleet):
    host = ssh_fleet["nodes"]["nvidia-h100-1"]
    registry = host["madengine_registry"]
    assert registry.split(":")[0] == ssh_fleet["state"]["subnet"].rsplit(".", 1)[0] + ".1"
    repo = "%sprobe" % PREFIX
    with api(MAIN_ENGINE) as client:  # the controller pushes to its loopback name of the registry
        client.tag(BASE_IMAGE, "%s/%s" % (REGISTRY, repo), "v1")
        pushed = list(client.push("%s/%s" % (REGISTRY, repo), "v1", stream=True, decode=True))
        digest = next(p["aux"]["Digest"] for p in pushed if "aux" in p)
    try:
        # the node's loopback is its own, and a plain-HTTP registry is refused until it is trusted
        assert "connection refused" in ssh(host, "docker pull %s/%s:v1" % (REGISTRY, repo), check=False).stderr
        refused = ssh(host, "docker pull %s/%s:v1" % (registry, repo), check=False)
        assert refused.returncode != 0 and "server gave HTTP response to HTTPS client" in refused.stderr
        trust = ("python3 -c 'import json; p=\"/etc/docker/daemon.json\"; d=json.load(open(p)); "
                 "d[\"insecure-registries\"]=[\"%s\"]; json.dump(d, open(p, \"w\"))' && "
                 "kill -HUP $(cat /var/run/docker.pid) && sleep 1" % registry)
        ssh(host, trust)
        pulled = ssh(host, "docker pull -q %s/%s:v1 && docker image inspect -f '{{index .RepoDigests 0}}' %s/%s:v1"
                     % (registry, repo, registry, repo)).stdout.split()
        assert pulled[-1] == "%s/%s@%s" % (registry, repo, digest)
        run = ssh(host, "docker run --rm --network host --gpus '\"device=0,1\"' %s/%s:v1 sh -c "
                        "'echo visible=$NVIDIA_VISIBLE_DEVICES' && tail -n 1 /var/log/nvidia-container-runtime-hook.log"
                  % (registry, repo)).stdout.splitlines()
        assert run[0] == "visible=0,1" and run[1].startswith("prestart NVIDIA_VISIBLE_DEVICES=0,1")
        # the nodes' registry is read-only: nothing is pushed through it
        ssh(host, "docker tag %s/%s:v1 %s/%s:v2" % (registry, repo, registry, repo))
        assert ssh(host, "docker push %s/%s:v2" % (registry, repo), check=False).returncode != 0
    finally:
        with api(MAIN_ENGINE) as client:
            client.remove_image("%s/%s:v1" % (REGISTRY, repo), force=True)
        delete_repositories(REGISTRY, PREFIX)


def test_an_ssh_amd_node_has_its_fake_gpus_at_its_host_root(ssh_fleet):
    host = ssh_fleet["nodes"]["amd-gfx90a-1"]
    root = host["madengine_run_options"]["host_root"]
    card0 = "import json, sys; print(json.load(sys.stdin)[\"card0\"][\"GFX Version\"])"
    out = ssh(host, "grep gfx_target_version %s/sys/devices/virtual/kfd/kfd/topology/nodes/1/properties; "
                    "%s/usr/bin/rocm-smi | python3 -c '%s'; test -c %s/dev/kfd && echo kfd"
              % (root, root, card0, root)).stdout.split()
    assert out == ["gfx_target_version", "90010", "gfx90a", "kfd"]


def test_ssh_up_again_is_the_same_fleet_and_down_leaves_nothing(ssh_fleet):
    directory = ssh_fleet["dir"]
    before = (directory / "inventory.yml").read_text()
    with api(MAIN_ENGINE) as client:
        ids = sorted(c["Id"] for c in client.containers(filters={"label": "org.rocm.madengine.simulated-fleet"})
                     if ssh_fleet["snap"]["fid"] in c["Names"][0])
    started = time.monotonic()
    fleet("up", "--ssh", "--out", str(directory), "amd-gfx90a", "nvidia-h100")
    again = time.monotonic() - started
    assert (directory / "inventory.yml").read_text() == before
    with api(MAIN_ENGINE) as client:
        assert sorted(c["Id"] for c in client.containers(filters={"label": "org.rocm.madengine.simulated-fleet"})
                      if ssh_fleet["snap"]["fid"] in c["Names"][0]) == ids
    assert len(ids) == 2
    started = time.monotonic()
    fleet("down", str(directory))
    down = time.monotonic() - started
    assert leftovers(ssh_fleet["snap"]) == []
    fleet("down", str(directory))
    print("ssh fleet, 2 nodes: up %.1f s, up again %.1f s, down %.1f s; %s"
          % (ssh_fleet["up_seconds"], again, down, ssh_fleet["image"]))
