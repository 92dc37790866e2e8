"""A Debian image for the tests of models that clone, run tool scripts and download data.

Made from Debian's packages (mmdebstrap, then ``docker import``), kept on the main engine as
``madengine-test-tools:<recipe hash>`` and pushed to the local registry, so it is built once per
recipe: bash, coreutils, git with its HTTP helper, the OpenSSH client and server and rsync.  The
tests use it two ways: as the base image of their models (madengine's pre/post scripts need bash,
a clone needs git and ssh, NAS data needs rsync and ssh) and as the image of their own sshd
(git over SSH, the NAS) on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile

from simfleet.sshnode import SUITE, apt_sources

IMAGE_REPO = "madengine-test-tools"
PACKAGES = ("bash", "coreutils", "git", "openssh-client", "openssh-server", "rsync", "ca-certificates", "procps")
RECIPE_VERSION = 1


def image_name():
    recipe = {"version": RECIPE_VERSION, "suite": SUITE, "packages": list(PACKAGES)}
    return "%s:%s" % (IMAGE_REPO, hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12])


def _exists(name):
    return subprocess.run(["docker", "image", "inspect", name], capture_output=True, check=False).returncode == 0


def ensure_image(registry=None):
    """The image's name (built when missing); with ``registry`` also pushed there, and that reference returned."""
    name = image_name()
    if not _exists(name):
        if not shutil.which("mmdebstrap"):
            raise RuntimeError("mmdebstrap is not installed (ci/setup-host.sh installs it)")
        work = tempfile.mkdtemp(prefix="madengine-tools-image-", dir=os.environ.get("TMPDIR", "/var/tmp"))
        try:
            tarball = os.path.join(work, "rootfs.tar")
            argv = ["mmdebstrap", "--variant=apt", "--include=" + ",".join(PACKAGES)]
            argv += ["--dpkgopt=path-exclude=/usr/share/%s/*" % d for d in ("man", "doc", "locale", "info")]
            argv += ["--customize-hook=rm -f \"$1\"/etc/ssh/ssh_host_*", SUITE, tarball] + apt_sources()
            proc = subprocess.run(argv, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise RuntimeError("mmdebstrap failed: %s" % proc.stderr[-2000:])
            path = "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
            subprocess.run(["docker", "import", "-c", path, tarball, name], check=True, capture_output=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    if not registry:
        return name
    ref = "%s/mad-base:tools-%s" % (registry, name.split(":")[1])
    subprocess.run(["docker", "tag", name, ref], check=True, capture_output=True)
    subprocess.run(["docker", "push", "-q", ref], check=True, capture_output=True)
    return ref


if __name__ == "__main__":
    print(ensure_image(os.environ.get("MADCI_REGISTRY", "localhost:5000")))
