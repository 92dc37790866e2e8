"""madengine_report, madengine_build and madengine_run's start run in the task's process on the controller when the
module would run there with the controller's own Python (plugin_utils/on_controller.py), and as modules otherwise.

Each test runs the same playbook twice from the installed collection: with the controller's interpreter (the task's
process: no "Using module file" at -vvv) and with another interpreter, a wrapper script around the same Python (the
module, as Ansible runs it), and compares what the two wrote and returned.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap

import pytest
from conftest import run_playbook

pytestmark = pytest.mark.skipif(not os.environ.get("MADCI_INSTALLED"), reason="needs the installed collection")

ROWS = [
    {"model": "dummy", "host": "node-1", "status": "SUCCESS", "performance": "42.5", "metric": "samples_per_second",
     "run_id": "r1"},
    {"model": "dummy_multi_1", "host": "node-1", "status": "SUCCESS", "performance": "7", "metric": "tokens",
     "run_id": "r1"},
    {"model": "dummy", "host": "node-2", "status": "FAILURE", "performance": "", "metric": "", "run_id": "r1",
     "error": "exit code 3"},
]
SECRET = "s3cr3t-Pa55-on-controller"


def wrapper_interpreter(tmp_path):
    """Another interpreter path for the same Python: Ansible runs the module with it."""
    path = tmp_path / "python-wrapper"
    path.write_text('#!/bin/sh\nexec %s "$@"\n' % sys.executable)
    path.chmod(0o755)
    return str(path)


def play(tmp_path, name, tasks):
    path = tmp_path / ("%s.yml" % name)
    path.write_text(textwrap.dedent("""\
        - name: %s
          hosts: localhost
          connection: local
          gather_facts: false
          tasks:
        """ % name) + textwrap.indent(textwrap.dedent(tasks), "    "))
    return path


def both_ways(tmp_path, playbook, extra_vars, check=False):
    """{way: (rc, log, the result the play saved)} for the task's process ("here") and the module ("module")."""
    found = {}
    for way, interpreter in (("here", sys.executable), ("module", wrapper_interpreter(tmp_path))):
        saved = tmp_path / ("%s.json" % way)
        rc, _parsed, log = run_playbook(
            playbook, extra_vars=dict(extra_vars, ansible_python_interpreter=interpreter, saved=str(saved),
                                      out=str(tmp_path / way)),
            check=check, args=("-vvv",), env={"ANSIBLE_STDOUT_CALLBACK": "default", "ANSIBLE_INJECT_INVOCATION": "1"})
        found[way] = (rc, log, json.loads(saved.read_text()) if saved.exists() else None)
    return found


def used_module_file(log, module):
    return "Using module file" in log and ("plugins/modules/%s.py" % module) in log


def test_the_report_is_the_same_merged_here_as_by_the_module(tmp_path):
    playbook = play(tmp_path, "merge", """\
        - name: Merge
          rocm.madengine.madengine_report:
            results: "{{ rows }}"
            models: [dummy, dummy_multi]
            hosts: [node-1, node-2, node-3]
            output_dir: "{{ out }}"
            run_id: r1
            results_db: "postgresql://madengine:%s@127.0.0.1:1/nowhere"
            history: false
          register: merged
        - name: Save the result
          ansible.builtin.copy:
            content: "{{ merged | to_json }}"
            dest: "{{ saved }}"
            mode: "0600"
          check_mode: false
        """ % SECRET)
    rows = {"node-1": ROWS[:2], "node-2": ROWS[2:], "node-3": []}
    found = both_ways(tmp_path, playbook, {"rows": rows})
    for way, (rc, log, _result) in found.items():
        assert rc == 0, (way, log[-3000:])
        assert SECRET not in log, way
    assert not used_module_file(found["here"][1], "madengine_report"), found["here"][1][-3000:]
    assert used_module_file(found["module"][1], "madengine_report")
    here, module = found["here"][2], found["module"][2]
    assert (tmp_path / "here" / "perf.csv").read_bytes() == (tmp_path / "module" / "perf.csv").read_bytes()
    for key in ("rows", "missing_hosts", "failed_pairs", "placeholders", "changed", "regressions"):
        assert here[key] == module[key], key
    assert here["summary"]["counts"] == module["summary"]["counts"] == {
        "SUCCESS": 2, "FAILURE": 4, "SKIPPED": 0, "TIMEOUT": 0}
    assert here["missing_hosts"] == ["node-3"]
    assert SECRET not in json.dumps(here) and SECRET not in json.dumps(module)


def test_bad_arguments_fail_the_same_here_as_in_the_module(tmp_path):
    playbook = play(tmp_path, "bad", """\
        - name: Merge without an output directory
          rocm.madengine.madengine_report:
            results: {node-1: []}
          register: no_directory
          ignore_errors: true
        - name: Merge with an option the module does not have
          rocm.madengine.madengine_report:
            results: {node-1: []}
            output_dir: "{{ out }}"
            bogus_option: 1
          register: unknown
          ignore_errors: true
        - name: Save the results
          ansible.builtin.copy:
            content: "{{ [no_directory, unknown] | to_json }}"
            dest: "{{ saved }}"
            mode: "0600"
          check_mode: false
        """)
    found = both_ways(tmp_path, playbook, {})
    (here_directory, here_unknown), (module_directory, module_unknown) = found["here"][2], found["module"][2]
    assert here_directory["failed"] and here_directory["msg"] == module_directory["msg"] == (
        "missing parameter(s) required by 'results': output_dir")
    assert here_unknown["failed"] and module_unknown["failed"]
    assert "bogus_option" in here_unknown["msg"] and "bogus_option" in module_unknown["msg"], (
        here_unknown["msg"], module_unknown["msg"])
    assert not (tmp_path / "here").exists() and not (tmp_path / "module").exists()


def test_a_build_plans_the_same_here_as_in_the_module_and_hides_the_registry_password(tmp_path, sample_mad):
    playbook = play(tmp_path, "build", """\
        - name: Plan the build
          rocm.madengine.madengine_build:
            mad_root: "{{ mad }}"
            tags: [dummy]
            additional_context: {gpu_vendor: NONE, guest_os: UBUNTU}
            registry: localhost:5000
            registry_username: madengine
            registry_password: "%s"
            manifest_path: "{{ out }}/build_manifest.json"
            run_id: r1
          register: built
        - name: Save the result
          ansible.builtin.copy:
            content: "{{ built | to_json }}"
            dest: "{{ saved }}"
            mode: "0600"
          check_mode: false
        """ % SECRET)
    found = both_ways(tmp_path, playbook, {"mad": str(sample_mad)}, check=True)
    for way, (rc, log, result) in found.items():
        assert rc == 0, (way, log[-3000:])
        assert SECRET not in log and SECRET not in json.dumps(result), way
    assert not used_module_file(found["here"][1], "madengine_build")
    assert used_module_file(found["module"][1], "madengine_build")
    here, module = found["here"][2], found["module"][2]
    for key in ("models", "built", "reused", "pushed", "failures", "run_id", "changed"):
        assert here[key] == module[key], key
    assert here["built"], here
    # the arguments it ran with, as the module reports them: the secret masked, the credentials' placeholder
    for invocation in (here["invocation"]["module_args"], module["invocation"]["module_args"]):
        assert invocation["registry_password"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
        assert invocation["registry_username"] == "madengine" and invocation["tags"] == ["dummy"]
    assert here["invocation"]["module_args"].keys() == module["invocation"]["module_args"].keys()
    assert here["manifest"]["built_images"].keys() == module["manifest"]["built_images"].keys()
