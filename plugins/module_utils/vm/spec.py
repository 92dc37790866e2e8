# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""What an ephemeral benchmark VM should look like: sizes, devices, host checks and the domain XML.

Everything here is pure, or reads the host through the host reader and runs the host checks it relies on
(KVM, the base image) by name, so it is tested without a hypervisor. The lifecycle that acts on libvirt
lives in ``vm/lifecycle.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import traceback
import uuid

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError
from ansible_collections.rocm.madengine.plugins.module_utils.host.checks import HostChecks, hugepages_problem
from ansible_collections.rocm.madengine.plugins.module_utils.host.hostfs import HostFs, normalize_bdf
from ansible_collections.rocm.madengine.plugins.module_utils.host.sizes import parse_size

try:
    import jinja2

    HAS_JINJA2 = True
    JINJA2_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - exercised by the import sanity test
    jinja2 = None
    HAS_JINJA2 = False
    JINJA2_IMPORT_ERROR = traceback.format_exc()

METADATA_NS = "urn:rocm:madengine:vm:1"
# Namespace of the stable domain UUIDs: uuid5(UUID_NS, domain name).
UUID_NS = uuid.uuid5(uuid.NAMESPACE_URL, METADATA_NS)
DEFAULT_NAME_PREFIX = "madengine-vm-"
STATE_VERSION = 1

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,62}$")
_AGE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_AGE_FACTORS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(value):
    """Seconds from ``90``, ``30m``, ``6h``, ``2d`` or ``1w``."""
    match = _AGE_RE.match(str(value))
    if not match:
        raise MadengineError("sweep.older_than must be an age such as 30m, 6h or 2d, not %r." % (value,))
    return float(match.group(1)) * _AGE_FACTORS[match.group(2).lower()]


def normalise_hostdevs(hostdevs, managed_default):
    """Hostdev entries (BDF strings, or dicts with ``bdf`` and optional ``managed``) as dicts, no duplicates."""
    result = []
    seen = set()
    for entry in hostdevs or []:
        if isinstance(entry, dict):
            if "bdf" not in entry:
                raise MadengineError("hostdev entry %r has no bdf key." % (entry,))
            bdf = normalize_bdf(entry["bdf"], "hostdev")
            managed = entry.get("managed", managed_default)
            if not isinstance(managed, bool):
                raise MadengineError("hostdev %s: managed must be true or false, not %r." % (bdf, managed))
        else:
            bdf, managed = normalize_bdf(entry, "hostdev"), managed_default
        if bdf in seen:
            raise MadengineError("hostdev %s is listed twice." % bdf)
        seen.add(bdf)
        dom, bus, rest = bdf.split(":")
        slot, fn = rest.split(".")
        result.append(dict(bdf=bdf, managed=managed, domain=dom, bus=bus, slot=slot, function=fn))
    return result


def normalise_mdevs(mdevs):
    result = []
    for entry in mdevs or []:
        try:
            result.append(str(uuid.UUID(str(entry))))
        except ValueError:
            raise MadengineError("mdev %r is not a UUID (mediated devices are named by UUID)." % (entry,))
    return result


def stable_uuid(name):
    return str(uuid.uuid5(UUID_NS, name))


def mac_from_uuid(domain_uuid):
    """A locally administered QEMU-range MAC (52:54:00) from the last three bytes of the domain UUID."""
    tail = uuid.UUID(domain_uuid).bytes[-3:]
    return "52:54:00:%02x:%02x:%02x" % tuple(bytearray(tail))


def check_name(name):
    if not name or not _NAME_RE.match(name):
        raise MadengineError(
            "VM name %r is not usable: 1-63 letters, digits, '.', '_', '+' or '-', starting with a letter or digit."
            % (name,)
        )


def expand_cpulist(text):
    """``0-3,8,10-11`` -> [0, 1, 2, 3, 8, 10, 11]."""
    cpus = []
    for raw in str(text).strip().split(","):
        part = raw.strip()
        if not part:
            continue
        try:
            if "-" in part:
                low, high = part.split("-", 1)
                cpus.extend(range(int(low), int(high) + 1))
            else:
                cpus.append(int(part))
        except ValueError:
            raise MadengineError("CPU list %r is not of the form 0-3,8,10-11." % (text,))
    if not cpus:
        raise MadengineError("CPU list %r names no CPU." % (text,))
    return cpus


# The host checks a VM relies on: whether KVM can run it, and its base image.
KVM_CHECKS = ("cpu_virtualization", "kvm_usable")


