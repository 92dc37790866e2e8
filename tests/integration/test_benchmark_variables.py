"""benchmark.yml's variables: the documentation, the role's defaults and argument specs, and the plays agree.

Read from the installed collection.  docs/inventory.md's tables are the reader's reference; the
rocm.madengine.madengine role holds the defaults; the playbooks and the role's tasks use the names.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys

import pytest
import yaml
from conftest import COLLECTION_DIR, ansible_env, run_playbook, task_results

ROLE = os.path.join(COLLECTION_DIR, "roles", "madengine")
FIXED = {"madengine_mad_root", "madengine_tags", "madengine_additional_context", "madengine_registry",
         "madengine_timeout", "madengine_output_dir", "madengine_docker_host", "madengine_gpu_vendor"}
# play keywords cannot see role defaults: these are read by the playbooks themselves
PLAY_LEVEL = {"madengine_serial"}
# names in the documents that are facts or modules, not variables
NOT_VARIABLES = {"madengine_results", "madengine_summary", "madengine_benchmark", "madengine_node_error",
                 "madengine_node_unreachable", "madengine_gpu",
                 "madengine_planned", "madengine_models", "madengine_discover", "madengine_build", "madengine_run",
                 "madengine_report", "madengine_vm",
                 # the group of the VMs vm_benchmark.yml adds to the inventory, and their two host variables
                 "madengine_vms", "madengine_vm_node", "madengine_vm_uuid",
                 # the tables of the results database
                 "madengine_schema", "madengine_runs", "madengine_series"}
FLEET_DOCS = ("quickstart.md", "inventory.md", "migration.md", "awx.md", "large-fleets.md", "results.md", "vm-mode.md")
NAME = re.compile(r"\bmadengine_[a-z0-9_]+\b(?!\.py)")  # not a file name such as madengine_run_task.py


def load(path):
    with open(path) as handle:
        return yaml.safe_load(handle)


def read(path):
    with open(path) as handle:
        return handle.read()


def documented():
    """{name: [(table, default, fixed)]} from docs/inventory.md's variable tables."""
    text = read(os.path.join(COLLECTION_DIR, "docs", "inventory.md"))
    section = text[text.index("## Playbook variables"):text.index("### What the plays publish")]
    found, table = {}, None
    for line in section.splitlines():
        if line.startswith("### "):
            table = line[4:].strip()
        match = re.match(r"^\| `(madengine_[a-z0-9_]+)`( \(\*fixed\*\))? \| ([^|]*) \|", line)
        if match:
            found.setdefault(match.group(1), []).append((table, match.group(3).strip(), bool(match.group(2))))
    return found


def uses():
    """Text of everything that reads the variables: the playbooks, the role's tasks and vars, and the defaults of
    result_collection (its history and baseline settings default to the madengine_* variables)."""
    paths = glob.glob(os.path.join(COLLECTION_DIR, "playbooks", "*.yml")) + glob.glob(
        os.path.join(ROLE, "tasks", "*.yml")) + glob.glob(os.path.join(ROLE, "vars", "*.yml")) + [
        os.path.join(COLLECTION_DIR, "roles", "result_collection", "defaults", "main.yml")]
    assert len(paths) >= 7
    return "\n".join(read(p) for p in paths)


def test_documented_variables_are_the_role_defaults_and_the_play_keywords():
    defaults = load(os.path.join(ROLE, "defaults", "main.yml"))
    docs = documented()
    assert sorted(docs) == sorted(set(defaults) | PLAY_LEVEL)
    assert set(n for n, rows in docs.items() if any(fixed for _t, _d, fixed in rows)) == FIXED
    # every documented default is the role's: a literal default appears in the table's default column
    for name, value in defaults.items():
        shown = " ".join(d for _t, d, _f in docs[name])
        if isinstance(value, bool):
            assert "`%s`" % str(value).lower() in shown, name
        elif isinstance(value, (int, float)) or (isinstance(value, str) and value and "{{" not in value):
            assert "`%s`" % value in shown, name
        elif value in ("", [], {}):
            assert "`%s`" % ('""' if value == "" else "[]" if value == [] else "{}") in shown or "—" in shown \
                or "unset" in shown or "inherits" in shown, name
        elif value is None:
            assert "unset" in shown, name
    assert "`100%`" in " ".join(d for _t, d, _f in docs["madengine_serial"])


