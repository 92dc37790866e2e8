"""madengine_vm through the AnsibleModule harness, against libvirt's test driver (a private test:///<file> per test).

Each module run opens its own connection, and the test driver gives each connection a private copy of the
node file. A hypervisor that still runs the VM is therefore described by writing the domain into the node file.
"""

from __future__ import annotations

import json
import os

import pytest
from vm_helpers import NODE_XML, fake_host, hold_vfio, leftovers, module_args

from ansible_collections.rocm.madengine.plugins.module_utils.vm.madengine_vm_task import ssh_command
from ansible_collections.rocm.madengine.plugins.module_utils.vm.spec import stable_uuid
from ansible_collections.rocm.madengine.plugins.modules import madengine_vm

SECRET = "s3cr3t-Passw0rd-for-the-guest"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx1bWVu test@controller"


def _hypervisor_runs(args, domain_xml):
    """Describe a hypervisor on which ``domain_xml`` is defined and running."""
    node = args["uri"][len("test://"):]
    with open(node, "w") as handle:
        handle.write(NODE_XML.replace("</node>", domain_xml + "</node>"))


def test_running_creates_overlay_seed_state_and_domain(tmp_path, module_runner):
    args = module_args(tmp_path, ssh_pubkey=KEY)
    result = module_runner(madengine_vm, args, diff=True)
    assert not result.failed, result.get("msg")
    assert result["changed"] is True and result["attempts"] == 1
    assert result["ip"].startswith("192.168.122.")  # the test driver's lease for the "default" network
    assert result["uuid"] == stable_uuid("madengine-vm-unit")
    assert os.path.isfile(result["overlay"]) and os.path.isfile(result["seed"])
    assert oct(os.stat(result["seed"]).st_mode & 0o777) == "0o600"
    state = json.loads(open(result["state_file"]).read())
    assert state["name"] == "madengine-vm-unit" and state["overlay"] == result["overlay"]
    assert state["phase"] == "running" and state["uuid"] == result["uuid"]
    assert "<me:spec_hash>%s</me:spec_hash>" % state["spec_hash"] in result["diff"]["after"]
    assert result["diff"]["before"] == ""
    assert [a.split()[0] for a in result["actions"]] == ["created", "created", "defined", "started", "VM"]
    assert set(result["timings"]) >= {"overlay", "seed", "define", "start", "wait"}


def test_overlay_records_its_backing_file_and_format(tmp_path, module_runner):
    import subprocess

    args = module_args(tmp_path, disk_size="1G")
    result = module_runner(madengine_vm, args)
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", result["overlay"]],
                                     capture_output=True, check=True).stdout)
    assert info["format"] == "qcow2" and info["virtual-size"] == 1 << 30
    assert info["backing-filename"] == args["base_image"] and info["backing-filename-format"] == "qcow2"


def test_rerun_with_the_same_spec_is_unchanged(tmp_path, module_runner):
    args = module_args(tmp_path)
    first = module_runner(madengine_vm, args, diff=True)
    _hypervisor_runs(args, first["diff"]["after"])
    again = module_runner(madengine_vm, args)
    assert not again.failed, again.get("msg")
    assert again["changed"] is False and again["attempts"] == 0 and again["ip"] == first["ip"]
    checked = module_runner(madengine_vm, args, check_mode=True)
    assert checked["changed"] is False


def test_a_different_spec_fails_unless_recreate(tmp_path, module_runner):
    args = module_args(tmp_path)
    first = module_runner(madengine_vm, args, diff=True)
    _hypervisor_runs(args, first["diff"]["after"])
    changed = dict(args, vcpus=4)
    result = module_runner(madengine_vm, changed)
    assert result.failed
    assert result["msg"].startswith("VM madengine-vm-unit exists with a different specification (spec hash ")
    assert result["msg"].endswith("set recreate: true or remove it with state: absent first.")
    recreated = module_runner(madengine_vm, dict(changed, recreate=True))
    assert not recreated.failed and recreated["changed"] is True
    assert any(a.startswith("destroyed domain") for a in recreated["actions"])


