"""A new module option needs no role change: shown on a copy of the installed collection.

The copy gets one harmless new option in madengine_run's argument spec and DOCUMENTATION, nothing else. A
benchmark of the local inventory (a dry run: nothing is built or run) sets it through the playbook variable
madengine_run_options, and every madengine_run call of the node receives it, although no role file changed.
Against the collection as installed, the same variable is refused before the node runs anything, naming the key
and the host.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import uuid

import pytest
from conftest import COLLECTION_DIR, INSTALLED, run_playbook, task_results

pytestmark = [pytest.mark.docker]

MARKER = "proof_marker"
OPTION_DOC = """  %s:
    description:
      - A harmless option added by a test; the module ignores it.
    type: str
""" % MARKER
DEPS = os.environ.get("MADCI_DEPS", "/opt/madci/collections")
RUN = "Run each model"
CHECK = "Check madengine_run_options"


def copy_with_new_option(root):
    """A copy of the installed collection whose madengine_run documents and accepts one more option."""
    dest = root / "ansible_collections" / "rocm" / "madengine"
    shutil.copytree(os.path.realpath(COLLECTION_DIR), dest, symlinks=True,
                    ignore=shutil.ignore_patterns(".git", "__pycache__", "tests", "results", ".cache", "dist"))
    module = dest / "plugins" / "modules" / "madengine_run.py"
    source = module.read_text()
    doc_end = source.index('"""', source.index('DOCUMENTATION = r"""') + len('DOCUMENTATION = r"""'))
    options_at = source.index("\noptions:\n", 0, doc_end) + len("\noptions:\n")
    module.write_text(source[:options_at] + OPTION_DOC + source[options_at:])
    # the module's argument spec, which its action plugin shares
    task = dest / "plugins" / "module_utils" / "benchmark" / "madengine_run_task.py"
    source = task.read_text()
    spec_at = source.index("ARGUMENT_SPEC = dict(\n") + len("ARGUMENT_SPEC = dict(\n")
    task.write_text(source[:spec_at] + '    %s=dict(type="str"),\n' % MARKER + source[spec_at:])
    assert module.read_text().count(MARKER) == 1 and task.read_text().count(MARKER) == 1
    return dest


def role_files_equal(left, right):
    """True when the roles/ trees hold the same files with the same content."""
    compared = filecmp.dircmp(left, right)
    pending = [compared]
    while pending:
        node = pending.pop()
        if node.left_only or node.right_only or node.diff_files or node.funny_files:
            return False
        for name in node.common_files:
            if not filecmp.cmp(os.path.join(node.left, name), os.path.join(node.right, name), shallow=False):
                return False
        pending.extend(node.subdirs.values())
    return True


def dry_run(collections, workdir, value):
    inventory = os.path.join(collections, "ansible_collections", "rocm", "madengine", "inventories", "local")
    return run_playbook(
        # each result's invocation (the arguments the module received): injected on ansible-core 2.21+ when asked,
        # and kept by callbacks from -vvv on
        "rocm.madengine.benchmark", inventory=inventory, check=True, cwd=str(workdir), args=("-vvv",),
        env={"ANSIBLE_COLLECTIONS_PATH": os.pathsep.join([str(collections), DEPS]), "ANSIBLE_VERBOSE_TO_STDERR": "1",
             "ANSIBLE_INJECT_INVOCATION": "1"},
        extra_vars={"madengine_run_options": {MARKER: value}, "madengine_tags": "dummy,dummy_multi",
                    "madengine_image_prefix": "newopt%s-" % uuid.uuid4().hex[:6]})


def test_a_new_madengine_run_option_reaches_the_module_from_a_playbook_variable(tmp_path):
    collections = tmp_path / "collections"
    copy = copy_with_new_option(collections)
    assert role_files_equal(os.path.join(COLLECTION_DIR, "roles"), str(copy / "roles"))
    work = tmp_path / "work"
    work.mkdir()
    value = "reached-%s" % uuid.uuid4().hex

    rc, out, log = dry_run(collections, work, value)
    assert rc == 0, log
    assert all(play["play"]["path"].startswith(str(copy)) for play in out["plays"]), log
    run = task_results(out, RUN)["localhost"]
    assert [r["model"] for r in run["runs"]] == ["dummy", "dummy_multi"]
    args = run["invocation"]["module_args"]
    assert args[MARKER] == value and args["tags"] == ["dummy", "dummy_multi"] and args["gpu_vendor"] == "NONE"
    assert os.listdir(work) == []  # a dry run writes nothing


def test_the_same_variable_is_refused_by_a_module_without_the_option(tmp_path):
    rc, out, log = dry_run(INSTALLED, tmp_path, "x")
    assert rc != 0
    failed = task_results(out, CHECK)["localhost"]
    assert failed["failed"] and failed["msg"].startswith(
        "madengine_run_options on localhost: unknown key(s) %s (rocm.madengine.madengine_run takes: " % MARKER), log
    assert task_results(out, RUN) == {}
    # the node recorded why it failed, and the collection named it
    marked = task_results(out, "Fail this node with the reason its run failed")
    assert "Check madengine_run_options" in json.dumps(marked)
