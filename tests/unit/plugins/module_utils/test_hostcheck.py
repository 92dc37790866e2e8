"""The twenty host checks against fake host roots (proc, sys, dev, etc) and scripted commands: each check by
name, the checks it needs, and the VM sizes in bytes."""

from __future__ import annotations

import json
import os

import pytest
from fake_sysfs import FakeKernel

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError
from ansible_collections.rocm.madengine.plugins.module_utils.host.checks import (
    CHECKS,
    HostChecks,
    check_names,
    summarize,
)
from ansible_collections.rocm.madengine.plugins.module_utils.host.hostfs import HostFs

GIB = 1 << 30
MIB = 1 << 20

GPU = "0000:83:00.0"
DOMCAPS = """<domainCapabilities>
  <os supported='yes'><enum name='firmware'><value>efi</value></enum></os>
  <cpu><mode name='host-passthrough' supported='yes'/></cpu>
  <devices><hostdev mode='subsystem' supported='yes'>
    <enum name='pciBackend'>%s</enum></hostdev></devices>
</domainCapabilities>"""


class FakeHost(object):
    """A host root that passes every check; tests break one thing at a time."""

    def __init__(self, root):
        self.root = str(root)
        self.kernel = FakeKernel(self.root)
        k = self.kernel
        k.add_driver("vfio-pci")
        k.add_device(GPU, cls="0x120000", driver="amdgpu", group=40, matches=["amdgpu", "gim"],
                     sriov={"totalvfs": 8, "offset": 2, "stride": 1})
        k.add_device("0000:83:00.1", cls="0x040300", vendor="0x1002", driver="snd_hda_intel", group=40)
        self.files = {
            "proc/cpuinfo": "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu vmx sse\n"
                            "address sizes\t: 46 bits physical, 57 bits virtual\n",
            "proc/cmdline": "BOOT_IMAGE=/vmlinuz root=/dev/sda1 intel_iommu=on iommu=pt\n",
            "proc/meminfo": "MemTotal:       65536000 kB\nMemAvailable:   60000000 kB\n",
            "sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts": "N\n",
            "sys/class/iommu/dmar0/intel-iommu/ecap": "f020de\n",
            "usr/share/qemu/firmware/60-edk2-x86_64.json": "{}\n",
            "var/lib/libvirt/images/base.qcow2": "qcow2",
        }
        for path, text in self.files.items():
            self.write(path, text)
        for module in ("kvm", "kvm_intel"):
            os.makedirs(self.p("sys/module", module), exist_ok=True)
        os.symlink("/dev/null", self.p("dev/kvm"))
        os.chmod(self.p("var/lib/libvirt/images/base.qcow2"), 0o644)
        self.tools = {"virsh", "qemu-img", "qemu-system-x86_64", "genisoimage", "dnsmasq"}
        self.commands = {
            "virsh version": (0, "Compiled against library: libvirt 9.0.0\nRunning hypervisor: QEMU 7.2.0\n", ""),
            "virsh domcapabilities": (0, DOMCAPS % "<value>default</value><value>vfio</value>", ""),
            "virsh net-info": (0, "Name:           default\nActive:         yes\n", ""),
            "qemu-img info": (0, json.dumps({"format": "qcow2", "virtual-size": 1 << 29}), ""),
            "dmesg": (0, "DMAR-IR: Enabled IRQ remapping in x2apic mode\n", ""),
            "modinfo gim": (0, "filename: gim.ko\n", ""),
        }
        self.ran = []

    def p(self, *parts):
        return os.path.join(self.root, *parts)

    def write(self, path, text):
        os.makedirs(os.path.dirname(self.p(path)), exist_ok=True)
        with open(self.p(path), "w") as handle:
            handle.write(text)

    def run(self, argv, timeout):
        self.ran.append(list(argv))
        if argv[0] == "virsh":
            key = "virsh " + argv[3]            # virsh -c URI <command> ...
        else:
            key = " ".join(argv[:2])
        return self.commands.get(key, (127, "", "%s: command not found" % argv[0]))

    def which(self, name):
        return "/usr/bin/" + name if name in self.tools else None

    def check(self, names=None, **options):
        """Run the checks as iommu_kvm_info does: the VM's paths are read under the host root."""
        host = HostFs(self.root)
        base = options.pop("base_image", "/var/lib/libvirt/images/base.qcow2")
        options["base_image"] = host.path(base) if base else None
        options["image_dir"] = host.path(options.get("image_dir", "/var/lib/libvirt/images"))
        options.setdefault("disk_size", GIB)
        hc = HostChecks(host, run=self.run, which=self.which, **options)
        checks = hc.run(names)
        return {c["name"]: c for c in checks}, checks


