"""The machine's own Docker is left as found: no extra engine of the suite, of the benchmarks or of
ci/simulated-fleet.sh deletes docker0, and the main engine still starts containers on its default bridge.

A Docker daemon started with ``--bridge=none`` deletes the ``docker0`` of the network namespace it runs
in; the main engine then fails every container on its default network ("could not find bridge
docker0") until it is restarted.  Two checks:

* in a network namespace of its own, with an engine of its own playing the main engine (default bridge
  docker0): the suite's node engines and a simulated fleet start and stop, and that engine still runs a
  container on its default bridge; a ``--bridge=none`` daemon in the same place breaks it, so the check
  can fail (this part does not depend on the state the host is in);
* on the host, after every other test of the session (``host_check`` tests run last): docker0 is still
  there and the main engine runs a container on its default bridge network.
"""

from __future__ import annotations

import glob
import ipaddress
import os
import subprocess
import sys
import tempfile
import time
import uuid

import docker
import pytest
from conftest import BASE_IMAGE, HOST_DOCKER0_AT_START, MAIN_ENGINE, MULTIPROCESSING_DIRS_AT_START
from fleet_helpers import REPO, SCRIPT
from node_engines import NodeEngine, start_engines

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SESSION = uuid.uuid4().hex[:6]
UNIT = os.path.join(REPO, "tests", "unit")
CI = os.path.dirname(SCRIPT)


