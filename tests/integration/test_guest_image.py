"""The real Debian guest of ci/guest-image.sh on the real libvirtd (QEMU in software emulation), driven by madengine_vm.

Each image boots the way VM mode starts a guest: a qcow2 overlay on the cached base, a NoCloud seed made by
madengine_vm (SSH key and user, plus the guest dockerd's registry trust as user_data), direct kernel boot, and a
libvirt NAT network (a transient one per module, with its own bridge and dnsmasq). The guest must then answer
SSH with the seed's key as the seed's user, run Debian's Python and its own kernel, and run a container from the
busybox base image it pulls from the host's registry at the address it sees the host at: the NAT bridge's. The
host's registry listens on loopback only, so a second, read-only registry process serves its storage there.

- docker image: Docker preinstalled; its dockerd answers, pulls and runs;
- plain image: no Docker; ``apt-get install docker.io`` from Debian's mirror works inside the guest (through NAT),
  and then the same pull and run.

ci/guest-image.sh itself: its version follows the recipe (not comments, not the rest of the script), bad settings
are named, old versions and interrupted builds (even with mounts left in them) are removed, and nothing outside
the cache is touched.

Afterwards nothing is left: no domain, overlay, seed, console log, state file, network, bridge or registry
process. The phases are timed and printed (they are measurements, not assertions).
"""

from __future__ import annotations

import glob
import ipaddress
import json
import os
import shutil
import subprocess
import time
import uuid

import pytest
from real_guest import (
    CI_GUEST_IMAGE,
    GuestShell,
    bridge_exists,
    free_port,
    guest_images,
    guest_registry,
    nat_network,
    port_open,
)
from vm_helpers import libvirt_session

from ansible_collections.rocm.madengine.plugins.modules import madengine_vm

pytestmark = [pytest.mark.libvirtd, pytest.mark.slow]

URI = "qemu:///system"
SESSION = uuid.uuid4().hex[:6]
PREFIX = "madengine-vm-gi%s" % SESSION
SSH_USER = "madengine"
BASE_IMAGE = "mad-base:busybox"


@pytest.fixture(scope="module")
def images():
    return guest_images()


@pytest.fixture(scope="module")
def conn():
    with libvirt_session(URI, PREFIX) as handle:
        yield handle


@pytest.fixture(scope="module")
def network(conn):
    with nat_network(conn, PREFIX) as net:
        yield net
    assert net["name"] not in [n.name() for n in conn.listAllNetworks(0)]
    assert not bridge_exists(net["bridge"])


@pytest.fixture(scope="module")
def registry(network, tmp_path_factory):
    port = free_port(network["address"])
    listen = "%s:%d" % (network["address"], port)
    with guest_registry(listen, tmp_path_factory.mktemp("registry")) as reg:
        yield reg
    assert not port_open(network["address"], port), "the guest registry still listens on %s" % listen


@pytest.fixture(scope="module")
def ssh_key(tmp_path_factory):
    key = tmp_path_factory.mktemp("key") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return str(key)


def _files(dirs):
    return sorted(p for d in dirs.values() for p in glob.glob(os.path.join(d, "*")))


def _vm_args(name, image, images, network, registry, ssh_key, dirs):
    trust = '{"insecure-registries": ["%s"]}\n' % registry["address"]
    return dict(
        name=name, uri=URI, base_image=image["qcow2"], kernel=image["kernel"], initrd=image["initrd"],
        kernel_args=images["kernel_args"], vcpus=2, memory="2G", disk_size="6G", firmware="bios",
        network_type="network", network=network["name"], ssh_user=SSH_USER, ssh_pubkey=open(ssh_key + ".pub").read(),
        # the guest's dockerd trusts the registry at the address the guest sees it (docker_setup does the
        # same in VM mode); written before dockerd starts, and before docker.io is installed
        user_data={"write_files": [{"path": "/etc/docker/daemon.json", "content": trust, "permissions": "0644"}]},
        wait_for="ssh", boot_timeout=420, retries=0, disk_cache="writeback",
        image_dir=dirs["images"], state_dir=dirs["state"], log_dir=dirs["logs"],
    )


