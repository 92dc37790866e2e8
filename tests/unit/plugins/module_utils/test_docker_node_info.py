"""docker_node_info: what docker_setup learns about a node - OS, Python, missing packages, GPU vendor, registry.

The devices are files in tmp dirs; packages are asked of this machine's real dpkg-query (Debian); rpm, which this
machine lacks, is a stand-in printing what rpm prints.
"""

from __future__ import annotations

import subprocess

import pytest

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError
from ansible_collections.rocm.madengine.plugins.module_utils.host.docker_node_info_task import (
    gpu_vendor,
    installed_packages,
    wanted_packages,
)

MISSING = "madengine-no-such-package"


def run_real(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


class Devices(object):
    """Device paths in a tmp dir, made on demand (dri is a directory, the others files)."""

    def __init__(self, root):
        self.root = root
        self.kfd, self.dri, self.nvidia = (str(root / name) for name in ("kfd", "dri", "nvidiactl"))
        self.amd = [self.kfd, self.dri]

    def make(self, *names):
        for name in names:
            if name == "dri":
                (self.root / name).mkdir()
            else:
                (self.root / name).write_text("")


@pytest.fixture
def devices(tmp_path):
    return Devices(tmp_path)


def test_auto_is_amd_when_the_first_amd_device_exists_and_names_the_missing_ones(devices):
    devices.make("kfd", "nvidiactl")
    assert gpu_vendor("auto", [devices.kfd, devices.dri], devices.nvidia) == ("AMD", [devices.dri])
    devices.make("dri")
    assert gpu_vendor("AUTO", [devices.kfd, devices.dri], devices.nvidia) == ("AMD", [])


def test_auto_is_nvidia_by_its_device_and_none_without_devices(devices):
    amd = devices.amd
    assert gpu_vendor("auto", amd, devices.nvidia) == ("NONE", [])
    devices.make("nvidiactl")
    assert gpu_vendor("auto", amd, devices.nvidia) == ("NVIDIA", [])
    assert gpu_vendor("auto", [], devices.nvidia) == ("NVIDIA", [])


def test_a_set_vendor_wins_in_any_case_and_amd_names_its_missing_devices(devices):
    devices.make("nvidiactl")
    amd = devices.amd
    assert gpu_vendor("amd", amd, devices.nvidia) == ("AMD", amd)
    assert gpu_vendor("None", amd, devices.nvidia) == ("NONE", [])
    with pytest.raises(MadengineError) as error:
        gpu_vendor("INTEL", amd, devices.nvidia)
    assert str(error.value) == "gpu_vendor must be auto, AMD, NVIDIA or NONE, not 'INTEL'."


def params(**extra):
    values = {"install_engine": True, "engine_packages": [], "nvidia_packages": ["nvidia-container-toolkit"],
              "packages": []}
    values.update(extra)
    return values


def test_the_engine_packages_are_the_os_familys_unless_named():
    assert wanted_packages("Debian", "NONE", params()) == (["docker.io"], ["docker.io"])
    assert wanted_packages("RedHat", "NONE", params())[0] == ["moby-engine"]
    assert wanted_packages("Suse", "NONE", params())[0] == ["docker"]
    assert wanted_packages("Alpine", "NONE", params()) == ([], [])
    named = params(engine_packages=["docker-ce", "docker-ce-cli", "containerd.io"])
    assert wanted_packages("RedHat", "NONE", named)[0] == ["docker-ce", "docker-ce-cli", "containerd.io"]
    assert wanted_packages("Debian", "NONE", params(install_engine=False)) == ([], [])


def test_the_nvidia_toolkit_is_wanted_on_nvidia_nodes_only_and_nothing_twice():
    wanted = wanted_packages("Debian", "NVIDIA", params(packages=["python3-docker", "docker.io"]))[1]
    assert wanted == ["docker.io", "nvidia-container-toolkit", "python3-docker"]
    assert "nvidia-container-toolkit" not in wanted_packages("Debian", "AMD", params())[1]


def test_dpkg_query_tells_the_installed_packages():
    assert installed_packages(["dpkg", MISSING, "coreutils"], "dpkg-query", run_real) == ["dpkg", "coreutils"]
    assert installed_packages([MISSING], "dpkg-query", run_real) == []
    assert installed_packages([], "dpkg-query", run_real) == []
    # no tool: every package counts as missing
    assert installed_packages(["dpkg"], None, run_real) == []


RPM = """#!/bin/sh
# as rpm --query --queryformat '%{NAME}\\n' prints: the names of installed ones, a sentence for the others
shift 3
missing=0
for name in "$@"; do
  case "$name" in
    bash|coreutils) echo "$name" ;;
    *) echo "package $name is not installed"; missing=$((missing + 1)) ;;
  esac
done
exit $missing
"""


def test_rpm_tells_the_installed_packages(tmp_path):
    rpm = tmp_path / "rpm"
    rpm.write_text(RPM)
    rpm.chmod(0o755)

    def run(argv):
        assert argv[:4] == ["rpm", "--query", "--queryformat", "%{NAME}\\n"]
        return run_real([str(rpm)] + argv[1:])

    assert installed_packages(["moby-engine", "bash", "coreutils"], "rpm", run) == ["bash", "coreutils"]


def test_a_query_that_fails_is_named():
    def broken(argv):
        return 2, "", "dpkg-query: error: parsing file '/var/lib/dpkg/status' near line 7"

    with pytest.raises(MadengineError) as error:
        installed_packages(["dpkg"], "dpkg-query", broken)
    assert str(error.value) == ("dpkg-query --show cannot tell which packages are installed (rc 2): dpkg-query: "
                                "error: parsing file '/var/lib/dpkg/status' near line 7")
