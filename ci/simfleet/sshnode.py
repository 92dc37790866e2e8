"""SSH nodes: containers on the main engine with a Debian root filesystem of their own, sshd and a dockerd.

The node image is made from Debian's packages (mmdebstrap, then ``docker import``) and kept on the main
engine as ``madengine-fleet-node:<recipe hash>``: it is rebuilt only when the recipe below changes.  It
holds Debian's python3 (no Docker SDK: docker_setup installs it), openssh-server and docker.io.

A node container runs with ``--network none``; the fleet plugs a veth of its own bridge into it, so the
node has an address of its own, its loopback is its own and it reaches the controller only through the
bridge.  Its dockerd keeps /var/lib/docker on a host directory (overlay on overlay does not work), puts
its containers under a cgroup parent of its own and reads /etc/docker/daemon.json, which docker_setup
manages (registry trust is not preset).  ``--privileged`` is refused on some hosts: SYS_ADMIN and
NET_ADMIN with unconfined seccomp/AppArmor and a writable /sys/fs/cgroup are enough, plus SYS_PTRACE and SYS_NICE
for the models' containers, which ask for them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

from .system import FleetError, ok, run, say

IMAGE_REPO = "madengine-fleet-node"
SUITE = "bookworm"
PACKAGES = ("openssh-server", "python3", "python3-apt", "docker.io", "iproute2", "ca-certificates", "apparmor",
            "procps")
NODE_INIT = """#!/bin/sh
# Started by docker-init as the node container's main process: sshd, then the node's own dockerd.
set -eu
mkdir -p /run/sshd /etc/docker /var/log
if [ ! -s /etc/docker/daemon.json ]; then
  printf '{"cgroup-parent": "%s", "iptables": false, "ip-masq": false}\\n' "$SIMULATED_NODE_CGROUP" \\
    >/etc/docker/daemon.json
fi
/usr/sbin/sshd -E /var/log/sshd.log
setsid dockerd >>/var/log/dockerd.log 2>&1 </dev/null &
exec sleep infinity
"""
SSHD_CONFIG = """# simulated fleet node: key authentication for root only, the fleet's host key
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
"""
INIT_PATH = "/usr/local/sbin/simulated-node-init"
HOST_ROOT = "/var/lib/simulated-gpu"          # the node's fake GPU tree (host_root of its modules)
HOOK_LOG = "/var/log/nvidia-container-runtime-hook.log"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
LABEL_FLEET = "org.rocm.madengine.simulated-fleet"
LABEL_NODE = "org.rocm.madengine.simulated-node"
RECIPE_VERSION = 1


def recipe():
    return {"version": RECIPE_VERSION, "suite": SUITE, "variant": "apt", "packages": list(PACKAGES),
            "init": NODE_INIT, "sshd": SSHD_CONFIG}


def image_name():
    digest = hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()[:12]
    return "%s:%s" % (IMAGE_REPO, digest)


def image_exists(name=None):
    return ok(["docker", "image", "inspect", name or image_name()])


def apt_sources():
    """deb lines for the node image: the suite, its updates and security, from this machine's apt sources."""
    mirror = os.environ.get("MADFLEET_MIRROR", "")
    security = os.environ.get("MADFLEET_SECURITY_MIRROR", "")
    if not (mirror and security):
        stanzas = []
        directory = "/etc/apt/sources.list.d"
        for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
            if name.endswith(".sources"):
                with open(os.path.join(directory, name)) as handle:
                    stanzas += handle.read().split("\n\n")
        for stanza in stanzas:
            fields = dict((k.strip().lower(), v.strip()) for k, _, v in
                          (line.partition(":") for line in stanza.splitlines() if ":" in line and line[:1] != "#"))
            uris, suites = fields.get("uris", "").split(), fields.get("suites", "").split()
            if uris and "%s-security" % SUITE in suites:
                security = security or uris[0]
            elif uris and SUITE in suites:
                mirror = mirror or uris[0]
    mirror = mirror or "http://deb.debian.org/debian"
    security = security or "http://deb.debian.org/debian-security"
    return ["deb %s %s main" % (mirror, SUITE), "deb %s %s-updates main" % (mirror, SUITE),
            "deb %s %s-security main" % (security, SUITE)]


