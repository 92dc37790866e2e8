"""GPU detection (host/gpu.py) against a fake sysfs tree, a fake host root and fake vendor tools."""

from __future__ import annotations

import subprocess

import pytest
from fake_gpu_sysfs import (
    MI100_DEVICE,
    FakeGpuSysfs,
    fake_amd_smi,
    fake_nvidia_smi,
    fake_rocm,
    fake_rocm_smi,
    gfx_target_version,
    write_tool,
)

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError
from ansible_collections.rocm.madengine.plugins.module_utils.host.gpu import (
    detect,
    gfx_name,
    normalise_nvidia_name,
    parse_gpu_list,
    pci_address,
)
from ansible_collections.rocm.madengine.plugins.module_utils.host.hostfs import HostFs


def run_tool(argv):
    """What the module's run_command does for detection: run it, give (rc, stdout, stderr)."""
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def tools_in(bin_dir):
    """A find_tool that only sees ``bin_dir`` (the machine's own PATH must not leak into a test)."""
    import os

    def find(name, extra_dirs=()):
        for directory in list(extra_dirs) + [str(bin_dir)]:
            path = os.path.join(directory, name)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
        return None

    return find


@pytest.fixture
def bin_dir(tmp_path):
    path = tmp_path / "bin"
    path.mkdir()
    return path


def detect_in(fs, bin_dir, requested="auto", rocm_path=None, runner=None):
    """Detection on this machine's root with /sys at the fake tree (madengine_run's older sysfs_root)."""
    host = HostFs("/", sys_dir=fs.root)
    return detect(requested, host, rocm_path or "", runner or run_tool, find_tool=tools_in(bin_dir))


@pytest.mark.parametrize("gfx, version", [("gfx942", 90402), ("gfx90a", 90010), ("gfx908", 90008),
                                          ("gfx1100", 110000), ("gfx950", 90500)])
def test_gfx_names_round_trip_the_kernel_encoding(gfx, version):
    assert gfx_target_version(gfx) == version
    assert gfx_name(version) == gfx


def test_pci_address_from_kfd_location():
    assert pci_address(0, (0xC1 << 8) | (0 << 3) | 0) == "0000:c1:00.0"
    assert pci_address(1, (0x05 << 8) | (0x1F << 3) | 7) == "0001:05:1f.7"


def test_amd_from_sysfs_alone(tmp_path, bin_dir):
    fs = FakeGpuSysfs(tmp_path / "sys")
    fs.add_amd_gpu("gfx942", render_minor=128, bdf="0000:c1:00.0", product="AMD Instinct MI300X")
    fs.add_amd_gpu("gfx942", render_minor=136, bdf="0000:d1:00.0", product="AMD Instinct MI300X")
    fs.set_driver_version("amdgpu", "6.8.5")
    rocm = fake_rocm(tmp_path / "rocm", "6.4.1-120")
    gpu = detect_in(fs, bin_dir, rocm_path=rocm)
    assert gpu.vendor == "AMD" and gpu.count == 2 and gpu.arch == "gfx942"
    assert [(g.index, g.render_minor, g.pci_bdf, g.node_id) for g in gpu.gpus] == [
        (0, 128, "0000:c1:00.0", 1), (1, 136, "0000:d1:00.0", 2)]
    assert gpu.product == "AMD Instinct MI300X"
    assert (gpu.driver_version, gpu.rocm_version, gpu.hip_version) == ("6.8.5", "6.4.1", "6.4")


def test_amd_cpu_nodes_and_zero_simd_nodes_are_not_gpus(tmp_path, bin_dir):
    fs = FakeGpuSysfs(tmp_path / "sys")
    fs.add_cpu_node()
    fs.add_cpu_node()
    fs.add_amd_gpu("gfx90a", simd_count=0)  # a node without SIMDs is not a GPU
    gpu = detect_in(fs, bin_dir)
    assert gpu.vendor == "NONE" and gpu.count == 0


def test_amd_smi_gives_product_and_driver(tmp_path, bin_dir):
    fs = FakeGpuSysfs(tmp_path / "sys").add_amd_gpu("gfx942", product=None).add_amd_gpu("gfx942", product=None)
    fake_amd_smi(bin_dir, ["AMD Instinct MI300X OAM", "AMD Instinct MI300X OAM"], driver="6.10.5", rocm="6.4.2")
    gpu = detect_in(fs, bin_dir)
    assert [g.product for g in gpu.gpus] == ["AMD Instinct MI300X OAM"] * 2
    assert gpu.driver_version == "6.10.5"
    assert gpu.rocm_version == "6.4.2"  # no <rocm>/.info/version: amd-smi version