def test_a_foreign_domain_with_the_same_name_is_left_alone(tmp_path, module_runner):
    args = module_args(tmp_path)
    _hypervisor_runs(args, "<domain type='qemu'><name>madengine-vm-unit</name><memory>262144</memory>"
                           "<os><type arch='x86_64' machine='q35'>hvm</type></os></domain>")
    result = module_runner(madengine_vm, args)
    assert result.failed
    assert result["msg"] == "a domain named madengine-vm-unit exists but was not created by madengine_vm."
    gone = module_runner(madengine_vm, dict(args, state="absent"))
    assert gone.failed
    assert gone["msg"] == ("a domain named madengine-vm-unit exists but was not created by madengine_vm; "
                           "it is left alone.")


def test_check_mode_creates_nothing_and_shows_the_xml(tmp_path, module_runner):
    args = module_args(tmp_path)
    result = module_runner(madengine_vm, args, check_mode=True, diff=True)
    assert not result.failed and result["changed"] is True
    assert "<name>madengine-vm-unit</name>" in result["diff"]["after"]
    assert leftovers(tmp_path) == []


def test_stopped_defines_without_starting(tmp_path, module_runner):
    args = module_args(tmp_path, state="stopped")
    result = module_runner(madengine_vm, args)
    assert not result.failed and result["changed"] is True and result["ip"] is None
    assert [a.split()[0] for a in result["actions"]] == ["created", "created", "defined"]
    assert json.loads(open(result["state_file"]).read())["phase"] == "defined"


def test_absent_works_from_the_state_file_when_the_domain_is_gone(tmp_path, module_runner):
    args = module_args(tmp_path, keep_logs=False)
    created = module_runner(madengine_vm, args)
    open(created["console_log"], "w").write("boot log\n")
    # A new connection: the hypervisor no longer knows the domain, only the files and the state file remain.
    result = module_runner(madengine_vm, dict(args, state="absent"), diff=True)
    assert not result.failed, result.get("msg")
    assert result["changed"] is True and result["clean"] == {"ok": True, "problems": []}
    assert sorted(result["removed"]) == sorted([created["overlay"], created["seed"], created["console_log"],
                                                created["state_file"]])
    assert leftovers(tmp_path) == []
    again = module_runner(madengine_vm, dict(args, state="absent"))
    assert again["changed"] is False and again["clean"]["ok"] is True and again["removed"] == []


def test_absent_uses_the_domain_metadata_when_the_state_file_is_lost(tmp_path, module_runner):
    args = module_args(tmp_path)
    created = module_runner(madengine_vm, args, diff=True)
    os.unlink(created["state_file"])
    _hypervisor_runs(args, created["diff"]["after"])
    checked = module_runner(madengine_vm, dict(args, state="absent"), check_mode=True)
    assert checked["changed"] is True and "domain" in checked["removed"] and os.path.exists(created["overlay"])
    result = module_runner(madengine_vm, dict(args, state="absent"), diff=True)
    assert not result.failed, result.get("msg")
    assert result["removed"][0] == "domain" and created["overlay"] in result["removed"]
    assert "<name>madengine-vm-unit</name>" in result["diff"]["before"] and result["diff"]["after"] == ""
    assert any(a.startswith("undefined domain madengine-vm-unit (flags 0x3)") for a in result["actions"])
    assert leftovers(tmp_path) == []


def test_keep_logs_keeps_only_the_console_log(tmp_path, module_runner):
    args = module_args(tmp_path, keep_logs=True)
    created = module_runner(madengine_vm, args)
    open(created["console_log"], "w").write("boot log\n")
    result = module_runner(madengine_vm, dict(args, state="absent"))
    assert result["clean"]["ok"] is True
    assert leftovers(tmp_path) == [created["console_log"]]


