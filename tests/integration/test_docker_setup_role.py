"""The docker_setup role through ansible-playbook, from the installed collection, on real engines.

Engine tests start a second dockerd of their own (own socket, data root, pid file, daemon.json and a bridge
of its own, the way a GPU node without systemd gets one), so the machine's shared engine is never reloaded or
restarted, and its docker0 never touched (a daemon with ``--bridge=none`` in this network namespace would
delete it). Everything a test starts is stopped by its pid, and removed, when the test ends.
"""

from __future__ import annotations

import grp
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid

import docker
import pytest
from conftest import BASE_IMAGE, REGISTRY, run_playbook, task_results
from simfleet import network

PLAYBOOK = os.path.join(os.path.dirname(__file__), "playbooks", "docker_setup.yml")
SHARED_ENGINE = "unix:///var/run/docker.sock"

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_pid(pidfile):
    try:
        with open(pidfile) as handle:
            pid = int(handle.read().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        return
    for _attempt in range(60):
        if not os.path.exists("/proc/%d" % pid):
            return
        time.sleep(0.5)
    os.kill(pid, 9)


def read_pid(pidfile):
    with open(pidfile) as handle:
        return int(handle.read().strip())


def link_exists(name):
    return subprocess.run(["ip", "link", "show", name], capture_output=True, check=False).returncode == 0


@pytest.fixture
def node(tmp_path):
    """A directory and a bridge for one node's own engine; whatever the role starts there is stopped afterwards."""
    unique = uuid.uuid4().hex[:8]
    base = "/run/mdt-%s" % unique  # short: unix socket paths are limited to 107 bytes
    bridge = "mdtb%s" % unique  # an interface name: at most 15 characters
    os.makedirs(base)
    docker0 = link_exists("docker0")
    network.ensure_bridge(bridge, seed=base)  # a bridge of its own: --bridge=none would delete docker0
    info = {
        "dir": base,
        "host": "unix://%s/docker.sock" % base,
        "vars": {
            "docker_setup_docker_host": "unix://%s/docker.sock" % base,
            "docker_setup_pidfile": base + "/docker.pid",
            "docker_setup_daemon_json": base + "/daemon.json",
            "docker_setup_dockerd_log": base + "/dockerd.log",
            "docker_setup_dockerd_args": ["--data-root", base + "/data", "--exec-root", base + "/exec",
                                          "--bridge=" + bridge, "--iptables=false", "--ip-masq=false",
                                          "--ip-forward=false"],
            "docker_setup_install_engine": False,
            "docker_setup_gpu_vendor": "NONE",
        },
    }
    yield info
    try:
        client = docker.DockerClient(base_url=info["host"], timeout=10)
        for container in client.containers.list(all=True):
            container.remove(force=True)
    except docker.errors.DockerException:
        pass
    stop_pid(base + "/docker.pid")
    stop_pid(base + "/registry.pid")
    with open("/proc/self/mounts") as handle:
        mounts = [line.split()[1] for line in handle if line.split()[1].startswith(base + "/")]
    for mount in sorted(mounts, reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)
    shutil.rmtree(base, ignore_errors=True)
    network.delete_link(bridge)
    assert link_exists("docker0") == docker0, "the main engine's docker0 changed"
    assert not link_exists(bridge)


def play(extra, check=False):
    return run_playbook(PLAYBOOK, inventory="localhost,", extra_vars=dict(extra, ansible_connection="local"),
                        check=check)


ENGINE = "Trust the registries, register the runtimes and keep the engine running"


def engine(parsed):
    """The docker_engine task's result."""
    return task_results(parsed, ENGINE)["localhost"]


REGISTRY_TASK = "Run the registry and wait until it answers (without systemd, one that answers is reused)"


def registry(parsed):
    """The docker_registry task's result."""
    return task_results(parsed, REGISTRY_TASK)["localhost"]


def changed_tasks(parsed):
    names = []
    for play_ in parsed["plays"]:
        for task in play_["tasks"]:
            if any(result.get("changed") for result in task["hosts"].values()):
                names.append(task["task"]["name"].split(" : ", 1)[-1])
    return names


def test_background_engine_is_started_trusts_registries_and_is_reloaded_not_restarted(node):
    settings = dict(node["vars"], docker_setup_gpu_vendor="NVIDIA", docker_setup_nvidia_packages=[],
                    docker_setup_insecure_registries=["registry.invalid:5000", "localhost:5000", "127.0.0.1:5000"])
    rc, parsed, log = play(settings)
    assert rc == 0, log
    assert changed_tasks(parsed) == [ENGINE] and engine(parsed)["actions"] == ["write", "start"]
    assert engine(parsed)["service_mode"] == "background" and engine(parsed)["answering"] is True
    pid = read_pid(node["dir"] + "/docker.pid")
    with open(node["dir"] + "/daemon.json") as handle:
        assert json.load(handle) == {"insecure-registries": ["registry.invalid:5000"],
                                     "runtimes": {"nvidia": {"path": "nvidia-container-runtime",
                                                             "runtimeArgs": []}}}
    client = docker.DockerClient(base_url=node["host"], timeout=30)
    info = client.info()
    assert info["RegistryConfig"]["IndexConfigs"]["registry.invalid:5000"]["Secure"] is False
    assert "nvidia" in info["Runtimes"]
    # the node's own engine pulls from the loopback registry for real
    client.images.pull(BASE_IMAGE)
    assert client.images.get(BASE_IMAGE).id

    # Again: nothing to do, the running engine is reused.
    rc, parsed, log = play(settings)
    assert rc == 0 and changed_tasks(parsed) == [], log
    assert engine(parsed)["actions"] == [] and read_pid(node["dir"] + "/docker.pid") == pid

    # Check mode predicts the change and touches nothing.
    more = dict(settings, docker_setup_insecure_registries=["registry.invalid:5000", "other.invalid:5001"])
    before = open(node["dir"] + "/daemon.json").read()
    rc, parsed, log = play(more, check=True)
    assert rc == 0 and changed_tasks(parsed) == [ENGINE], log
    assert engine(parsed)["actions"] == ["write", "reload"]
    assert engine(parsed)["changed_keys"] == ["insecure-registries"]
    assert open(node["dir"] + "/daemon.json").read() == before

    # A new registry is applied with a reload: same process, containers keep running.
    runner = client.containers.run(BASE_IMAGE, ["sleep", "300"], detach=True, network_mode="none")
    rc, parsed, log = play(more)
    assert rc == 0, log
    assert changed_tasks(parsed) == [ENGINE] and engine(parsed)["actions"] == ["write", "reload"]
    assert read_pid(node["dir"] + "/docker.pid") == pid
    assert client.info()["RegistryConfig"]["IndexConfigs"]["other.invalid:5001"]["Secure"] is False
    runner.reload()
    assert runner.status == "running"
    # the earlier file was kept as a backup next to the new one
    assert [n for n in os.listdir(node["dir"]) if n.startswith("daemon.json.")] != []

    # A key Docker cannot reload is refused unless restarts are allowed ...
    restart = dict(more, docker_setup_daemon_options={"shutdown-timeout": 5, "storage-driver": "overlay2"})
    written = open(node["dir"] + "/daemon.json").read()
    rc, parsed, log = play(restart)
    assert rc != 0
    assert engine(parsed)["msg"] == (
        "Applying storage-driver in %s/daemon.json needs a restart of the Docker engine, which stops running "
        "containers; set allow_restart (docker_setup_allow_restart) to allow it." % node["dir"])
    assert read_pid(node["dir"] + "/docker.pid") == pid and open(node["dir"] + "/daemon.json").read() == written

    # ... and then the engine is restarted with it.
    rc, parsed, log = play(dict(restart, docker_setup_allow_restart=True))
    assert rc == 0, log
    assert engine(parsed)["actions"] == ["write", "restart"]
    assert engine(parsed)["restart_keys"] == ["storage-driver"]
    new_pid = read_pid(node["dir"] + "/docker.pid")
    assert new_pid != pid and not os.path.exists("/proc/%d" % pid)
    assert docker.DockerClient(base_url=node["host"], timeout=30).info()["Driver"] == "overlay2"


def test_registry_mirrors_are_written_and_the_engine_pulls_docker_hub_names_through_them(node):
    """The local registry plays a pull-through mirror: a Docker Hub name that only it holds is pulled through it
    (this machine cannot reach Docker Hub, so the pull can only succeed through the mirror)."""
    from docker_helpers import delete_repositories

    repo = "mdtmirror-%s" % uuid.uuid4().hex[:8]
    shared = docker.DockerClient(base_url=SHARED_ENGINE, timeout=120)
    shared.images.get(BASE_IMAGE).tag("%s/library/%s" % (REGISTRY, repo), "v1")
    try:
        shared.images.push("%s/library/%s" % (REGISTRY, repo), tag="v1")
        mirror = "http://%s" % REGISTRY.replace("localhost", "127.0.0.1")
        rc, parsed, log = play(dict(node["vars"], docker_setup_registry_mirrors=[mirror]))
        assert rc == 0, log
        with open(node["dir"] + "/daemon.json") as handle:
            assert json.load(handle)["registry-mirrors"] == [mirror]
        client = docker.DockerClient(base_url=node["host"], timeout=120)
        assert client.info()["RegistryConfig"]["Mirrors"] == [mirror + "/"]
        pulled = client.images.pull(repo, tag="v1")
        assert pulled.id == shared.images.get(BASE_IMAGE).id
        # a second mirror is added with a reload: the same engine process
        pid = read_pid(node["dir"] + "/docker.pid")
        more = [mirror, "https://mirror.invalid"]
        rc, parsed, log = play(dict(node["vars"], docker_setup_registry_mirrors=more))
        assert rc == 0 and engine(parsed)["actions"] == ["write", "reload"], log
        assert engine(parsed)["changed_keys"] == ["registry-mirrors"] and read_pid(node["dir"] + "/docker.pid") == pid
        # a mirror that is not a URL is named before daemon.json changes
        written = open(node["dir"] + "/daemon.json").read()
        rc, parsed, _log = play(dict(node["vars"], docker_setup_registry_mirrors=["mirror.invalid:5000"]))
        assert rc != 0 and engine(parsed)["msg"].startswith(
            "registry_mirrors must be http:// or https:// URLs of a registry (host[:port], no path), not "
            "'mirror.invalid:5000'")
        assert open(node["dir"] + "/daemon.json").read() == written
    finally:
        shared.images.remove("%s/library/%s:v1" % (REGISTRY, repo), force=True)
        delete_repositories(REGISTRY, "library/" + repo)


def test_check_mode_on_a_node_without_a_running_engine_starts_nothing(node):
    rc, parsed, log = play(dict(node["vars"], docker_setup_insecure_registries=["registry.invalid:5000"]), check=True)
    assert rc == 0, log
    assert changed_tasks(parsed) == [ENGINE] and engine(parsed)["actions"] == ["write", "start"]
    assert engine(parsed)["answering"] is False
    assert sorted(os.listdir(node["dir"])) == []
    # no engine listens yet: the SDK is judged by its version alone, so nothing would be installed
    probe = task_results(parsed, "Ask the node's Python whether its Docker SDK talks to the engine")["localhost"]
    assert probe["rc"] == 3 and probe["stdout"].strip() == docker.__version__
    assert task_results(parsed, "Install pip and packaging for the node's Python")["localhost"].get("skipped") is True


def test_daemon_json_that_is_not_json_is_named(node):
    with open(node["dir"] + "/daemon.json", "w") as handle:
        handle.write("{oops")
    rc, parsed, _log = play(node["vars"])
    assert rc != 0
    assert engine(parsed)["msg"] == (
        "%s/daemon.json is not valid JSON; fix or remove it before running docker_setup." % node["dir"])
    assert not os.path.exists(node["dir"] + "/docker.pid")


def test_engine_that_does_not_answer_on_tcp_is_reported(node):
    rc, parsed, _log = play(dict(node["vars"], docker_setup_docker_host="tcp://127.0.0.1:%d" % free_port()))
    assert rc != 0
    failed = engine(parsed)
    assert failed["msg"].startswith("The Docker engine at tcp://127.0.0.1:")
    assert "only engines that listen on a unix:// socket are started here" in failed["msg"]


def test_distribution_registry_runs_in_the_background_and_is_reused(node, tmp_path):
    port = free_port()
    settings = dict(node["vars"], docker_setup_docker_host=SHARED_ENGINE,
                    docker_setup_daemon_json=str(tmp_path / "daemon.json"),
                    docker_setup_insecure_registries=[],
                    docker_setup_registry_enabled=True, docker_setup_registry_method="package",
                    docker_setup_registry_listen="127.0.0.1:%d" % port,
                    docker_setup_registry_storage=node["dir"] + "/registry",
                    docker_setup_registry_config=node["dir"] + "/registry/config.yml",
                    docker_setup_registry_log=node["dir"] + "/registry.log",
                    docker_setup_registry_pidfile=node["dir"] + "/registry.pid")
    rc, parsed, log = play(settings)
    assert rc == 0, log
    assert changed_tasks(parsed) == [REGISTRY_TASK]
    assert registry(parsed)["actions"] == ["directories", "config", "start"]
    assert registry(parsed)["service_mode"] == "background" and registry(parsed)["answering"] is True
    assert open(node["dir"] + "/registry.pid").read().strip() == str(registry(parsed)["pid"])
    assert urllib.request.urlopen("http://127.0.0.1:%d/v2/" % port, timeout=5).status == 200
    # the shared engine pushes to it (a loopback registry needs no trust)
    client = docker.DockerClient(base_url=SHARED_ENGINE, timeout=60)
    image = client.images.get(BASE_IMAGE)
    target = "127.0.0.1:%d/mdt/base" % port
    image.tag(target, "v1")
    try:
        client.images.push(target, tag="v1")
        catalog = json.load(urllib.request.urlopen("http://127.0.0.1:%d/v2/_catalog" % port, timeout=5))
        assert catalog == {"repositories": ["mdt/base"]}
    finally:
        client.images.remove(target + ":v1")
    rc, parsed, log = play(settings)
    assert rc == 0 and changed_tasks(parsed) == [], log
    assert not (tmp_path / "daemon.json").exists()


def _registry_image(tmp_path, tag):
    """A registry image made from this machine's Debian registry binary (no image pull from anywhere)."""
    context = tmp_path / "ctx"
    context.mkdir()
    binary = shutil.which("docker-registry")
    shutil.copy(binary, context / "docker-registry")
    copies = []
    for line in subprocess.run(["ldd", binary], check=True, capture_output=True, text=True).stdout.splitlines():
        path = [part for part in line.split() if part.startswith("/")]
        if path:
            shutil.copy(path[0], context / os.path.basename(path[0]))
            copies.append("COPY %s %s" % (os.path.basename(path[0]), path[0]))
    (context / "config.yml").write_text("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/registry\n"
                                        "http:\n  addr: :5000\n")
    (context / "Dockerfile").write_text("\n".join(
        ["FROM %s" % BASE_IMAGE, "COPY docker-registry /usr/bin/docker-registry"] + copies
        + ["COPY config.yml /etc/docker/registry/config.yml",
           'ENTRYPOINT ["/usr/bin/docker-registry", "serve", "/etc/docker/registry/config.yml"]']) + "\n")
    client = docker.DockerClient(base_url=SHARED_ENGINE, timeout=120)
    client.images.build(path=str(context), tag=tag, network_mode="host", rm=True)
    return client


def test_registry_container_is_created_started_and_left_alone(node, tmp_path):
    unique = uuid.uuid4().hex[:8]
    tag = "%s/mdt-%s/registry:test" % (REGISTRY, unique)
    name = "mdt-registry-%s" % unique
    port = free_port()
    client = _registry_image(tmp_path, tag)
    settings = dict(node["vars"], docker_setup_docker_host=SHARED_ENGINE,
                    docker_setup_daemon_json=str(tmp_path / "daemon.json"), docker_setup_insecure_registries=[],
                    docker_setup_registry_enabled=True, docker_setup_registry_method="container",
                    docker_setup_registry_image=tag, docker_setup_registry_container=name,
                    docker_setup_registry_listen="127.0.0.1:%d" % port,
                    docker_setup_registry_storage=node["dir"] + "/registry")
    try:
        rc, parsed, log = play(settings)
        assert rc == 0, log
        assert changed_tasks(parsed) == [REGISTRY_TASK]
        assert (registry(parsed)["actions"], registry(parsed)["container_state"]) == (["directories", "create"],
                                                                                      "absent")
        assert urllib.request.urlopen("http://127.0.0.1:%d/v2/" % port, timeout=5).status == 200
        container = client.containers.get(name)
        assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "always"
        rc, parsed, log = play(settings)
        assert rc == 0 and changed_tasks(parsed) == [], log
        container.stop(timeout=1)
        rc, parsed, log = play(settings)
        assert rc == 0 and changed_tasks(parsed) == [REGISTRY_TASK], log
        assert (registry(parsed)["actions"], registry(parsed)["container_state"]) == (["start"], "stopped")
        assert urllib.request.urlopen("http://127.0.0.1:%d/v2/" % port, timeout=5).status == 200
    finally:
        try:
            client.containers.get(name).remove(force=True)
        except docker.errors.NotFound:
            pass
        client.images.remove(tag, force=True)


def test_amd_node_gets_groups_and_udev_rules(node, tmp_path):
    (tmp_path / "kfd").write_text("")
    (tmp_path / "dri").mkdir()
    group = "mdt%s" % uuid.uuid4().hex[:6]
    settings = dict(node["vars"], docker_setup_docker_host=SHARED_ENGINE,
                    docker_setup_daemon_json=str(tmp_path / "daemon.json"), docker_setup_insecure_registries=[],
                    docker_setup_gpu_vendor="AMD",
                    docker_setup_amd_devices=[str(tmp_path / "kfd"), str(tmp_path / "dri")],
                    docker_setup_amd_groups=["video", group], docker_setup_amd_device_group=group,
                    docker_setup_amd_udev_rules_path=str(tmp_path / "70-amdgpu.rules"))
    try:
        rc, parsed, log = play(settings)
        assert rc == 0, log
        assert changed_tasks(parsed) == ["Make the GPU access groups", "Give the GPU devices to the render group",
                                         "Reload the udev rules"]
        assert grp.getgrnam(group).gr_gid < 1000  # a system group
        rules = (tmp_path / "70-amdgpu.rules").read_text()
        assert 'KERNEL=="kfd", GROUP="%s", MODE="0660"' % group in rules
        assert 'SUBSYSTEM=="drm", KERNEL=="renderD*", GROUP="%s", MODE="0660"' % group in rules
        # again, with auto: it finds the node's AMD device, and nothing changes
        rc, parsed, log = play(dict(settings, docker_setup_gpu_vendor="auto"))
        assert rc == 0 and changed_tasks(parsed) == [], log
        assert "Check that the AMD GPU devices exist" in [
            t["task"]["name"].split(" : ", 1)[-1] for p in parsed["plays"] for t in p["tasks"]
            if t["hosts"] and not t["hosts"]["localhost"].get("skipped")]
    finally:
        subprocess.run(["groupdel", group], check=False)


def test_amd_node_without_its_devices_fails_naming_them(node, tmp_path):
    settings = dict(node["vars"], docker_setup_docker_host=SHARED_ENGINE,
                    docker_setup_daemon_json=str(tmp_path / "daemon.json"), docker_setup_insecure_registries=[],
                    docker_setup_gpu_vendor="AMD",
                    docker_setup_amd_devices=[str(tmp_path / "kfd"), str(tmp_path / "dri")])
    rc, parsed, _log = play(settings)
    assert rc != 0
    failed = task_results(parsed, "Check that the AMD GPU devices exist")["localhost"]
    assert failed["msg"] == (
        "localhost is an AMD GPU node but %s and %s are missing: load the amdgpu driver (modprobe amdgpu) or set "
        "madengine_gpu_vendor for this node." % (tmp_path / "kfd", tmp_path / "dri"))


@pytest.mark.parametrize("extra, message", [
    ({"docker_setup_gpu_vendor": "INTEL"},
     "value of docker_setup_gpu_vendor must be one of: auto, AMD, NVIDIA, NONE, amd, nvidia, none, got: INTEL"),
    ({"docker_setup_service_mode": "upstart"},
     "value of docker_setup_service_mode must be one of: auto, systemd, background, got: upstart"),
])
def test_bad_settings_are_refused_before_anything_runs(node, extra, message):
    rc, parsed, log = play(dict(node["vars"], **extra))
    assert rc != 0
    failed = [r for p in parsed["plays"] for t in p["tasks"] for r in t["hosts"].values() if r.get("failed")]
    assert len(failed) == 1 and message in failed[0]["msg"], log
    assert os.listdir(node["dir"]) == []


def test_bad_docker_host_is_named(node):
    rc, parsed, _log = play(dict(node["vars"], docker_setup_docker_host="/var/run/docker.sock"))
    assert rc != 0
    failed = task_results(parsed, "Check the settings")["localhost"]
    assert "docker_host must be a unix:// or tcp:// URL (got /var/run/docker.sock)" in failed["msg"]


def test_a_dockerd_that_exits_at_once_is_named_with_its_log(node):
    rc, parsed, _log = play(dict(node["vars"], docker_setup_dockerd_args=["--no-such-flag"]))
    assert rc != 0
    message = engine(parsed)["msg"]
    assert message.startswith("dockerd (pid ") and message.index(
        ") exited before the engine answered at %s; %s/dockerd.log ends: " % (node["host"], node["dir"])), message
    assert "no-such-flag" in message