def in_netns(name, argv, check=True, timeout=300):
    proc = subprocess.run(["nsenter", "--net=/run/netns/%s" % name] + argv, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError("%s in %s failed (%d): %s%s" % (argv, name, proc.returncode, proc.stdout, proc.stderr))
    return proc


def netns_docker0(name):
    return subprocess.run(["ip", "-n", name, "-o", "link", "show", "docker0"], capture_output=True, text=True,
                          check=False).returncode == 0


def stop_daemon(proc, base):
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    with open("/proc/self/mounts") as handle:
        for point in sorted((line.split()[1] for line in handle if base + "/" in line.split()[1]), reverse=True):
            subprocess.run(["umount", "-l", point], check=False)
    subprocess.run(["rm", "-rf", base], check=False)


def start_daemon(netns, base, *args):
    """dockerd in ``netns`` with its files under ``base``; (Popen, engine address)."""
    os.makedirs(base)
    host = "unix://%s/docker.sock" % base
    with open(os.path.join(base, "dockerd.log"), "wb") as log:
        proc = subprocess.Popen(["nsenter", "--net=/run/netns/%s" % netns, "dockerd", "--data-root", base + "/data",
                                 "--exec-root", base + "/exec", "--pidfile", base + "/docker.pid", "-H", host,
                                 "--iptables=false", "--ip-masq=false", *args], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while subprocess.run(["docker", "-H", host, "version"], capture_output=True, check=False).returncode != 0:
        if time.monotonic() > deadline or proc.poll() is not None:
            stop_daemon(proc, base)
            raise AssertionError("dockerd in %s did not start" % netns)
        time.sleep(0.2)
    return proc, host


def bridge_container(engine):
    """(exit status, output) of a container on the engine's default bridge network printing its address."""
    proc = subprocess.run(["docker", "-H", engine, "run", "--rm", "--network", "bridge", BASE_IMAGE, "sh", "-c",
                           "ip -4 -o addr show eth0"], capture_output=True, text=True, timeout=120, check=False)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture
def netns():
    """A network namespace whose own 'main engine' has the default bridge docker0, as the host's has."""
    name = "madhost%s" % SESSION
    base = "/tmp/madhost-%s-main" % SESSION
    subprocess.run(["ip", "netns", "add", name], check=True)
    proc = None
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        proc, engine = start_daemon(name, base)
        save = subprocess.Popen(["docker", "save", BASE_IMAGE], stdout=subprocess.PIPE)
        subprocess.run(["docker", "-H", engine, "load", "-q"], stdin=save.stdout, check=True, capture_output=True)
        save.wait()
        assert netns_docker0(name) and bridge_container(engine)[0] == 0
        yield {"name": name, "engine": engine}
    finally:
        if proc is not None:
            stop_daemon(proc, base)
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True,
                              check=False).stdout.split()
        for pid in pids:
            subprocess.run(["kill", "-9", pid], check=False)
        subprocess.run(["ip", "netns", "del", name], check=False)


NODE_ENGINES = """
import sys
sys.path[:0] = [%r, %r]
from node_engines import start_engines
engines = start_engines(%r, 2)
try:
    import subprocess
    print(subprocess.run(["ip", "-o", "link", "show", "docker0"], capture_output=True, text=True).returncode)
finally:
    for engine in engines:
        engine.destroy()
"""


def test_node_engines_and_a_fleet_leave_the_main_engine_its_bridge(netns, tmp_path):
    name = netns["name"]
    base = "/tmp/madhost-%s-node" % SESSION
    out = in_netns(name, [sys.executable, "-c", NODE_ENGINES % (UNIT, CI, base)])
    assert out.stdout.split()[-1] == "0"  # docker0 there while the engines ran
    directory = str(tmp_path / "fleet")
    in_netns(name, [SCRIPT, "up", "--out", directory, "nvidia-h100", "cpu:2"])
    try:
        assert netns_docker0(name)
        links = subprocess.run(["ip", "-n", name, "-o", "link", "show", "type", "bridge"], capture_output=True,
                               text=True, check=True).stdout
        assert links.count(": mf") == 3  # one bridge per node, in the namespace the fleet was started in
    finally:
        in_netns(name, [SCRIPT, "down", directory])
    assert not os.path.exists(base + "1") and not os.path.exists(directory)
    assert netns_docker0(name)
    status, output = bridge_container(netns["engine"])
    assert status == 0 and " inet 172.17." in output, output


def test_a_bridge_none_daemon_breaks_the_main_engine_which_the_check_sees(netns):
    """The control: what the suite must never do to the host, done in a throwaway namespace."""
    base = "/tmp/madhost-%s-none" % SESSION
    proc, _engine = start_daemon(netns["name"], base, "--bridge=none")
    try:
        assert not netns_docker0(netns["name"])
        status, output = bridge_container(netns["engine"])
        assert status != 0 and "could not find bridge docker0" in output
    finally:
        stop_daemon(proc, base)


@pytest.mark.host_check
def test_the_host_docker0_and_default_bridge_work_after_the_suite(tmp_path):
    if not HOST_DOCKER0_AT_START:
        pytest.skip("docker0 was already missing when this session started (an engine started with "
                    "--bridge=none before it deleted it): restart the main Docker engine, then run again")
    # this test's own engines too, when it runs alone
    for engine in start_engines("/tmp/madhost-%s-host" % SESSION, 2):
        engine.destroy()
    NodeEngine("/tmp/madhost-%s-one" % SESSION).start().destroy()
    subprocess.run([SCRIPT, "up", "--out", str(tmp_path / "fleet"), "cpu", "nvidia-h100"], check=True,
                   capture_output=True)
    subprocess.run([SCRIPT, "down", str(tmp_path / "fleet")], check=True, capture_output=True)
    assert os.path.exists("/sys/class/net/docker0"), "docker0 of the main engine was deleted"
    client = docker.DockerClient(base_url=MAIN_ENGINE, timeout=120)
    try:
        output = client.containers.run(BASE_IMAGE, ["sh", "-c", "ip -4 -o addr show eth0"], remove=True,
                                       network_mode="bridge")
    finally:
        client.close()
    address = output.decode().split()[3]
    bridge = docker.APIClient(base_url=MAIN_ENGINE, version="auto").inspect_network("bridge")
    subnet = bridge["IPAM"]["Config"][0]["Subnet"]
    assert ipaddress.ip_interface(address).ip in ipaddress.ip_network(subnet)


@pytest.mark.host_check
def test_the_plays_the_suite_killed_left_nothing_in_the_temporary_directory():
    """The suite kills plays on purpose (Ctrl-C, a cancelled AWX job); their leftovers belong in the tests' own
    directories, never in the machine's temporary directory."""
    left = set(glob.glob(os.path.join(tempfile.gettempdir(), "pymp-*"))) - MULTIPROCESSING_DIRS_AT_START
    assert not left, "left in %s by processes of the suite: %s" % (tempfile.gettempdir(), sorted(left))
