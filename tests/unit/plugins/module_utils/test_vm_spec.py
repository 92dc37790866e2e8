"""VM specification: sizes, devices, host detection, cloud-init documents and the domain XML (schema-validated)."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET

import libvirt
import pytest
from vm_helpers import fake_host, make_base, private_uri, run_command
from vm_helpers import spec_params as _params

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError
from ansible_collections.rocm.madengine.plugins.module_utils.host.checks import hugepages_problem
from ansible_collections.rocm.madengine.plugins.module_utils.host.hostfs import HostFs
from ansible_collections.rocm.madengine.plugins.module_utils.host.sizes import parse_size
from ansible_collections.rocm.madengine.plugins.module_utils.vm import spec as vs


@pytest.mark.parametrize("value, unit, expected", [
    ("8G", "m", 8 << 30), ("512M", "m", 512 << 20), ("128GiB", "m", 128 << 30), ("1.5G", "m", 3 << 29),
    (4096, "m", 4096 << 20), ("100", "g", 100 << 30), ("2t", "g", 2 << 40),
])
def test_parse_size(value, unit, expected):
    assert parse_size(value, "memory", default_unit=unit) == expected


@pytest.mark.parametrize("value", ["lots", "8X", "-1G", "0", True, ""])
def test_parse_size_rejects(value):
    with pytest.raises(MadengineError, match=r"^memory must be"):
        parse_size(value, "memory")


def test_parse_age():
    assert vs.parse_age("90") == 90 and vs.parse_age("30m") == 1800 and vs.parse_age("6h") == 21600
    assert vs.parse_age("2d") == 172800 and vs.parse_age("0") == 0
    with pytest.raises(MadengineError, match=r"sweep.older_than must be an age such as 30m, 6h or 2d, not 'soon'\."):
        vs.parse_age("soon")


@pytest.mark.parametrize("value, message", [
    ("gpu0", r"^hostdev 'gpu0' is not a PCI address: expected DDDD:BB:DD\.F \(0000:83:00\.0\) or BB:DD\.F"),
    ("83:00.8", r"^hostdev '83:00.8' is not a PCI address"),
    ("83:20.0", r"^hostdev '83:20.0' has slot 0x20; PCI slots go up to 0x1f\.$"),
])
def test_hostdev_addresses_are_named_when_bad(value, message):
    with pytest.raises(MadengineError, match=message):
        vs.normalise_hostdevs([value], False)


def test_hostdevs_accept_strings_and_dicts_and_reject_duplicates():
    devs = vs.normalise_hostdevs(["83:00.0", {"bdf": "0000:83:00.1", "managed": True}], managed_default=False)
    assert [(d["bdf"], d["managed"], d["bus"], d["function"]) for d in devs] == [
        ("0000:83:00.0", False, "83", "0"), ("0000:83:00.1", True, "83", "1")]
    with pytest.raises(MadengineError, match=r"^hostdev 0000:83:00.0 is listed twice\.$"):
        vs.normalise_hostdevs(["83:00.0", "0000:83:00.0"], False)
    with pytest.raises(MadengineError, match=r"^hostdev entry \{'managed': True\} has no bdf key\.$"):
        vs.normalise_hostdevs([{"managed": True}], False)
    with pytest.raises(MadengineError, match=r"^mdev 'nope' is not a UUID"):
        vs.normalise_mdevs(["nope"])


def test_uuid_and_mac_are_stable_per_name():
    first, again, other = vs.stable_uuid("madengine-vm-a"), vs.stable_uuid("madengine-vm-a"), vs.stable_uuid("x")
    assert first == again != other
    mac = vs.mac_from_uuid(first)
    assert mac.startswith("52:54:00:") and mac[-8:] == "%s:%s:%s" % (first[-6:-4], first[-4:-2], first[-2:])


@pytest.mark.parametrize("name", ["", "-lead", "a b", "x/y", "n" * 64])
def test_check_name_rejects(name):
    with pytest.raises(MadengineError, match=r"^VM name .* is not usable"):
        vs.check_name(name)


def test_domain_type_auto_needs_flags_module_and_device(tmp_path):
    """The host checks cpu_virtualization and kvm_usable decide; their failures are the reasons."""
    assert vs.detect_domain_type(HostFs(fake_host(str(tmp_path / "kvm"), kvm=True))) == ("kvm", [])
    kind, reasons = vs.detect_domain_type(HostFs(fake_host(str(tmp_path / "pvm"), kvm=False)))
    assert kind == "qemu"
    assert reasons == [
        "/proc/cpuinfo has neither the vmx (Intel VT-x) nor the svm (AMD-V) flag, so KVM cannot run "
        "hardware-accelerated guests.",
        "KVM is not usable: neither kvm_intel nor kvm_amd is loaded (loaded: kvm); /dev/kvm does not exist."]
    plain = fake_host(str(tmp_path / "plain"), kvm=True)
    os.unlink(os.path.join(plain, "dev", "kvm"))
    open(os.path.join(plain, "dev", "kvm"), "w").close()  # exists, but is no device
    assert vs.detect_domain_type(HostFs(plain))[1] == ["KVM is not usable: /dev/kvm is not a character device."]


def test_domain_type_on_this_machine_is_software_emulation():
    # This kind of machine exposes /dev/kvm without vmx/svm: auto must not pick kvm.
    with open("/proc/cpuinfo") as handle:
        has_virt = any(f in handle.read().split() for f in ("vmx", "svm"))
    kind, reasons = vs.detect_domain_type(HostFs("/"))
    assert (kind == "qemu") == bool(reasons)
    if not has_virt:
        assert kind == "qemu" and reasons[0].startswith("/proc/cpuinfo has neither the vmx")


def test_cpu_pinning_auto_follows_the_first_gpu(tmp_path):
    root = HostFs(fake_host(str(tmp_path), gpus={"0000:83:00.0": dict(numa_node=1, local_cpulist="8-11,24")},))
    devs = vs.normalise_hostdevs(["83:00.0"], False)
    pin = vs.cpu_pinning("auto", 6, devs, root)
    assert pin["vcpus"] == [8, 9, 10, 11, 24, 8] and pin["emulator"] == "8,9,10,11,24" and pin["numa_node"] == 1
    assert vs.cpu_pinning("auto", 2, [], root) is None
    assert vs.cpu_pinning("none", 2, devs, root) is None
    unknown = HostFs(fake_host(str(tmp_path / "uma"), gpus={"0000:83:00.0": dict(numa_node=-1, local_cpulist="0-3")}))
    assert vs.cpu_pinning("auto", 2, devs, unknown) is None
    explicit = vs.cpu_pinning("2-3", 3, devs, root)
    assert explicit["vcpus"] == [2, 3, 2] and explicit["numa_node"] is None
    with pytest.raises(MadengineError, match=r"^CPU list 'x-y' is not of the form 0-3,8,10-11\.$"):
        vs.cpu_pinning("x-y", 2, devs, root)


def test_hugepages_are_the_host_check_s(tmp_path):
    """The VM's huge pages are checked by the same function as the host check memory_available."""
    root = fake_host(str(tmp_path / "host"), hugepages={1048576: 3})
    host = HostFs(root)
    assert hugepages_problem(host, 3 << 30, 1 << 30) is None
    assert hugepages_problem(host, 4 << 30, 1 << 30) == "3 free 1 GiB huge pages, the VM needs 4."
    assert hugepages_problem(host, 1 << 30, 2 << 20) == (
        "Huge pages of 2 MiB are not available on this host (/sys/kernel/mm/hugepages/hugepages-2048kB/"
        "free_hugepages is missing).")
    with pytest.raises(MadengineError, match=r"^3 free 1 GiB huge pages, the VM needs 4\.$"):
        vs.build_spec(_params(tmp_path, host_root=root, hugepages=True, memory="4G"), run_command)
    assert vs.build_spec(_params(tmp_path, host_root=root, hugepages=True, memory="3G"),
                         run_command)["xml_context"]["hugepage_kib"] == 1048576


