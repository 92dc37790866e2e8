"""A simulated fleet of GPU nodes on one machine: ``up``, ``down``, ``image`` (see ci/simulated-fleet.sh).

Local mode: every node is a Docker engine of its own on this machine (own data root, exec root, socket,
bridge), reached with ``ansible_connection: local``.  SSH mode (``--ssh``): every node is a container with
a Debian root filesystem, sshd and a dockerd of its own, reached over SSH on an address of the fleet's
bridge (sshnode.py).  Either way each node's fake GPUs live in a host root of its own (fake_gpu.py).

Everything a fleet makes is named after its directory (``fid``, a hash of its path), so ``down`` finds it
again even when ``up`` was killed half way or the state file is gone.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import time

from . import fake_gpu, network, sshnode
from .engine import Engine, destroy_engines, stop_engines
from .inventory import dump, write_atomic
from .system import (
    FleetError,
    engine_answers,
    http_answers,
    processes_using,
    read_pid,
    run,
    say,
    stop_pids,
    tail,
    unmount_under,
    wait_for,
)

KINDS = tuple(fake_gpu.KINDS)
NODE_NAME = re.compile(r"^(%s)-([0-9]+)$" % "|".join(re.escape(k) for k in KINDS))
MAIN_ENGINE = "unix:///var/run/docker.sock"
CONTROLLER_REGISTRY = os.environ.get("MADCI_REGISTRY_ADDR", "127.0.0.1:5000")
STATE_VERSION = 1
LOCAL_TOOLS = (("dockerd", "docker.io"), ("ip", "iproute2"))
SSH_TOOLS = (("docker", "docker.io"), ("docker-registry", "docker-registry"), ("ssh", "openssh-client"),
             ("ssh-keygen", "openssh-client"), ("nsenter", "util-linux"), ("ip", "iproute2"))


def parse_kinds(words):
    """``["amd-gfx942:2", "cpu"]`` -> ``[("amd-gfx942", 2), ("cpu", 1)]``; bad words raise FleetError naming them."""
    if not words:
        raise FleetError("no node kinds given; kinds: %s" % ", ".join(KINDS))
    spec, seen = [], set()
    for word in words:
        kind, _, count = word.partition(":")
        if kind not in fake_gpu.KINDS:
            raise FleetError("unknown node kind %r (in %r); kinds: %s" % (kind, word, ", ".join(KINDS)))
        if kind in seen:
            raise FleetError("node kind %r is given twice; give KIND:COUNT once" % kind)
        if count and not (count.isdigit() and int(count) > 0):
            raise FleetError("the count of %r must be a whole number above 0" % word)
        seen.add(kind)
        spec.append((kind, int(count or 1)))
    return spec


def node_names(spec):
    return [("%s-%d" % (kind, n), kind) for kind, count in spec for n in range(1, count + 1)]


def registry_name(address):
    """How image names spell a registry address (setup-host.sh's registry is ``localhost:5000``)."""
    return address.replace("127.0.0.1", "localhost", 1)


def device_vars(host_root, vendor):
    """docker_setup's GPU device paths: the node's fake devices under its host root."""
    if vendor == "AMD":
        return {"docker_setup_amd_devices": [host_root + "/dev/kfd", host_root + "/dev/dri"]}
    if vendor == "NVIDIA":
        return {"docker_setup_nvidia_device": host_root + "/dev/nvidiactl"}
    return {}


class Fleet(object):
    def __init__(self, out):
        self.dir = os.path.realpath(out)
        self.fid = hashlib.sha1(self.dir.encode()).hexdigest()[:6]
        self.run_dir = "/run/madfleet-%s" % self.fid
        self.state_path = os.path.join(self.dir, "fleet.json")
        self.inventory_path = os.path.join(self.dir, "inventory.yml")
        self.ssh_dir = os.path.join(self.dir, "ssh")
        self.registry_dir = os.path.join(self.dir, "registry")
        self.link_prefix = "mf%s" % self.fid
        self.ssh_bridge = self.link_prefix + "br"
        self.nat_comment = "madfleet-%s" % self.fid
        self._lock = None

    # ---- state ----------------------------------------------------------------------------------

    def lock(self):
        self._lock = open("/run/lock/madfleet-%s.lock" % self.fid if os.path.isdir("/run/lock")
                          else "/tmp/madfleet-%s.lock" % self.fid, "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)

    def unlock(self, remove=False):
        if self._lock:
            if remove:
                os.unlink(self._lock.name)
            self._lock.close()
            self._lock = None

    def load(self):
        try:
            with open(self.state_path) as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return None

    def save(self, state):
        write_atomic(self.state_path, json.dumps(state, indent=2, sort_keys=True) + "\n")

    def node_dir(self, node):
        return os.path.join(self.dir, node)

    def host_root(self, node):
        return os.path.join(self.dir, node, "root")

    # ---- local nodes ----------------------------------------------------------------------------

    def engine(self, node, kind=None):
        extra = os.path.join(self.node_dir(node), "bin") if kind and fake_gpu.KINDS[kind]["vendor"] == "NVIDIA" \
            else None
        bridge = self.link_prefix + hashlib.sha1(node.encode()).hexdigest()[:4]
        return Engine(self.node_dir(node), os.path.join(self.run_dir, node), bridge, extra_path=extra)

    def write_fake_gpus(self, node, kind, hook_log):
        fake_gpu.write_host_root(self.host_root(node), kind)
        if fake_gpu.KINDS[kind]["vendor"] == "NVIDIA":
            fake_gpu.write_tool(os.path.join(self.node_dir(node), "bin"), "nvidia-container-runtime-hook",
                                fake_gpu.nvidia_hook_script(hook_log))

    def up_local(self, nodes):
        missing = ["%s (Debian package %s)" % (t, p) for t, p in LOCAL_TOOLS if not shutil.which(t)]
        if missing:
            raise FleetError("local nodes need %s; ci/setup-host.sh installs them" % ", ".join(missing))
        missing = []
        for node, kind in nodes:
            self.write_fake_gpus(node, kind, os.path.join(self.node_dir(node), "hook.log"))
            engine = self.engine(node, kind)
            if not engine.answers():
                missing.append(engine)
        stop_engines(missing, grace=10)  # leftovers of a killed run
        launched = [(engine, engine.launch(detach=True)) for engine in missing]
        for engine, proc in launched:
            engine.wait(timeout=120, proc=proc)

    def local_vars(self, node, kind):
        engine = self.engine(node, kind)
        root = self.host_root(node)
        spec = fake_gpu.KINDS[kind]
        return {
            "ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            "madengine_docker_host": engine.host,
            "madengine_gpu_vendor": spec["vendor"],
            "madengine_gpu_arch": spec["arch"],
            "madengine_run_options": {"host_root": root},
            "madengine_registry": registry_name(CONTROLLER_REGISTRY),
            # docker_setup manages this node's engine, never the machine's own
            "docker_setup_docker_host": engine.host,
            "docker_setup_dockerd_binary": engine.launcher,
            "docker_setup_dockerd_args": engine.args(),
            "docker_setup_pidfile": engine.pidfile,
            "docker_setup_daemon_json": engine.config,
            "docker_setup_dockerd_log": engine.log,
            **device_vars(root, spec["vendor"]),
        }

    # ---- SSH nodes ------------------------------------------------------------------------------

    def key(self):
        return os.path.join(self.ssh_dir, "id_ed25519")

    def host_key(self, node):
        return os.path.join(self.ssh_dir, "host_keys", node)

    def known_hosts(self):
        return os.path.join(self.ssh_dir, "known_hosts")

    def make_keys(self, nodes):
        os.makedirs(os.path.join(self.ssh_dir, "host_keys"), mode=0o700, exist_ok=True)
        os.chmod(self.ssh_dir, 0o700)
        for path, comment in [(self.key(), "controller")] + [(self.host_key(n), n) for n, _k in nodes]:
            if not os.path.exists(path):
                run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "simulated-fleet-%s-%s" % (self.fid, comment),
                     "-f", path])

    def controller_storage(self):
        """The root directory of the controller registry's storage (the nodes' registry serves it too)."""
        storage = os.environ.get("MADFLEET_REGISTRY_STORAGE", "")
        if not storage:
            config = os.path.join(os.environ.get("MADCI_STATE", "/var/lib/madci"), "registry", "config.yml")
            try:
                with open(config) as handle:
                    match = re.search(r"rootdirectory:\s*([^\s,}]+)", handle.read())
            except OSError:
                match = None
            if not match:
                raise FleetError("cannot tell where the registry on %s keeps its images (no rootdirectory in %s); "
                                 "set MADFLEET_REGISTRY_STORAGE" % (CONTROLLER_REGISTRY, config))
            storage = match.group(1)
        if not os.path.isdir(storage):
            raise FleetError("registry storage %s does not exist" % storage)
        return storage

    def ensure_registry(self, address):
        """A read-only registry on the fleet's bridge serving the controller registry's storage."""
        url = "http://%s/v2/" % address
        pidfile = os.path.join(self.registry_dir, "pid")
        pid = read_pid(pidfile)
        if pid and pid in processes_using(self.registry_dir) and http_answers(url):
            return
        stop_pids(processes_using(self.registry_dir), 10)
        os.makedirs(self.registry_dir, exist_ok=True)
        config = os.path.join(self.registry_dir, "config.yml")
        write_atomic(config, "version: 0.1\nlog: {level: warn}\nstorage:\n  filesystem: {rootdirectory: %s}\n"
                             "  maintenance:\n    readonly: {enabled: true}\nhttp: {addr: \"%s\"}\n"
                     % (self.controller_storage(), address))
        log_path = os.path.join(self.registry_dir, "registry.log")
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(["docker-registry", "serve", config], stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
        write_atomic(pidfile, "%d\n" % proc.pid)
        wait_for(lambda: http_answers(url), 30, "the nodes' registry on %s" % address, lambda: ": " + tail(log_path))

    def up_ssh(self, nodes, state):
        missing = ["%s (Debian package %s)" % (tool, package) for tool, package in SSH_TOOLS if not shutil.which(tool)]
        if missing:
            raise FleetError("SSH nodes need %s; ci/setup-host.sh installs them" % ", ".join(missing))
        if not engine_answers(MAIN_ENGINE):
            raise FleetError("the main Docker engine (%s) does not answer; SSH nodes run on it" % MAIN_ENGINE)
        if not http_answers("http://%s/v2/" % CONTROLLER_REGISTRY):
            raise FleetError("the controller's registry on %s does not answer (ci/setup-host.sh starts it)"
                             % CONTROLLER_REGISTRY)
        image, _seconds, _built = sshnode.build_image(os.path.join(self.dir, "image-build.log"))
        self.make_keys(nodes)
        if not state.get("subnet"):
            state["subnet"] = str(ipaddress.ip_interface(network.allocate(24, self.fid)).network)
            self.save(state)
        subnet = ipaddress.ip_network(state["subnet"])
        gateway = str(subnet.network_address + 1)
        network.ensure_bridge(self.ssh_bridge, address="%s/%d" % (gateway, subnet.prefixlen))
        if not network.ensure_nat(str(subnet), self.ssh_bridge, self.nat_comment):
            say("iptables is missing: SSH nodes cannot reach package mirrors (docker_setup's installs will fail)")
        self.ensure_registry("%s:5000" % gateway)
        addresses = state.setdefault("addresses", {})
        taken = set(addresses.values())
        for node, _kind in nodes:
            if node not in addresses:
                free = next(str(subnet.network_address + n) for n in range(10, subnet.num_addresses - 1)
                            if str(subnet.network_address + n) not in taken)
                addresses[node] = free
                taken.add(free)
        self.save(state)
        for node, kind in nodes:
            self.up_ssh_node(node, kind, image, "%s/%d" % (addresses[node], subnet.prefixlen), gateway)
        self.write_known_hosts(nodes, addresses)
        for node, _kind in nodes:
            self.wait_ssh_node(node, addresses[node])

    def up_ssh_node(self, node, kind, image, address, gateway):
        name = sshnode.container_name(self.fid, node)
        pid = sshnode.container_pid(name)
        self.write_fake_gpus(node, kind, sshnode.HOOK_LOG)
        if pid and sshnode.node_address(pid) == address and run(
                ["docker", "inspect", "-f", "{{.Config.Image}}", name]).strip() == image:
            return
        data = os.path.join(self.node_dir(node), "docker")
        os.makedirs(data, exist_ok=True)
        binds = [(data, "/var/lib/docker", "rw"), (self.host_root(node), sshnode.HOST_ROOT, "ro"),
                 (self.host_key(node), "/etc/ssh/ssh_host_ed25519_key", "ro"),
                 (self.key() + ".pub", "/root/.ssh/authorized_keys", "ro")]
        if os.path.isfile(sshnode.CA_BUNDLE):  # pip on the node needs this machine's certificate authorities
            binds.append((os.path.realpath(sshnode.CA_BUNDLE), sshnode.CA_BUNDLE, "ro"))
        if fake_gpu.KINDS[kind]["vendor"] == "NVIDIA":
            binds.append((os.path.join(self.node_dir(node), "bin", "nvidia-container-runtime-hook"),
                          "/usr/local/bin/nvidia-container-runtime-hook", "ro"))
        pid = sshnode.start_container(self.fid, node, image, binds)
        veth = self.link_prefix + "v" + hashlib.sha1(node.encode()).hexdigest()[:4]
        sshnode.plug(pid, veth, self.ssh_bridge, address, gateway)

    def write_known_hosts(self, nodes, addresses):
        lines = []
        for node, _kind in nodes:
            with open(self.host_key(node) + ".pub") as handle:
                kind, key = handle.read().split()[:2]
            lines.append("%s %s %s\n" % (addresses[node], kind, key))
        write_atomic(self.known_hosts(), "".join(lines))

    def wait_ssh_node(self, node, address):
        argv = sshnode.ssh_argv(self.key(), self.known_hosts(), address) + [
            "docker version --format '{{.Server.Version}}' >/dev/null"]

        def check():
            return run(argv, check=False, timeout=30).returncode == 0

        def detail():
            proc = run(["docker", "exec", sshnode.container_name(self.fid, node), "sh", "-c",
                        "tail -n 5 /var/log/sshd.log /var/log/dockerd.log"], check=False)
            return ": " + (proc.stdout + proc.stderr).strip()

        wait_for(check, 120, "node %s (ssh root@%s, then its dockerd)" % (node, address), detail)

    def ssh_vars(self, node, kind, state):
        spec = fake_gpu.KINDS[kind]
        subnet = ipaddress.ip_network(state["subnet"])
        root = sshnode.HOST_ROOT
        return {
            "ansible_host": state["addresses"][node],
            "ansible_port": 22,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": self.key(),
            "ansible_ssh_common_args": "-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"
                                       % self.known_hosts(),
            "ansible_python_interpreter": "/usr/bin/python3",
            "madengine_docker_host": "unix:///var/run/docker.sock",
            "madengine_gpu_vendor": spec["vendor"],
            "madengine_gpu_arch": spec["arch"],
            "madengine_run_options": {"host_root": root},
            "madengine_registry": "%s:5000" % (subnet.network_address + 1),
            **device_vars(root, spec["vendor"]),
        }

    # ---- inventory ------------------------------------------------------------------------------

    def write_inventory(self, nodes, state):
        ssh = state["mode"] == "ssh"
        groups = {}
        for node, kind in nodes:
            host = self.ssh_vars(node, kind, state) if ssh else self.local_vars(node, kind)
            groups.setdefault(kind.replace("-", "_"), {}).setdefault("hosts", {})[node] = host
        for kind in {k for _n, k in nodes}:
            group_vars = {"docker_setup_amd_udev_rules": False, "docker_setup_nvidia_packages": []}
            if ssh:  # Debian's system Python (PEP 668): docker_setup installs the SDK into /usr/local
                group_vars.update(docker_setup_pip_break_system_packages=True)
            else:
                group_vars.update(docker_setup_install_engine=False, docker_setup_service_mode="background",
                                  docker_setup_amd_groups=[])
            groups[kind.replace("-", "_")]["vars"] = group_vars
        controller_registry = registry_name(CONTROLLER_REGISTRY)
        document = {"all": {"children": {
            "controller": {"hosts": {"localhost": {
                "ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                "madengine_docker_host": MAIN_ENGINE, "madengine_gpu_vendor": "NONE",
                "madengine_registry": controller_registry}}},
            "gpu_nodes": {"children": dict(sorted(groups.items()))}}}}
        if ssh:
            registry_line = ("Registry: the controller pushes to %s; the nodes pull the same images from %s:5000 "
                             "(a read-only registry on the fleet's bridge serving the same storage)."
                             % (controller_registry, ipaddress.ip_network(state["subnet"]).network_address + 1))
        else:
            registry_line = "Registry: controller and nodes use %s (the nodes' engines run on this machine)." \
                            % controller_registry
        header = ("Simulated fleet (%s mode) made by ci/simulated-fleet.sh; remove it with:\n"
                  "  ci/simulated-fleet.sh down %s\n"
                  "Nodes: %s\n%s\n"
                  "Each node's fake GPUs are under its madengine_run_options.host_root.\n"
                  "The docker_setup_* variables point docker_setup at each node's own engine and fake devices."
                  % ("SSH" if ssh else "local", self.dir, ", ".join(n for n, _k in nodes), registry_line))
        write_atomic(self.inventory_path, dump(document, header))

    # ---- up / down ------------------------------------------------------------------------------

    def up(self, spec, ssh):
        nodes = node_names(spec)
        mode = "ssh" if ssh else "local"
        self.lock()
        try:
            state = self.load()
            if state and state.get("mode") != mode:
                raise FleetError("%s holds a %s fleet; run 'ci/simulated-fleet.sh down %s' first"
                                 % (self.dir, state.get("mode"), self.dir))
            os.makedirs(self.dir, exist_ok=True)
            state = state or {"version": STATE_VERSION, "mode": mode, "fid": self.fid}
            gone = [n for n in state.get("nodes", {}) if n not in dict(nodes)]
            state["nodes"] = {**state.get("nodes", {}), **dict(nodes)}
            self.save(state)  # before anything starts: down finds what a killed up made
            for node in gone:
                self.remove_node(node, state)
                del state["nodes"][node]
                state.get("addresses", {}).pop(node, None)
            self.save(state)
            if ssh:
                self.up_ssh(nodes, state)
            else:
                self.up_local(nodes)
            self.write_inventory(nodes, state)
            self.save(state)
        finally:
            self.unlock()
        return self.inventory_path

    def remove_node(self, node, state):
        if state["mode"] == "ssh":
            sshnode.remove_containers(self.fid, node)
            sshnode.remove_cgroups(sshnode.cgroup_parent(self.fid, node).lstrip("/"), exact=True)
            for path in (self.host_key(node), self.host_key(node) + ".pub"):
                if os.path.exists(path):
                    os.unlink(path)
            shutil.rmtree(self.node_dir(node), ignore_errors=True)
        else:
            self.engine(node).destroy()

    def down(self):
        self.lock()
        try:
            state = self.load() or {}
            nodes = set(state.get("nodes", {}))
            for directory in (self.dir, self.run_dir):
                if os.path.isdir(directory):
                    nodes.update(n for n in os.listdir(directory) if NODE_NAME.match(n))
            if engine_answers(MAIN_ENGINE):
                sshnode.remove_containers(self.fid)
            sshnode.remove_cgroups("madfleet-%s-" % self.fid)
            stop_pids(processes_using(self.registry_dir), 10)
            network.remove_nat(self.nat_comment)
            destroy_engines([self.engine(node) for node in sorted(nodes)])
            stop_pids(processes_using(self.dir, self.run_dir), 10)
            for link in network.links_with_prefix(self.link_prefix):
                network.delete_link(link)
            unmount_under(self.dir, self.run_dir)
            shutil.rmtree(self.run_dir, ignore_errors=True)
            for name in ["fleet.json", "inventory.yml", "ssh", "registry", "image-build.log"] + sorted(nodes):
                path = os.path.join(self.dir, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                elif os.path.lexists(path):
                    os.unlink(path)
            if os.path.isdir(self.dir) and not os.listdir(self.dir):
                os.rmdir(self.dir)
        finally:
            self.unlock(remove=True)


USAGE = """ci/simulated-fleet.sh up [--ssh] --out DIR KIND[:COUNT]...
       ci/simulated-fleet.sh down DIR
       ci/simulated-fleet.sh image
kinds: %s""" % ", ".join(KINDS)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="ci/simulated-fleet.sh", usage=USAGE,
                                     description="A fleet of simulated GPU nodes on this machine.")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start (or complete) a fleet and write DIR/inventory.yml")
    up.add_argument("--out", required=True, metavar="DIR", help="the fleet's directory")
    up.add_argument("--ssh", action="store_true", help="nodes reached over SSH, each with a root filesystem of its own")
    up.add_argument("kinds", nargs="+", metavar="KIND[:COUNT]", help="node kinds: %s" % ", ".join(KINDS))
    down = commands.add_parser("down", help="remove everything the fleet in DIR made")
    down.add_argument("dir", metavar="DIR")
    commands.add_parser("image", help="build the SSH node image unless it is cached")
    options = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.exit(1, "ci/simulated-fleet.sh: must run as root (it starts Docker engines and makes bridges)\n")
    started = time.monotonic()
    try:
        if options.command == "up":
            spec = parse_kinds(options.kinds)
            path = Fleet(options.out).up(spec, options.ssh)
            say("%d node(s) up in %.1f s; inventory: %s" % (sum(c for _k, c in spec), time.monotonic() - started,
                                                            path))
            print(path)
        elif options.command == "down":
            Fleet(options.dir).down()
            say("fleet %s removed in %.1f s" % (os.path.realpath(options.dir), time.monotonic() - started))
        else:
            name, seconds, built = sshnode.build_image()
            say("%s %s" % (name, "built in %.1f s" % seconds if built else "is cached"))
    except FleetError as error:
        sys.stderr.write("ci/simulated-fleet.sh: %s\n" % error)
        return 1
    return 0