def test_verify_clean_fails_while_a_process_holds_the_vfio_group(tmp_path, module_runner):
    """sysfs_root is the older name of host_root: /proc of the host root shows who holds the group."""
    host = fake_host(str(tmp_path / "host"), gpus={"0000:83:00.0": dict(iommu_group=42)})
    args = module_args(tmp_path, sysfs_root=host, hostdevs=["83:00.0"], cpu_pinning="none")
    module_runner(madengine_vm, args)
    hold_vfio(host, 4242, 42)
    result = module_runner(madengine_vm, dict(args, state="absent"))
    assert result.failed
    assert result["msg"] == ("VM madengine-vm-unit was removed but the host is not clean: /dev/vfio/42 (IOMMU group "
                             "of 0000:83:00.0) is still open by PID 4242.")
    assert result["clean"]["ok"] is False
    assert result["leftovers"] == ["/dev/vfio/42 (IOMMU group of 0000:83:00.0) is still open by PID 4242"]
    relaxed = module_runner(madengine_vm, dict(args, state="absent", verify_clean=False))
    assert not relaxed.failed and relaxed["clean"]["ok"] is False


def test_wait_timeout_is_retried_and_leaves_nothing(tmp_path, module_runner):
    # The console never reports an address (no guest runs under the test driver): every attempt times out.
    args = module_args(tmp_path, ip_sources=["console"], boot_timeout=1, retries=1, retry_delay=0.1)
    result = module_runner(madengine_vm, args)
    assert result.failed
    assert result["msg"].startswith("VM madengine-vm-unit could not be brought up after 2 attempts: VM "
                                    "madengine-vm-unit did not report an IP address (sources: console) within 1 s.")
    assert result["msg"].endswith("Everything created for it was removed.")
    assert sum(a.startswith("destroyed domain") for a in result["actions"]) == 2
    assert any(a.startswith("attempt 1 failed") for a in result["actions"])
    assert leftovers(tmp_path) == []


def test_secrets_stay_out_of_results_state_and_xml(tmp_path, module_runner):
    args = module_args(tmp_path, ssh_pubkey=KEY, user_data={"chpasswd": {"list": "root:%s" % SECRET}})
    result = module_runner(madengine_vm, args, diff=True)
    assert not result.failed, result.get("msg")
    assert SECRET not in json.dumps(result)
    assert SECRET not in open(result["state_file"]).read()
    assert SECRET.encode() in open(result["seed"], "rb").read()  # delivered to the guest, nowhere else
    gone = module_runner(madengine_vm, dict(args, state="absent"))
    assert SECRET not in json.dumps(gone) and not os.path.exists(result["seed"])


def test_sweep_removes_old_orphans_only(tmp_path, module_runner):
    args = module_args(tmp_path)
    module_runner(madengine_vm, dict(args, name="madengine-vm-old"))
    module_runner(madengine_vm, dict(args, name="madengine-vm-new"))
    state_old = tmp_path / "state" / "madengine-vm-old.json"
    record = json.loads(state_old.read_text())
    record["created"] = "2020-01-01T00:00:00Z"
    state_old.write_text(json.dumps(record))
    sweep_args = dict(uri=args["uri"], state="absent", state_dir=args["state_dir"], image_dir=args["image_dir"],
                      log_dir=args["log_dir"], sweep={"older_than": "6h"})
    checked = module_runner(madengine_vm, sweep_args, check_mode=True)
    assert [s["name"] for s in checked["swept"]] == ["madengine-vm-old"] and checked["changed"] is True
    assert state_old.exists()
    result = module_runner(madengine_vm, sweep_args)
    assert not result.failed, result.get("msg")
    assert [(s["name"], s["source"]) for s in result["swept"]] == [("madengine-vm-old", "state file")]
    assert [(s["name"], s["reason"]) for s in result["skipped"]] == [("madengine-vm-new", "younger than 6h")]
    assert sorted(os.path.basename(p) for p in leftovers(tmp_path)) == [
        "madengine-vm-new-seed.iso", "madengine-vm-new.json", "madengine-vm-new.qcow2"]


