"""Shared fixtures: every test imports the *installed* collection, never the source tree.

ci/run-tests.sh builds the tarball, installs it and exports MADCI_INSTALLED (the collections
directory holding ansible_collections/rocm/madengine).  For a quick edit-test loop point
MADCI_INSTALLED at a directory whose ansible_collections/rocm/madengine links to the checkout.
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

INSTALLED = os.environ.get("MADCI_INSTALLED")
if not INSTALLED or not os.path.isdir(os.path.join(INSTALLED, "ansible_collections", "rocm", "madengine")):
    raise pytest.UsageError(
        "MADCI_INSTALLED must name the collections directory the collection was installed into; "
        "run the suite with ci/run-tests.sh"
    )
sys.path.insert(0, INSTALLED)

import ansible_collections.rocm.madengine.plugins.module_utils as _installed_utils

COLLECTION_DIR = os.path.join(INSTALLED, "ansible_collections", "rocm", "madengine")
if not os.path.realpath(_installed_utils.__path__[0]).startswith(
    os.path.realpath(os.path.join(COLLECTION_DIR, "plugins"))
):
    raise pytest.UsageError("rocm.madengine was imported from %s, not from %s" % (_installed_utils.__path__, INSTALLED))

SAMPLE_MAD = os.path.join(COLLECTION_DIR, "examples", "sample_mad")
REGISTRY = os.environ.get("MADCI_REGISTRY", "localhost:5000")
BASE_IMAGE = REGISTRY + "/mad-base:busybox"
MAIN_ENGINE = "unix:///var/run/docker.sock"
# The main engine's default bridge as this session found it (tests marked host_check run last and compare).
HOST_DOCKER0_AT_START = os.path.exists("/sys/class/net/docker0")
# Python's multiprocessing directories in the temporary directory as this session found them: a process killed with
# one open leaves it behind (tests marked host_check compare).
MULTIPROCESSING_DIRS_AT_START = frozenset(glob.glob(os.path.join(tempfile.gettempdir(), "pymp-*")))


def pytest_collection_modifyitems(session, config, items):
    """Tests marked host_check run after every other test of the session."""
    last = [item for item in items if item.get_closest_marker("host_check")]
    items[:] = [item for item in items if not item.get_closest_marker("host_check")] + last


@pytest.fixture(scope="session")
def collection_dir():
    return COLLECTION_DIR


@pytest.fixture
def sample_mad(tmp_path):
    """A private, writable copy of the bundled sample catalogue."""
    dest = tmp_path / "mad"
    shutil.copytree(SAMPLE_MAD, dest)
    return dest


class ModuleResult(dict):
    @property
    def failed(self):
        return bool(self.get("failed"))


def run_module(module, args, check_mode=False, diff=False):
    """Run a module's main() through AnsibleModule and return its parsed JSON result.

    The result is what Ansible itself would receive (no_log values already masked).
    """
    payload = dict(args)
    payload["_ansible_check_mode"] = check_mode
    payload["_ansible_diff"] = diff
    out = io.StringIO()
    try:
        from ansible.module_utils.testing import patch_module_args  # ansible-core >= 2.19
    except ImportError:  # pragma: no cover - older cores
        from ansible.module_utils import basic
        from ansible.module_utils.common.text.converters import to_bytes

        @contextlib.contextmanager
        def patch_module_args(values):
            basic._ANSIBLE_ARGS = to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": values}))
            try:
                yield
            finally:
                basic._ANSIBLE_ARGS = None

    _forget_warnings()
    with patch_module_args(payload), contextlib.redirect_stdout(out):
        try:
            module.main()
        except SystemExit:
            pass
    text = out.getvalue()
    try:
        result = ModuleResult(json.loads(text))
    except ValueError:
        raise AssertionError("module printed no JSON result:\n%s" % text)
    # ansible-core >= 2.19 returns warnings and deprecations as structured summaries.
    for key in ("warnings", "deprecations"):
        if key in result:
            result[key] = [_summary_text(item) for item in result[key]]
    return result


def _forget_warnings():
    """Each real module run is a new process: warnings of an earlier in-process run must not carry over."""
    try:
        from ansible.module_utils.common import warnings
    except ImportError:  # pragma: no cover
        return
    for name in ("_global_warnings", "_global_deprecations"):
        store = getattr(warnings, name, None)
        if hasattr(store, "clear"):
            store.clear()


def _summary_text(item):
    if isinstance(item, dict):
        event = item.get("event", item)
        return event.get("msg", json.dumps(item))
    return item


@pytest.fixture
def module_runner():
    return run_module


@contextlib.contextmanager
def imported_on_controller(name):
    """The collection's controller code ``name`` (a dotted path under ansible_collections.rocm.madengine.plugins),
    imported inside the block and not at collection: controller code marks the process as the controller (module
    warnings would go to Display instead of the module's result), so the mark is put back afterwards."""
    import importlib

    from ansible.module_utils import _internal

    was = _internal.is_controller
    try:
        yield importlib.import_module("ansible_collections.rocm.madengine.plugins." + name)
    finally:
        _internal.is_controller = was


def ansible_env(**extra):
    env = dict(os.environ)
    env.update(
        ANSIBLE_COLLECTIONS_PATH=os.pathsep.join(
            p for p in (INSTALLED, os.environ.get("MADCI_DEPS", "/opt/madci/collections")) if p
        ),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",  # from the deps collections path (ci/venv.sh)
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_LOCALHOST_WARNING="0",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
    )
    env.update(extra)
    return env


def run_playbook(playbook, inventory="localhost,", extra_vars=None, check=False, env=None, timeout=900, args=(),
                 cwd=None):
    """Run ansible-playbook with the json callback (in ``cwd``); return (returncode, parsed output, stderr)."""
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory, str(playbook)]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    if check:
        cmd.append("--check")
    cmd += list(args)
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=ansible_env(**(env or {})),
                          timeout=timeout, cwd=cwd)
    try:
        parsed = json.loads(proc.stdout)
    except ValueError:
        parsed = None
    return proc.returncode, parsed, proc.stdout + proc.stderr


def task_results(parsed, task_name):
    """Per-host results of the task called ``task_name`` (in a role: ``<role> : <name>``) in json-callback output."""
    found = {}
    for play in parsed.get("plays", []):
        for task in play.get("tasks", []):
            if task["task"]["name"] == task_name or task["task"]["name"].endswith(" : " + task_name):
                found.update(task["hosts"])
    return found


# ---- fleet fixtures for end-to-end modules that define PREFIX (image names) and NODES (inventory names) ----

@pytest.fixture(scope="module")
def main_api(request):
    """The main engine (the build host's); afterwards the module's images and repositories, PREFIX..., are removed."""
    from docker_helpers import session_api

    with session_api(MAIN_ENGINE, REGISTRY, request.module.PREFIX) as api:
        yield api


@pytest.fixture(scope="module")
def engines(request):
    """{node: engine}: one simulated node engine per name in the module's NODES, removed at the end."""
    from node_engines import node_engines

    with node_engines("/tmp/madci-%s" % request.module.PREFIX, request.module.NODES) as started:
        yield started


@pytest.fixture(scope="session")
def postgres():
    """A private PostgreSQL server (Debian's binaries, a temporary data directory, a free loopback port)."""
    from pg_server import postgres_server

    with postgres_server() as server:
        yield server