def build_image(log_path=None):
    """Make the node image unless it exists; (name, seconds spent, built?)."""
    name = image_name()
    if image_exists(name):
        return name, 0.0, False
    if not shutil.which("mmdebstrap"):
        raise FleetError("mmdebstrap is not installed (ci/setup-host.sh installs it)")
    started = time.monotonic()
    work = tempfile.mkdtemp(prefix="madfleet-image-", dir=os.environ.get("TMPDIR", "/var/tmp"))
    try:
        init, sshd, tarball = (os.path.join(work, n) for n in ("init", "sshd.conf", "rootfs.tar"))
        with open(init, "w") as handle:
            handle.write(NODE_INIT)
        with open(sshd, "w") as handle:
            handle.write(SSHD_CONFIG)
        argv = ["mmdebstrap", "--variant=apt", "--include=" + ",".join(PACKAGES)]
        argv += ["--dpkgopt=path-exclude=/usr/share/%s/*" % d for d in ("man", "doc", "locale", "info")]
        argv += ["--customize-hook=rm -f \"$1\"/etc/ssh/ssh_host_*",
                 "--customize-hook=mkdir -p -m 700 \"$1\"/root/.ssh",
                 "--customize-hook=upload %s %s" % (init, INIT_PATH),
                 "--customize-hook=chmod 755 \"$1\"%s" % INIT_PATH,
                 "--customize-hook=upload %s /etc/ssh/sshd_config.d/simulated-node.conf" % sshd,
                 SUITE, tarball] + apt_sources()
        say("building the SSH node image %s from Debian packages (about 1-2 minutes)" % name)
        log = open(log_path or os.devnull, "w")
        try:
            proc = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, check=False)
        finally:
            log.close()
        if proc.returncode != 0:
            raise FleetError("mmdebstrap failed (exit %d); log: %s" % (proc.returncode, log_path or "not kept"))
        run(["docker", "import", "-c", "CMD [\"%s\"]" % INIT_PATH, "-c", "LABEL %s-recipe=%s" % (LABEL_FLEET,
                                                                                               name.split(":")[1]),
             tarball, name], timeout=600)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # older recipes' images are dropped when no container uses them
    for tag in run(["docker", "images", IMAGE_REPO, "--format", "{{.Tag}}"]).split():
        if "%s:%s" % (IMAGE_REPO, tag) != name:
            ok(["docker", "rmi", "%s:%s" % (IMAGE_REPO, tag)])
    return name, time.monotonic() - started, True


# ---- node containers ----------------------------------------------------------------------------

def container_name(fid, node):
    return "madfleet-%s-%s" % (fid, node)


def cgroup_parent(fid, node):
    return "/madfleet-%s-%s" % (fid, node)


def container_pid(name):
    proc = run(["docker", "inspect", "-f", "{{.State.Running}} {{.State.Pid}}", name], check=False)
    if proc.returncode != 0:
        return None
    running, pid = proc.stdout.split()
    return int(pid) if running == "true" and pid != "0" else None


def node_address(pid):
    """``address/prefix`` of the node's eth0, or None."""
    proc = run(["nsenter", "-t", str(pid), "-n", "ip", "-4", "-o", "addr", "show", "dev", "eth0"], check=False)
    match = re.search(r"inet (\S+)", proc.stdout or "")
    return match.group(1) if match else None


def start_container(fid, node, image, binds):
    """``docker run`` of one node (any old container of that name removed first); its PID."""
    name = container_name(fid, node)
    ok(["docker", "rm", "-f", name])
    argv = ["docker", "run", "-d", "--name", name, "--hostname", node, "--init", "--network", "none",
            "--label", "%s=%s" % (LABEL_FLEET, fid), "--label", "%s=%s" % (LABEL_NODE, node),
            "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN",
            # the capabilities madengine's GPU containers ask for (a container gets no more than its node has)
            "--cap-add", "SYS_PTRACE", "--cap-add", "SYS_NICE",
            "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
            "-e", "SIMULATED_NODE_CGROUP=%s" % cgroup_parent(fid, node),
            "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw"]
    for source, target, mode in binds:
        argv += ["-v", "%s:%s:%s" % (source, target, mode)]
    run(argv + [image])
    pid = container_pid(name)
    if not pid:
        logs = run(["docker", "logs", "--tail", "20", name], check=False)
        raise FleetError("node %s did not start: %s" % (node, (logs.stdout + logs.stderr).strip()))
    return pid


def plug(pid, veth, bridge, address, gateway):
    """A veth from ``bridge`` to the node's namespace as eth0 with ``address`` and a default route."""
    ok(["ip", "link", "del", veth])
    run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", str(pid)])
    run(["ip", "link", "set", veth, "master", bridge, "up"])
    for argv in (["ip", "addr", "add", address, "dev", "eth0"], ["ip", "link", "set", "eth0", "up"],
                 ["ip", "route", "add", "default", "via", gateway]):
        run(["nsenter", "-t", str(pid), "-n"] + argv)


def fleet_containers(fid):
    return run(["docker", "ps", "-aq", "--filter", "label=%s=%s" % (LABEL_FLEET, fid)]).split()


def remove_containers(fid, node=None):
    names = [container_name(fid, node)] if node else fleet_containers(fid)
    if names:
        ok(["docker", "rm", "-f"] + names)


def remove_cgroups(prefix, exact=False):
    """Delete the cgroups (every hierarchy) the nodes' engines made under ``/<prefix>...`` (``/<prefix>``
    only when ``exact``); retried while the last processes in them exit."""
    roots = [os.path.join("/sys/fs/cgroup", h) for h in sorted(os.listdir("/sys/fs/cgroup"))] \
        if os.path.isdir("/sys/fs/cgroup") else []
    roots.append("/sys/fs/cgroup")
    for _attempt in range(50):
        left = []
        for root in roots:
            try:
                names = [n for n in os.listdir(root) if (n == prefix if exact else n.startswith(prefix))]
            except OSError:
                continue
            for name in names:
                for directory, _dirs, _files in sorted(os.walk(os.path.join(root, name)), reverse=True):
                    try:
                        os.rmdir(directory)
                    except OSError:
                        left.append(directory)
        if not left:
            return
        time.sleep(0.2)
    raise FleetError("cgroups still in use: %s" % ", ".join(left[:5]))


def ssh_argv(key, known_hosts, address, port=22):
    return ["ssh", "-i", key, "-p", str(port), "-o", "UserKnownHostsFile=%s" % known_hosts,
            "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", "root@%s" % address.split("/")[0]]
