"""The attribute text of every module comes from plugins/doc_fragments/attributes.py.

ansible-doc renders each module of the installed collection; every attribute must carry a description
and a support level, the descriptions must be the fragment's (no module restates or rewrites one),
and every module claims membership of exactly the action groups of meta/runtime.yml that hold it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import yaml
from conftest import ansible_env

from ansible_collections.rocm.madengine.plugins.doc_fragments.attributes import ModuleDocFragment

COMMON = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["attributes"]
ACTION = yaml.safe_load(ModuleDocFragment.ACTION_PLUGIN)["attributes"]
GROUP = yaml.safe_load(ModuleDocFragment.ACTION_GROUP)["attributes"]


@pytest.fixture(scope="module")
def module_names(collection_dir):
    return sorted(name[:-3] for name in os.listdir(os.path.join(collection_dir, "plugins", "modules"))
                  if name.endswith(".py") and not name.startswith("_"))


@pytest.fixture(scope="module")
def rendered(module_names):
    """{module: its documentation as ansible-doc renders it, fragments merged}."""
    ansible_doc = os.path.join(os.path.dirname(sys.executable), "ansible-doc")
    proc = subprocess.run([ansible_doc, "--json", "-t", "module"] + ["rocm.madengine." + m for m in module_names],
                          capture_output=True, text=True, env=ansible_env(), check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return dict((name.split(".")[-1], data["doc"]) for name, data in json.loads(proc.stdout).items())


@pytest.fixture(scope="module")
def action_groups(collection_dir):
    """{module: sorted FQCNs of its action groups}, from meta/runtime.yml with extend_group resolved."""
    with open(os.path.join(collection_dir, "meta", "runtime.yml"), encoding="utf-8") as handle:
        groups = yaml.safe_load(handle)["action_groups"]

    def members(name):
        found = []
        for entry in groups[name]:
            if isinstance(entry, dict):
                found += [m for parent in entry["metadata"]["extend_group"] for m in members(parent.split(".")[-1])]
            else:
                found.append(entry)
        return found

    claims = {}
    for name in groups:
        for module in members(name):
            claims.setdefault(module, []).append("rocm.madengine." + name)
    return dict((module, sorted(names)) for module, names in claims.items())


def test_every_module_is_rendered(rendered, module_names):
    assert sorted(rendered) == module_names and "madengine_build" in module_names


def test_every_attribute_has_a_description_and_a_support_level(rendered):
    problems = ["%s: %s lacks %s" % (module, name, key)
                for module, doc in sorted(rendered.items())
                for name, attribute in sorted(doc["attributes"].items())
                for key in ("description", "support") if not attribute.get(key)]
    assert not problems, "\n".join(problems)


def test_descriptions_are_the_fragments(rendered):
    shared = dict(COMMON, **ACTION)
    shared.update(GROUP)
    problems = []
    for module, doc in sorted(rendered.items()):
        for name, attribute in sorted(doc["attributes"].items()):
            if name not in shared:
                problems.append("%s: attribute %s is in no fragment" % (module, name))
            elif attribute["description"] != shared[name]["description"]:
                problems.append("%s: %s says %r" % (module, name, attribute["description"]))
        for name in ("check_mode", "diff_mode", "idempotent", "platform"):
            if name not in doc["attributes"]:
                problems.append("%s: no %s attribute" % (module, name))
    assert not problems, "\n".join(problems)


def test_module_files_state_no_description_of_their_own(collection_dir, module_names):
    restated = []
    for module in module_names:
        with open(os.path.join(collection_dir, "plugins", "modules", module + ".py"), encoding="utf-8") as handle:
            source = handle.read()
        documentation = yaml.safe_load(re.search(r'DOCUMENTATION = r"""(.*?)"""', source, re.S).group(1))
        for name, attribute in sorted((documentation.get("attributes") or {}).items()):
            if "description" in attribute:
                restated.append("%s: %s" % (module, name))
    assert not restated, "descriptions belong in plugins/doc_fragments/attributes.py: " + ", ".join(restated)


def test_action_group_membership_matches_runtime_metadata(rendered, action_groups):
    claimed = dict((module, sorted(doc["attributes"]["action_group"]["membership"]))
                   for module, doc in rendered.items() if "action_group" in doc["attributes"])
    assert claimed == action_groups
    assert claimed["madengine_run"] == ["rocm.madengine.catalogue", "rocm.madengine.docker", "rocm.madengine.host",
                                        "rocm.madengine.madengine"]


def test_module_support_levels_win_over_the_fragments(rendered):
    # the merge is one level deep: the module's support and details, the fragment's description
    assert rendered["madengine_run"]["attributes"]["idempotent"]["support"] == "none"
    assert rendered["madengine_discover"]["attributes"]["diff_mode"]["support"] == "N/A"
    assert rendered["module_options"]["attributes"]["platform"]["platforms"] == "all"
    assert rendered["madengine_build"]["attributes"]["platform"]["platforms"] == "posix"
    assert rendered["module_options"]["attributes"]["action"]["support"] == "full"
    diff_mode = rendered["gpu_passthrough"]["attributes"]["diff_mode"]
    assert diff_mode["description"] == COMMON["diff_mode"]["description"]
    assert diff_mode["support"] == "full" and diff_mode["details"]