def test_argument_specs_describe_every_default_with_the_same_value():
    defaults = load(os.path.join(ROLE, "defaults", "main.yml"))
    specs = load(os.path.join(ROLE, "meta", "argument_specs.yml"))["argument_specs"]
    assert sorted(specs) == ["build", "collect", "node", "setup", "vm_cleanup", "vm_node"]
    described = {}
    for entry in specs.values():
        for name, option in entry["options"].items():
            described[name] = option
            assert option["description"], name
    assert sorted(described) == sorted(defaults)
    for name, option in described.items():
        assert option.get("default") == defaults[name], name


def test_every_variable_is_read_by_the_plays_and_every_variable_they_read_is_documented():
    text = uses()
    docs = documented()
    for name in docs:
        assert re.search(r"\b%s\b" % name, text), "%s is documented but no play or task reads it" % name
    read_names = set(n for n in NAME.findall(text) if not n.startswith("madengine__")) - NOT_VARIABLES  # private
    assert sorted(read_names - set(docs)) == []


def module_options_checks(tasks, found):
    """The ``name`` of every rocm.madengine.module_options task, blocks included (a loop's items as given)."""
    for task in tasks:
        check = task.get("rocm.madengine.module_options")
        if check:
            found.append((check["name"], task.get("loop")))
        for section in ("block", "rescue", "always"):
            module_options_checks(task.get(section, []), found)
    return found


def test_every_option_dict_is_checked_with_module_options():
    """madengine_build_options, madengine_run_options, madengine_vm_options, ...: each dict a user can give is
    checked against its module's documentation (by a task naming it, or by a loop over a list naming it)."""
    defaults = load(os.path.join(ROLE, "defaults", "main.yml"))
    role_vars = load(os.path.join(ROLE, "vars", "main.yml"))
    dicts = sorted(name for name in defaults if name.endswith("_options"))
    assert {"madengine_build_options", "madengine_run_options", "madengine_report_options"} <= set(dicts)
    checked = set()
    for path in glob.glob(os.path.join(ROLE, "tasks", "*.yml")):
        for name, loop in module_options_checks(load(path) or [], []):
            if loop:
                listed = role_vars[re.match(r"^{{ *(\w+) *}}$", loop).group(1)]
                checked.update(entry["name"] for entry in listed)
            else:
                checked.add(name)
    assert sorted(set(dicts) - checked) == []


@pytest.mark.parametrize("variable, task", [
    ("madengine_build_options", "Check madengine_build_options"),
    ("madengine_report_options", "Check madengine_report_options now (the report is written at the end)"),
    ("madengine_run_options", "Check madengine_run_options"),
])
def test_an_unknown_key_of_an_option_dict_is_named_with_the_host(tmp_path, variable, task):
    module = variable[len("madengine_"):-len("_options")]
    rc, out, log = dry_run(tmp_path, {variable: {"bogus_key": 1}})
    assert rc != 0
    failed = task_results(out, task)["localhost"]
    assert failed["msg"].startswith("%s on localhost: unknown key(s) bogus_key (rocm.madengine.madengine_%s takes: "
                                    % (variable, module)), log
    if variable != "madengine_run_options":  # named before the build
        assert task_results(out, "Build and push the images, write the manifest") == {}, log
    assert os.listdir(tmp_path) == []


def test_the_fleet_documents_name_only_real_variables():
    known = set(documented()) | NOT_VARIABLES
    for doc in FLEET_DOCS:
        names = set(NAME.findall(read(os.path.join(COLLECTION_DIR, "docs", doc))))
        assert sorted(names - known) == [], doc


def test_role_documentation_renders_from_the_installed_collection():
    ansible_doc = os.path.join(os.path.dirname(sys.executable), "ansible-doc")
    proc = subprocess.run([ansible_doc, "-t", "role", "rocm.madengine.madengine"], check=False, capture_output=True,
                          text=True, timeout=120, env=ansible_env(ANSIBLE_STDOUT_CALLBACK="default"))
    assert proc.returncode == 0, proc.stderr
    for text in ("ENTRY POINT: *build*", "ENTRY POINT: *node*", "ENTRY POINT: *collect*", "ENTRY POINT: *vm_node*",
                 "ENTRY POINT: *vm_cleanup*", "madengine_pull_throttle", "madengine_rerun_failed",
                 "madengine_vm_cleanup"):
        assert text in proc.stdout


# ---- the playbook's own checks, in check mode (no Docker call) ------------------------------------

LOCAL = os.path.join(COLLECTION_DIR, "inventories", "local")
CHECK = "Check the build settings"


def dry_run(tmp_path, extra_vars, inventory=LOCAL):
    return run_playbook("rocm.madengine.benchmark", inventory=inventory, cwd=str(tmp_path), check=True,
                        extra_vars=extra_vars)


