"""VM mode's option dicts: what module_options checks is what module_defaults hands over, and what the role sets.

madengine_vm_options and madengine_vm_passthrough_options reach madengine_vm and gpu_passthrough through
module_defaults. A task's own arguments win over module_defaults, so every option a VM task sets must be
"reserved" (refused in the dict, with a message) or a user's value would be dropped without a word; and a new
module option needs no role edit, since no task lists the dict's keys.
"""

from __future__ import annotations

import importlib
import os

import pytest
import yaml
from conftest import COLLECTION_DIR

ROLE = os.path.join(COLLECTION_DIR, "roles", "madengine")
MODULES = {"madengine_vm": "madengine_vm_options", "gpu_passthrough": "madengine_vm_passthrough_options"}


def load(*parts):
    with open(os.path.join(ROLE, *parts)) as handle:
        return yaml.safe_load(handle)


def tasks_of(tasks, found=None):
    """Every task of a task list, blocks included, with the module_defaults of its enclosing blocks."""
    found = [] if found is None else found
    for task in tasks:
        found.append(task)
        for section in ("block", "rescue", "always"):
            for inner in task.get(section, []):
                inner.setdefault("_defaults", dict(task.get("_defaults", {}), **task.get("module_defaults", {})))
            tasks_of(task.get(section, []), found)
    return found


def documented(module):
    plugin = importlib.import_module("ansible_collections.rocm.madengine.plugins.modules." + module)
    return yaml.safe_load(plugin.DOCUMENTATION)["options"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_option_a_vm_task_sets_is_reserved_and_handed_over_from_its_dict(module):
    dicts = dict((d["module"], d) for d in load("vars", "main.yml")["madengine__vm_option_dicts"])
    entry = dicts[module]
    assert entry["name"] == MODULES[module]
    options = documented(module)
    assert sorted(set(entry["reserved"]) - set(options)) == []
    calls = []
    for name in ("vm_node.yml", "vm_cleanup.yml"):
        calls += [t for t in tasks_of(load("tasks", name)) if "rocm.madengine." + module in t]
    assert calls
    for task in calls:
        args = task["rocm.madengine." + module]
        assert sorted(set(args) - set(entry["reserved"])) == [], task["name"]
        assert task["_defaults"]["rocm.madengine." + module] == "{{ %s }}" % MODULES[module], task["name"]


def test_the_dicts_are_checked_before_anything_else_in_vm_node():
    tasks = load("tasks", "vm_node.yml")
    names = [t["name"] for t in tasks]
    check = next(t for t in tasks if "rocm.madengine.module_options" in t)
    assert names.index(check["name"]) < names.index("Run the models in an ephemeral VM, then remove it")
    assert check["loop"] == "{{ madengine__vm_option_dicts }}"


def test_the_vm_host_vars_the_role_documents_are_the_only_ones_allowed():
    spec = load("meta", "argument_specs.yml")["argument_specs"]["vm_node"]["options"]["madengine_vm_host_vars"]
    assert sorted(spec["options"]) == sorted([
        "ansible_host", "ansible_port", "ansible_user", "ansible_connection", "ansible_ssh_private_key_file",
        "ansible_ssh_common_args", "ansible_ssh_extra_args", "ansible_become", "ansible_become_user",
        "ansible_become_method", "ansible_python_interpreter", "ansible_pipelining", "madengine_docker_host"])
