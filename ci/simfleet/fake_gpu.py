"""Fake GPUs at the edge: the sysfs tree GPUs are seen through, device nodes and vendor tools.

Used by the unit tests (through tests/unit/fake_gpu_sysfs.py) and by ci/simulated-fleet.sh, which gives
every simulated node a host root of its own (:func:`write_host_root`).

The tree has the kernel's layout and file formats:

* ``devices/virtual/kfd/kfd/topology/nodes/<n>/properties`` (``name value`` lines), ``gpu_id`` and ``name``
  for every KFD node: node 0 is the CPU (``simd_count 0``), GPUs follow;
* ``bus/pci/devices/<bdf>/{vendor,device,class}`` (``0x1002``-style values) and, for amdgpu, ``product_name``;
* ``module/amdgpu/version`` / ``module/nvidia/version`` when a driver version is given.

Fake ``amd-smi``, ``rocm-smi`` and ``nvidia-smi`` are shell scripts printing canned output.  Device
nodes (``kfd``, ``dri/renderD<minor>``, ``nvidia<n>``, ``nvidiactl``) are character devices with
``/dev/null``'s numbers, so a container given them starts and can open them.

A host root (``write_host_root``) holds ``sys/`` (the tree), ``dev/`` (the device nodes), ``usr/bin/``
and ``opt/rocm/`` (the tools, the ROCm version file) of one node kind.
"""

from __future__ import annotations

import json
import os
import stat

MI300X_DEVICE = "0x74a1"
MI100_DEVICE = "0x738c"
MI250_DEVICE = "0x740c"
H100_DEVICE = "0x2330"


def _write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)
    os.chmod(path, mode)
    return path


def gfx_target_version(gfx):
    """``gfx942`` -> 90402, ``gfx90a`` -> 90010, ``gfx1100`` -> 110000 (the kernel's encoding)."""
    digits = gfx[3:]
    major, minor, stepping = int(digits[:-2]), int(digits[-2], 16), int(digits[-1], 16)
    return major * 10000 + minor * 100 + stepping


def location_id(bdf):
    _domain, bus, devfn = bdf.split(":")
    device, function = devfn.split(".")
    return (int(bus, 16) << 8) | (int(device, 16) << 3) | int(function, 16)


class FakeGpuSysfs(object):
    def __init__(self, root):
        self.root = str(root)
        self.nodes = 0
        self.gpus = []
        os.makedirs(os.path.join(self.root, "bus", "pci", "devices"), exist_ok=True)

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def _node(self, properties, gpu_id, name):
        node = self.path("devices", "virtual", "kfd", "kfd", "topology", "nodes", str(self.nodes))
        _write(os.path.join(node, "properties"), "".join("%s %d\n" % item for item in properties))
        _write(os.path.join(node, "gpu_id"), "%d\n" % gpu_id)
        _write(os.path.join(node, "name"), name + "\n")
        self.nodes += 1
        return node

    def add_cpu_node(self, cores=64):
        return self._node([("cpu_cores_count", cores), ("simd_count", 0), ("mem_banks_count", 1),
                           ("gfx_target_version", 0), ("vendor_id", 0), ("device_id", 0), ("location_id", 0),
                           ("domain", 0), ("drm_render_minor", 0)], 0, "")

    def add_pci_device(self, bdf, vendor, device, pci_class, product=None):
        base = self.path("bus", "pci", "devices", bdf)
        _write(os.path.join(base, "vendor"), vendor + "\n")
        _write(os.path.join(base, "device"), device + "\n")
        _write(os.path.join(base, "class"), pci_class + "\n")
        if product is not None:
            _write(os.path.join(base, "product_name"), product + "\n")
        return base

    def add_amd_gpu(self, gfx="gfx942", render_minor=None, bdf=None, product="AMD Instinct MI300X",
                    device=MI300X_DEVICE, simd_count=1216, num_xcc=8):
        """One AMD GPU: a KFD node (after a CPU node, added first when missing) and its PCI device."""
        if self.nodes == 0:
            self.add_cpu_node()
        index = len(self.gpus)
        render_minor = 128 + index * 8 if render_minor is None else render_minor
        bdf = bdf or "0000:%02x:00.0" % (0x11 + index * 0x10)
        domain = int(bdf.split(":")[0], 16)
        self._node([("cpu_cores_count", 0), ("simd_count", simd_count), ("mem_banks_count", 1),
                    ("gfx_target_version", gfx_target_version(gfx)), ("vendor_id", 4098),
                    ("device_id", int(device, 16)), ("location_id", location_id(bdf)), ("domain", domain),
                    ("drm_render_minor", render_minor), ("num_xcc", num_xcc)], 40000 + index, "ip discovery")
        self.add_pci_device(bdf, "0x1002", device, "0x038000", product)
        self.gpus.append({"gfx": gfx, "render_minor": render_minor, "bdf": bdf, "product": product})
        return self

    def add_nvidia_gpu(self, bdf=None, device=H100_DEVICE):
        bdf = bdf or "0000:%02x:00.0" % (0x18 + len(self.gpus) * 0x10)
        self.add_pci_device(bdf, "0x10de", device, "0x030200")
        self.gpus.append({"bdf": bdf})
        return self

    def set_driver_version(self, module, version):
        _write(self.path("module", module, "version"), version + "\n")
        return self