def detect_domain_type(host):
    """``("kvm"|"qemu", reasons)``: kvm only when the host checks cpu_virtualization and kvm_usable pass."""
    reasons = [c["detail"] for c in HostChecks(host, run=None).run(KVM_CHECKS) if c["status"] == "fail"]
    return ("qemu" if reasons else "kvm"), reasons


def cpu_pinning(mode, vcpus, hostdevs, host):
    """vCPU pinning: ``none``; ``auto`` (the first hostdev's NUMA node and local CPUs); or a CPU list.

    Returns ``None`` or ``dict(vcpus=[cpu per vcpu], emulator=cpuset, numa_node=int|None, source=str)``.
    """
    if mode in (None, "", "none"):
        return None
    if mode == "auto":
        if not hostdevs:
            return None
        numa = host.read(host.dev_path(hostdevs[0]["bdf"], "numa_node"))
        local = host.read(host.dev_path(hostdevs[0]["bdf"], "local_cpulist"))
        if numa is None or local is None or numa.strip() == "-1":
            return None
        cpus = expand_cpulist(local)
        node = int(numa)
        source = "NUMA node %d of %s" % (node, hostdevs[0]["bdf"])
    else:
        cpus = expand_cpulist(mode)
        node = None
        source = "cpu_pinning %s" % mode
    return dict(
        vcpus=[cpus[i % len(cpus)] for i in range(vcpus)],
        emulator=",".join(str(c) for c in cpus),
        numa_node=node,
        source=source,
    )


def spec_hash(spec):
    """sha256 over the inputs that shape the domain (never over secrets: those enter as their digest)."""
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def digest(text):
    return hashlib.sha256((text or "").encode("utf-8")).hexdigest() if text else ""


# The domain template. It lives in Python (not in a templates/ file) because module_utils are the only
# collection files shipped to the hypervisor with the module. Autoescaping keeps names and paths safe.
DOMAIN_TEMPLATE = """\
<domain type='{{ domain_type }}'>
  <name>{{ name }}</name>
  <uuid>{{ uuid }}</uuid>
  <title>madengine benchmark VM {{ name }}</title>
  <metadata>
    <me:vm xmlns:me='{{ metadata_ns }}'>
      <me:run_id>{{ run_id }}</me:run_id>
      <me:created>{{ created }}</me:created>
      <me:spec_hash>{{ spec_hash }}</me:spec_hash>
      <me:state_file>{{ state_file }}</me:state_file>
      <me:overlay>{{ overlay }}</me:overlay>
      <me:seed>{{ seed }}</me:seed>
      <me:console_log>{{ console_log }}</me:console_log>
{% if nvram %}
      <me:nvram>{{ nvram }}</me:nvram>
{% endif %}
{% for dev in hostdevs %}
      <me:hostdev bdf='{{ dev.bdf }}' managed='{{ "yes" if dev.managed else "no" }}'/>
{% endfor %}
{% for mdev in mdevs %}
      <me:mdev uuid='{{ mdev }}'/>
{% endfor %}
    </me:vm>
  </metadata>
  <memory unit='KiB'>{{ memory_kib }}</memory>
  <currentMemory unit='KiB'>{{ memory_kib }}</currentMemory>
{% if hugepage_kib %}
  <memoryBacking>
    <hugepages>
      <page size='{{ hugepage_kib }}' unit='KiB'/>
    </hugepages>
  </memoryBacking>
{% endif %}
  <vcpu placement='static'>{{ vcpus }}</vcpu>
{% if pinning %}
  <cputune>
{% for cpu in pinning.vcpus %}
    <vcpupin vcpu='{{ loop.index0 }}' cpuset='{{ cpu }}'/>
{% endfor %}
    <emulatorpin cpuset='{{ pinning.emulator }}'/>
  </cputune>
{% if pinning.numa_node is not none %}
  <numatune>
    <memory mode='strict' nodeset='{{ pinning.numa_node }}'/>
  </numatune>
{% endif %}
{% endif %}
  <os{% if firmware == 'efi' %} firmware='efi'{% endif %}>
    <type arch='x86_64' machine='{{ machine }}'>hvm</type>
{% if firmware == 'efi' %}
    <firmware>
      <feature enabled='no' name='secure-boot'/>
      <feature enabled='no' name='enrolled-keys'/>
    </firmware>
{% endif %}
{% if kernel %}
    <kernel>{{ kernel }}</kernel>
{% if initrd %}
    <initrd>{{ initrd }}</initrd>
{% endif %}
{% if kernel_args %}
    <cmdline>{{ kernel_args }}</cmdline>
{% endif %}
{% else %}
    <boot dev='hd'/>
{% endif %}
  </os>
  <features>
    <acpi/>
    <apic/>
  </features>
{% if domain_type == 'kvm' %}
  <cpu mode='host-passthrough' check='none' migratable='off'>
    <topology sockets='1' dies='1' cores='{{ vcpus }}' threads='1'/>
{% if maxphysaddr == 'passthrough' %}
    <maxphysaddr mode='passthrough'/>
{% elif maxphysaddr_bits %}
    <maxphysaddr mode='emulate' bits='{{ maxphysaddr_bits }}'/>
{% endif %}
  </cpu>
{% else %}
  <cpu>
    <topology sockets='1' dies='1' cores='{{ vcpus }}' threads='1'/>
  </cpu>
{% endif %}
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='{{ disk_cache }}' discard='unmap'
        {%- if native_io %} io='native'{% endif %}/>
      <source file='{{ overlay }}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
{% if seed_device == 'cdrom' %}
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='{{ seed }}'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
{% else %}
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{{ seed }}'/>
      <target dev='vdb' bus='virtio'/>
      <readonly/>
    </disk>
{% endif %}
{% if network_type == 'user' %}
    <interface type='user'>
{% elif network_type == 'bridge' %}
    <interface type='bridge'>
      <source bridge='{{ network }}'/>
{% else %}
    <interface type='network'>
      <source network='{{ network }}'/>
{% endif %}
      <mac address='{{ mac }}'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'>
      <source path='{{ console_log }}'/>
      <target port='0'/>
    </serial>
    <console type='file'>
      <source path='{{ console_log }}'/>
      <target type='serial' port='0'/>
    </console>
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
{% for dev in hostdevs %}
    <hostdev mode='subsystem' type='pci' managed='{{ "yes" if dev.managed else "no" }}'>
      <driver name='vfio'/>
      <source>
        <address domain='0x{{ dev.domain }}' bus='0x{{ dev.bus }}' slot='0x{{ dev.slot }}'
                 function='0x{{ dev.function }}'/>
      </source>
    </hostdev>
{% endfor %}
{% for mdev in mdevs %}
    <hostdev mode='subsystem' type='mdev' model='vfio-pci'>
      <source>
        <address uuid='{{ mdev }}'/>
      </source>
    </hostdev>
{% endfor %}
    <memballoon model='none'/>
    <rng model='virtio'>
      <backend model='random'>/dev/urandom</backend>
    </rng>
  </devices>
</domain>
"""


