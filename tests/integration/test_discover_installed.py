"""madengine_discover through ansible-playbook and ansible-doc, from the installed tarball."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import COLLECTION_DIR, ansible_env, run_playbook, task_results

PLAYBOOK = os.path.join(os.path.dirname(__file__), "playbooks", "discover.yml")


def test_playbook_selects_from_the_bundled_catalogue(sample_mad):
    rc, out, log = run_playbook(PLAYBOOK, extra_vars={
        "mad_root": str(sample_mad), "tags": ["dummy", "dummy_multi", "dummy2/model2:batch-size=32"]})
    assert rc == 0, log
    result = task_results(out, "Select models")["localhost"]
    assert [(m["name"], m["args"]) for m in result["models"]] == [
        ("dummy", ""), ("dummy_multi", ""), ("dummy2/model2", " --batch-size 32")]
    assert result["changed"] is False


def test_playbook_check_mode(sample_mad):
    rc, out, log = run_playbook(PLAYBOOK, extra_vars={"mad_root": str(sample_mad), "tags": ["dummy3/all"]},
                                check=True)
    assert rc == 0, log
    result = task_results(out, "Select models")["localhost"]
    assert [m["name"] for m in result["models"]] == ["dummy3/model3", "dummy3/model4"]


def test_playbook_failure_names_the_tag(sample_mad):
    rc, out, _log = run_playbook(PLAYBOOK, extra_vars={"mad_root": str(sample_mad), "tags": ["dumy"]})
    assert rc != 0
    result = task_results(out, "Select models")["localhost"]
    assert result["failed"] and "Tag 'dumy' selects no model" in result["msg"] and "dummy" in result["msg"]


def test_ansible_doc_renders_from_the_installed_collection():
    ansible_doc = os.path.join(os.path.dirname(sys.executable), "ansible-doc")
    proc = subprocess.run([ansible_doc, "rocm.madengine.madengine_discover"], check=False, capture_output=True,
                          text=True, env=ansible_env(ANSIBLE_STDOUT_CALLBACK="default"), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "mad_root" in proc.stdout and COLLECTION_DIR in proc.stdout
