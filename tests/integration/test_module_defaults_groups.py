"""The action groups of meta/runtime.yml: each holds only modules that accept the options it is for.

docs/module-defaults.md names, per group, its modules and the options they share; meta/runtime.yml must hold
exactly those modules (extend_group resolved), every module must accept every named option with the same type,
element type and choices, and the documentation's example must run. The group the collection first had
(madengine) must take docker_host for a play that also runs madengine_discover.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import yaml
from conftest import COLLECTION_DIR, MAIN_ENGINE, SAMPLE_MAD, ansible_env, run_playbook, task_results

DOC = os.path.join(COLLECTION_DIR, "docs", "module-defaults.md")


def runtime_groups():
    """{group: [module, ...]} from meta/runtime.yml, with extend_group resolved."""
    with open(os.path.join(COLLECTION_DIR, "meta", "runtime.yml"), encoding="utf-8") as handle:
        raw = yaml.safe_load(handle)["action_groups"]

    def members(name, seen=()):
        assert name not in seen, "action group %s extends itself" % name
        found = []
        for entry in raw[name]:
            if isinstance(entry, dict):
                for parent in entry["metadata"].get("extend_group", []):
                    assert parent.startswith("rocm.madengine."), parent
                    found += members(parent.split(".")[-1], seen + (name,))
            else:
                found.append(entry)
        return found

    return dict((name, members(name)) for name in raw)


def documented_groups():
    """{group: (modules, options)} from the table of docs/module-defaults.md."""
    with open(DOC, encoding="utf-8") as handle:
        text = handle.read()
    rows = re.findall(r"^\| `(\w+)` \| (.+?) \| (.+?) \|$", text, re.M)
    table = dict((group, (re.findall(r"`(\w+)`", modules), re.findall(r"`(\w+)`", options)))
                 for group, modules, options in rows)
    # "the docker group's modules / options" rows refer to another row
    for group, (modules, _options) in list(table.items()):
        if len(modules) == 1 and modules[0] in table and modules[0] != group:
            table[group] = table[modules[0]]
    return table


@pytest.fixture(scope="module")
def module_docs():
    modules = sorted(set(m for members in runtime_groups().values() for m in members))
    ansible_doc = os.path.join(os.path.dirname(sys.executable), "ansible-doc")
    proc = subprocess.run([ansible_doc, "--json", "-t", "module"] + ["rocm.madengine." + m for m in modules],
                          capture_output=True, text=True, env=ansible_env(), check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return dict((name.split(".")[-1], data["doc"]) for name, data in json.loads(proc.stdout).items())


def test_the_documented_groups_are_the_runtime_groups():
    groups, documented = runtime_groups(), documented_groups()
    assert sorted(documented) == sorted(groups) == ["catalogue", "docker", "host", "madengine", "passthrough"]
    for group, members in groups.items():
        assert sorted(documented[group][0]) == sorted(members), group
        assert documented[group][1], "%s names no shared option" % group
    # the first group of the collection now extends the Docker group
    assert groups["madengine"] == groups["docker"]


def test_every_module_of_a_group_accepts_its_options_alike(module_docs):
    problems = []
    for group, (members, options) in sorted(documented_groups().items()):
        for option in options:
            shapes = {}
            for module in members:
                spec = module_docs[module]["options"].get(option)
                if spec is None:
                    problems.append("%s: %s has no option %s" % (group, module, option))
                    continue
                shapes[module] = (spec.get("type", "str"), spec.get("elements"), tuple(spec.get("choices") or ()))
            if len(set(shapes.values())) > 1:
                problems.append("%s: %s differs: %s" % (group, option, shapes))
    assert not problems, "\n".join(problems)


def documented_example():
    with open(DOC, encoding="utf-8") as handle:
        blocks = re.findall(r"```yaml\n(.*?)```", handle.read(), re.S)
    assert len(blocks) == 1
    return blocks[0]


def test_the_documented_example_runs(tmp_path):
    playbook = tmp_path / "groups.yml"
    playbook.write_text(documented_example())
    # check mode: madengine_build plans from the manifest and makes no Docker call
    rc, out, log = run_playbook(playbook, check=True, extra_vars={"mad_root": SAMPLE_MAD, "output_dir": str(tmp_path)},
                                args=("-c", "local"))
    assert rc == 0, log
    discovered = task_results(out, "Which models the tags select")["localhost"]
    assert [m["name"] for m in discovered["models"]] == ["dummy"]
    built = task_results(out, "Build and push their images (the Docker options from the docker group)")["localhost"]
    assert built["changed"] is True and built["models"] == ["dummy"]
    assert all(image["action"] == "build" for image in built["images"]), built["images"]


def test_docker_host_on_the_madengine_group_reaches_only_the_docker_modules(tmp_path):
    playbook = tmp_path / "madengine_group.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "The Docker settings once, for the modules that talk to Docker",
        "hosts": "localhost", "gather_facts": False,
        "module_defaults": {"group/rocm.madengine.madengine": {"docker_host": MAIN_ENGINE, "docker_timeout": 90}},
        "tasks": [
            {"name": "Discover", "rocm.madengine.madengine_discover": {"mad_root": SAMPLE_MAD, "tags": ["dummy"]},
             "register": "discovered"},
            {"name": "Build", "rocm.madengine.madengine_build": {
                "mad_root": SAMPLE_MAD, "models": "{{ discovered.models }}",
                "manifest_path": str(tmp_path / "build_manifest.json")}},
        ]}]))
    rc, out, log = run_playbook(playbook, check=True, args=("-c", "local"))
    assert rc == 0, log
    assert "Unsupported parameters" not in log
    assert task_results(out, "Build")["localhost"]["changed"] is True

    # the same defaults on the catalogue group reach madengine_discover, which refuses them: groups are
    # only as wide as the options they share
    playbook.write_text(playbook.read_text().replace("group/rocm.madengine.madengine",
                                                     "group/rocm.madengine.catalogue"))
    rc, out, log = run_playbook(playbook, check=True, args=("-c", "local"))
    assert rc != 0
    failed = task_results(out, "Discover")["localhost"]
    assert "Unsupported parameters" in failed["msg"] and "docker_host" in failed["msg"]