def test_rocm_smi_when_amd_smi_is_absent(tmp_path, bin_dir):
    fs = FakeGpuSysfs(tmp_path / "sys").add_amd_gpu("gfx908", product=None, device=MI100_DEVICE)
    fake_rocm_smi(bin_dir, ["AMD Instinct MI100"], driver="6.3.6")
    gpu = detect_in(fs, bin_dir)
    assert (gpu.arch, gpu.product, gpu.driver_version) == ("gfx908", "AMD Instinct MI100", "6.3.6")


def test_a_failing_tool_falls_back_to_sysfs_with_a_note(tmp_path, bin_dir):
    fs = FakeGpuSysfs(tmp_path / "sys").add_amd_gpu("gfx942", product="MI300X from sysfs")
    fs.set_driver_version("amdgpu", "6.8.5")
    write_tool(bin_dir, "amd-smi", "echo 'amdgpu not loaded' >&2; exit 1\n")
    gpu = detect_in(fs, bin_dir)
    assert gpu.product == "MI300X from sysfs" and gpu.driver_version == "6.8.5"
    assert gpu.notes and "gave no JSON" in gpu.notes[0]


def test_nvidia_from_nvidia_smi(tmp_path, bin_dir):
    fs = FakeGpuSysfs(tmp_path / "sys").add_nvidia_gpu("0000:18:00.0").add_nvidia_gpu("0000:2a:00.0")
    fake_nvidia_smi(bin_dir, [("NVIDIA H100 80GB HBM3", "00000000:18:00.0"), ("NVIDIA H100 80GB HBM3",
                                                                              "00000000:2A:00.0")])
    gpu = detect_in(fs, bin_dir)
    assert gpu.vendor == "NVIDIA" and gpu.count == 2
    assert gpu.arch == "NVIDIA H100 80GB HBM3" and gpu.gpus[0].arch == "H100"
    assert [g.pci_bdf for g in gpu.gpus] == ["0000:18:00.0", "0000:2a:00.0"]
    assert (gpu.driver_version, gpu.cuda_version) == ("550.54.15", "12.4")


def test_nvidia_counted_from_pci_without_nvidia_smi(tmp_path, bin_dir):
    fs = FakeGpuSysfs(tmp_path / "sys").add_nvidia_gpu().set_driver_version("nvidia", "550.54.15")
    fs.add_pci_device("0000:03:00.0", "0x10de", "0x1aeb", "0x0c0330")  # the GPU's USB controller: not a GPU
    gpu = detect_in(fs, bin_dir)
    assert gpu.vendor == "NVIDIA" and gpu.count == 1 and gpu.product == ""
    assert gpu.driver_version == "550.54.15"
    assert "nvidia-smi is not installed" in gpu.notes[0]


def test_no_gpu_is_cpu_mode(tmp_path, bin_dir):
    fs = FakeGpuSysfs(tmp_path / "sys")
    fs.add_pci_device("0000:00:02.0", "0x8086", "0x0046", "0x030000")  # an Intel display: not ours
    gpu = detect_in(fs, bin_dir)
    assert gpu.vendor == "NONE" and gpu.gpus == [] and gpu.arch == ""


def test_none_ignores_the_gpus(tmp_path, bin_dir):
    fs = FakeGpuSysfs(tmp_path / "sys").add_amd_gpu()
    assert detect_in(fs, bin_dir, "NONE").vendor == "NONE"


def test_forced_vendor_without_such_gpus(tmp_path, bin_dir):
    fs = FakeGpuSysfs(tmp_path / "sys").add_nvidia_gpu()
    with pytest.raises(MadengineError) as amd:
        detect_in(fs, bin_dir, "AMD")
    assert str(amd.value) == ("gpu_vendor is AMD, but this node has no AMD GPU: %s/devices/virtual/kfd/kfd/topology/"
                              "nodes lists no GPU node." % fs.root)
    fs2 = FakeGpuSysfs(tmp_path / "sys2").add_amd_gpu()
    with pytest.raises(MadengineError) as nvidia:
        detect_in(fs2, bin_dir, "NVIDIA")
    assert str(nvidia.value) == ("gpu_vendor is NVIDIA, but this node has no NVIDIA GPU: nvidia-smi is not installed "
                                 "and %s/bus/pci/devices has no NVIDIA (0x10de) display device." % fs2.root)


