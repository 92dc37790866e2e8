"""rocm.madengine.vm_cleanup, the playbook of the VM-cleanup job template (docs/awx.md), on the real libvirtd.

Two nodes (local connection, each its own VM name and directories): one with what a killed VM-mode run leaves (a
defined domain, its overlay and console log), one with nothing. --check names what would go and removes nothing;
the run removes it and reports a change on that node only; a second run changes nothing.
"""

from __future__ import annotations

import os
import subprocess
import uuid

import libvirt
import pytest
import yaml
from conftest import COLLECTION_DIR, run_playbook, task_results
from vm_helpers import libvirt_session, vm_name

pytestmark = [pytest.mark.libvirtd, pytest.mark.slow]

URI = "qemu:///system"
SESSION = uuid.uuid4().hex[:6]
LEFT, CLEAN = "vmc%sa" % SESSION, "vmc%sb" % SESSION
REMOVE = "Remove the VM and everything it owns (madengine_vm absent)"
CHECK = "Check that nothing of the VM is left"
# A domain as madengine_vm defines it (its metadata names the files it owns), left defined by a killed run.
DOMAIN_XML = """<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
  <metadata><me:vm xmlns:me='urn:rocm:madengine:vm:1'><me:run_id>killed</me:run_id>
    <me:overlay>{overlay}</me:overlay><me:console_log>{log}</me:console_log></me:vm></metadata>
  <os><type arch='x86_64'>hvm</type></os></domain>"""


@pytest.fixture(scope="module")
def conn():
    with libvirt_session(URI, "madengine-vm-vmc%s" % SESSION) as handle:
        yield handle


def inventory(tmp_path):
    hosts = {}
    for node in (LEFT, CLEAN):
        dirs = dict((key, tmp_path / node / key) for key in ("images", "state", "logs"))
        for directory in dirs.values():
            directory.mkdir(parents=True)
        hosts[node] = {"madengine_vm_options": {"image_dir": str(dirs["images"]), "state_dir": str(dirs["state"]),
                                                "log_dir": str(dirs["logs"])}}
    document = {"all": {"vars": {"ansible_connection": "local", "madengine_vm_uri": URI,
                                 "madengine_vm_passthrough": "none"},
                        "children": {"gpu_nodes": {"hosts": hosts}}}}
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(document))
    return str(path), hosts


def leave_a_vm(conn, node, options):
    """What a killed run leaves: the domain defined, its overlay and console log."""
    overlay = os.path.join(options["image_dir"], vm_name(node) + ".qcow2")
    log = os.path.join(options["log_dir"], vm_name(node) + ".console.log")
    conn.defineXML(DOMAIN_XML.format(name=vm_name(node), overlay=overlay, log=log))
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", overlay, "64M"], check=True)
    with open(log, "w") as handle:
        handle.write("[    0.000000] Linux version\n")
    return [overlay, log]


def defined(conn, node):
    try:
        conn.lookupByName(vm_name(node))
        return True
    except libvirt.libvirtError:
        return False


def test_the_playbook_is_the_collections_and_cleans_what_a_killed_run_left(conn, tmp_path):
    path, hosts = inventory(tmp_path)
    files = leave_a_vm(conn, LEFT, hosts[LEFT]["madengine_vm_options"])

    # --check: the leftovers are named, nothing is removed, no node fails
    rc, out, log = run_playbook("rocm.madengine.vm_cleanup", inventory=path, check=True)
    assert rc == 0, log
    assert all(play["play"]["path"].startswith(COLLECTION_DIR) for play in out["plays"])
    planned = task_results(out, REMOVE)
    assert planned[LEFT]["changed"] is True and planned[LEFT]["removed"] == ["domain"] + files
    assert planned[CLEAN]["changed"] is False and planned[CLEAN]["removed"] == []
    assert defined(conn, LEFT) and all(os.path.exists(f) for f in files)

    # the run removes them on that node only; the clean node reports no change
    rc, out, log = run_playbook("rocm.madengine.vm_cleanup", inventory=path)
    assert rc == 0, log
    removed = task_results(out, REMOVE)
    assert removed[LEFT]["changed"] is True and "domain" in removed[LEFT]["removed"]
    assert removed[CLEAN]["changed"] is False and removed[CLEAN]["leftovers"] == []
    assert set(task_results(out, CHECK)) == {LEFT, CLEAN}
    assert not defined(conn, LEFT) and not any(os.path.exists(f) for f in files)
    assert out["stats"][CLEAN]["changed"] == 0 and out["stats"][LEFT]["failures"] == 0

    # nothing left anywhere: a second run changes nothing
    rc, out, log = run_playbook("rocm.madengine.vm_cleanup", inventory=path)
    assert rc == 0, log
    assert all(stats["changed"] == 0 for stats in out["stats"].values())