def _boot(variant, images, network, registry, ssh_key, tmp_path, module_runner, phases):
    name = "%s-%s" % (PREFIX, variant)
    dirs = {k: str(tmp_path / k) for k in ("images", "state", "logs")}
    for d in dirs.values():
        os.makedirs(d)
    args = _vm_args(name, images["images"][variant], images, network, registry, ssh_key, dirs)
    start = time.monotonic()
    vm = module_runner(madengine_vm, args)
    assert not vm.failed, vm.get("msg")
    phases["define"] = sum(vm["timings"].get(k, 0) for k in ("overlay", "seed", "define", "start"))
    phases["SSH answers at"] = time.monotonic() - start
    return name, dirs, vm, start


def _login(vm, network, ssh_key, phases, start):
    """The guest got a lease of the NAT network and lets the seed's user in with the seed's key."""
    assert vm["domain_type"] == "qemu"
    assert ipaddress.ip_address(vm["ip"]) in ipaddress.ip_network(network["subnet"])
    shell = GuestShell(vm["ip"], SSH_USER, ssh_key)
    shell.wait_until("true", timeout=120)
    phases["SSH login at"] = time.monotonic() - start
    return shell


def _dockerd_ready(shell, phases, start):
    shell.wait_until("sudo docker version --format '{{.Server.Version}}'", 300)
    phases["dockerd ready at"] = time.monotonic() - start


def _check_guest(shell, images, name):
    """Debian's Python, the guest's own kernel, sudo for the seed's user, the seed applied, cloud-init done."""
    facts = shell.run("id -un; hostname; cat /etc/debian_version; python3 --version; "
                      "dpkg-query -W -f '${Version}\\n' python3; uname -r; sudo -n true && echo sudo-ok; "
                      "cloud-init status --wait >/dev/null; cloud-init status; df -B1 --output=size / | tail -1",
                      timeout=300).stdout.split("\n")
    user, hostname, debian, python, python_pkg, kernel, sudo, ci_status, root_size = facts[:9]
    assert user == SSH_USER
    assert hostname == name  # local-hostname of the seed's meta-data
    assert debian.startswith("12.")
    assert python.startswith("Python 3.11.") and python_pkg.startswith("3.11.")  # Debian 12's python3
    assert kernel == images["kernel_release"] and kernel != os.uname().release
    assert sudo == "sudo-ok"
    assert ci_status == "status: done", ci_status  # every cloud-init stage ran without an error
    assert int(root_size) > 5 << 30  # cloud-init grew the 3 GiB base's filesystem to the 6 GiB overlay
    # cloud-init ran in two stages, not four: the network stage found the seed (the local stage is masked)
    # and the final stage ran the config stage's modules (cloud-config.service is masked)
    stages = shell.run("systemctl is-enabled cloud-init-local.service cloud-config.service "
                       "systemd-networkd-wait-online.service; sudo cloud-init status --long", check=False).stdout
    assert stages.split()[:3] == ["masked"] * 3, stages
    assert "DataSourceNoCloudNet [seed=/dev/vdb]" in stages, stages
    return kernel


def _boot_split(shell, phases):
    """The guest's own account of its boot (kernel, user space) and its slowest units: measurements."""
    out = shell.run("systemd-analyze time; systemd-analyze blame --no-pager | head -5", check=False).stdout
    phases["guest boot"] = " ".join(out.split("\n")[0].replace("Startup finished in ", "").split())
    phases["slowest units"] = ", ".join(" ".join(line.split()) for line in out.split("\n")[2:] if line.strip())


def _pull_and_run(shell, registry, kernel, phases):
    image = "%s/%s" % (registry["address"], BASE_IMAGE)
    start = time.monotonic()
    shell.run("sudo docker pull -q %s" % image)
    phases["pull"] = time.monotonic() - start
    start = time.monotonic()
    out = shell.run("sudo docker run --rm --network host %s sh -c 'echo ran-in-guest; uname -r'" % image).stdout.split()
    phases["run"] = time.monotonic() - start
    assert out == ["ran-in-guest", kernel]  # the container ran on the guest's kernel, not the host's
    info = shell.run("sudo docker info --format '{{json .SecurityOptions}} {{json .RegistryConfig.IndexConfigs}}'")
    assert "name=apparmor" in info.stdout and registry["address"] in info.stdout


