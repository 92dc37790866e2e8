# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""Lifecycle of one ephemeral libvirt domain: create with retries, wait, stop, tear down, sweep, verify.

Every domain this code creates carries ``<me:vm xmlns:me='urn:rocm:madengine:vm:1'>`` metadata, and
before anything is created a state file records every path that will exist, so a later run (or a
different process after the play was killed) can remove the domain, the overlay, the seed, the NVRAM
and the console log even when the domain is already gone.
"""

from __future__ import annotations

import calendar
import glob
import os
import random
import re
import socket
import time
import traceback
import xml.etree.ElementTree as ET

from ansible_collections.rocm.madengine.plugins.module_utils.common import (
    MadengineError,
    atomic_write_json,
    load_json_file,
    utc_now,
)
from ansible_collections.rocm.madengine.plugins.module_utils.vm.image import (
    create_overlay,
    create_seed_iso,
)
from ansible_collections.rocm.madengine.plugins.module_utils.vm.spec import (
    METADATA_NS,
    STATE_VERSION,
    render_domain_xml,
)

try:
    import libvirt

    HAS_LIBVIRT = True
    LIBVIRT_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - exercised by the import sanity test
    libvirt = None
    HAS_LIBVIRT = False
    LIBVIRT_IMPORT_ERROR = traceback.format_exc()


# What a libvirt call raises (nothing to catch when the binding is missing).
LIBVIRT_ERRORS = (libvirt.libvirtError,) if libvirt is not None else ()


def _const(name, default):
    return getattr(libvirt, name, default) if libvirt is not None else default


ERR_INTERNAL = _const("VIR_ERR_INTERNAL_ERROR", 1)
ERR_NO_SUPPORT = _const("VIR_ERR_NO_SUPPORT", 3)
ERR_INVALID_ARG = _const("VIR_ERR_INVALID_ARG", 8)
ERR_OPERATION_FAILED = _const("VIR_ERR_OPERATION_FAILED", 9)
ERR_XML = _const("VIR_ERR_XML_ERROR", 27)
ERR_SYSTEM = _const("VIR_ERR_SYSTEM_ERROR", 38)
ERR_RPC = _const("VIR_ERR_RPC", 39)
ERR_NO_DOMAIN = _const("VIR_ERR_NO_DOMAIN", 42)
ERR_OPERATION_INVALID = _const("VIR_ERR_OPERATION_INVALID", 55)
ERR_CONFIG_UNSUPPORTED = _const("VIR_ERR_CONFIG_UNSUPPORTED", 67)
ERR_OPERATION_TIMEOUT = _const("VIR_ERR_OPERATION_TIMEOUT", 68)
ERR_ARGUMENT_UNSUPPORTED = _const("VIR_ERR_ARGUMENT_UNSUPPORTED", 74)
ERR_AGENT_UNRESPONSIVE = _const("VIR_ERR_AGENT_UNRESPONSIVE", 86)

UNDEFINE_NVRAM = _const("VIR_DOMAIN_UNDEFINE_NVRAM", 4)
UNDEFINE_MANAGED_SAVE = _const("VIR_DOMAIN_UNDEFINE_MANAGED_SAVE", 1)
UNDEFINE_SNAPSHOTS = _const("VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA", 2)
UNDEFINE_CHECKPOINTS = _const("VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA", 16)
# Most complete first; drivers that reject a flag ("unsupported flags") get the next set.
UNDEFINE_FLAG_SETS = (
    UNDEFINE_NVRAM | UNDEFINE_MANAGED_SAVE | UNDEFINE_SNAPSHOTS | UNDEFINE_CHECKPOINTS,
    UNDEFINE_NVRAM | UNDEFINE_MANAGED_SAVE | UNDEFINE_SNAPSHOTS,
    UNDEFINE_NVRAM,
    UNDEFINE_MANAGED_SAVE | UNDEFINE_SNAPSHOTS,
    0,
)
DEFINE_VALIDATE = _const("VIR_DOMAIN_DEFINE_VALIDATE", 1)
XML_INACTIVE = _const("VIR_DOMAIN_XML_INACTIVE", 2)
IP_SOURCES = {"lease": 0, "agent": 1, "arp": 2}

# Messages of libvirt errors worth a retry: QEMU dying at start-up, timeouts and I/O trouble.
TRANSIENT_MARKERS = (
    "qemu unexpectedly closed the monitor",
    "process exited while connecting to monitor",
    "timed out",
    "timeout",
    "input/output error",
    "resource temporarily unavailable",
    "cannot acquire state change lock",
    "connection reset",
)
_CI_INFO_RE = re.compile(
    r"ci-info:\s*\|\s*(\S+)\s*\|\s*True\s*\|\s*(\d{1,3}(?:\.\d{1,3}){3})\s*\|[^|\n]*\|[^|\n]*\|\s*([0-9A-Fa-f:.]+)\s*\|"
)


class WaitTimeout(MadengineError):
    """The guest did not reach the awaited condition in time (worth a retry)."""


class Interrupted(MadengineError):
    """The module was asked to stop (SIGTERM, SIGINT, SIGHUP) while it worked."""


def is_transient(exc):
    """Retry timeouts, QEMU dying at start-up and I/O errors; never configuration errors."""
    if isinstance(exc, WaitTimeout):
        return True
    if libvirt is not None and isinstance(exc, libvirt.libvirtError):
        code = exc.get_error_code()
        text = str(exc).lower()
        if code in (ERR_XML, ERR_CONFIG_UNSUPPORTED, ERR_INVALID_ARG, ERR_NO_SUPPORT):
            return False
        if code in (ERR_OPERATION_TIMEOUT, ERR_SYSTEM, ERR_RPC, ERR_AGENT_UNRESPONSIVE):
            return True
        if code in (ERR_INTERNAL, ERR_OPERATION_FAILED):
            return any(marker in text for marker in TRANSIENT_MARKERS)
    return False


def backoff_delays(retries, base, factor=2.0, jitter=0.2, rng=None):
    """Delays before each retry: ``base``, ``base*2``, … each with ±``jitter`` spread."""
    rng = rng or random.Random()
    return [base * (factor ** i) * (1 + rng.uniform(-jitter, jitter)) for i in range(retries)]


def _error_text(exc):
    text = str(exc).strip()
    return text if text.endswith(".") else text + "."


def _quiet(_ctx, _err):
    """libvirt prints every error on stderr unless a handler is registered; errors are raised anyway."""


def connect(uri):
    if libvirt is None:
        raise MadengineError("libvirt-python is not installed for this Python.")
    libvirt.registerErrorHandler(_quiet, None)
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise MadengineError("cannot connect to libvirt at %s: %s" % (uri, _error_text(exc)))
    if conn is None:  # pragma: no cover - old bindings returned None instead of raising
        raise MadengineError("cannot connect to libvirt at %s." % uri)
    return conn


def lookup(conn, name):
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == ERR_NO_DOMAIN:
            return None
        raise


def read_metadata(dom, xml=None):
    """Our metadata of a domain as a dict, or ``None`` when the domain was not made by this module."""
    root = ET.fromstring(xml or dom.XMLDesc(0))
    node = root.find("metadata/{%s}vm" % METADATA_NS)
    if node is None:
        return None
    meta = {}
    for child in node:
        tag = child.tag.split("}", 1)[-1]
        if tag == "hostdev":
            meta.setdefault("hostdevs", []).append(child.get("bdf"))
        elif tag == "mdev":
            meta.setdefault("mdevs", []).append(child.get("uuid"))
        else:
            meta[tag] = (child.text or "").strip()
    nvram = root.find("os/nvram")
    if nvram is not None and (nvram.text or "").strip():
        meta["nvram"] = nvram.text.strip()
    return meta


def disk_sources(xml):
    root = ET.fromstring(xml)
    return [s.get("file") for s in root.findall("devices/disk/source") if s.get("file")]


def nvram_path(xml):
    node = ET.fromstring(xml).find("os/nvram")
    return (node.text or "").strip() if node is not None and node.text else None


def state_file_path(state_dir, name):
    return os.path.join(state_dir, "%s.json" % name)


def load_record(state_dir, name):
    path = state_file_path(state_dir, name)
    if not os.path.exists(path):
        return None
    record = load_json_file(path, "VM state file")
    if not isinstance(record, dict) or record.get("name") != name:
        raise MadengineError("VM state file %s does not describe VM %s." % (path, name))
    return record


def save_record(record):
    directory = os.path.dirname(record["state_file"])
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise MadengineError("cannot create state_dir %s: %s." % (directory, exc.strerror or exc))
    atomic_write_json(record["state_file"], record, mode=0o600)


def record_paths(record, keep_logs):
    """Files a record owns, in removal order. The console log only when logs are not kept."""
    paths = [record.get(k) for k in ("overlay", "seed", "nvram")]
    if not keep_logs:
        paths.append(record.get("console_log"))
    return [p for p in paths if p]


def _destroy(dom):
    for attempt in range(3):
        try:
            dom.destroy()
            return True
        except libvirt.libvirtError as exc:
            code = exc.get_error_code()
            if code in (ERR_OPERATION_INVALID, ERR_NO_DOMAIN):
                return False
            if attempt == 2 or (not is_transient(exc) and code != ERR_OPERATION_FAILED):
                raise
            time.sleep(1)
    return False  # pragma: no cover


def undefine(dom):
    """Undefine with NVRAM, managed-save, snapshot and checkpoint metadata, dropping flags a driver rejects.

    Returns the flags that worked, or ``None`` when the domain was transient or already gone.
    """
    try:
        if not dom.isPersistent():
            return None
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == ERR_NO_DOMAIN:
            return None
        raise
    last = None
    for flags in UNDEFINE_FLAG_SETS:
        try:
            if flags:
                dom.undefineFlags(flags)
            else:
                dom.undefine()
            return flags
        except libvirt.libvirtError as exc:
            code = exc.get_error_code()
            if code == ERR_NO_DOMAIN:
                return None
            if code in (ERR_INVALID_ARG, ERR_NO_SUPPORT, ERR_ARGUMENT_UNSUPPORTED, ERR_OPERATION_INVALID):
                last = exc
                continue
            raise
    raise MadengineError("cannot undefine VM %s: %s" % (dom.name(), _error_text(last)))


def _remove(path):
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise MadengineError("cannot remove %s: %s." % (path, exc.strerror or exc))


class Lifecycle(object):
    """Acts on one libvirt connection. ``log`` receives one-line progress notes (returned as ``actions``)."""

    def __init__(self, conn, run_command, sleep=time.sleep, clock=time.monotonic):
        self.conn = conn
        self.run_command = run_command
        self.sleep = sleep
        self.clock = clock
        self.actions = []
        self.timings = {}

    # ---- small helpers ----------------------------------------------------------------------
    def _note(self, text):
        self.actions.append(text)

    def _timed(self, phase, func, *args):
        start = self.clock()
        try:
            return func(*args)
        finally:
            self.timings[phase] = round(self.timings.get(phase, 0.0) + self.clock() - start, 4)

    # ---- teardown ---------------------------------------------------------------------------
    def teardown(self, name, record=None, keep_logs=False, adopt=False, image_dir=None):
        """destroy → undefine (NVRAM flags, falling back) → delete overlay, seed, NVRAM, console log, state file.

        Works from ``record`` (the state file) when the domain is gone, and from the domain's
        metadata when the state file is gone. A domain without our metadata is left alone unless
        ``adopt`` (name-prefix sweep), in which case only its disks inside ``image_dir`` that are
        named after it are removed.
        """
        record = dict(record or {})
        removed = []
        dom = lookup(self.conn, name)
        if dom is not None:
            xml = dom.XMLDesc(0)
            meta = read_metadata(dom, xml)
            if meta is None and not record and not adopt:
                raise MadengineError(
                    "a domain named %s exists but was not created by madengine_vm; it is left alone." % name
                )
            if meta:
                for key in ("overlay", "seed", "nvram", "console_log", "state_file"):
                    if meta.get(key) and not record.get(key):
                        record[key] = meta[key]
            elif adopt and image_dir:
                for src in disk_sources(xml):
                    if os.path.dirname(src) == image_dir.rstrip("/") and os.path.basename(src).startswith(name):
                        record.setdefault("adopted", []).append(src)
            if not record.get("nvram"):
                record["nvram"] = nvram_path(xml)
            if self._timed("destroy", _destroy, dom):
                self._note("destroyed domain %s" % name)
            flags = self._timed("undefine", undefine, dom)
            if flags is not None:
                self._note("undefined domain %s (flags 0x%x)" % (name, flags))
            removed.append("domain")
        start = self.clock()
        for path in record_paths(record, keep_logs) + record.get("adopted", []):
            if _remove(path):
                removed.append(path)
                self._note("removed %s" % path)
        self.timings["cleanup"] = round(self.timings.get("cleanup", 0.0) + self.clock() - start, 4)
        if record.get("state_file") and _remove(record["state_file"]):
            removed.append(record["state_file"])
        return removed

    # ---- creation ---------------------------------------------------------------------------
    def _build(self, spec, start):
        """One attempt: state file first, then overlay, seed, define, start, wait. Raises on failure."""
        record = dict(spec["record"], created=utc_now(), phase="creating")
        save_record(record)
        self._timed("overlay", create_overlay, self.run_command, spec["base_image"], spec["overlay"],
                    spec["disk_bytes"])
        self._note("created overlay %s" % spec["overlay"])
        self._timed("seed", create_seed_iso, self.run_command, spec["seed"], spec["user_data"], spec["meta_data"])
        self._note("created seed %s" % spec["seed"])
        xml = render_domain_xml(dict(spec["xml_context"], created=record["created"]))
        dom = self._timed("define", self._define, xml)
        self._note("defined domain %s" % spec["name"])
        record["nvram"] = nvram_path(dom.XMLDesc(0)) or record.get("nvram")
        record["phase"] = "defined"
        save_record(record)
        ip = None
        if start:
            ip = self._start_and_wait(dom, spec, record)
        return dom, record, ip, xml

    def _define(self, xml):
        try:
            return self.conn.defineXMLFlags(xml, DEFINE_VALIDATE)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in (ERR_NO_SUPPORT, ERR_ARGUMENT_UNSUPPORTED):
                return self.conn.defineXML(xml)
            raise

    def _start_and_wait(self, dom, spec, record):
        self._timed("start", dom.create)
        self._note("started domain %s" % spec["name"])
        record["nvram"] = nvram_path(dom.XMLDesc(0)) or record.get("nvram")
        record["phase"] = "running"
        save_record(record)
        return self._timed("wait", self.wait, dom, spec)

    def _attempts(self, spec, action):
        """Run ``action`` with retries for transient errors; tear everything down after each failure."""
        delays = backoff_delays(spec["retries"], spec["retry_delay"])
        attempt = 0
        while True:
            attempt += 1
            try:
                return action(), attempt
            except Exception as exc:  # every failure must leave nothing behind
                try:
                    self.teardown(spec["name"], spec["record"], keep_logs=spec["keep_logs"])
                except Exception as cleanup_exc:
                    raise MadengineError(
                        "VM %s failed (%s) and its cleanup failed too (%s); run state=absent for it again."
                        % (spec["name"], _error_text(exc).rstrip("."), _error_text(cleanup_exc).rstrip("."))
                    )
                transient = is_transient(exc) and not isinstance(exc, Interrupted)
                if not transient or attempt > spec["retries"]:
                    what = "after %d attempts" % attempt if attempt > 1 else "and was not retried" if not transient \
                        else "after 1 attempt"
                    tail = console_tail(spec.get("console_log")) if spec.get("keep_logs") else ""
                    raise MadengineError(
                        "VM %s could not be brought up %s: %s Everything created for it was removed.%s"
                        % (spec["name"], what, _error_text(exc), (" Console: " + tail) if tail else "")
                    )
                delay = delays[attempt - 1]
                self._note("attempt %d failed (%s); retrying in %.1f s" % (attempt, _error_text(exc), delay))
                self.sleep(delay)

    def ensure(self, spec, state, check_mode=False):
        """Bring the VM to ``running`` or ``stopped``. Returns a result dict for the module."""
        name = spec["name"]
        dom = lookup(self.conn, name)
        result = dict(changed=False, uuid=spec["uuid"], mac=spec["mac"], overlay=spec["overlay"], seed=spec["seed"],
                      console_log=spec["console_log"], state_file=spec["state_file"], attempts=0, ip=None,
                      domain_type=spec["domain_type"], nvram=None)
        if dom is not None:
            xml = dom.XMLDesc(0)
            meta = read_metadata(dom, xml)
            if meta is None:
                raise MadengineError("a domain named %s exists but was not created by madengine_vm." % name)
            if meta.get("spec_hash") != spec["spec_hash"]:
                if not spec["recreate"]:
                    have, want = meta.get("spec_hash", "")[:12], spec["spec_hash"][:12]
                    raise MadengineError(
                        "VM %s exists with a different specification (spec hash %s, wanted %s); set recreate: true "
                        "or remove it with state: absent first." % (name, have, want)
                    )
                result["changed"] = True
                result["diff"] = dict(before=xml, after=render_domain_xml(dict(spec["xml_context"], created=utc_now())))
                if check_mode:
                    return result
                self.teardown(name, load_record(spec["state_dir"], name) or spec["record"], keep_logs=spec["keep_logs"])
                self._note("removed VM %s to recreate it" % name)
                dom = None
            else:
                result["nvram"] = meta.get("nvram")
                return self._converge_existing(dom, meta, spec, state, check_mode, result)
        if dom is None:
            result["changed"] = True
            after = render_domain_xml(dict(spec["xml_context"], created=utc_now()))
            result.setdefault("diff", dict(before="", after=after))
            if check_mode:
                return result
            (dom, record, ip, xml), attempts = self._attempts(spec, lambda: self._build(spec, state == "running"))
            result.update(attempts=attempts, ip=ip, nvram=record.get("nvram"), diff=dict(before="", after=xml))
        return result

    def _converge_existing(self, dom, meta, spec, state, check_mode, result):
        record = load_record(spec["state_dir"], spec["name"])
        if record is None and not check_mode:
            # The state file was lost (e.g. state_dir wiped): write it back from the metadata.
            record = dict(spec["record"], created=meta.get("created") or utc_now(), nvram=meta.get("nvram"),
                          phase="running" if dom.isActive() else "defined")
            save_record(record)
        active = bool(dom.isActive())
        if state == "running":
            if active:
                if not check_mode:
                    result["ip"] = self._timed("wait", self.wait, dom, spec)
                return result
            result["changed"] = True
            if check_mode:
                return result

            def start():
                # A failed attempt removed the domain: later attempts create it again.
                current = lookup(self.conn, spec["name"])
                if current is None:
                    return self._build(spec, True)[2]
                return self._start_and_wait(current, spec, load_record(spec["state_dir"], spec["name"]) or record)

            ip, attempts = self._attempts(spec, start)
            result.update(ip=ip, attempts=attempts)
            return result
        # stopped
        if active:
            result["changed"] = True
            if not check_mode:
                self.stop(dom, spec["stop_timeout"])
        return result

    def stop(self, dom, timeout):
        """ACPI shutdown, then destroy when the guest does not power off within ``timeout`` seconds."""
        try:
            dom.shutdown()
            self._note("asked %s to shut down" % dom.name())
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != ERR_OPERATION_INVALID:
                raise
        deadline = self.clock() + timeout
        while self.clock() < deadline:
            if not dom.isActive():
                return
            self.sleep(0.5)
        if _destroy(dom):
            self._note("destroyed %s after %d s without power-off" % (dom.name(), timeout))

    # ---- waiting for the guest ---------------------------------------------------------------
    def wait(self, dom, spec):
        """Wait per ``wait_for`` (none, ip, ssh) until ``boot_timeout``; returns the IP (or None)."""
        mode = spec["wait_for"]
        if mode == "none":
            return None
        deadline = self.clock() + spec["boot_timeout"]
        delay = 0.25
        ip = None
        while True:
            if not dom.isActive():
                tail = console_tail(spec["console_log"])
                console = (" Console: " + tail) if tail else ""
                raise MadengineError("VM %s stopped while booting.%s" % (spec["name"], console))
            ip = ip or guest_ip(dom, spec["mac"], spec["ip_sources"], spec["console_log"])
            if ip and (mode == "ip" or ssh_banner(ip, spec["ssh_port"], timeout=min(3.0, spec["boot_timeout"]))):
                where = ip if mode == "ip" else "%s:%d" % (ip, spec["ssh_port"])
                self._note("VM %s answered on %s" % (spec["name"], where))
                return ip
            if self.clock() >= deadline:
                what = "an IP address (sources: %s)" % ", ".join(spec["ip_sources"]) if not ip \
                    else "SSH on %s:%d" % (ip, spec["ssh_port"])
                raise WaitTimeout("VM %s did not report %s within %d s." % (spec["name"], what, spec["boot_timeout"]))
            self.sleep(delay)
            delay = min(delay * 2, 2.0)

    # ---- verification and sweep --------------------------------------------------------------
    def verify_clean(self, name, uuid=None, paths=(), hostdevs=(), host=None):
        """What is left of VM ``name``: its domain, its files, processes holding its hostdevs' VFIO groups."""
        problems = []
        for dom in self.conn.listAllDomains(0):
            if dom.name() == name or (uuid and dom.UUIDString() == uuid):
                problems.append("domain %s (%s) is still defined" % (dom.name(), dom.UUIDString()))
        for path in paths:
            if path and os.path.lexists(path):
                problems.append("%s still exists" % path)
        for bdf in hostdevs if host is not None else ():
            group, holders = host.vfio_holders(bdf)
            if holders:
                problems.append("/dev/vfio/%s (IOMMU group of %s) is still open by PID %s"
                                % (group, bdf, ", ".join(holders)))
        return dict(ok=not problems, problems=problems)

    def sweep_candidates(self, state_dir, prefix, now):
        """Orphans: domains with our metadata or the name prefix, and state files; each with its age."""
        found = {}
        for dom in self.conn.listAllDomains(0):
            name = dom.name()
            xml = dom.XMLDesc(0)
            meta = read_metadata(dom, xml)
            if meta is None and not name.startswith(prefix):
                continue
            created = _parse_time(meta.get("created")) if meta else None
            if created is None:
                created = _oldest_mtime(disk_sources(xml))
            found[name] = dict(name=name, created=created, source="metadata" if meta else "name prefix",
                               adopt=meta is None)
        for path in sorted(glob.glob(os.path.join(state_dir, "*.json"))):
            try:
                record = load_json_file(path, "VM state file")
            except MadengineError:
                continue
            if not isinstance(record, dict) or record.get("version") != STATE_VERSION or not record.get("name"):
                continue
            entry = found.setdefault(record["name"], dict(name=record["name"], created=None, source="state file",
                                                          adopt=False))
            entry["record"] = record
            if entry["created"] is None:
                entry["created"] = _parse_time(record.get("created")) or os.path.getmtime(path)
        for entry in found.values():
            entry["age"] = None if entry["created"] is None else max(0.0, now - entry["created"])
        return [found[k] for k in sorted(found)]