def test_sweep_finds_domains_by_metadata_and_by_name_prefix(tmp_path, module_runner):
    args = module_args(tmp_path)
    ours = module_runner(madengine_vm, dict(args, name="renamed-run"), diff=True)
    os.unlink(ours["state_file"])
    foreign_disk = tmp_path / "images" / "madengine-vm-0badc0de.qcow2"
    foreign_disk.write_bytes(b"x")
    os.utime(foreign_disk, (1, 1))
    foreign = ("<domain type='qemu'><name>madengine-vm-0badc0de</name><memory>262144</memory>"
               "<os><type arch='x86_64' machine='q35'>hvm</type></os><devices><disk type='file' device='disk'>"
               "<source file='%s'/><target dev='vda' bus='virtio'/></disk></devices></domain>" % foreign_disk)
    unrelated = ("<domain type='qemu'><name>build-box</name><memory>262144</memory>"
                 "<os><type arch='x86_64' machine='q35'>hvm</type></os></domain>")
    _hypervisor_runs(args, ours["diff"]["after"] + foreign + unrelated)
    result = module_runner(madengine_vm, dict(uri=args["uri"], state="absent", state_dir=args["state_dir"],
                                              image_dir=args["image_dir"], sweep={"older_than": "0"}))
    assert not result.failed, result.get("msg")
    assert [(s["name"], s["source"]) for s in result["swept"]] == [
        ("madengine-vm-0badc0de", "name prefix"), ("renamed-run", "metadata")]
    assert str(foreign_disk) in result["swept"][0]["removed"]
    assert leftovers(tmp_path) == []


def test_bad_inputs_fail_with_a_sentence(tmp_path, module_runner):
    args = module_args(tmp_path)
    cases = [
        (dict(hostdevs=["gpu0"]), "hostdev 'gpu0' is not a PCI address: expected DDDD:BB:DD.F (0000:83:00.0) or "
                                  "BB:DD.F (83:00.0)."),
        (dict(passthrough={"hostdevs": ["0000:83:00.0"]}, hostdevs=["83:00.0"]),
         "hostdev 0000:83:00.0 is listed twice."),
        (dict(base_image=str(tmp_path / "missing.qcow2")),
         "Base image %s does not exist. Build or copy the VM base image (qcow2) there." % (tmp_path / "missing.qcow2")),
        (dict(memory="lots"), "memory must be a size such as 8G or 8192M, not 'lots'."),
        (dict(name="bad name"), "VM name 'bad name' is not usable: 1-63 letters, digits, '.', '_', '+' or '-', "
                                "starting with a letter or digit."),
        (dict(state="running", sweep={"older_than": "1h"}), "sweep only works with state=absent."),
        (dict(uri="test:///nonexistent/node.xml"), "cannot connect to libvirt at test:///nonexistent/node.xml: "),
        (dict(image_dir=str(tmp_path / "no-such-dir")), "image_dir %s does not exist." % (tmp_path / "no-such-dir")),
        (dict(retries=-1), "retries and retry_delay must not be negative and boot_timeout must be at least 1."),
    ]
    for overrides, message in cases:
        result = module_runner(madengine_vm, dict(args, **overrides))
        assert result.failed, overrides
        assert result["msg"].startswith(message), (result["msg"], message)
    assert leftovers(tmp_path) == []
    missing = module_runner(madengine_vm, {"state": "running", "name": "x"})
    assert missing.failed and "base_image" in missing["msg"]


