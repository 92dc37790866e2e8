"""The rocm.madengine.json_file lookup through ansible-playbook, from the installed collection."""

from __future__ import annotations

import pytest
from conftest import run_playbook, task_results

PLAYBOOK = """---
- name: Read a JSON file on the controller
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Read it
      ansible.builtin.debug:
        msg: "{{ lookup('rocm.madengine.json_file', path, what='credential file') }}"
"""


def read(tmp_path, path):
    (tmp_path / "play").mkdir(exist_ok=True)
    (tmp_path / "play" / "read.yml").write_text(PLAYBOOK)
    rc, out, log = run_playbook(str(tmp_path / "play" / "read.yml"), extra_vars={"path": path}, cwd=str(tmp_path))
    assert out is not None, log
    return rc, task_results(out, "Read it")["localhost"], log


def test_a_relative_path_is_read_from_the_working_directory_not_the_playbook_directory(tmp_path):
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "credential.json").write_text('{"REG": {"username": "u", "password": "p"}}')
    (tmp_path / "play").mkdir()
    (tmp_path / "play" / "creds").mkdir()
    (tmp_path / "play" / "creds" / "credential.json").write_text('{"WRONG": {}}')
    rc, result, log = read(tmp_path, "creds/credential.json")
    assert rc == 0, log
    assert result["msg"] == {"REG": {"username": "u", "password": "p"}}
    rc, result, log = read(tmp_path, str(tmp_path / "creds" / "credential.json"))
    assert rc == 0 and result["msg"]["REG"]["username"] == "u", log


@pytest.mark.parametrize("content, message", [
    (None, "credential file {path} does not exist."),
    ('{"a": 1,}', "credential file {path} is not valid JSON: "),
    ("[1, 2]", "credential file {path} must hold a JSON object, not list."),
])
def test_a_bad_file_is_named_and_its_content_is_not_shown(tmp_path, content, message):
    path = tmp_path / "credential.json"
    if content is not None:
        path.write_text(content)
    rc, result, log = read(tmp_path, "credential.json")
    assert rc != 0 and result["failed"]
    assert message.format(path=path) in result["msg"], log