def test_forced_vendor_picks_it_on_a_mixed_node_and_auto_refuses(tmp_path, bin_dir):
    fs = FakeGpuSysfs(tmp_path / "sys").add_amd_gpu().add_nvidia_gpu()
    assert detect_in(fs, bin_dir, "AMD").vendor == "AMD"
    assert detect_in(fs, bin_dir, "NVIDIA").vendor == "NVIDIA"
    message = r"^This node has 1 AMD and 1 NVIDIA GPUs; set gpu_vendor to AMD or NVIDIA\.$"
    with pytest.raises(MadengineError, match=message):
        detect_in(fs, bin_dir)


def test_a_whole_host_root_sys_rocm_and_tools(tmp_path):
    """host_root: /sys, /opt/rocm and the vendor tools are the node's, with no find_tool given."""
    root = tmp_path / "node"
    fs = FakeGpuSysfs(root / "sys").add_amd_gpu("gfx942", product=None).add_amd_gpu("gfx942", product=None)
    fake_rocm(root / "opt" / "rocm", "6.4.3-1")
    fake_amd_smi(root / "opt" / "rocm" / "bin", ["AMD Instinct MI300X"] * 2, driver="6.12.1")
    gpu = detect("auto", HostFs(str(root)), "/opt/rocm", run_tool)
    assert (gpu.vendor, gpu.count, gpu.product, gpu.driver_version, gpu.rocm_version) == (
        "AMD", 2, "AMD Instinct MI300X", "6.12.1", "6.4.3")
    assert gpu.sysfs_root == fs.root
    fake_nvidia_smi(root / "usr" / "bin", [("NVIDIA H100 80GB HBM3", "00000000:18:00.0")])
    fs.add_nvidia_gpu("0000:18:00.0")
    nvidia = detect("NVIDIA", HostFs(str(root)), "/opt/rocm", run_tool)
    assert (nvidia.vendor, nvidia.product, nvidia.cuda_version) == ("NVIDIA", "NVIDIA H100 80GB HBM3", "12.4")


def test_any_is_the_old_name_of_auto(tmp_path, bin_dir):
    fs = FakeGpuSysfs(tmp_path / "sys").add_amd_gpu()
    assert detect_in(fs, bin_dir, "any").vendor == detect_in(fs, bin_dir, "Auto").vendor == "AMD"


def test_unknown_vendor_is_refused(tmp_path, bin_dir):
    with pytest.raises(MadengineError, match=r"^gpu_vendor 'INTEL' is not one of auto, AMD, NVIDIA, NONE\.$"):
        detect_in(FakeGpuSysfs(tmp_path / "sys"), bin_dir, "INTEL")


def test_injected_runner_sees_the_commands(tmp_path, bin_dir):
    fs = FakeGpuSysfs(tmp_path / "sys").add_amd_gpu(product=None)
    write_tool(bin_dir, "amd-smi", "exit 0\n")
    calls = []

    def runner(argv):
        calls.append(argv[1:])
        if argv[1] == "static":
            return 0, '{"gpu": 0, "asic": {"market_name": "Injected MI"}, "driver": {"version": "9.9"}}', ""
        return 1, "", "no"

    gpu = detect_in(fs, bin_dir, runner=runner)
    assert calls == [["static", "--asic", "--driver", "--json"], ["version", "--json"]]
    assert (gpu.product, gpu.driver_version, gpu.rocm_version) == ("Injected MI", "9.9", "")


@pytest.mark.parametrize("name, short", [("NVIDIA A100-SXM4-40GB", "A100"), ("NVIDIA H100 80GB HBM3", "H100"),
                                         ("Tesla V100-PCIE-16GB", "V100"), ("", "")])
def test_nvidia_short_names(name, short):
    assert normalise_nvidia_name(name) == short


@pytest.mark.parametrize("text, indices", [("0-3", [0, 1, 2, 3]), ("0,2,4-5", [0, 2, 4, 5]), (" 6, 0-1 ", [0, 1, 6]),
                                           ("3,3,2", [2, 3])])
def test_gpu_lists(text, indices):
    assert parse_gpu_list(text) == indices


@pytest.mark.parametrize("text, message", [
    ("all", r"^docker_gpus 'all' is not a list of GPU indices and ranges such as '0-3,6' \(at 'all'\)\.$"),
    ("3-1", r"^docker_gpus '3-1' has a descending range '3-1'\.$"),
    (",", r"^docker_gpus ',' names no GPU\.$"),
])
def test_bad_gpu_lists(text, message):
    with pytest.raises(MadengineError, match=message):
        parse_gpu_list(text)