def write_tool(bin_dir, name, script):
    """An executable ``bin_dir/name`` running ``script`` (a POSIX shell body)."""
    path = os.path.join(str(bin_dir), name)
    _write(path, "#!/bin/sh\n" + script)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def fake_amd_smi(bin_dir, products, driver="6.8.5", rocm="6.4.1", gfx="gfx942"):
    """``amd-smi static --asic --driver --json`` and ``amd-smi version --json`` in amd-smi's JSON shape."""
    static = [{"gpu": i, "asic": {"market_name": p, "vendor_id": "0x1002", "target_graphics_version": gfx},
               "driver": {"name": "amdgpu", "version": driver}} for i, p in enumerate(products)]
    version = [{"tool": "AMDSMI Tool", "version": "24.7.1", "amdsmi_library_version": "24.7.1",
                "rocm_version": rocm}]
    return write_tool(bin_dir, "amd-smi", (
        'case "$1" in\n'
        "  static) cat <<'EOF'\n%s\nEOF\n;;\n"
        "  version) cat <<'EOF'\n%s\nEOF\n;;\n"
        "  *) echo \"fake amd-smi: unsupported $*\" >&2; exit 2;;\n"
        "esac\n") % (json.dumps(static), json.dumps(version)))


def fake_rocm_smi(bin_dir, products, driver="6.3.6", gfx="gfx90a"):
    document = dict(("card%d" % i, {"Card Series": p, "Card Vendor": "Advanced Micro Devices, Inc. [AMD/ATI]",
                                    "GFX Version": gfx}) for i, p in enumerate(products))
    document["system"] = {"Driver version": driver}
    return write_tool(bin_dir, "rocm-smi", "cat <<'EOF'\n%s\nEOF\n" % json.dumps(document))


def fake_nvidia_smi(bin_dir, gpus, driver="550.54.15", cuda="12.4"):
    """``gpus``: [(name, pci bus id)] -> the query-gpu CSV, and the banner with the CUDA version."""
    lines = "\n".join("%d, %s, %s, %s, GPU-%08d-0000-0000-0000-000000000000" % (i, name, bus, driver, i)
                      for i, (name, bus) in enumerate(gpus))
    banner = ("+-----------------------------------------------------------------------------+\n"
              "| NVIDIA-SMI %s    Driver Version: %s    CUDA Version: %s     |\n" % (driver, driver, cuda))
    return write_tool(bin_dir, "nvidia-smi", (
        'case "$1" in\n'
        "  --query-gpu=*) cat <<'EOF'\n%s\nEOF\n;;\n"
        "  *) cat <<'EOF'\n%s\nEOF\n;;\n"
        "esac\n") % (lines, banner))


def fake_rocm(root, version="6.4.1-120"):
    """A ROCm root with ``.info/version``."""
    _write(os.path.join(str(root), ".info", "version"), version + "\n")
    return str(root)


def _char_devices(paths):
    null = os.stat("/dev/null").st_rdev
    for path in paths:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if not os.path.exists(path):
            os.mknod(path, 0o666 | stat.S_IFCHR, null)
            os.chmod(path, 0o666)  # as the GPU drivers' udev rules make them, whatever the umask
    return paths


def fake_devices(dev_root, render_minors):
    """Character devices standing in for /dev/kfd and /dev/dri/renderD<minor> (copies of /dev/null's numbers)."""
    os.makedirs(os.path.join(str(dev_root), "dri"), exist_ok=True)
    return _char_devices([os.path.join(str(dev_root), "kfd")] + [
        os.path.join(str(dev_root), "dri", "renderD%d" % m) for m in render_minors])


def fake_nvidia_devices(dev_root, count):
    """/dev/nvidiactl, /dev/nvidia-uvm and /dev/nvidia<n> stand-ins."""
    names = ["nvidiactl", "nvidia-uvm"] + ["nvidia%d" % n for n in range(count)]
    return _char_devices([os.path.join(str(dev_root), name) for name in names])


# ---- node kinds of the simulated fleet ----------------------------------------------------------

