"""docker_setup's molecule scenario `local` (delegated driver, this machine), run from the installed role."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import COLLECTION_DIR, ansible_env


@pytest.mark.docker
@pytest.mark.slow
def test_molecule_local_scenario_converges_idempotently_and_reuses_the_engine():
    role = os.path.join(COLLECTION_DIR, "roles", "docker_setup")
    molecule = os.path.join(os.path.dirname(sys.executable), "molecule")
    env = ansible_env(ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_FORCE_COLOR="0", PY_COLORS="0", NO_COLOR="1",
                      PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    proc = subprocess.run([molecule, "test", "-s", "local"], cwd=role, env=env, capture_output=True, text=True,
                          check=False, timeout=900)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    for action in ("syntax", "prepare", "converge", "idempotence", "verify"):
        assert re.search(r"local\s*(➜|>)\s*%s:\s*Executed: Successful" % action, output), (action, output[-4000:])
    assert "The engine was reused, not restarted, and nothing else was touched" in output
