"""madengine_run documentation from the installed tarball (no Docker needed)."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import COLLECTION_DIR, ansible_env


def test_ansible_doc_renders_madengine_run():
    ansible_doc = os.path.join(os.path.dirname(sys.executable), "ansible-doc")
    proc = subprocess.run([ansible_doc, "rocm.madengine.madengine_run"], check=False, capture_output=True,
                          text=True, env=ansible_env(ANSIBLE_STDOUT_CALLBACK="default"), timeout=120)
    assert proc.returncode == 0, proc.stderr
    for option in ("manifest_path", "gpu_vendor", "timeout", "results_dir", "pull", "keep_alive", "skip_model_run",
                   "sysfs_root", "dev_root", "credential_file", "data_config", "node_name", "run_id", "docker_host"):
        assert option in proc.stdout
    for returned in ("results", "perf_csv", "summary", "madengine_results"):
        assert returned in proc.stdout
    assert COLLECTION_DIR in proc.stdout