@pytest.fixture
def host(tmp_path):
    return FakeHost(tmp_path / "host")


def test_a_good_host_passes(host):
    by_name, checks = host.check()
    assert [c["id"] for c in checks] == list(range(1, 21))
    assert {n: c["status"] for n, c in by_name.items() if c["status"] != "pass"} == {
        "sriov_ready": "skip", "vgpu_ready": "skip"}
    failures, advisories, report = summarize(checks)
    assert failures == [] and advisories == []
    assert report[0] == "PASS [1] cpu_virtualization: CPU flag vmx present (GenuineIntel)."
    assert ["virsh", "-c", "qemu:///system", "domcapabilities", "--virttype", "kvm", "--machine", "q35"] in host.ran
    assert [c["name"] for c in checks] == check_names() == [
        "cpu_virtualization", "kvm_usable", "iommu_enabled", "iommu_cmdline", "interrupt_remapping", "vfio_available",
        "libvirt_reachable", "hypervisor_features", "vm_tools", "base_image", "memory_available", "disk_space",
        "libvirt_network", "iommu_groups_viable", "gpus_usable", "sriov_ready", "vgpu_ready", "bar_address_space",
        "host_driver_ownership", "lsm_image_labels"]


def _fails(host, name, **options):
    by_name, _checks = host.check(**options)
    return by_name[name]


def test_no_vmx_or_svm(host):
    host.write("proc/cpuinfo", "vendor_id\t: GenuineIntel\nflags\t\t: fpu sse hypervisor\n")
    c = _fails(host, "cpu_virtualization")
    assert c["status"] == "fail" and c["detail"].startswith("/proc/cpuinfo has neither the vmx (Intel VT-x) nor the "
                                                            "svm (AMD-V) flag")
    assert "Enable Intel VT-x or AMD-V" in c["fix"] and c["reboot"] is False


def test_kvm_without_a_vendor_module(host):
    os.rmdir(host.p("sys/module/kvm_intel"))
    os.makedirs(host.p("sys/module/kvm_pvm"))
    c = _fails(host, "kvm_usable")
    assert c["detail"] == "KVM is not usable: neither kvm_intel nor kvm_amd is loaded (loaded: kvm, kvm_pvm)."


def test_kvm_node_must_be_a_character_device(host):
    os.unlink(host.p("dev/kvm"))
    host.write("dev/kvm", "")
    assert "/dev/kvm is not a character device" in _fails(host, "kvm_usable")["detail"]
    os.unlink(host.p("dev/kvm"))
    assert "/dev/kvm does not exist" in _fails(host, "kvm_usable")["detail"]


def test_no_iommu(host):
    import shutil

    shutil.rmtree(host.p("sys/class/iommu"))
    shutil.rmtree(host.p("sys/kernel/iommu_groups"))
    for bdf in (GPU, "0000:83:00.1"):
        os.unlink(os.path.join(host.kernel.devdir(bdf), "iommu_group"))
    by_name, _checks = host.check()
    c = by_name["iommu_enabled"]
    assert c["status"] == "fail" and c["reboot"] is True
    assert c["detail"] == "No active IOMMU: /sys/class/iommu and /sys/kernel/iommu_groups are empty."
    assert by_name["interrupt_remapping"]["status"] == "skip"
    assert by_name["iommu_groups_viable"]["detail"] == ("IOMMU groups not viable for VFIO: 0000:83:00.0 has no IOMMU "
                                                        "group.")