def test_cloud_init_documents_for_a_user_and_for_root():
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB3 ci@host"
    user_data, meta = vs.cloud_init_documents("vm1", "iid-1", "madengine", [key], {"packages": ["docker.io"]})
    assert user_data.startswith("#cloud-config\n")
    doc = json.loads(user_data.split("\n", 1)[1])
    assert doc["users"][1]["name"] == "madengine" and doc["users"][1]["ssh_authorized_keys"] == [key]
    assert doc["packages"] == ["docker.io"] and doc["ssh_pwauth"] is False
    assert json.loads(meta) == {"instance-id": "iid-1", "local-hostname": "vm1"}
    root_doc = json.loads(vs.cloud_init_documents("vm1", "i", "root", [key], None)[0].split("\n", 1)[1])
    assert root_doc["disable_root"] is False and root_doc["ssh_authorized_keys"] == [key]


def _validate(uri, xml):
    """Define with VIR_DOMAIN_DEFINE_VALIDATE: libvirt checks the XML against its RelaxNG schema."""
    conn = libvirt.open(uri)
    try:
        dom = conn.defineXMLFlags(xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
        return dom.XMLDesc(0)
    finally:
        conn.close()


def test_rendered_xml_for_kvm_with_gpus_is_schema_valid(tmp_path):
    root = fake_host(str(tmp_path / "host"), kvm=True, gpus={"0000:83:00.0": dict(numa_node=0, local_cpulist="0-3")},
                     hugepages={1048576: 8})
    spec = vs.build_spec(_params(
        tmp_path, host_root=root, hostdevs=["83:00.0", {"bdf": "83:00.1", "managed": True}],
        mdevs=["9f0a1b2c-3d4e-4f50-8a6b-7c8d9e0f1a2b"], hugepages=True, memory="4G", vcpus=4), run_command)
    assert spec["domain_type"] == "kvm"
    xml = vs.render_domain_xml(dict(spec["xml_context"], created="2026-01-01T00:00:00Z"))
    live = _validate(private_uri(tmp_path), xml)
    root_el = ET.fromstring(live)
    assert root_el.get("type") == "kvm"
    assert root_el.find("uuid").text == vs.stable_uuid("madengine-vm-unit")
    assert root_el.find("cpu").get("mode") == "host-passthrough"
    assert root_el.find("cpu/maxphysaddr").get("mode") == "passthrough"
    assert [p.get("cpuset") for p in root_el.findall("cputune/vcpupin")] == ["0", "1", "2", "3"]
    assert root_el.find("numatune/memory").get("nodeset") == "0"
    assert root_el.find("memoryBacking/hugepages/page").get("size") == "1048576"
    pci = root_el.findall("devices/hostdev[@type='pci']")
    assert [h.get("managed") for h in pci] == ["no", "yes"]
    assert pci[1].find("source/address").get("function") == "0x1"
    assert root_el.find("devices/hostdev[@type='mdev']/source/address").get("uuid").startswith("9f0a1b2c")
    meta = root_el.find("metadata/{%s}vm" % vs.METADATA_NS)
    assert meta.find("{%s}spec_hash" % vs.METADATA_NS).text == spec["spec_hash"]
    assert [h.get("bdf") for h in meta.findall("{%s}hostdev" % vs.METADATA_NS)] == ["0000:83:00.0", "0000:83:00.1"]
    assert root_el.find("os").get("firmware") == "efi"
    disk, seed = root_el.findall("devices/disk[@device='disk']")
    assert disk.find("source").get("file") == spec["overlay"] and disk.find("driver").get("io") == "native"
    assert disk.find("target").get("dev") == "vda"
    # the seed: a read-only virtio disk by default, seen by any kernel that boots from the virtio root disk
    assert seed.find("source").get("file") == spec["seed"] and seed.find("readonly") is not None
    assert (seed.find("target").get("dev"), seed.find("target").get("bus")) == ("vdb", "virtio")
    assert seed.find("driver").get("type") == "raw" and root_el.find("devices/disk[@device='cdrom']") is None
    assert root_el.find("devices/interface/mac").get("address") == spec["mac"]
    assert root_el.find("devices/serial/source").get("path") == spec["console_log"]


def test_rendered_xml_for_software_emulation_and_direct_kernel_boot(tmp_path):
    kernel, initrd = tmp_path / "vmlinuz", tmp_path / "initrd"
    kernel.write_bytes(b"k")
    initrd.write_bytes(b"i")
    spec = vs.build_spec(_params(tmp_path, firmware="bios", network_type="user", kernel=str(kernel),
                                 initrd=str(initrd), kernel_args="console=ttyS0", disk_cache="writeback",
                                 maxphysaddr="46", seed_device="cdrom"), run_command)
    xml = vs.render_domain_xml(dict(spec["xml_context"], created="2026-01-01T00:00:00Z"))
    root_el = ET.fromstring(_validate(private_uri(tmp_path), xml))
    cdrom = root_el.find("devices/disk[@device='cdrom']")  # seed_device: cdrom, for images that look there
    assert cdrom.find("source").get("file") == spec["seed"] and cdrom.find("target").get("bus") == "sata"
    assert cdrom.find("readonly") is not None and len(root_el.findall("devices/disk")) == 2
    assert root_el.get("type") == "qemu" and root_el.find("cpu").get("mode") is None
    assert root_el.find("os").get("firmware") is None and root_el.find("os/kernel").text == str(kernel)
    assert root_el.find("os/cmdline").text == "console=ttyS0"
    assert root_el.find("devices/interface").get("type") == "user"
    assert root_el.find("devices/disk/driver").get("io") is None


def test_bridge_network_and_emulated_physical_bits(tmp_path):
    root = fake_host(str(tmp_path / "host"), kvm=True)
    args = _params(tmp_path, host_root=root, network_type="bridge", network="br0", maxphysaddr="46")
    spec = vs.build_spec(args, run_command)
    xml = vs.render_domain_xml(dict(spec["xml_context"], created="2026-01-01T00:00:00Z"))
    root_el = ET.fromstring(_validate(private_uri(tmp_path), xml))
    assert root_el.find("devices/interface/source").get("bridge") == "br0"
    assert root_el.find("cpu/maxphysaddr").attrib == {"mode": "emulate", "bits": "46"}


def test_paths_with_markup_characters_are_escaped(tmp_path):
    odd = tmp_path / "a&b'<c>"
    odd.mkdir()
    args = _params(odd)
    spec = vs.build_spec(args, run_command)
    xml = vs.render_domain_xml(dict(spec["xml_context"], created="2026-01-01T00:00:00Z"))
    parsed = ET.fromstring(xml)
    assert parsed.find("devices/disk/source").get("file") == spec["overlay"]
    assert "&b'<c>" in spec["overlay"]


def test_spec_hash_tracks_shape_not_waiting_options(tmp_path):
    base = vs.build_spec(_params(tmp_path), run_command)
    waiting = _params(tmp_path, retries=9, boot_timeout=5, wait_for="ssh")
    assert vs.build_spec(waiting, run_command)["spec_hash"] == base["spec_hash"]
    assert vs.build_spec(_params(tmp_path, vcpus=4), run_command)["spec_hash"] != base["spec_hash"]
    assert vs.build_spec(_params(tmp_path, user_data={"a": 1}), run_command)["spec_hash"] != base["spec_hash"]
    assert vs.build_spec(_params(tmp_path, seed_device="cdrom"), run_command)["spec_hash"] != base["spec_hash"]
    assert vs.build_spec(_params(tmp_path, seed_device="virtio"), run_command)["spec_hash"] == base["spec_hash"]


@pytest.mark.parametrize("overrides, message", [
    (dict(memory="32M"), r"^memory 32M is below the 64 MiB a guest needs\.$"),
    (dict(vcpus=0), r"^vcpus must be at least 1, not 0\.$"),
    (dict(maxphysaddr="99"), r"^maxphysaddr must be passthrough, none or a bit count from 32 to 64, not 99\.$"),
    (dict(kernel="/nonexistent/vmlinuz"), r"^kernel /nonexistent/vmlinuz does not exist\.$"),
    (dict(ssh_pubkey="not a key"), r"^ssh_pubkey line 'not a key' is not an OpenSSH public key\.$"),
    (dict(image_dir="relative/dir"), r"^image_dir relative/dir must be an absolute path\.$"),
    (dict(base_image="relative.qcow2"), r"^base image relative\.qcow2 must be an absolute path"),
])
def test_bad_input_is_named(tmp_path, overrides, message):
    with pytest.raises(MadengineError, match=message):
        vs.build_spec(_params(tmp_path, **overrides), run_command)


def test_base_image_checks_are_the_host_check_base_image(tmp_path):
    with pytest.raises(MadengineError, match=r"^Base image %s does not exist\. Build or copy the VM base image "
                                             r"\(qcow2\) there\.$" % (tmp_path / "none.qcow2")):
        vs.build_spec(_params(tmp_path, base_image=str(tmp_path / "none.qcow2")), run_command)
    raw = tmp_path / "raw.img"
    raw.write_bytes(b"\0" * 4096)
    with pytest.raises(MadengineError, match=r"^Base image %s: its format is raw, not qcow2\. Convert it with "
                                             r"qemu-img convert -O qcow2, or raise the VM disk size\.$" % raw):
        vs.build_spec(_params(tmp_path, base_image=str(raw)), run_command)
    big = make_base(tmp_path / "big.qcow2", "2G")
    with pytest.raises(MadengineError, match=r"^Base image .*big\.qcow2: its virtual size \(2 GiB\) exceeds the VM "
                                             r"disk size \(1 GiB\): the guest would see a truncated disk\. Convert"):
        vs.build_spec(_params(tmp_path, base_image=big, disk_size="1G"), run_command)
    assert vs.build_spec(_params(tmp_path, base_image=big), run_command)["disk_bytes"] == 2 << 30
    # the base image is the hypervisor's own: a host root does not move it
    host = fake_host(str(tmp_path / "host"))
    assert vs.build_spec(_params(tmp_path, base_image=big, host_root=host), run_command)["base_image"] == big


def test_base_image_not_readable_by_qemu_is_a_warning(tmp_path):
    private = make_base(tmp_path / "private.qcow2")
    os.chmod(private, 0o600)
    spec = vs.build_spec(_params(tmp_path, base_image=private), run_command)
    assert spec["warnings"] == ["Base image %s is not readable by the QEMU user (libvirt-qemu/qemu). chmod o+r the "
                                "image or chown it to the QEMU user." % private]


def test_passthrough_result_devices_come_first(tmp_path):
    """The registered result of gpu_passthrough is handed over as it is; hostdevs and mdevs add to it."""
    result = {"changed": True, "hostdevs": ["0000:83:00.0", "0000:83:00.1"],
              "mdevs": ["9f0a1b2c-3d4e-4f50-8a6b-7c8d9e0f1a2b"]}
    params = _params(tmp_path, passthrough=result, hostdevs=["93:00.0"], cpu_pinning="none",
                     mdevs=["1f0a1b2c-3d4e-4f50-8a6b-7c8d9e0f1a2b"])
    spec = vs.build_spec(params, run_command)
    assert [d["bdf"] for d in spec["hostdevs"]] == ["0000:83:00.0", "0000:83:00.1", "0000:93:00.0"]
    assert spec["xml_context"]["mdevs"] == ["9f0a1b2c-3d4e-4f50-8a6b-7c8d9e0f1a2b",
                                            "1f0a1b2c-3d4e-4f50-8a6b-7c8d9e0f1a2b"]
    skipped = {"changed": False, "skipped": True, "skip_reason": "Conditional result was False"}
    assert vs.requested_devices(_params(tmp_path, passthrough=skipped)) == ([], [])
    with pytest.raises(MadengineError, match=r"^hostdev 0000:83:00.0 is listed twice\.$"):
        vs.build_spec(_params(tmp_path, passthrough=result, hostdevs=["83:00.0"]), run_command)
    with pytest.raises(MadengineError, match=r"^passthrough.hostdevs must be a list \(the hostdevs of a "
                                             r"gpu_passthrough result\), not '0000:83:00.0'\.$"):
        vs.requested_devices(_params(tmp_path, passthrough={"hostdevs": "0000:83:00.0"}))
