"""gpu_info's action plugin: a node that declares what it is gets its profile on the controller, with no connection
to it; a node with GPUs to detect (or no node_name) still runs the module there.

The declared nodes are at an address nobody answers (TEST-NET-1, 192.0.2.0/24) over SSH: their task can only
succeed if the node is never reached.  A node to detect at the same address is unreachable, which shows the module
path still goes to the node.
"""

from __future__ import annotations

import json
import socket

from conftest import run_playbook, task_results

NOWHERE = {"ansible_connection": "ssh", "ansible_host": "192.0.2.1", "ansible_ssh_timeout": 3,
           "ansible_ssh_common_args": "-o BatchMode=yes -o ConnectionAttempts=1"}


def profile_play(tmp_path, rest):
    """A play on every host whose task "Profile the node" calls gpu_info with ``rest`` (its arguments, then any
    further lines of the play, indented to follow them)."""
    playbook = tmp_path / "gpu_info.yml"
    playbook.write_text("- hosts: all\n  gather_facts: false\n  tasks:\n    - name: Profile the node\n"
                        "      rocm.madengine.gpu_info:" + rest)
    return playbook


def test_declared_nodes_are_profiled_on_the_controller_and_others_on_the_node(tmp_path):
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {"hosts": {
        "cpu-1": dict(NOWHERE, vendor="NONE", arch="", detect=True),
        "mi300x-1": dict(NOWHERE, vendor="AMD", arch="gfx942", detect=False),
        "h100-1": dict(NOWHERE, vendor="NVIDIA", arch="NVIDIA H100 80GB HBM3", detect=False),
        "undeclared-1": dict(NOWHERE, vendor="auto", arch="", detect=False),
        "detect-1": dict(NOWHERE, vendor="AMD", arch="", detect=True),
        "local-1": {"ansible_connection": "local", "vendor": "NONE", "arch": "", "detect": True, "unnamed": True},
    }}}))
    playbook = profile_play(tmp_path, """
        gpu_vendor: "{{ vendor }}"
        gpu_arch: "{{ arch }}"
        detect: "{{ detect }}"
        node_name: "{{ omit if unnamed | default(false) else inventory_hostname }}"
      register: profiled
    - name: The fact is the node's
      ansible.builtin.assert:
        that: madengine_gpu == profiled.profile
""")
    _rc, parsed, output = run_playbook(playbook, inventory=str(inventory))
    assert parsed is not None, output
    found = task_results(parsed, "Profile the node")
    assert found["cpu-1"]["profile"] == {"node": "cpu-1", "declared": {"gpu_vendor": "NONE", "gpu_architecture": ""},
                                         "gpu_vendor": "NONE", "gpu_architecture": "", "gpu_product": "",
                                         "gpu_count": None, "source": "inventory"}, found["cpu-1"]
    assert found["cpu-1"]["gpu"] is None and found["cpu-1"]["changed"] is False
    assert found["mi300x-1"]["profile"]["gpu_vendor"] == "AMD"
    assert found["mi300x-1"]["profile"]["gpu_architecture"] == "gfx942"
    assert found["h100-1"]["profile"]["gpu_architecture"] == "H100", found["h100-1"]
    assert found["undeclared-1"]["failed"] and found["undeclared-1"]["msg"] == (
        "Node undeclared-1: GPU detection is off (madengine_gpu_detect) and madengine_gpu_vendor is auto; declare "
        "AMD, NVIDIA or NONE for it."), found["undeclared-1"]
    # detection needs the node: the module goes there (and here finds nobody)
    assert found["detect-1"].get("unreachable"), found["detect-1"]
    # without node_name the node's own host name is the name: the module runs on it
    assert found["local-1"]["profile"]["node"] == socket.gethostname(), found["local-1"]
    facts = task_results(parsed, "The fact is the node's")
    assert all(not facts[host].get("failed") for host in ("cpu-1", "mi300x-1", "h100-1", "local-1")), facts


def test_bad_arguments_are_named_before_anything_runs(tmp_path):
    playbook = profile_play(tmp_path, """
        gpu_vendor: INTEL
        node_name: cpu-1
""")
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {"hosts": {"cpu-1": NOWHERE}}}))
    rc, parsed, output = run_playbook(playbook, inventory=str(inventory))
    assert rc != 0 and parsed is not None, output
    result = task_results(parsed, "Profile the node")["cpu-1"]
    assert result["failed"] and "gpu_vendor" in result["msg"] and "INTEL" in result["msg"], result
