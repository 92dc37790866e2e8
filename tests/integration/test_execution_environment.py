"""The execution environment: the ansible-builder definition of examples/ee, what ansible-builder finds in the
collection, and the image ci/ee-image.sh builds from it on this machine.

The image is built with the shipped definition unchanged; only build arguments replace the CentOS base (a
registry this machine cannot reach) by a Debian base made here. It must hold what the controller side of a job
needs (ansible-core, ansible-runner, the collection, the Docker SDK, pandas, psycopg, ssh with ssh-agent, sshpass,
rsync, git) and nothing that only the nodes need (libvirt-python) or only a build needs (a compiler).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import local_detached_run
import pytest
import yaml
from conftest import COLLECTION_DIR, ansible_env
from ee_image import ee_image, run_in
from manifest_builder import manifest, simple
from packaging.version import Version

BIN = os.path.dirname(sys.executable)


def tarball(tmp_path):
    """The tarball CI built and installed, or one built now from a development checkout."""
    if os.environ.get("MADCI_TARBALL"):
        return os.environ["MADCI_TARBALL"]
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--force", "--output-path",
                    str(tmp_path / "dist"), COLLECTION_DIR], check=True, capture_output=True)
    return str(next((tmp_path / "dist").glob("rocm-madengine-*.tar.gz")))


def requirement_lines(name):
    with open(os.path.join(COLLECTION_DIR, name)) as handle:
        return [line.strip() for line in handle if line.strip() and not line.startswith("#")]


def test_definition_renders_and_its_galaxy_stage_installs_the_tarball(tmp_path):
    ee_dir = tmp_path / "ee"
    ee_dir.mkdir()
    shutil.copy(os.path.join(COLLECTION_DIR, "examples", "ee", "execution-environment.yml"), ee_dir)
    shutil.copy(tarball(tmp_path), ee_dir / "rocm-madengine.tar.gz")
    definition = yaml.safe_load((ee_dir / "execution-environment.yml").read_text())
    assert definition["version"] == 3
    # what users build: the standard base, no build steps of our own (nothing to compile, no extra repositories)
    assert definition["images"]["base_image"]["name"] == "quay.io/centos/centos:stream9"
    assert "additional_build_steps" not in definition and "options" not in definition
    proc = subprocess.run([os.path.join(BIN, "ansible-builder"), "create", "-f", "execution-environment.yml",
                           "-c", str(tmp_path / "context"), "--output-filename", "Containerfile"],
                          cwd=ee_dir, capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    build = tmp_path / "context" / "_build"
    containerfile = (tmp_path / "context" / "Containerfile").read_text()
    # the arguments ci/ee-image.sh replaces, and nothing else it would have to
    for argument in ('EE_BASE_IMAGE="quay.io/centos/centos:stream9"', 'PYCMD="/usr/bin/python3.12"',
                     'PYPKG="python3.12"', 'PKGMGR="/usr/bin/dnf"'):
        assert "ARG " + argument in containerfile
    assert "epel" not in containerfile and "devel" not in containerfile
    assert "ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml" in containerfile
    assert "introspect.py introspect" in containerfile
    copied = build / "collections" / "rocm-madengine.tar.gz"
    assert copied.read_bytes() == (ee_dir / "rocm-madengine.tar.gz").read_bytes()

    # What the galaxy stage runs, from the same directory, offline.
    proc = subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "-r", "requirements.yml",
                           "-p", str(tmp_path / "collections")], cwd=build, capture_output=True, text=True,
                          check=False, timeout=300,
                          env=ansible_env(ANSIBLE_STDOUT_CALLBACK="default",
                                          ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "collections")))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    installed = tmp_path / "collections" / "ansible_collections" / "rocm" / "madengine"
    assert (installed / "plugins" / "modules" / "madengine_report.py").is_file()
    assert (installed / "roles" / "result_collection" / "tasks" / "main.yml").is_file()


def test_builder_finds_the_controller_side_requirements():
    proc = subprocess.run([os.path.join(BIN, "ansible-builder"), "introspect", "--sanitize",
                           os.path.dirname(os.path.dirname(os.path.dirname(COLLECTION_DIR)))],
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    found = yaml.safe_load(proc.stdout.split("\n", 1)[1])
    python = [line.split("#")[0].strip() for line in found["python"] if "rocm.madengine" in line]
    assert python == requirement_lines("requirements.txt") == ["docker>=7.1.0", "pandas>=2.0", "psycopg[binary]>=3.1"]
    system = [line.split("#")[0].strip() for line in found["system"] if "rocm.madengine" in line]
    assert system == requirement_lines("bindep.txt")
    for package in ("openssh-client [platform:dpkg]", "openssh-clients [platform:rpm]",
                    "sshpass [platform:dpkg platform:rpm]", "rsync [platform:dpkg platform:rpm]"):
        assert package in system
    # nothing to compile, nothing of the nodes
    assert not [line for line in system if "compile" in line or "libvirt" in line or "devel" in line]


# ---- the image built here ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def image():
    return ee_image()


@pytest.mark.docker
@pytest.mark.slow
def test_the_image_holds_the_controller_side_of_a_job(image):
    versions = run_in(image, "ansible --version | head -1; ansible-runner --version; "
                             "ansible-galaxy collection list rocm.madengine 2>/dev/null | tail -1; "
                             "python3 -c 'import docker, pandas, psycopg; "
                             "print(docker.__version__, pandas.__version__, psycopg.__version__, psycopg.pq.__impl__)'")
    lines = versions.splitlines()
    assert lines[0].startswith("ansible [core 2.")
    assert lines[1][:1].isdigit()
    # the installed collection's version: its MANIFEST.json (an installed tarball has no galaxy.yml)
    with open(os.path.join(COLLECTION_DIR, "MANIFEST.json")) as handle:
        version = json.load(handle)["collection_info"]["version"]
    assert lines[2].split() == ["rocm.madengine", version]
    docker_sdk, pandas, psycopg = (Version(v) for v in lines[3].split()[:3])
    assert docker_sdk >= Version("7.1.0") and pandas >= Version("2.0") and psycopg >= Version("3.1")
    # psycopg's binary wheel: libpq comes with it, nothing was compiled
    assert lines[3].split()[3] == "binary"
    # the clients a job uses on the controller side
    tools = run_in(image, "for t in ssh ssh-agent ssh-add sshpass rsync git; do command -v $t; done")
    assert [os.path.basename(t) for t in tools.split()] == ["ssh", "ssh-agent", "ssh-add", "sshpass", "rsync", "git"]
    # the collection is the tarball's: the playbooks run as rocm.madengine.<name>
    playbooks = run_in(image, "ls /usr/share/ansible/collections/ansible_collections/rocm/madengine/playbooks")
    assert {"benchmark.yml", "vm_benchmark.yml", "vm_cleanup.yml"} <= set(playbooks.split())


@pytest.mark.docker
@pytest.mark.slow
def test_the_image_has_no_compiler_and_nothing_only_the_nodes_need(image):
    absent = run_in(image, "for t in gcc cc c++ g++ clang make ld; do command -v $t || echo no-$t; done; "
                           "python3 -c 'import libvirt' 2>&1 | tail -1; "
                           "ls /usr/include/python3* 2>/dev/null | head -1 || true")
    assert absent.split("\n")[:7] == ["no-gcc", "no-cc", "no-c++", "no-g++", "no-clang", "no-make", "no-ld"]
    assert "No module named 'libvirt'" in absent
    assert "Python.h" not in absent
    # what ansible-builder's introspection found is all the image got of the collection's requirements
    pip = run_in(image, "python3 -m pip list --format=freeze 2>/dev/null")
    names = set(line.split("==")[0].lower() for line in pip.split())
    assert {"docker", "pandas", "psycopg", "psycopg-binary", "ansible-core", "ansible-runner"} <= names
    assert not names & {"libvirt-python", "psycopg2", "cython", "setuptools-scm"}


@pytest.mark.docker
@pytest.mark.slow
def test_the_image_runs_as_an_execution_environment(image):
    """AWX runs the EE as a user that is not root, with /runner as its home and working directory."""
    out = subprocess.run(["docker", "run", "--rm", image, "bash", "-c", "id -u; pwd; echo $HOME; "
                          "ansible-playbook --version | head -1; ansible-doc -t module rocm.madengine.madengine_run "
                          "| head -1"], capture_output=True, text=True, check=True, timeout=300).stdout.splitlines()
    assert out[0] == "1000" and out[1] == "/runner" and out[2] == "/runner"
    assert out[3].startswith("ansible-playbook [core")
    assert "rocm.madengine.madengine_run" in out[4] and "/usr/share/ansible/collections/" in out[4]


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("way", ["here", "module"])
def test_the_image_s_ansible_core_runs_madengine_run_in_the_background_and_hands_its_result_over_as_a_dict(
        image, tmp_path, way):
    """madengine_run's action plugin runs the image's collection's module in the background and follows it with the
    image's ansible-core (Debian 12's Python 3.11 gets a release before 2.20, whose module-result parser returns a
    dict, not the result type of later ones): a CPU node, a model built for AMD GPUs only (SKIPPED, no engine
    needed), its progress shown, its result a dict, no file of the job or of the module left. Started from the
    task's process (the image's Python is the task's interpreter) and as the module (another interpreter: a wrapper
    around the same Python, which logs that it ran)."""
    script = os.path.join(os.path.dirname(os.path.abspath(local_detached_run.__file__)), "local_detached_run.py")
    (tmp_path / "args.json").write_text(json.dumps({
        "manifest": manifest(simple("dummy", vendor="AMD")), "tags": ["dummy"], "gpu_vendor": "NONE",
        "docker_host": "unix:///nonexistent/docker.sock", "results_dir": "/tmp/results", "run_id": "ee-run",
        "node_name": "node-1"}))
    os.chmod(tmp_path, 0o755)
    os.chmod(tmp_path / "args.json", 0o644)
    module = ["-e", "MADCI_MODULE_INTERPRETER=/tmp/python-wrapper"] if way == "module" else []
    command = ('mkdir -p /tmp/system && '
               'printf "#!/bin/sh\\necho ran >/tmp/async/wrapper-used\\nexec python3 \\"\\$@\\"\\n" '
               '>/tmp/python-wrapper && '
               'chmod 755 /tmp/python-wrapper && python3 "$@"; rc=$?; sleep 1; '
               'ls -A /tmp/system /tmp/remote 2>/dev/null | grep -v "^/tmp\\|^$" >&2 && exit 9; exit $rc')
    python = ["docker", "run", "--rm", "-v", "%s:/tmp/local_detached_run.py:ro" % script,
              "-v", "%s:/tmp/args.json:ro" % (tmp_path / "args.json"), "-e", "TMPDIR=/tmp/system",
              "-e", "ANSIBLE_REMOTE_TMP=/tmp/remote"] + module + [image, "sh", "-c", command, "sh"]
    shown, out, left = local_detached_run.run(python, "/tmp/async", "/tmp/args.json",
                                              script="/tmp/local_detached_run.py", timeout=300)
    assert out["type"] == "dict", out
    result = out["result"]
    assert not result.get("failed"), result
    assert [(row["model"], row["status"]) for row in result["results"]] == [("dummy", "SKIPPED")], result
    assert shown[0] == "node-1: 1 model(s) to run: dummy" and shown[-1].startswith("node-1: [1/1 done] dummy SKIPPED")
    # nothing of the job is left; the wrapper's mark says the module ran through it (or that no module ran)
    assert left == (["wrapper-used"] if way == "module" else []), left
