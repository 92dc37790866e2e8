"""The execution environment of ci/ee-image.sh for the tests: built once (cached by the script), then used."""

from __future__ import annotations

import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "ci", "ee-image.sh")


def ee_image():
    """The EE image: MADCI_EE_IMAGE (ci/run-tests.sh builds it in its set-up), else built now from MADCI_TARBALL
    or from this checkout."""
    name = os.environ.get("MADCI_EE_IMAGE")
    if not name:
        args = ["--tarball", os.environ["MADCI_TARBALL"]] if os.environ.get("MADCI_TARBALL") else []
        proc = subprocess.run([SCRIPT] + args, capture_output=True, text=True, check=False, timeout=3600)
        assert proc.returncode == 0, "ci/ee-image.sh failed:\n%s%s" % (proc.stdout, proc.stderr)
        name = proc.stdout.split()[-1]
    proc = subprocess.run(["docker", "image", "inspect", name], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, "the execution environment %s is not on the main engine" % name
    return name


def run_in(image, script):
    """stdout of ``bash -c script`` in a throw-away container of ``image`` (failing on a non-zero exit)."""
    proc = subprocess.run(["docker", "run", "--rm", image, "bash", "-c", script], capture_output=True, text=True,
                          check=False, timeout=300)
    assert proc.returncode == 0, "%s in %s failed (%d): %s" % (script, image, proc.returncode, proc.stderr)
    return proc.stdout.strip()