def test_declared_nodes_without_detection_decide_the_images(tmp_path):
    """madengine_gpu_detect false: the inventory's vendor and architecture are the node's profile."""
    _rc, out, log = dry_run(tmp_path, {"madengine_gpu_detect": False, "madengine_gpu_vendor": "AMD",
                                       "madengine_gpu_arch": "gfx942", "madengine_tags": "sample_gpu,dummy",
                                       "madengine_image_prefix": "archcheck-", "madengine_target_archs": "gfx90a"})
    build = task_results(out, "Build and push the images, write the manifest")["localhost"]
    assert not build.get("failed"), log
    # the AMD Dockerfile takes the architecture: the node's, and the one madengine_target_archs adds
    assert build["built"] == ["archcheck-sample_gpu_sample.ubuntu.amd_gfx90a",
                              "archcheck-sample_gpu_sample.ubuntu.amd_gfx942", "archcheck-dummy_cpu.ubuntu"]
    assert task_results(out, "Learn this node's GPUs (detection wins over madengine_gpu_vendor and "
                             "madengine_gpu_arch, with a warning)")["localhost"]["profile"]["source"] == "inventory"
    assert os.listdir(tmp_path) == []


def test_bad_settings_are_named_before_anything_runs(tmp_path):
    rc, out, log = dry_run(tmp_path, {"madengine_tags": "", "madengine_pull_throttle": -1})
    assert rc != 0
    failed = task_results(out, CHECK)["localhost"]
    assert failed["failed"] and failed["msg"].startswith("benchmark.yml needs madengine_mad_root") and \
        "madengine_tags (the models to run: '')" in failed["msg"] and "madengine_pull_throttle ('-1')" in failed["msg"]
    assert "Run every model on every GPU node" not in [p["play"]["name"] for p in out["plays"]], log


def test_a_bad_run_id_is_named_by_the_build_before_anything_runs(tmp_path):
    rc, out, log = dry_run(tmp_path, {"madengine_run_id": "bad id!"})
    assert rc != 0
    failed = task_results(out, "Build and push the images, write the manifest")["localhost"]
    assert failed["failed"] and failed["msg"] == "run_id 'bad id!' must be 1-64 letters, digits, '.', '_' or '-'.", log
    assert "Run every model on every GPU node" not in [p["play"]["name"] for p in out["plays"]], log
    assert os.listdir(tmp_path) == []


def test_an_inventory_without_gpu_nodes_is_named(tmp_path):
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("[controller]\nlocalhost ansible_connection=local\n")
    rc, out, log = dry_run(tmp_path, {"madengine_mad_root": os.path.join(COLLECTION_DIR, "examples", "sample_mad"),
                                      "madengine_tags": "dummy"}, inventory=str(inventory))
    assert rc != 0
    assert "hosts in the inventory group gpu_nodes (0 in the run)" in task_results(out, CHECK)["localhost"]["msg"], log


def first_failure(out):
    for play in out["plays"]:
        for task in play["tasks"]:
            for result in task["hosts"].values():
                if result.get("failed"):
                    return task["task"]["name"], result["msg"]
    return None


def test_a_bad_choice_is_named_by_the_argument_specs(tmp_path):
    rc, out, log = dry_run(tmp_path, {"madengine_rebuild": "sometimes"})
    assert rc != 0
    name, message = first_failure(out)
    assert "Validating arguments against arg spec 'build'" in name, log
    assert "madengine_rebuild" in message and "never, always" in message and "sometimes" in message


@pytest.mark.parametrize("content, message", [
    ("{not json", "data_config {path} is not valid JSON: "),
    ("[1, 2]", "data_config {path} must hold a JSON object keyed by data name."),
])
def test_a_bad_data_config_is_named(tmp_path, content, message):
    work = tmp_path / "work"
    work.mkdir()
    (work / "data.json").write_text(content)
    # relative: to the directory ansible-playbook runs in
    rc, out, log = dry_run(work, {"madengine_data_config": "data.json"})
    assert rc != 0
    failed = task_results(out, "Build and push the images, write the manifest")["localhost"]
    assert failed["failed"] and failed["msg"].startswith(message.format(path=work / "data.json")), log


def test_rerun_without_a_previous_csv_names_it(tmp_path):
    rc, out, log = dry_run(tmp_path, {"madengine_rerun_failed": "true"})
    assert rc != 0
    failed = task_results(out, "Plan a re-run of the failed or missing (model, node) pairs")["localhost"]
    assert str(tmp_path / "results" / "perf.csv") in failed["msg"], log
