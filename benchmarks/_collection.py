"""Makes the installed rocm.madengine importable for a benchmark script.

The collection is looked up in MADCI_INSTALLED (set by ci/run-tests.sh), then in the collections
path the demo installs into (/opt/madci/collections).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys


def use_installed_collection():
    for candidate in (os.environ.get("MADCI_INSTALLED"), "/opt/madci/collections"):
        if candidate and os.path.isdir(os.path.join(candidate, "ansible_collections", "rocm", "madengine")):
            sys.path.insert(0, candidate)
            return os.path.join(candidate, "ansible_collections", "rocm", "madengine")
    raise SystemExit("rocm.madengine is not installed: run ./ci/run-demo.sh or set MADCI_INSTALLED")


def ansible_env(collections):
    """The environment of an ansible-playbook run of the collection installed under ``collections``."""
    env = dict(os.environ)
    deps = os.environ.get("MADCI_DEPS", "/opt/madci/collections")
    env.update(ANSIBLE_COLLECTIONS_PATH=os.pathsep.join([collections, deps]), ANSIBLE_NOCOLOR="1",
               ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_LOCALHOST_WARNING="0",
               ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    return env


def run_module(module, args, check_mode=False):
    """A module's main() in this process (no Ansible process start-up); its result dict."""
    from ansible.module_utils.testing import patch_module_args

    out = io.StringIO()
    with patch_module_args(dict(args, _ansible_check_mode=check_mode)), contextlib.redirect_stdout(out):
        try:
            module.main()
        except SystemExit:
            pass
    return json.loads(out.getvalue())


def leftover_containers(prefix):
    """Ids of the containers, running or not, of madengine_run runs whose run id starts with ``prefix``."""
    listing = subprocess.run(["docker", "ps", "-a", "--filter", "label=org.rocm.madengine.run-id", "--format",
                              '{{.ID}} {{.Label "org.rocm.madengine.run-id"}}'], capture_output=True, text=True,
                             check=False).stdout.splitlines()
    return [line.split()[0] for line in listing if len(line.split()) == 2 and line.split()[1].startswith(prefix)]
