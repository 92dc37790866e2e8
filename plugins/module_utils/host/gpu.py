# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""GPU detection on a node, from sysfs first and the vendor tools when they are installed.

Everything is read through the host reader (:class:`HostFs`), so ``/sys``, ``/opt/rocm`` and the tools are
those of the node's host root.

AMD GPUs are the nodes of the KFD topology (``/sys/devices/virtual/kfd/kfd/topology/nodes/N``)
whose ``properties`` have ``simd_count > 0``; ``gfx_target_version`` gives the architecture
(``90402`` -> ``gfx942``), ``drm_render_minor`` the render node, ``domain`` and ``location_id`` the
PCI address.  GPU indices follow the node numbers, as ROCm enumerates them.  The product name and the
driver version come from ``amd-smi`` (else ``rocm-smi``), falling back to the PCI device's
``product_name`` file and ``/sys/module/amdgpu/version``; the ROCm version from
``<rocm>/.info/version``.

NVIDIA GPUs come from ``nvidia-smi --query-gpu``; without ``nvidia-smi`` the PCI devices of vendor
``0x10de`` with a display or 3D class are counted.  The driver version falls back to
``/sys/module/nvidia/version``.

Commands run through the caller's ``runner(argv) -> (rc, stdout, stderr)`` (the module's
``run_command``) and are looked up by ``find_tool(name, extra_dirs)`` (default: the host reader's).
"""

from __future__ import annotations

import json
import os
import re

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError
from ansible_collections.rocm.madengine.plugins.module_utils.host.hostfs import VENDOR_IDS

VENDORS = ("AMD", "NVIDIA", "NONE")
KFD_NODES = "/sys/devices/virtual/kfd/kfd/topology/nodes"
# GPU tools get this long; a wedged driver can hang them.
TOOL_TIMEOUT = 60


class Gpu(object):
    """One GPU of the node; ``index`` is what ``docker_gpus`` and ``n_gpus`` count with."""

    __slots__ = ("index", "vendor", "arch", "render_minor", "pci_bdf", "product", "node_id", "uuid")

    def __init__(self, index, vendor, arch="", render_minor=None, pci_bdf="", product="", node_id=None, uuid=""):
        self.index = index
        self.vendor = vendor
        self.arch = arch
        self.render_minor = render_minor
        self.pci_bdf = pci_bdf
        self.product = product
        self.node_id = node_id
        self.uuid = uuid

    def as_dict(self):
        return dict((name, getattr(self, name)) for name in self.__slots__)


class GpuInventory(object):
    """What :func:`detect` found: the vendor in use, its GPUs and the software versions."""

    def __init__(self, vendor, gpus=(), driver_version="", rocm_version="", cuda_version="", notes=(),
                 sysfs_root="/sys", rocm_path=""):
        # sysfs_root: the real path of the node's /sys, for messages
        self.vendor = vendor
        self.gpus = list(gpus)
        self.driver_version = driver_version
        self.rocm_version = rocm_version
        self.cuda_version = cuda_version
        self.notes = list(notes)
        self.sysfs_root = sysfs_root
        self.rocm_path = rocm_path

    @property
    def count(self):
        return len(self.gpus)

    @property
    def arch(self):
        """The architecture madengine reports: GPU 0's (AMD ``gfx…``; NVIDIA the product name)."""
        if not self.gpus:
            return ""
        first = self.gpus[0]
        return first.arch if self.vendor == "AMD" else first.product

    @property
    def build_arch(self):
        """The architecture images are built for: GPU 0's ``gfx…`` (AMD) or short name (NVIDIA ``H100``)."""
        return self.gpus[0].arch if self.gpus else ""

    @property
    def product(self):
        return self.gpus[0].product if self.gpus else ""

    @property
    def hip_version(self):
        """``major.minor`` of the ROCm version (madengine's MAD_SYSTEM_HIP_VERSION)."""
        match = re.match(r"^(\d+)\.(\d+)", self.rocm_version or "")
        return "%s.%s" % match.groups() if match else ""

    def by_index(self):
        return dict((gpu.index, gpu) for gpu in self.gpus)

    def as_dict(self):
        return {
            "vendor": self.vendor,
            "count": self.count,
            "architecture": self.arch,
            "product": self.product,
            "driver_version": self.driver_version,
            "rocm_version": self.rocm_version,
            "cuda_version": self.cuda_version,
            "gpus": [gpu.as_dict() for gpu in self.gpus],
            "notes": list(self.notes),
        }


# ---- commands -----------------------------------------------------------------------------------

def tool_runner(module):
    """``runner(argv) -> (rc, out, err)`` for the GPU tools, bounded by coreutils' timeout when it is there."""
    timeout_bin = module.get_bin_path("timeout")

    def run_tool(argv):
        try:
            return module.run_command(([timeout_bin, str(TOOL_TIMEOUT)] if timeout_bin else []) + list(argv),
                                      handle_exceptions=False)
        except OSError as exc:
            return None, "", str(exc)

    return run_tool


def _json_output(runner, argv):
    rc, out, _err = runner(argv)
    if rc != 0 or not out:
        return None
    try:
        return json.loads(out)
    except ValueError:
        return None


def _find_values(document, key):
    """Every value of ``key`` in a JSON document, depth first, in document order."""
    found = []
    if isinstance(document, dict):
        for name, value in document.items():
            if name == key:
                found.append(value)
            found.extend(_find_values(value, key))
    elif isinstance(document, list):
        for item in document:
            found.extend(_find_values(item, key))
    return found


def _first_text(values):
    for value in values:
        if isinstance(value, (str, int, float)) and str(value).strip() and str(value).strip().upper() != "N/A":
            return str(value).strip()
    return ""


# ---- sysfs --------------------------------------------------------------------------------------

def parse_properties(text):
    """A KFD ``properties`` file as ``{name: int}`` (lines ``name value``)."""
    values = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                values[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return values


def gfx_name(target_version):
    """``gfx_target_version`` -> ``gfx`` name: 90402 -> gfx942, 90010 -> gfx90a, 110000 -> gfx1100."""
    major, minor, stepping = target_version // 10000, (target_version // 100) % 100, target_version % 100
    return "gfx%d%x%x" % (major, minor, stepping)


def pci_address(domain, location_id):
    """KFD ``domain`` and ``location_id`` (bus << 8 | device << 3 | function) -> ``0000:c1:00.0``."""
    return "%04x:%02x:%02x.%x" % (domain, location_id >> 8, (location_id >> 3) & 0x1F, location_id & 0x7)


def _node_number(name):
    try:
        return int(name)
    except ValueError:
        return None


def amd_gpus(host):
    """The AMD GPUs of the KFD topology, indexed in node order."""
    nodes_dir = host.path(KFD_NODES)
    gpus = []
    for node_id in sorted(n for n in (_node_number(name) for name in host.listdir(nodes_dir)) if n is not None):
        props = parse_properties(host.read(os.path.join(nodes_dir, str(node_id), "properties"), ""))
        if props.get("simd_count", 0) <= 0:
            continue  # a CPU node
        target = props.get("gfx_target_version", 0)
        bdf = pci_address(props.get("domain", 0), props["location_id"]) if "location_id" in props else ""
        product = (host.read(host.dev_path(bdf, "product_name"), "") or "") if bdf else ""
        gpus.append(Gpu(len(gpus), "AMD", arch=gfx_name(target) if target else "",
                        render_minor=props.get("drm_render_minor") or None, pci_bdf=bdf, product=product,
                        node_id=node_id))
    return gpus


# ---- vendors ------------------------------------------------------------------------------------

def _amd_details(gpus, host, rocm_path, runner, find_tool, notes):
    """Fill product names and return ``(driver_version, rocm_version)``."""
    rocm_bin = [os.path.join(rocm_path, "bin")] if rocm_path else []
    driver = ""
    products = []
    amd_smi = find_tool("amd-smi", rocm_bin)
    if amd_smi:
        document = _json_output(runner, [amd_smi, "static", "--asic", "--driver", "--json"])
        if document is None:
            notes.append("%s static --asic --driver --json gave no JSON; product and driver come from sysfs." % amd_smi)
        else:
            products = [str(v).strip() for v in _find_values(document, "market_name")]
            driver = _first_text(v.get("version") for v in _find_values(document, "driver") if isinstance(v, dict))
    else:
        rocm_smi = find_tool("rocm-smi", rocm_bin)
        if rocm_smi:
            document = _json_output(runner, [rocm_smi, "--showproductname", "--showdriverversion", "--json"])
            if document is None:
                notes.append("%s --showproductname --json gave no JSON; product and driver come from sysfs." % rocm_smi)
            else:
                cards = [document[k] for k in sorted(document, key=_card_order)
                         if k.lower().startswith("card") and isinstance(document[k], dict)]
                products = [_first_text([c.get("Card Series"), c.get("Card series"), c.get("Card SKU")])
                            for c in cards]
                driver = _first_text(_find_values(document, "Driver version"))
    for gpu, product in zip(gpus, products):
        if product and product.upper() != "N/A":
            gpu.product = product
    driver = driver or host.read_host("/sys/module/amdgpu/version", "")
    rocm_version = host.read(host.path(rocm_path, ".info/version"), "") if rocm_path else ""
    if not rocm_version and amd_smi:
        rocm_version = _first_text(_find_values(_json_output(runner, [amd_smi, "version", "--json"]), "rocm_version"))
    return driver, rocm_version.split("-", 1)[0]


def _card_order(name):
    digits = "".join(ch for ch in name if ch.isdigit())
    return (int(digits) if digits else 0, name)


def _nvidia_smi_gpus(runner, nvidia_smi, notes):
    rc, out, err = runner([nvidia_smi, "--query-gpu=index,name,pci.bus_id,driver_version,uuid",
                           "--format=csv,noheader"])
    if rc != 0:
        notes.append("%s --query-gpu failed: %s" % (nvidia_smi, (err or out or "no output").strip()))
        return [], ""
    gpus, driver = [], ""
    for line in out.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 5 or not fields[0].isdigit():
            continue
        bus = fields[2].lower()
        if re.match(r"^[0-9a-f]{8}:", bus):  # nvidia-smi prints an 8-digit PCI domain
            bus = bus[4:]
        gpus.append(Gpu(int(fields[0]), "NVIDIA", arch=normalise_nvidia_name(fields[1]), pci_bdf=bus,
                        product=fields[1], uuid=fields[4]))
        driver = driver or fields[3]
    gpus.sort(key=lambda g: g.index)
    return gpus, driver


def _cuda_version(runner, nvidia_smi):
    rc, out, _err = runner([nvidia_smi])
    match = re.search(r"CUDA Version:\s*([0-9.]+)", out or "") if rc == 0 else None
    return match.group(1) if match else ""


def normalise_nvidia_name(name):
    """madengine's short NVIDIA architecture name: ``NVIDIA A100-SXM4-40GB`` -> ``A100``."""
    words = [w for w in re.split(r"\s+", name or "") if w and w.upper() not in ("NVIDIA", "TESLA", "GEFORCE")]
    return words[0].split("-", 1)[0] if words else ""


def rocm_root(ctx, environ=None):
    """ROCm root on the node: ctx ``MAD_ROCM_PATH``, else ``$ROCM_PATH``, else ``/opt/rocm``."""
    environ = os.environ if environ is None else environ
    return (ctx or {}).get("MAD_ROCM_PATH") or environ.get("ROCM_PATH") or "/opt/rocm"


def detect(requested, host, rocm_path, runner, find_tool=None):
    """The node's GPUs for ``requested`` (``auto``, ``AMD``, ``NVIDIA`` or ``NONE``; ``any`` means ``auto``).

    ``host`` is the node's :class:`HostFs`; ``rocm_path`` a path on the node. ``auto`` picks the one
    vendor the node has GPUs of (``NONE`` when it has none).  A forced vendor the node has no GPU of, or
    ``auto`` on a node with GPUs of both vendors, raises MadengineError.
    """
    find_tool = find_tool or host.find_tool
    requested = _requested_vendor(requested)
    where = dict(sysfs_root=host.path("sys"), rocm_path=rocm_path)
    if requested == "NONE":
        return GpuInventory("NONE", notes=["gpu_vendor NONE: CPU mode, no GPU is given to containers."], **where)
    notes = []
    amd = amd_gpus(host) if requested in ("auto", "AMD") else []
    nvidia, nvidia_driver, nvidia_smi = [], "", None
    if requested in ("auto", "NVIDIA"):
        nvidia_smi = find_tool("nvidia-smi", ("/usr/bin",))
        if nvidia_smi:
            nvidia, nvidia_driver = _nvidia_smi_gpus(runner, nvidia_smi, notes)
        if not nvidia:
            nvidia = [Gpu(i, "NVIDIA", pci_bdf=bdf) for i, bdf in enumerate(host.gpu_functions("NVIDIA"))]
            if nvidia:
                notes.append("nvidia-smi is %s: %d NVIDIA GPU(s) counted from PCI; product and CUDA version are "
                             "unknown." % ("not installed" if not nvidia_smi else "failing", len(nvidia)))
    _check_found(requested, amd, nvidia, nvidia_smi, host)
    if amd:
        driver, rocm_version = _amd_details(amd, host, rocm_path, runner, find_tool, notes)
        return GpuInventory("AMD", amd, driver_version=driver, rocm_version=rocm_version, notes=notes, **where)
    if nvidia:
        driver = nvidia_driver or host.read_host("/sys/module/nvidia/version", "")
        cuda = _cuda_version(runner, nvidia_smi) if nvidia_smi else ""
        return GpuInventory("NVIDIA", nvidia, driver_version=driver, cuda_version=cuda, notes=notes, **where)
    notes.append("No AMD GPU in %s and no NVIDIA GPU found: CPU mode." % host.path(KFD_NODES))
    return GpuInventory("NONE", notes=notes, **where)


def _requested_vendor(requested):
    value = (requested or "auto").strip()
    if value.lower() in ("auto", "any"):
        return "auto"
    if value.upper() not in VENDORS:
        raise MadengineError("gpu_vendor %r is not one of auto, AMD, NVIDIA, NONE." % requested)
    return value.upper()


def _check_found(requested, amd, nvidia, nvidia_smi, host):
    if requested == "AMD" and not amd:
        raise MadengineError("gpu_vendor is AMD, but this node has no AMD GPU: %s lists no GPU node."
                             % host.path(KFD_NODES))
    if requested == "NVIDIA" and not nvidia:
        smi = "nvidia-smi lists none" if nvidia_smi else "nvidia-smi is not installed"
        raise MadengineError("gpu_vendor is NVIDIA, but this node has no NVIDIA GPU: %s and %s has no NVIDIA "
                             "(%s) display device." % (smi, host.path("sys/bus/pci/devices"), VENDOR_IDS["NVIDIA"]))
    if requested == "auto" and amd and nvidia:
        raise MadengineError("This node has %d AMD and %d NVIDIA GPUs; set gpu_vendor to AMD or NVIDIA."
                             % (len(amd), len(nvidia)))


def parse_gpu_list(text, what="docker_gpus"):
    """``"0-3,6"`` -> ``[0, 1, 2, 3, 6]`` (sorted, unique); MadengineError naming ``what`` otherwise."""
    if not isinstance(text, str):
        raise MadengineError("%s must be a string of GPU indices such as '0-3,6', not %r." % (what, text))
    indices = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        match = re.match(r"^(\d+)(?:-(\d+))?$", part)
        if not match:
            raise MadengineError("%s %r is not a list of GPU indices and ranges such as '0-3,6' (at %r)."
                                 % (what, text, part))
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise MadengineError("%s %r has a descending range %r." % (what, text, part))
        indices.update(range(first, last + 1))
    if not indices:
        raise MadengineError("%s %r names no GPU." % (what, text))
    return sorted(indices)