def _parse_time(text):
    if not text:
        return None
    try:
        return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))
    except (ValueError, OverflowError):
        return None


def _oldest_mtime(paths):
    times = []
    for path in paths:
        try:
            times.append(os.path.getmtime(path))
        except OSError:
            pass
    return min(times) if times else None


def guest_ip(dom, mac, sources, console_log):
    """First IPv4 address from the sources in order; an interface with our MAC wins over others."""
    for source in sources:
        if source == "console":
            ip = console_ip(console_log, mac)
        else:
            try:
                ip = pick_address(dom.interfaceAddresses(IP_SOURCES[source], 0), mac)
            except libvirt.libvirtError:
                ip = None
        if ip:
            return ip
    return None


def pick_address(interfaces, mac):
    found = []
    for info in (interfaces or {}).values():
        hwaddr = (info.get("hwaddr") or "").lower()
        for addr in info.get("addrs") or []:
            if addr.get("type", 0) == 0 and addr.get("addr") and not addr["addr"].startswith("127."):
                found.append((hwaddr != (mac or "").lower(), addr["addr"]))
    return sorted(found)[0][1] if found else None


def console_ip(console_log, mac):
    """The address of cloud-init's "Net device info" table (``ci-info: | eth0 | True | <ip> | …``)."""
    if not console_log:
        return None
    try:
        with open(console_log, "rb") as handle:
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return None
    found = []
    for dev, ip, hwaddr in _CI_INFO_RE.findall(text):
        if dev != "lo" and not ip.startswith("127."):
            found.append((hwaddr.lower() != (mac or "").lower(), ip))
    return sorted(found)[0][1] if found else None


def ssh_banner(host, port, timeout=3.0):
    """True once something on ``host:port`` greets with an SSH identification string."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(64).startswith(b"SSH-")
    except (OSError, socket.timeout):
        return False


def console_tail(path, lines=15):
    if not path:
        return ""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 4096))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())