@pytest.mark.parametrize("cmdline, status, detail", [
    ("root=/dev/sda1 intel_iommu=off", "fail", "The kernel command line disables the IOMMU: intel_iommu=off."),
    ("root=/dev/sda1 iommu=off iommu=pt", "fail", "The kernel command line disables the IOMMU: iommu=off."),
    ("root=/dev/sda1 intel_iommu=on", "warn", "iommu=pt is not set: host DMA goes through IOMMU translation (slower)."),
    ("root=/dev/sda1 intel_iommu=on iommu.passthrough=1", "pass",
     "The kernel command line enables the IOMMU (intel_iommu=on)."),
])
def test_iommu_cmdline(host, cmdline, status, detail):
    host.write("proc/cmdline", cmdline + "\n")
    c = _fails(host, "iommu_cmdline")
    assert (c["status"], c["detail"]) == (status, detail)


def test_intel_without_intel_iommu_on_when_iommu_is_off(host):
    import shutil

    shutil.rmtree(host.p("sys/class/iommu"))
    host.write("proc/cmdline", "root=/dev/sda1 iommu=pt\n")
    c = _fails(host, "iommu_cmdline")
    assert c["detail"] == "Intel CPU and intel_iommu=on is not on the kernel command line." and c["reboot"]


def test_interrupt_remapping(host):
    host.write("sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts", "Y\n")
    assert _fails(host, "interrupt_remapping")["status"] == "fail"
    host.write("sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts", "N\n")
    host.write("sys/class/iommu/dmar0/intel-iommu/ecap", "f020d0\n")          # IR bit clear
    assert _fails(host, "interrupt_remapping")["detail"] == "The kernel log says interrupt remapping is enabled."
    host.commands["dmesg"] = (0, "DMAR: IOMMU enabled\n", "")
    assert _fails(host, "interrupt_remapping")["status"] == "warn"
    host.commands["dmesg"] = (1, "", "dmesg: read kernel buffer failed: Operation not permitted")
    assert _fails(host, "interrupt_remapping")["detail"] == ("Cannot confirm interrupt remapping (dmesg is not "
                                                             "readable).")


def test_vfio_missing_loadable_or_absent(host):
    import shutil

    shutil.rmtree(host.p("sys/bus/pci/drivers/vfio-pci"))
    shutil.rmtree(host.p("sys/module/vfio_pci"))
    c = _fails(host, "vfio_available")
    assert c["status"] == "fail" and c["detail"] == ("vfio-pci is not available for kernel 6.8.0-fake (not loaded, "
                                                     "not built in, no module file).")
    host.write("lib/modules/6.8.0-fake/kernel/drivers/vfio/pci/vfio-pci.ko.zst", "")
    assert _fails(host, "vfio_available")["status"] == "warn"


def test_libvirt_missing_skips_what_needs_it(host):
    host.tools.discard("virsh")
    by_name, _checks = host.check()
    assert by_name["libvirt_reachable"]["status"] == "fail"
    assert by_name["libvirt_reachable"]["detail"] == "virsh is not installed, so libvirt cannot be reached."
    assert by_name["hypervisor_features"]["status"] == by_name["libvirt_network"]["status"] == "skip"
    assert "virsh" in by_name["vm_tools"]["detail"]


def test_libvirt_not_answering(host):
    host.commands["virsh version"] = (1, "", "error: failed to connect to the hypervisor\nerror: no socket\n")
    c = _fails(host, "libvirt_reachable")
    assert c["detail"] == "libvirt does not answer on qemu:///system: error: no socket"


