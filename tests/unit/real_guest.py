"""Helpers for tests that boot the real Debian guest of ci/guest-image.sh on the real libvirtd.

- ``guest_images()``: builds the images once (cached by ci/guest-image.sh) and returns their description;
- ``nat_network()``: a transient libvirt NAT network with a free /24 and its own bridge, removed afterwards;
- ``guest_registry()``: a second, read-only registry process on the bridge address, serving the storage of
  the host's registry (the guest cannot reach 127.0.0.1:5000 of the host), or a writable one with a storage of
  its own (a build host's registry), stopped afterwards;
- ``build_engine()``: an extra Docker engine that trusts such a registry, so a build can push to the address
  the guest pulls from (the host's main engine is never reconfigured);
- ``vm_mode_vars()`` and ``vm_node_vars()``: the inventory variables of vm_benchmark.yml for nodes (this machine,
  local connection) whose VMs boot these images on such a network;
- ``GuestShell``: runs commands in the guest over SSH with the key the seed gave it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import socket
import subprocess
import time
import urllib.request
import uuid

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
CI_GUEST_IMAGE = os.path.join(HERE, "..", "..", "ci", "guest-image.sh")
MADCI_STATE = os.environ.get("MADCI_STATE", "/var/lib/madci")
MAIN_REGISTRY_CONFIG = os.path.join(MADCI_STATE, "registry", "config.yml")


def guest_images(timeout=1800):
    """The description ci/guest-image.sh prints with --json (building the images the first time)."""
    start = time.monotonic()
    proc = subprocess.run(["bash", CI_GUEST_IMAGE, "--json"], capture_output=True, text=True, check=False,
                          timeout=timeout)
    assert proc.returncode == 0, "ci/guest-image.sh failed:\n%s%s" % (proc.stdout, proc.stderr)
    found = json.loads(proc.stdout)
    found["seconds"] = round(time.monotonic() - start, 1)
    return found


def _used_networks():
    """Every IPv4 network this host has an address or a route in."""
    used = []
    for cmd in (["ip", "-j", "-4", "addr"], ["ip", "-j", "-4", "route"]):
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        for entry in json.loads(out or "[]"):
            for info in entry.get("addr_info", []):
                used.append(ipaddress.ip_network("%s/%s" % (info["local"], info["prefixlen"]), strict=False))
            dst = entry.get("dst")
            if dst and dst != "default":
                used.append(ipaddress.ip_network(dst if "/" in dst else dst + "/32", strict=False))
    return used


def _free_subnet(conn, tries=50):
    used = _used_networks()
    for net in conn.listAllNetworks(0):
        for ip in _network_addresses(net.XMLDesc(0)):
            used.append(ip.network)
    for _attempt in range(tries):
        candidate = ipaddress.ip_network("10.%d.%d.0/24" % (random.randint(200, 249), random.randint(0, 255)))
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise AssertionError("no free /24 in 10.200.0.0/13 for a test network")


def _network_addresses(xml):
    import xml.etree.ElementTree as ET

    found = []
    for ip in ET.fromstring(xml).findall("ip"):
        if ip.get("address") and ip.get("netmask"):
            found.append(ipaddress.ip_interface("%s/%s" % (ip.get("address"), ip.get("netmask"))))
    return found


def bridge_exists(bridge):
    return os.path.exists(os.path.join("/sys/class/net", bridge))


@contextlib.contextmanager
def nat_network(conn, prefix):
    """A transient NAT network (DHCP by libvirt's dnsmasq) like a stock libvirt host's "default" one.

    Yields ``dict(name, bridge, address, subnet)``; the network, its bridge and its dnsmasq are gone afterwards.
    """
    tag = uuid.uuid4().hex[:6]
    name = "%s-net-%s" % (prefix, tag)
    bridge = "mvbr%s" % tag  # at most 15 characters
    network, last = None, None
    for _attempt in range(5):
        subnet = _free_subnet(conn)
        gateway = subnet.network_address + 1
        xml = (
            "<network><name>%s</name><forward mode='nat'/><bridge name='%s' stp='off' delay='0'/>"
            "<ip address='%s' netmask='%s'><dhcp><range start='%s' end='%s'/></dhcp></ip></network>"
            % (name, bridge, gateway, subnet.netmask, subnet.network_address + 10, subnet.network_address + 200)
        )
        try:
            network = conn.networkCreateXML(xml)
            break
        except Exception as exc:  # a subnet taken in the meantime: try another one
            last = exc
    if network is None:
        raise AssertionError("could not create a NAT network: %s" % last)
    try:
        yield dict(name=name, bridge=bridge, address=str(gateway), subnet=str(subnet))
    finally:
        network.destroy()
        deadline = time.monotonic() + 10
        while bridge_exists(bridge) and time.monotonic() < deadline:
            time.sleep(0.2)


def registry_answers(address, timeout=2):
    try:
        with urllib.request.urlopen("http://%s/v2/" % address, timeout=timeout) as resp:
            return resp.status == 200
    except OSError:
        return False


def free_port(host):
    """A TCP port nothing listens on at ``host`` (the host's registry may hold 5000 on every address)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_open(host, port):
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


@contextlib.contextmanager
def guest_registry(listen, workdir, storage=None):
    """A registry on ``listen`` (host:port); stopped afterwards.

    Without ``storage`` it serves the host registry's storage read-only: the host's own registry listens on
    loopback only and is left alone, nothing is copied and nothing can be written through this one. With
    ``storage`` (a directory of the test's) it is a writable registry of its own.
    """
    readonly = storage is None
    if readonly:
        assert os.path.isfile(MAIN_REGISTRY_CONFIG), (
            "%s does not exist: the host's registry is not the one ci/setup-host.sh starts" % MAIN_REGISTRY_CONFIG)
        with open(MAIN_REGISTRY_CONFIG) as handle:
            storage = yaml.safe_load(handle)["storage"]["filesystem"]["rootdirectory"]
    config = os.path.join(str(workdir), "registry.yml")
    with open(config, "w") as handle:
        yaml.safe_dump({
            "version": 0.1, "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(storage)},
                        "maintenance": {"readonly": {"enabled": readonly}}},
            "http": {"addr": listen},
        }, handle)
    log = open(os.path.join(str(workdir), "registry.log"), "w")
    proc = subprocess.Popen(["docker-registry", "serve", config], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while not registry_answers(listen):
            assert proc.poll() is None, "the registry on %s exited: %s" % (listen, open(log.name).read())
            assert time.monotonic() < deadline, "the registry on %s did not answer" % listen
            time.sleep(0.2)
        yield dict(address=listen, pid=proc.pid, storage=storage)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


class GuestShell:
    """Commands in the guest over SSH as the user the seed created, with the seed's key."""

    def __init__(self, address, user, key_file):
        self.address, self.user, self.key_file = address, user, key_file

    def argv(self, command):
        return ["ssh", "-i", self.key_file, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
                "%s@%s" % (self.user, self.address), command]

    def run(self, command, timeout=600, check=True):
        proc = subprocess.run(self.argv(command), capture_output=True, text=True, check=False, timeout=timeout)
        if check:
            assert proc.returncode == 0, "%r in the guest failed (%d):\n%s%s" % (
                command, proc.returncode, proc.stdout, proc.stderr)
        return proc

    def wait_until(self, command, timeout, interval=1.0):
        """Run ``command`` until it succeeds; return the seconds it took. Fails with its last output."""
        start = time.monotonic()
        while True:
            proc = self.run(command, timeout=60, check=False)
            if proc.returncode == 0:
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise AssertionError("%r did not succeed in the guest within %d s: %s%s" % (
                    command, timeout, proc.stdout, proc.stderr))
            time.sleep(interval)


@contextlib.contextmanager
def build_engine(base, registries):
    """A Docker engine of its own (ci/simfleet's, as the node engines) trusting the plain-HTTP ``registries``."""
    from node_engines import NodeEngine

    engine = NodeEngine(str(base))
    os.makedirs(engine.base, exist_ok=True)
    with open(engine.engine.config, "w") as handle:
        json.dump({"insecure-registries": list(registries)}, handle)
    try:
        yield engine.start()
    finally:
        engine.destroy()


def vm_mode_vars(key_file, uri="qemu:///system"):
    """The VM-mode variables every node shares: a CPU-only guest of 2 vCPUs and 2 GiB, reached with ``key_file``."""
    return {
        "madengine_vm_uri": uri, "madengine_vm_passthrough": "none", "madengine_vm_vcpus": 2,
        "madengine_vm_memory": "2G", "madengine_vm_disk_size": "6G", "madengine_vm_ssh_private_key_file": key_file,
        # The tests' environment sets the controller's Python for every host (ANSIBLE_PYTHON_INTERPRETER); the
        # modules in the guests run on the guest's Python, found as Ansible finds it without that setting.
        "madengine_vm_host_vars": {"ansible_python_interpreter": "auto_silent"},
        # the guests' Docker SDK for Python comes from Debian, as their engine does
        "docker_setup_sdk_method": "package",
    }


def vm_node_vars(images, variant, network, dirs, **extra):
    """A node (this machine, local connection) whose VM boots image ``variant`` on ``network`` (nat_network)."""
    image = images["images"][variant]
    options = dict(kernel=image["kernel"], initrd=image["initrd"], kernel_args=images["kernel_args"], firmware="bios",
                   network=network["name"], network_type="network", ip_sources=["lease"], disk_cache="writeback",
                   boot_timeout=300, retries=0, image_dir=str(dirs["images"]), state_dir=str(dirs["state"]),
                   log_dir=str(dirs["logs"]))
    return dict({"ansible_connection": "local", "madengine_vm_base_image": image["qcow2"],
                 "madengine_vm_options": options}, **extra)