def render_domain_xml(context, template=None):
    """Render the domain XML from ``context`` with the built-in template or a caller's Jinja2 text."""
    if not HAS_JINJA2:
        raise MadengineError("the domain XML is rendered with Jinja2, which is not installed for this Python.")
    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    try:
        return env.from_string(template or DOMAIN_TEMPLATE).render(metadata_ns=METADATA_NS, **context)
    except jinja2.TemplateError as exc:
        raise MadengineError("the domain XML template cannot be rendered: %s." % exc)


def cloud_init_documents(name, instance_id, ssh_user, ssh_pubkeys, user_data_extra):
    """NoCloud ``user-data`` (``#cloud-config``) and ``meta-data`` texts.

    JSON is valid YAML, so the documents are written as JSON without needing a YAML library.
    """
    config = {}
    keys = [k.strip() for k in ssh_pubkeys if k and k.strip()]
    if ssh_user == "root":
        config["disable_root"] = False
        if keys:
            config["ssh_authorized_keys"] = keys
    else:
        user = {"name": ssh_user, "sudo": "ALL=(ALL) NOPASSWD:ALL", "shell": "/bin/bash", "lock_passwd": True}
        if keys:
            user["ssh_authorized_keys"] = keys
        config["users"] = ["default", user]
    config["ssh_pwauth"] = False
    for key, value in (user_data_extra or {}).items():
        if key in ("users",) and key in config and isinstance(value, list):
            config[key] = config[key] + value
        else:
            config[key] = value
    user_data = "#cloud-config\n" + json.dumps(config, indent=2, sort_keys=True) + "\n"
    meta_data = json.dumps({"instance-id": instance_id, "local-hostname": name}, indent=2) + "\n"
    return user_data, meta_data