def test_hypervisor_without_vfio_backend(host):
    host.commands["virsh domcapabilities"] = (0, DOMCAPS % "", "")
    c = _fails(host, "hypervisor_features")
    assert c["detail"] == "libvirt's KVM q35 guests lack the vfio PCI backend (pciBackend is empty)."


def test_tools_and_ovmf(host):
    host.tools -= {"genisoimage", "qemu-img"}
    os.unlink(host.p("usr/share/qemu/firmware/60-edk2-x86_64.json"))
    c = _fails(host, "vm_tools")
    assert c["detail"] == ("Missing: qemu-img, an ISO tool (genisoimage, cloud-localds or xorriso), OVMF firmware "
                           "descriptors (/usr/share/qemu/firmware/*.json).")


@pytest.mark.parametrize("info, options, detail", [
    ({"format": "raw", "virtual-size": 1 << 30}, {}, "its format is raw, not qcow2"),
    ({"format": "qcow2", "virtual-size": 50 << 30}, {"disk_size": 20 * GIB},
     "its virtual size (50 GiB) exceeds the VM disk size (20 GiB): the guest would see a truncated disk"),
])
def test_base_image_problems(host, info, options, detail):
    host.commands["qemu-img info"] = (0, json.dumps(info), "")
    c = _fails(host, "base_image", **options)
    assert c["status"] == "fail" and detail in c["detail"]


def test_base_image_missing_or_unreadable(host):
    assert _fails(host, "base_image", base_image="/nope.qcow2")["detail"] == "Base image /nope.qcow2 does not exist."
    os.chmod(host.p("var/lib/libvirt/images/base.qcow2"), 0o600)
    c = _fails(host, "base_image")
    assert c["status"] == "warn" and "not readable by the QEMU user (libvirt-qemu/qemu)" in c["detail"]
    assert _fails(host, "base_image", base_image=None)["status"] == "skip"


def test_memory_and_hugepages(host):
    c = _fails(host, "memory_available", memory=100000 * MIB)
    assert c["detail"] == "58593 MiB available, the VM needs 100000 MiB (VFIO pins all guest memory)."
    host.write("sys/kernel/mm/hugepages/hugepages-1048576kB/free_hugepages", "2\n")
    c = _fails(host, "memory_available", memory=4 * GIB, hugepages=True)
    assert c["detail"] == "2 free 1 GiB huge pages, the VM needs 4." and c["reboot"]


def test_disk_space(host):
    c = _fails(host, "disk_space", disk_size=1 << 60)
    assert c["status"] == "fail" and "the VM disk can grow to 1073741824 GiB" in c["detail"]


def test_default_network(host):
    host.commands["virsh net-info"] = (0, "Name: default\nActive: no\n", "")
    host.tools.discard("dnsmasq")
    c = _fails(host, "libvirt_network")
    assert c["detail"] == ("The 'default' network is not active; dnsmasq is not installed (the network's DHCP leases "
                           "find the VM's address).")


def test_group_viability(host):
    host.kernel.add_device("0000:84:00.0", vendor="0x8086", cls="0x020000", driver="ixgbe", group=40)
    c = _fails(host, "iommu_groups_viable")
    assert c["detail"] == "IOMMU groups not viable for VFIO: group 40 of 0000:83:00.0 also holds 0000:84:00.0 (ixgbe)."
    c = _fails(host, "iommu_groups_viable", include_functions=False)
    assert "0000:83:00.1 (snd_hda_intel)" in c["detail"]
    assert _fails(host, "iommu_groups_viable", mode="sriov")["status"] == "skip"


