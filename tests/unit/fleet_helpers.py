"""Tests' view of ci/simulated-fleet.sh: run it, read what it wrote, and list what a removed fleet left behind.

``leftovers`` looks for traces independently of how the script finds its own things: processes, mounts,
addresses and routes of the fleet's networks, links, containers, cgroups, NAT rules and files.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "ci", "simulated-fleet.sh")


def fleet(*args, timeout=900, check=True):
    proc = subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError("simulated-fleet.sh %s failed (%d):\n%s%s"
                             % (" ".join(args), proc.returncode, proc.stdout, proc.stderr))
    return proc


def up(directory, *kinds, ssh=False):
    """Start a fleet; (inventory document, its nodes {name: host vars}, state)."""
    fleet("up", *(["--ssh"] if ssh else []), "--out", str(directory), *kinds)
    return read(directory)


def read(directory):
    with open(os.path.join(str(directory), "inventory.yml")) as handle:
        document = yaml.safe_load(handle)
    nodes = {}
    for group in document["all"]["children"]["gpu_nodes"]["children"].values():
        nodes.update(group["hosts"])
    with open(os.path.join(str(directory), "fleet.json")) as handle:
        state = json.load(handle)
    return document, nodes, state


def ssh_command(host_vars, command):
    """The ssh command line the inventory gives Ansible for a node, running ``command``."""
    return (["ssh", "-i", host_vars["ansible_ssh_private_key_file"], "-p", str(host_vars["ansible_port"]),
             "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"] + shlex.split(host_vars["ansible_ssh_common_args"])
            + ["%s@%s" % (host_vars["ansible_user"], host_vars["ansible_host"]), command])


def ssh(host_vars, command, check=True):
    proc = subprocess.run(ssh_command(host_vars, command), capture_output=True, text=True, timeout=300,
                          check=False)
    if check and proc.returncode != 0:
        raise AssertionError("ssh %s %r failed (%d): %s"
                             % (host_vars["ansible_host"], command, proc.returncode, proc.stderr))
    return proc


def snapshot(directory):
    """What to look for after ``down``: the fleet's id, its networks (from its bridges' addresses)."""
    directory = os.path.realpath(str(directory))
    _document, nodes, state = read(directory)
    fid = state["fid"]
    networks = [state["subnet"]] if state.get("subnet") else []
    for host_vars in nodes.values():
        for arg in host_vars.get("docker_setup_dockerd_args", []):
            if arg.startswith("--bridge="):
                out = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", arg.split("=", 1)[1]],
                                     capture_output=True, text=True, check=False).stdout.split()
                networks.append(out[out.index("inet") + 1])
    return {"dir": directory, "fid": fid, "run_dir": "/run/madfleet-%s" % fid, "networks": networks,
            "nodes": sorted(nodes)}


def _network_prefix(cidr):
    import ipaddress

    return ipaddress.ip_interface(cidr).network


def leftovers(snap):
    """Descriptions of everything of the fleet ``snap`` describes that still exists (empty: nothing)."""
    import ipaddress

    found = []
    paths = (snap["dir"], snap["run_dir"])
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as handle:
                    cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if any(p + "/" in cmdline for p in paths) and "pytest" not in cmdline:
                found.append("process %s: %s" % (entry, cmdline[:200]))
    with open("/proc/self/mounts") as handle:
        found += ["mount %s" % line.split()[1] for line in handle if any(p in line.split()[1] for p in paths)]
    networks = [_network_prefix(n) for n in snap["networks"]]
    addresses = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True,
                               check=True).stdout.splitlines()
    for line in addresses:
        words = line.split()
        if "inet" in words and any(ipaddress.ip_interface(words[words.index("inet") + 1]).ip in n for n in networks):
            found.append("address %s" % line)
    routes = subprocess.run(["ip", "-4", "-o", "route", "show"], capture_output=True, text=True,
                            check=True).stdout.splitlines()
    found += ["route %s" % r for r in routes if any(str(n) in r for n in networks)]
    found += ["link %s" % n for n in os.listdir("/sys/class/net") if snap["fid"] in n]
    nat = subprocess.run(["iptables", "-w", "-t", "nat", "-S"], capture_output=True, text=True,
                         check=False).stdout.splitlines()
    found += ["iptables %s" % r for r in nat if any(str(n) in r for n in networks) or snap["fid"] in r]
    containers = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}} {{.Labels}}"], capture_output=True,
                                text=True, check=False).stdout.splitlines()
    found += ["container %s" % c for c in containers if snap["fid"] in c]
    for hierarchy in os.listdir("/sys/fs/cgroup"):
        try:
            found += ["cgroup %s/%s" % (hierarchy, n) for n in os.listdir(os.path.join("/sys/fs/cgroup", hierarchy))
                      if snap["fid"] in n]
        except OSError:
            continue
    found += ["path %s" % p for p in paths + ("/run/lock/madfleet-%s.lock" % snap["fid"],) if os.path.lexists(p)]
    return found