def _teardown(name, dirs, conn, module_runner, phases, start):
    t0 = time.monotonic()
    gone = module_runner(madengine_vm, dict(name=name, uri=URI, state="absent", image_dir=dirs["images"],
                                            state_dir=dirs["state"], log_dir=dirs["logs"]))
    phases["teardown"] = time.monotonic() - t0
    phases["total"] = time.monotonic() - start
    assert not gone.failed, gone.get("msg")
    assert gone["changed"] is True and gone["clean"] == {"ok": True, "problems": []}
    assert name not in [d.name() for d in conn.listAllDomains(0)]
    assert _files(dirs) == []


def _report(capsys, variant, phases):
    with capsys.disabled():
        print("\nguest image %s (load %.1f): %s" % (variant, os.getloadavg()[0], ", ".join(
            ("%s %.1f s" if isinstance(v, float) else "%s: %s") % (k, v) for k, v in phases.items())))


def test_docker_image(images, conn, network, registry, ssh_key, tmp_path, module_runner, capsys):
    phases = {}
    name, dirs, vm, start = _boot("docker", images, network, registry, ssh_key, tmp_path, module_runner, phases)
    try:
        shell = _login(vm, network, ssh_key, phases, start)
        _dockerd_ready(shell, phases, start)
        kernel = _check_guest(shell, images, name)
        _boot_split(shell, phases)
        _pull_and_run(shell, registry, kernel, phases)
    finally:
        _teardown(name, dirs, conn, module_runner, phases, start)
    _report(capsys, "docker", phases)