def test_gpu_checks(host):
    assert _fails(host, "gpus_usable", gpu_ids=["zz"])["detail"] == (
        "'zz' is not a PCI address: expected DDDD:BB:DD.F (0000:83:00.0) or BB:DD.F (83:00.0).")
    assert _fails(host, "gpus_usable", gpu_vendor="NVIDIA")["detail"] == (
        "No GPU found: no NVIDIA PCI function with class 0x03xxxx or 0x12xxxx.")
    os.unlink(os.path.join(host.kernel.devdir(GPU), "reset"))
    os.unlink(os.path.join(host.kernel.devdir(GPU), "reset_method"))
    assert _fails(host, "gpus_usable")["status"] == "warn"
    host.kernel.add_device("0000:05:00.0", vendor="0xffff", cls="0x030000", group=5)
    c = _fails(host, "gpus_usable", gpu_ids=["05:00.0"])
    assert c["detail"] == "0000:05:00.0 reads vendor 0xffff: fallen off the bus." and c["reboot"]


def test_sriov_readiness_and_amdgpu_ownership(host):
    by_name, _checks = host.check(mode="sriov")
    assert by_name["sriov_ready"]["status"] == "pass"
    assert by_name["host_driver_ownership"]["detail"] == "amdgpu owns 0000:83:00.0; GIM must own the PFs."
    host.write("etc/modprobe.d/gim.conf", "blacklist amdgpu\n")
    host.commands["modinfo gim"] = (1, "", "modinfo: ERROR: Module gim not found.")
    by_name, _checks = host.check(mode="sriov")
    assert by_name["host_driver_ownership"]["detail"].endswith(
        "(amdgpu is blacklisted in modprobe.d: reboot to apply).")
    assert by_name["sriov_ready"]["detail"] == (
        "SR-IOV is not ready: the AMD GIM driver (gim) is not installed for 0000:83:00.0.")


def test_vgpu_readiness(host):
    host.kernel.add_mdev_type(GPU, "amd-1", "one", available=0)
    assert _fails(host, "vgpu_ready", mode="vgpu")["detail"] == (
        "vGPU is not ready: 0000:83:00.0 has no free mdev instance.")
    host.kernel.add_mdev_type(GPU, "amd-2", "two", available=1)
    assert _fails(host, "vgpu_ready", mode="vgpu")["detail"] == "mdev types with free instances: 0000:83:00.0: amd-2."


def test_large_bar(host):
    host.write("proc/cpuinfo", "vendor_id\t: GenuineIntel\nflags\t\t: vmx\naddress sizes\t: 38 bits physical\n")
    c = _fails(host, "bar_address_space")
    assert c["status"] == "warn" and c["detail"] == ("GPU BARs (256 GiB) plus RAM (62 GiB) exceed the 38-bit physical "
                                                     "address space.")


def test_lsm(host):
    host.write("sys/module/apparmor/parameters/enabled", "Y\n")
    assert _fails(host, "lsm_image_labels")["status"] == "pass"
    c = _fails(host, "lsm_image_labels", image_dir="/srv/images")
    assert c["detail"] == "AppArmor is enforcing and the images are in /srv/images, outside /var/lib/libvirt/images."


# ---- checks by name, and what they need ------------------------------------------------------------


def test_only_the_named_checks_run_with_what_they_need(host):
    _by_name, checks = host.check(["hypervisor_features", "base_image"])
    assert [(c["id"], c["name"]) for c in checks] == [
        (7, "libvirt_reachable"), (8, "hypervisor_features"), (10, "base_image")]
    ran = [argv[3] if argv[0] == "virsh" else argv[0] for argv in host.ran]
    assert ran == ["version", "domcapabilities", "qemu-img"]
    _by_name, checks = host.check(["sriov_ready"], mode="sriov")
    assert [c["name"] for c in checks] == ["gpus_usable", "sriov_ready"]
    _by_name, checks = host.check(["iommu_cmdline", "interrupt_remapping"])
    assert [c["name"] for c in checks] == ["iommu_enabled", "iommu_cmdline", "interrupt_remapping"]


def test_every_needed_check_exists_and_every_check_has_a_distinct_name():
    assert len(set(check_names())) == len(CHECKS) == 20
    assert [c.number for c in CHECKS] == list(range(1, 21))
    for entry in CHECKS:
        assert set(entry.needs) <= set(check_names()), entry.name


