"""The bundled inventories, from the installed collection."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import COLLECTION_DIR, ansible_env, run_playbook, task_results

LOCAL = os.path.join(COLLECTION_DIR, "inventories", "local")
EXAMPLE = os.path.join(COLLECTION_DIR, "inventories", "example", "gpu_inventory")


def inventory(*args):
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-inventory")] + list(args),
                          capture_output=True, text=True, check=False, env=ansible_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_local_inventory_is_controller_and_node_in_cpu_mode():
    listing = inventory("-i", LOCAL, "--list")
    assert listing["controller"]["hosts"] == ["localhost"] and listing["gpu_nodes"]["hosts"] == ["localhost"]
    host = listing["_meta"]["hostvars"]["localhost"]
    assert host["ansible_connection"] == "local"
    assert host["madengine_gpu_vendor"] == "NONE" and host["madengine_registry"] == "localhost:5000"
    assert host["madengine_tags"] == "dummy,dummy_multi,dummy2/model2:batch-size=32"


def test_local_inventory_resolves_the_sample_catalogue_from_a_playbook_directory(tmp_path):
    # benchmark.yml lives in <collection>/playbooks: reproduce that layout around a small playbook.
    root = tmp_path / "collection"
    (root / "playbooks").mkdir(parents=True)
    os.symlink(os.path.join(COLLECTION_DIR, "examples"), root / "examples")
    playbook = root / "playbooks" / "inventory_check.yml"
    playbook.write_text("""---
- name: Nodes of the local inventory
  hosts: gpu_nodes
  gather_facts: false
  tasks:
    - name: Docker is ready on this node
      ansible.builtin.include_role:
        name: rocm.madengine.docker_setup
- name: Controller of the local inventory
  hosts: controller
  gather_facts: false
  tasks:
    - name: Select the demo models
      rocm.madengine.madengine_discover:
        mad_root: "{{ madengine_mad_root }}"
        tags: "{{ madengine_tags }}"
    - name: Show the interpreter
      ansible.builtin.debug:
        msg: "{{ ansible_python_interpreter }} {{ ansible_playbook_python }}"
""")
    rc, parsed, log = run_playbook(str(playbook), inventory=LOCAL, check=True,
                                   env={"ANSIBLE_PYTHON_INTERPRETER": "auto_silent"})
    assert rc == 0, log
    models = task_results(parsed, "Select the demo models")["localhost"]["models"]
    assert [(m["name"], m["args"]) for m in models] == [
        ("dummy", ""), ("dummy_multi", ""), ("dummy2/model2", " --batch-size 32")]
    interpreter, playbook_python = task_results(parsed, "Show the interpreter")["localhost"]["msg"].split()
    assert interpreter == playbook_python
    assert os.path.realpath(interpreter) == os.path.realpath(sys.executable)
    assert parsed["stats"]["localhost"]["changed"] == 0 and parsed["stats"]["localhost"]["failures"] == 0


def test_example_inventory_presets():
    listing = inventory("-i", EXAMPLE, "--list")
    assert listing["controller"]["hosts"] == ["build01.example.com"]
    assert sorted(listing["gpu_nodes"]["children"]) == ["mi200", "mi300x", "nvidia_h100"]
    hostvars = listing["_meta"]["hostvars"]
    mi300x = hostvars["mi300x-01.example.com"]
    assert mi300x["madengine_gpu_vendor"] == "AMD" and mi300x["madengine_gpu_arch"] == "gfx942"
    assert mi300x["madengine_additional_context"]["docker_build_arg"] == {"MAD_SYSTEM_GPU_ARCHITECTURE": "gfx942"}
    assert mi300x["madengine_additional_context"]["docker_gpus"] == "0-7"
    mi200 = hostvars["mi250-02.example.com"]
    assert mi200["madengine_gpu_arch"] == "gfx90a"
    assert mi200["madengine_additional_context"]["docker_build_arg"]["MAD_SYSTEM_GPU_ARCHITECTURE"] == "gfx90a"
    assert mi200["madengine_docker_host"] == "unix:///run/docker-bench/docker.sock"
    assert hostvars["mi250-01.example.com"]["madengine_docker_host"] == "unix:///var/run/docker.sock"
    h100 = hostvars["h100-02.example.com"]
    assert h100["madengine_gpu_vendor"] == "NVIDIA" and h100["madengine_additional_context"]["gpu_vendor"] == "NVIDIA"
    controller = hostvars["build01.example.com"]
    assert controller["docker_setup_registry_enabled"] is True and controller["madengine_gpu_vendor"] == "NONE"
    assert all(v["madengine_registry"] == "build01.example.com:5000" for v in hostvars.values())
