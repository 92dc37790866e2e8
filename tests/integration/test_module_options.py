"""rocm.madengine.module_options through ansible-playbook, from the installed collection (no Docker needed).

The action checks an option dict against a module's documented options on the controller, names the variable,
the host and the keys before anything on the host changes, and makes relative paths of hosts with a local
connection absolute against the directory ansible-playbook runs in.
"""

from __future__ import annotations

import json

import pytest
from conftest import run_playbook, task_results

CHECK = "Check the option dict"
AFTER = "Change something on the host"

PLAYBOOK = """---
- name: Check an option dict, then change something
  hosts: all
  gather_facts: false
  tasks:
    - name: Check the option dict
      rocm.madengine.module_options:
        module: "{{ module }}"
        name: "{{ label | default('options') }}"
        options: "{{ options | default({}) }}"
        defaults: "{{ defaults | default({}) }}"
        reserved: "{{ reserved | default([]) }}"
      register: checked
      delegate_to: "{{ delegate | default(omit) }}"

    - name: Change something on the host
      ansible.builtin.file:
        path: "{{ marker }}"
        state: touch
        mode: "0644"
      delegate_to: localhost
"""


def play(tmp_path, inventory="node1 ansible_connection=local\n", **extra):
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    (tmp_path / "inventory.ini").write_text(inventory)
    extra.setdefault("marker", str(tmp_path / "changed"))
    rc, out, log = run_playbook(str(tmp_path / "play.yml"), inventory=str(tmp_path / "inventory.ini"),
                                extra_vars=extra, cwd=str(tmp_path))
    assert out is not None, log
    return rc, out, log


def failure(tmp_path, **extra):
    rc, out, log = play(tmp_path, **extra)
    assert rc != 0, log
    assert not (tmp_path / "changed").exists(), "the host was changed after a bad option dict"
    result = task_results(out, CHECK)["node1"]
    assert result["failed"], log
    return result["msg"]


def test_unknown_keys_are_named_with_the_variable_and_the_host_before_anything_changes(tmp_path):
    message = failure(tmp_path, module="madengine_run", label="madengine_run_options",
                      options={"timout": 30, "gpu_vendor": "AMD", "pul": "always"})
    assert message.startswith("madengine_run_options on node1: unknown key(s) pul, timout "
                              "(rocm.madengine.madengine_run takes: "), message
    assert "timeout" in message and "gpu_vendor" in message


@pytest.mark.parametrize("options, expected", [
    ({"timeout": "soon"}, "madengine_run_options on node1: argument 'timeout' is of type"),
    ({"pull": "sometimes"}, "madengine_run_options on node1: value of pull must be one of: always, missing, never, "
                            "got: sometimes"),
    ({"tags": ["dummy"], "keep_alive": True}, "madengine_run_options on node1: the role sets tags itself"),
])
def test_wrong_values_and_reserved_keys_are_named(tmp_path, options, expected):
    message = failure(tmp_path, module="madengine_run", label="madengine_run_options", options=options,
                      reserved=["tags", "manifest"])
    assert message.startswith(expected), message


def test_a_dict_that_is_not_a_mapping_is_named(tmp_path):
    message = failure(tmp_path, module="madengine_report", label="madengine_report_options", options="title=x")
    assert message == "madengine_report_options on node1 must be a mapping of madengine_report options, not a string"


def test_the_role_settings_are_checked_too_and_said_to_be_the_role_s(tmp_path):
    message = failure(tmp_path, module="madengine_report", label="madengine_report_options",
                      defaults={"html": "perhaps", "titel": "x"})
    assert "(from the role's variables)" in message and "unknown key(s) titel" in message and "html" in message


def test_a_module_that_does_not_exist_is_named(tmp_path):
    message = failure(tmp_path, module="rocm.madengine.no_such_module", label="x_options")
    assert message == "x_options on node1: there is no module rocm.madengine.no_such_module"


def test_a_module_of_another_collection_is_checked_against_its_own_documentation(tmp_path):
    message = failure(tmp_path, module="ansible.builtin.file", label="file_options", options={"mdoe": "0644"})
    assert message.startswith("file_options on node1: unknown key(s) mdoe (ansible.builtin.file takes: ")
    assert "mode" in message and "state" in message
    rc, out, log = play(tmp_path, module="ansible.builtin.file", options={"mode": "0644", "dest": "x"})
    assert rc == 0, log
    result = task_results(out, CHECK)["node1"]
    assert result["module"] == "ansible.builtin.file" and result["option_keys"] == ["dest", "mode"]
    assert result["changed"] is False
    assert result["paths"] == {"dest": str(tmp_path / "x")}  # an alias of the path option 'path'


def test_local_relative_paths_are_made_absolute_against_the_working_directory(tmp_path):
    rc, out, log = play(tmp_path, module="madengine_run",
                        defaults={"results_dir": "results/node1", "gpu_vendor": "auto", "mad_root": "/abs/mad"},
                        options={"output": "out/../mine.csv", "keep_alive": True})
    assert rc == 0, log
    result = task_results(out, CHECK)["node1"]
    assert result["paths"] == {"results_dir": str(tmp_path / "results" / "node1"), "output": str(tmp_path / "mine.csv")}
    assert result["option_keys"] == ["keep_alive", "output"]


def test_a_remote_host_keeps_relative_paths_unless_the_task_is_delegated_to_a_local_one(tmp_path):
    # module_options never contacts the host: an address nothing listens on is fine
    remote = "node1 ansible_host=127.0.0.1 ansible_port=1 ansible_connection=ssh\n"
    rc, out, log = play(tmp_path, inventory=remote, module="madengine_run", defaults={"results_dir": "results/x"})
    assert rc == 0, log
    assert task_results(out, CHECK)["node1"]["paths"] == {}
    rc, out, log = play(tmp_path, inventory=remote, module="madengine_run", defaults={"results_dir": "results/x"},
                        delegate="localhost")
    assert rc == 0, log
    assert task_results(out, CHECK)["node1"]["paths"] == {"results_dir": str(tmp_path / "results" / "x")}


def test_option_values_are_never_returned(tmp_path):
    secret = "Secret-module-options-0x5eed"
    rc, out, log = play(tmp_path, module="madengine_vm", label="madengine_vm_options",
                        options={"user_data": {"password": secret}, "boot_timeout": 60})
    assert rc == 0, log
    result = task_results(out, CHECK)["node1"]
    assert result["option_keys"] == ["boot_timeout", "user_data"]
    assert secret not in json.dumps(result)