def requested_devices(params):
    """The hostdevs and mdevs of the VM: those of the ``passthrough`` result first, then ``hostdevs`` and ``mdevs``."""
    given = params.get("passthrough") or {}
    for key in ("hostdevs", "mdevs"):
        if not isinstance(given.get(key, []), list):
            raise MadengineError("passthrough.%s must be a list (the %s of a gpu_passthrough result), not %r."
                                 % (key, key, given.get(key)))
    hostdevs = list(given.get("hostdevs") or []) + list(params.get("hostdevs") or [])
    mdevs = list(given.get("mdevs") or []) + list(params.get("mdevs") or [])
    return normalise_hostdevs(hostdevs, params["managed"]), normalise_mdevs(mdevs)


def _checked_params(params):
    """The VM's own settings, validated: directories, sizes, firmware inputs and SSH keys."""
    name = params["name"]
    check_name(name)
    for key in ("image_dir", "state_dir", "log_dir"):
        if not os.path.isabs(params[key]):
            raise MadengineError("%s %s must be an absolute path." % (key, params[key]))
    image_dir = params["image_dir"].rstrip("/") or "/"
    if not os.path.isdir(image_dir):
        raise MadengineError("image_dir %s does not exist." % image_dir)
    if params["vcpus"] < 1:
        raise MadengineError("vcpus must be at least 1, not %d." % params["vcpus"])
    memory = parse_size(params["memory"], "memory", default_unit="m")
    if memory < (64 << 20):
        raise MadengineError("memory %s is below the 64 MiB a guest needs." % params["memory"])
    base_image = params["base_image"]
    if not base_image:
        raise MadengineError("base_image is required to create VM %s." % name)
    if not os.path.isabs(base_image):
        raise MadengineError("base image %s must be an absolute path (overlays record their backing file)."
                             % base_image)
    maxphysaddr = str(params["maxphysaddr"])
    if maxphysaddr not in ("passthrough", "none") and (not maxphysaddr.isdigit() or not 32 <= int(maxphysaddr) <= 64):
        raise MadengineError("maxphysaddr must be passthrough, none or a bit count from 32 to 64, not %s."
                             % maxphysaddr)
    for key in ("kernel", "initrd"):
        if params.get(key) and not os.path.isfile(params[key]):
            raise MadengineError("%s %s does not exist." % (key, params[key]))
    if params.get("initrd") and not params.get("kernel"):
        raise MadengineError("initrd needs kernel: direct kernel boot takes both.")
    ssh_keys = [line.strip() for line in (params.get("ssh_pubkey") or "").splitlines() if line.strip()]
    for key in ssh_keys:
        if not re.match(r"^(ssh-|ecdsa-|sk-)[\w@.-]+ [A-Za-z0-9+/=]+( .*)?$", key):
            raise MadengineError("ssh_pubkey line %r is not an OpenSSH public key." % (key[:40],))
    return dict(
        name=name, image_dir=image_dir, log_dir=params["log_dir"].rstrip("/") or "/", memory=memory,
        disk_bytes=parse_size(params["disk_size"], "disk_size", default_unit="g") if params.get("disk_size") else 0,
        base_image=base_image, maxphysaddr=maxphysaddr, ssh_keys=ssh_keys, user_data=params.get("user_data") or {},
        maxphysaddr_bits=int(maxphysaddr) if maxphysaddr.isdigit() else None,
        seed_device=params.get("seed_device") or "virtio",
    )


def _host_side(params, run_command, vm, hostdevs):
    """What the host says about the VM: the base image (its size), the domain type, CPU pinning, huge pages.

    The base image and KVM are the host checks base_image, cpu_virtualization and kvm_usable, run by name.
    """
    host = HostFs(params.get("host_root") or "/")
    # the base image and qemu-img are the hypervisor's own, whatever root the host is read under
    checks = HostChecks(host, run=lambda argv, _timeout: run_command(argv), which=shutil.which,
                        base_image=vm["base_image"], disk_size=vm["disk_bytes"])
    results = dict((c["name"], c) for c in checks.run(KVM_CHECKS + ("base_image",)))
    image = results["base_image"]
    if image["status"] == "fail":
        raise MadengineError(" ".join(t for t in (image["detail"], image["fix"]) if t))
    reasons = [results[n]["detail"] for n in KVM_CHECKS if results[n]["status"] == "fail"]
    hugepage_kib = 0
    if params["hugepages"]:
        page = parse_size(params["hugepage_size"], "hugepage_size", default_unit="m")
        problem = hugepages_problem(host, vm["memory"], page)
        if problem:
            raise MadengineError(problem)
        hugepage_kib = page // 1024
    return dict(
        disk_bytes=vm["disk_bytes"] or checks.facts["base_image_size"],
        warnings=[image["detail"] + " " + image["fix"]] if image["status"] == "warn" else [],
        detected="qemu" if reasons else "kvm", reasons=reasons, hugepage_kib=hugepage_kib,
        pinning=cpu_pinning(params["cpu_pinning"], params["vcpus"], hostdevs, host),
    )


