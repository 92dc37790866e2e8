"""madengine_build documentation from the installed tarball (no Docker needed)."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import COLLECTION_DIR, ansible_env


def test_ansible_doc_renders_madengine_build():
    ansible_doc = os.path.join(os.path.dirname(sys.executable), "ansible-doc")
    proc = subprocess.run([ansible_doc, "rocm.madengine.madengine_build"], check=False, capture_output=True,
                          text=True, env=ansible_env(ANSIBLE_STDOUT_CALLBACK="default"), timeout=120)
    assert proc.returncode == 0, proc.stderr
    for option in ("mad_root", "additional_context_file", "credential_file", "rebuild", "target_archs",
                   "docker_host", "docker_timeout", "fail_on_error"):
        assert option in proc.stdout
    assert COLLECTION_DIR in proc.stdout