def test_plain_image_installs_docker_from_debian(images, conn, network, registry, ssh_key, tmp_path, module_runner,
                                                 capsys):
    phases = {}
    name, dirs, vm, start = _boot("plain", images, network, registry, ssh_key, tmp_path, module_runner, phases)
    try:
        shell = _login(vm, network, ssh_key, phases, start)
        kernel = _check_guest(shell, images, name)
        absent = shell.run("command -v docker dockerd; dpkg-query -W -f '${Status}' docker.io", check=False)
        assert absent.returncode != 0 and "dockerd" not in absent.stdout  # no Docker in this image
        t0 = time.monotonic()
        # the guest reaches Debian's mirror through the NAT network (plain HTTP: no CA bundle needed)
        shell.run("sudo apt-get -q update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                  "--no-install-recommends docker.io", timeout=900)
        phases["apt-get install docker.io"] = time.monotonic() - t0
        _dockerd_ready(shell, phases, start)
        _pull_and_run(shell, registry, kernel, phases)
    finally:
        _teardown(name, dirs, conn, module_runner, phases, start)
    _report(capsys, "plain", phases)


# ---- ci/guest-image.sh ----------------------------------------------------------------------------------------


def _script(*args, env=None, script=CI_GUEST_IMAGE):
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run(["bash", script] + list(args), capture_output=True, text=True, check=False, env=full,
                          timeout=600)


def _version(script, **env):
    proc = _script("--version", script=script, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_version_follows_the_recipe_only(tmp_path):
    original = open(CI_GUEST_IMAGE).read()
    copy = tmp_path / "guest-image.sh"
    copy.write_text(original)
    version = _version(str(copy))
    assert version.startswith("deb12-") and len(version) == 18
    copy.write_text(original.replace("\n# ---- the recipe", "\n# a comment more\n\n# ---- the recipe", 1))
    assert _version(str(copy)) == version  # comments and blank lines are no part of the recipe
    copy.write_text(original.replace('echo "usage: $0', 'echo "Usage: $0', 1))
    assert _version(str(copy)) == version  # nor is the rest of the script
    copy.write_text(original.replace("DOCKER_PACKAGES=docker.io", "DOCKER_PACKAGES=docker.io,git", 1))
    assert _version(str(copy)) != version  # a package more: another image
    copy.write_text(original.replace("ssh_genkeytypes: [ed25519]", "ssh_genkeytypes: [ed25519, rsa]", 1))
    assert _version(str(copy)) != version  # a file written into the image changed
    copy.write_text(original.replace('BOOT_MASK_UNITS="', 'BOOT_MASK_UNITS="cron.service ', 1))
    assert _version(str(copy)) != version  # a unit more masked at boot
    copy.write_text(original.replace('BOOT_BLACKLIST_MODULES="', 'BOOT_BLACKLIST_MODULES="floppy ', 1))
    assert _version(str(copy)) != version  # a module more kept from loading
    copy.write_text(original)
    assert _version(str(copy), MADCI_DEBIAN_MIRROR="http://mirror.example/debian") != version
    assert _version(str(copy), MADCI_GUEST_IMAGE_COMPRESS="0") != version


@pytest.mark.parametrize("env, message", [
    ({"MADCI_GUEST_IMAGE_KEEP": "0"}, "MADCI_GUEST_IMAGE_KEEP must be a positive number, not '0'"),
    ({"MADCI_GUEST_IMAGE_KEEP": "two"}, "MADCI_GUEST_IMAGE_KEEP must be a positive number, not 'two'"),
    ({"MADCI_GUEST_IMAGE_JOBS": "-1"}, "MADCI_GUEST_IMAGE_JOBS must be a positive number, not '-1'"),
    ({"MADCI_GUEST_IMAGE_COMPRESS": "yes"}, "MADCI_GUEST_IMAGE_COMPRESS must be 0 or 1, not 'yes'"),
])
def test_bad_settings_are_named(tmp_path, env, message):
    cache = tmp_path / "cache"
    proc = _script("--json", env=dict(env, MADCI_GUEST_IMAGE_DIR=str(cache)))
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == "[guest-image] error: %s\n" % message
    assert not cache.exists()  # nothing made


def test_unknown_argument_prints_the_usage():
    proc = _script("--rebuild")
    assert proc.returncode == 2 and proc.stderr.startswith("usage: ") and "--json | --env | --version" in proc.stderr


def _mounted_below(path):
    with open("/proc/mounts") as handle:
        return [line.split()[1] for line in handle if line.split()[1].startswith(str(path) + "/")]


def test_cached_images_old_versions_and_interrupted_builds(images, tmp_path):
    """A cache holding the current images (hard links), two older versions and a build killed with its mounts."""
    cache = tmp_path / "cache"
    cache.mkdir()
    current = cache / images["version"]
    subprocess.run(["cp", "-al", images["dir"], str(current)], check=True)
    now = time.time()
    for age, name in ((2, "deb12-000000000001"), (1, "deb12-000000000002")):
        (cache / name / "docker").mkdir(parents=True)
        (cache / name / "image.json").write_text("{}")
        os.utime(cache / name / "image.json", (now - age * 86400, now - age * 86400))
    # what SIGKILL leaves of a build: mmdebstrap's bind mount of a host directory inside the root
    precious = tmp_path / "host-dir"
    precious.mkdir()
    (precious / "keep-me").write_text("host data")
    stale_dev = cache / ".build-deb12-0000000000ff-123" / "docker.root" / "dev"
    stale_dev.mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(precious), str(stale_dev)], check=True)
    try:
        start = time.monotonic()
        proc = _script("--json", env={"MADCI_GUEST_IMAGE_DIR": str(cache), "MADCI_GUEST_IMAGE_KEEP": "2"})
        seconds = time.monotonic() - start
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["version"] == images["version"]
        assert "already built" in proc.stderr  # reused, not rebuilt
        assert "removing an interrupted build" in proc.stderr
        assert sorted(p.name for p in cache.iterdir()) == [".lock", "deb12-000000000002", images["version"]]
        assert (precious / "keep-me").read_text() == "host data"  # the removal never crossed into the mount
        assert _mounted_below(cache) == []
        proc = _script("--env", env={"MADCI_GUEST_IMAGE_DIR": str(cache), "MADCI_GUEST_IMAGE_KEEP": "1"})
        assert proc.returncode == 0, proc.stderr
        assert "MADCI_GUEST_IMAGE_VERSION=%s\n" % images["version"] in proc.stdout
        assert "MADCI_GUEST_DOCKER_QCOW2=%s/docker/disk.qcow2" % images["dir"] in proc.stdout
        assert sorted(p.name for p in cache.iterdir()) == [".lock", images["version"]]
        print("\ncached ci/guest-image.sh: %.2f s" % seconds)
    finally:
        for mnt in _mounted_below(cache):
            subprocess.run(["umount", "-l", mnt], check=False)
        shutil.rmtree(cache, ignore_errors=True)
    assert os.path.isfile(images["images"]["docker"]["qcow2"])  # the shared cache is untouched