def build_spec(params, run_command):
    """Resolve module parameters into everything the lifecycle needs (read-only: safe in check mode).

    ``params`` uses the module's option names. Fails with a sentence naming the offending input.
    """
    vm = _checked_params(params)
    name, vcpus, memory = vm["name"], params["vcpus"], vm["memory"]
    hostdevs, mdevs = requested_devices(params)
    host = _host_side(params, run_command, vm, hostdevs)
    domain_type = host["detected"] if params["domain_type"] == "auto" else params["domain_type"]
    domain_uuid = stable_uuid(name)
    files = dict(overlay=os.path.join(vm["image_dir"], "%s.qcow2" % name),
                 seed=os.path.join(vm["image_dir"], "%s-seed.iso" % name),
                 console_log=os.path.join(vm["log_dir"], "%s.console.log" % name),
                 state_file=os.path.join(params["state_dir"], "%s.json" % name))
    shape = dict(
        domain_type=domain_type, firmware=params["firmware"], machine=params["machine"], memory=memory, vcpus=vcpus,
        disk_bytes=host["disk_bytes"], base_image=vm["base_image"], image_dir=vm["image_dir"], log_dir=vm["log_dir"],
        hostdevs=[(d["bdf"], d["managed"]) for d in hostdevs], mdevs=mdevs, pinning=host["pinning"],
        hugepage_kib=host["hugepage_kib"], maxphysaddr=vm["maxphysaddr"], network=params["network"],
        network_type=params["network_type"], kernel=params.get("kernel"), initrd=params.get("initrd"),
        kernel_args=params.get("kernel_args"), disk_cache=params["disk_cache"], ssh_user=params["ssh_user"],
        seed_device=vm["seed_device"], ssh_keys=digest("\n".join(vm["ssh_keys"])),
        user_data=digest(json.dumps(vm["user_data"], sort_keys=True, default=str)),
        run_id=params.get("run_id") or name, template=digest(DOMAIN_TEMPLATE),
    )
    shash = spec_hash(shape)
    user_data, meta_data = cloud_init_documents(name, "iid-%s-%s" % (domain_uuid, shash[:12]), params["ssh_user"],
                                                vm["ssh_keys"], vm["user_data"])
    mac = mac_from_uuid(domain_uuid)
    # The NVRAM path is libvirt's choice; it is read from the domain once defined.
    record = dict(version=STATE_VERSION, name=name, uuid=domain_uuid, uri=params["uri"], run_id=shape["run_id"],
                  spec_hash=shash, nvram=None, hostdevs=[d["bdf"] for d in hostdevs], mdevs=mdevs, mac=mac,
                  domain_type=domain_type, **files)
    xml_context = dict(
        domain_type=domain_type, name=name, uuid=domain_uuid, run_id=shape["run_id"], spec_hash=shash, nvram=None,
        hostdevs=hostdevs, mdevs=mdevs, memory_kib=memory // 1024, hugepage_kib=host["hugepage_kib"], vcpus=vcpus,
        pinning=host["pinning"], firmware=params["firmware"], machine=params["machine"], kernel=params.get("kernel"),
        initrd=params.get("initrd"), kernel_args=params.get("kernel_args"), maxphysaddr=vm["maxphysaddr"],
        maxphysaddr_bits=vm["maxphysaddr_bits"], disk_cache=params["disk_cache"],
        native_io=params["disk_cache"] in ("none", "directsync"), network=params["network"],
        network_type=params["network_type"], mac=mac, seed_device=vm["seed_device"], **files)
    return dict(
        name=name, uuid=domain_uuid, mac=mac, spec_hash=shash, domain_type=domain_type,
        domain_type_reasons=host["reasons"] if domain_type == "qemu" else [], kvm_usable=host["detected"] == "kvm",
        base_image=vm["base_image"], disk_bytes=host["disk_bytes"], state_dir=params["state_dir"], nvram=None,
        user_data=user_data, meta_data=meta_data, record=record, xml_context=xml_context, pinning=host["pinning"],
        hostdevs=hostdevs, warnings=host["warnings"], retries=params["retries"], retry_delay=params["retry_delay"],
        recreate=params["recreate"], keep_logs=params["keep_logs"], wait_for=params["wait_for"],
        boot_timeout=params["boot_timeout"], ip_sources=params["ip_sources"], ssh_port=params["ssh_port"],
        stop_timeout=params["stop_timeout"], **files)
