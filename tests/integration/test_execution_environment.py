"""The ansible-builder definition in examples/ee: it renders, installs the built tarball, and finds the
collection's Python and system requirements."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import yaml
from conftest import COLLECTION_DIR, ansible_env

BIN = os.path.dirname(sys.executable)


def tarball(tmp_path):
    """The tarball CI built and installed, or one built now from a development checkout."""
    if os.environ.get("MADCI_TARBALL"):
        return os.environ["MADCI_TARBALL"]
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--force", "--output-path",
                    str(tmp_path / "dist"), COLLECTION_DIR], check=True, capture_output=True)
    return str(next((tmp_path / "dist").glob("rocm-madengine-*.tar.gz")))


def test_definition_renders_and_its_galaxy_stage_installs_the_tarball(tmp_path):
    ee_dir = tmp_path / "ee"
    ee_dir.mkdir()
    shutil.copy(os.path.join(COLLECTION_DIR, "examples", "ee", "execution-environment.yml"), ee_dir)
    shutil.copy(tarball(tmp_path), ee_dir / "rocm-madengine.tar.gz")
    definition = yaml.safe_load((ee_dir / "execution-environment.yml").read_text())
    assert definition["version"] == 3
    proc = subprocess.run([os.path.join(BIN, "ansible-builder"), "create", "-f", "execution-environment.yml",
                           "-c", str(tmp_path / "context"), "--output-filename", "Containerfile"],
                          cwd=ee_dir, capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    build = tmp_path / "context" / "_build"
    containerfile = (tmp_path / "context" / "Containerfile").read_text()
    assert "FROM quay.io/centos/centos:stream9 AS base" in containerfile or "EE_BASE_IMAGE=\"quay.io" in containerfile
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


def test_builder_finds_the_collection_requirements():
    proc = subprocess.run([os.path.join(BIN, "ansible-builder"), "introspect", "--sanitize",
                           os.path.dirname(os.path.dirname(os.path.dirname(COLLECTION_DIR)))],
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    found = yaml.safe_load(proc.stdout.split("\n", 1)[1])
    python = [line.split("#")[0].strip() for line in found["python"] if "rocm.madengine" in line]
    with open(os.path.join(COLLECTION_DIR, "requirements.txt")) as handle:
        wanted = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
    assert python == wanted and "pandas>=2.0" in python and "docker>=7.1.0" in python
    assert any(line.startswith("libvirt-devel [platform:rpm compile]") for line in found["system"])