def test_an_unknown_check_name_is_named(host):
    with pytest.raises(MadengineError, match=r"^Unknown host check\(s\) iommu, memory; the checks are: "
                                             r"cpu_virtualization, kvm_usable, iommu_enabled, "):
        host.check(["iommu", "memory", "kvm_usable"])


def test_a_failing_dependency_is_reported_with_the_check_that_needs_it(host):
    host.commands["virsh version"] = (1, "", "error: no socket\n")
    _by_name, checks = host.check(["libvirt_network"])
    assert [c["status"] for c in checks] == ["fail", "skip"]
    failures, _advisories, report = summarize(checks)
    assert failures == ["[7] libvirt_reachable: libvirt does not answer on qemu:///system: error: no socket Fix: "
                        "Start libvirtd (or virtqemud) and check that this user may use qemu:///system."]
    assert report[1] == "SKIP [13] libvirt_network: Needs libvirt (check 7)."


@pytest.mark.parametrize("network_type, network, detail", [
    ("user", "default", "The VM uses QEMU user-mode networking, not a libvirt network."),
    ("bridge", "br0", "The VM uses the host bridge br0, not a libvirt network."),
])
def test_the_network_check_follows_the_vm_network(host, network_type, network, detail):
    host.commands["virsh net-info"] = (1, "", "error: network not found")
    c = _fails(host, "libvirt_network", network_type=network_type, network=network)
    assert (c["status"], c["detail"]) == ("skip", detail)
    c = _fails(host, "libvirt_network", network="bench")
    assert c["status"] == "fail" and c["detail"].startswith("Libvirt has no 'bench' network (error: network not found)")
    assert c["fix"] == "Install dnsmasq and run: virsh net-start bench; virsh net-autostart bench."


def test_huge_pages_of_another_size(host):
    host.write("sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "1000\n")
    c = _fails(host, "memory_available", memory=4 * GIB, hugepages=True, hugepage_size=2 * MIB)
    assert c["detail"] == "1000 free 2 MiB huge pages, the VM needs 2048."
    assert c["fix"] == "Reserve them at boot (default_hugepagesz=2M hugepagesz=2M hugepages=N)."
    assert _fails(host, "memory_available", memory=1 * GIB, hugepages=True, hugepage_size=2 * MIB)["status"] == "pass"
    c = _fails(host, "memory_available", memory=1 * GIB, hugepages=True)
    assert c["detail"] == ("Huge pages of 1 GiB are not available on this host "
                           "(/sys/kernel/mm/hugepages/hugepages-1048576kB/free_hugepages is missing).")


def test_what_apply_mode_should_configure(host):
    hc = HostChecks(HostFs(host.root), run=host.run, which=host.which, mode="sriov")
    assert hc.kernel_args() == ["intel_iommu=on", "iommu=pt"] and hc.blacklist() == ["amdgpu"]
    host.write("proc/cpuinfo", "vendor_id\t: AuthenticAMD\nflags\t\t: svm\n")
    hc = HostChecks(HostFs(host.root), run=host.run, which=host.which, mode="vfio")
    assert hc.kernel_args() == ["iommu=pt"] and hc.blacklist() == []


def test_a_vm_without_passthrough_needs_six_checks(host):
    host.tools.discard("qemu-system-x86_64")
    _by_name, checks = host.check(mode="none")
    assert [(c["id"], c["name"], c["status"]) for c in checks] == [
        (7, "libvirt_reachable", "pass"), (9, "vm_tools", "fail"), (10, "base_image", "pass"),
        (11, "memory_available", "pass"), (12, "disk_space", "pass"), (13, "libvirt_network", "pass")]
    by_name, _checks = host.check(["iommu_groups_viable"], mode="none")
    assert by_name["iommu_groups_viable"]["detail"] == "No GPU is passed through (mode none)."