def test_the_passthrough_result_reaches_the_domain_and_the_cleanup_check(tmp_path, module_runner):
    host = fake_host(str(tmp_path / "host"), gpus={"0000:83:00.0": dict(iommu_group=42)})
    passthrough = {"changed": True, "hostdevs": ["0000:83:00.0"], "mdevs": [], "plan": []}
    args = module_args(tmp_path, host_root=host, passthrough=passthrough, cpu_pinning="none")
    result = module_runner(madengine_vm, args, diff=True)
    assert not result.failed, result.get("msg")
    assert "<me:hostdev bdf='0000:83:00.0' managed='no'/>" in result["diff"]["after"]
    hold_vfio(host, 77, 42)
    gone = module_runner(madengine_vm, dict(name=args["name"], uri=args["uri"], state="absent", host_root=host,
                                            image_dir=args["image_dir"], state_dir=args["state_dir"],
                                            log_dir=args["log_dir"], passthrough=passthrough))
    assert gone.failed and gone["leftovers"] == ["/dev/vfio/42 (IOMMU group of 0000:83:00.0) is still open by PID 77"]


def test_inventory_host_reaches_the_vm_through_the_hypervisor(tmp_path, module_runner):
    args = module_args(tmp_path, ssh_user="madengine", inventory={
        "node": "node1", "jump_host": "10.0.0.5", "jump_user": "admin", "jump_port": 2222, "node_connection": "ssh",
        "private_key_file": "~/.ssh/vm", "vars": {"ansible_python_interpreter": "/usr/bin/python3"}})
    result = module_runner(madengine_vm, args)
    assert not result.failed, result.get("msg")
    assert result["inventory_host"] == {
        "name": "madengine-vm-unit", "groups": ["madengine_vms"], "ansible_host": result["ip"],
        "ansible_user": "madengine", "ansible_become": True, "ansible_pipelining": True,
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                                   "-o ProxyJump=admin@10.0.0.5:2222",
        "ansible_ssh_private_key_file": "~/.ssh/vm", "madengine_docker_host": "unix:///var/run/docker.sock",
        "madengine_vm_uuid": result["uuid"], "madengine_vm_node": "node1",
        "ansible_python_interpreter": "/usr/bin/python3"}
    # the same as one command line, for a person (madengine_vm_cleanup: preserve prints it)
    assert result["ssh_command"] == ssh_command(result["inventory_host"])


def test_inventory_host_without_a_jump_when_the_controller_is_the_hypervisor(tmp_path, module_runner):
    args = module_args(tmp_path, inventory={"jump_host": "localhost", "node_connection": "local",
                                            "vars": {"ansible_connection": "local", "madengine_docker_host": "tcp://x:1"}})
    checked = module_runner(madengine_vm, args, check_mode=True)
    assert checked["inventory_host"]["ansible_host"] == "" and checked["inventory_host"]["ansible_become"] is False
    assert checked["inventory_host"]["ansible_ssh_common_args"] == ("-o StrictHostKeyChecking=no "
                                                                    "-o UserKnownHostsFile=/dev/null")
    assert checked["inventory_host"]["madengine_docker_host"] == "tcp://x:1"
    assert checked["inventory_host"]["ansible_connection"] == "local" and "madengine_vm_node" not in \
        checked["inventory_host"]
    assert checked["ssh_command"] == ""  # reached without SSH


@pytest.mark.parametrize("host_vars, command", [
    ({"ansible_host": "192.168.122.45", "ansible_user": "madengine", "ansible_ssh_common_args": "-o A=b"},
     "ssh -o A=b madengine@192.168.122.45"),
    ({"ansible_host": "10.0.0.9", "ansible_port": 2222, "ansible_ssh_private_key_file": "/keys/my vm",
      "ansible_ssh_common_args": "-o ProxyJump=admin@node1", "ansible_ssh_extra_args": "-v"},
     "ssh -i '/keys/my vm' -p 2222 -o ProxyJump=admin@node1 -v 10.0.0.9"),
    ({"ansible_host": "", "ansible_user": "madengine"}, ""),
    ({"ansible_host": "10.0.0.9", "ansible_connection": "community.docker.docker"}, ""),
])
def test_ssh_command_is_what_the_inventory_host_does(host_vars, command):
    assert ssh_command(host_vars) == command