# Eight GPUs per node, as the usual 8-GPU servers of each kind. AMD gfx942 nodes have ROCm 6 with amd-smi;
# gfx90a nodes an older ROCm with rocm-smi only, so both AMD tool paths are exercised.
KINDS = {
    "amd-gfx942": {"vendor": "AMD", "arch": "gfx942", "product": "AMD Instinct MI300X", "device": MI300X_DEVICE,
                   "simd_count": 1216, "num_xcc": 8, "gpus": 8, "tool": "amd-smi", "driver": "6.8.5",
                   "rocm": "6.4.1-120"},
    "amd-gfx90a": {"vendor": "AMD", "arch": "gfx90a", "product": "AMD Instinct MI250X", "device": MI250_DEVICE,
                   "simd_count": 440, "num_xcc": 1, "gpus": 8, "tool": "rocm-smi", "driver": "6.3.6",
                   "rocm": "5.7.1-98"},
    "nvidia-h100": {"vendor": "NVIDIA", "arch": "H100", "product": "NVIDIA H100 80GB HBM3", "device": H100_DEVICE,
                    "gpus": 8, "driver": "550.54.15", "cuda": "12.4"},
    "cpu": {"vendor": "NONE", "arch": "", "product": "", "gpus": 0},
}
# PCI buses of the eight GPUs of a typical 8-GPU server.
GPU_BUSES = (0x18, 0x2a, 0x3a, 0x5d, 0x9a, 0xab, 0xba, 0xdb)


def _relative_link(target, link):
    os.makedirs(os.path.dirname(link), exist_ok=True)
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(os.path.relpath(target, os.path.dirname(link)), link)


def write_host_root(root, kind):
    """The fake GPUs of one node of ``kind`` under ``root`` (idempotent); returns a summary dict.

    ``root/sys`` is the sysfs tree, ``root/dev`` the device nodes, ``root/opt/rocm`` ROCm's version file
    and tools (AMD), ``root/usr/bin`` the vendor tools (links into opt/rocm/bin for AMD).  A ``cpu`` node
    gets an empty PCI bus and no tools.
    """
    spec = KINDS[kind]
    root = str(root)
    sysfs = FakeGpuSysfs(os.path.join(root, "sys"))
    dev = os.path.join(root, "dev")
    usr_bin = os.path.join(root, "usr", "bin")
    os.makedirs(dev, exist_ok=True)
    os.makedirs(usr_bin, exist_ok=True)
    buses = ["0000:%02x:00.0" % bus for bus in GPU_BUSES[:spec["gpus"]]]
    if spec["vendor"] == "AMD":
        for bdf in buses:
            sysfs.add_amd_gpu(gfx=spec["arch"], bdf=bdf, product=spec["product"], device=spec["device"],
                              simd_count=spec["simd_count"], num_xcc=spec["num_xcc"])
        sysfs.set_driver_version("amdgpu", spec["driver"])
        fake_devices(dev, [gpu["render_minor"] for gpu in sysfs.gpus])
        rocm = fake_rocm(os.path.join(root, "opt", "rocm"), spec["rocm"])
        products = [spec["product"]] * spec["gpus"]
        if spec["tool"] == "amd-smi":
            tool = fake_amd_smi(os.path.join(rocm, "bin"), products, driver=spec["driver"],
                                rocm=spec["rocm"].split("-")[0], gfx=spec["arch"])
        else:
            tool = fake_rocm_smi(os.path.join(rocm, "bin"), products, driver=spec["driver"], gfx=spec["arch"])
        _relative_link(tool, os.path.join(usr_bin, os.path.basename(tool)))
    elif spec["vendor"] == "NVIDIA":
        for bdf in buses:
            sysfs.add_nvidia_gpu(bdf=bdf, device=spec["device"])
        sysfs.set_driver_version("nvidia", spec["driver"])
        fake_nvidia_devices(dev, spec["gpus"])
        fake_nvidia_smi(usr_bin, [(spec["product"], "0000" + bdf.upper()) for bdf in buses],
                        driver=spec["driver"], cuda=spec["cuda"])
    return {"kind": kind, "vendor": spec["vendor"], "arch": spec["arch"], "product": spec["product"],
            "gpus": spec["gpus"]}


def nvidia_hook_script(log_path):
    """The stand-in ``nvidia-container-runtime-hook``: logs each prestart call with the container's devices.

    Docker registers its ``nvidia`` device driver (``--gpus``, ``device_requests``) when this name is on
    the daemon's PATH, sets NVIDIA_VISIBLE_DEVICES and runs ``<hook> prestart`` with the OCI state on
    stdin.  The real hook mounts the driver into the container; this one records what it was asked.
    """
    return (
        'state=$(cat)\n'
        'bundle=$(printf "%%s" "$state" | sed -n \'s/.*"bundle": *"\\([^"]*\\)".*/\\1/p\')\n'
        'devices=$(grep -o \'NVIDIA_VISIBLE_DEVICES=[^"]*\' "$bundle/config.json" 2>/dev/null | head -n 1)\n'
        'echo "$* ${devices:-NVIDIA_VISIBLE_DEVICES=} bundle=$bundle" >>%s\n'
        'exit 0\n') % json.dumps(log_path)
