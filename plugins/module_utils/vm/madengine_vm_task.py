# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""What the madengine_vm module does with its options: bring one VM up or down, or sweep orphans.

Signals (SIGTERM, SIGINT, SIGHUP) interrupt the work with :class:`Interrupted`, so what was being created is
torn down before the module exits.
"""

from __future__ import annotations

import os
import shlex
import signal
import time

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError
from ansible_collections.rocm.madengine.plugins.module_utils.host.hostfs import HostFs
from ansible_collections.rocm.madengine.plugins.module_utils.vm.lifecycle import (
    HAS_LIBVIRT,
    LIBVIRT_ERRORS,
    LIBVIRT_IMPORT_ERROR,
    Interrupted,
    Lifecycle,
    connect,
    load_record,
    lookup,
    read_metadata,
    record_paths,
)
from ansible_collections.rocm.madengine.plugins.module_utils.vm.spec import (
    HAS_JINJA2,
    JINJA2_IMPORT_ERROR,
    build_spec,
    check_name,
    parse_age,
    requested_devices,
    stable_uuid,
)

_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
LOCAL_CONNECTIONS = ("local", "ansible.builtin.local")
# Every VM is new: its host key is neither checked nor kept.
SSH_ARGS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"


def _interrupt(signum, _frame):
    # A second signal must not interrupt the teardown the first one starts.
    for other in _SIGNALS:
        signal.signal(other, signal.SIG_IGN)
    raise Interrupted("interrupted by signal %d." % signum)


def _runner(module):
    return lambda argv: module.run_command(argv, check_rc=False)


def run(module):
    """The module's work, with signals turned into a teardown."""
    params = module.params
    if not HAS_LIBVIRT:
        module.fail_json(msg=missing_required_lib("libvirt-python"), exception=LIBVIRT_IMPORT_ERROR)
    if not HAS_JINJA2:
        module.fail_json(msg=missing_required_lib("Jinja2"), exception=JINJA2_IMPORT_ERROR)
    if params["sweep"] and params["state"] != "absent":
        module.fail_json(msg="sweep only works with state=absent.")
    if params["retries"] < 0 or params["boot_timeout"] < 1 or params["retry_delay"] < 0:
        module.fail_json(msg="retries and retry_delay must not be negative and boot_timeout must be at least 1.")
    previous = {s: signal.signal(s, _interrupt) for s in _SIGNALS}
    try:
        _run(module)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run(module):
    params = module.params
    lifecycle = None
    try:
        spec = build_spec(params, _runner(module)) if params["state"] != "absent" else None
        lifecycle = Lifecycle(connect(params["uri"]), _runner(module))
        if params["sweep"]:
            result = sweep(module, lifecycle)
        elif params["state"] == "absent":
            result = absent(module, lifecycle)
        else:
            result = present(module, lifecycle, spec)
    except (MadengineError,) + LIBVIRT_ERRORS as exc:
        text = str(exc) if isinstance(exc, MadengineError) else "libvirt failed: %s" % exc
        extra = dict(leftovers=["VM %s could not be removed: %s" % (params["name"], text)]) \
            if params["state"] == "absent" and not params["sweep"] else {}
        module.fail_json(msg=text, actions=lifecycle.actions if lifecycle else [],
                         timings=lifecycle.timings if lifecycle else {}, **extra)
    result["actions"] = result.get("actions", []) + lifecycle.actions
    result["timings"] = lifecycle.timings
    if not module._diff:
        result.pop("diff", None)
    clean = result.get("clean")
    if clean and not clean["ok"] and params["verify_clean"] and not module.check_mode:
        module.fail_json(msg="VM %s was removed but the host is not clean: %s."
                         % (params["name"], "; ".join(clean["problems"])), **result)
    module.exit_json(**result)


def present(module, lifecycle, spec):
    """state running or stopped: the VM as specified, and how the controller reaches it."""
    params = module.params
    result = lifecycle.ensure(spec, params["state"], check_mode=module.check_mode)
    result["domain_type_reasons"] = spec["domain_type_reasons"]
    if spec["domain_type"] == "kvm" and not spec["kvm_usable"]:
        module.warn("domain_type=kvm was asked for, but %s; the guest may not boot."
                    % "; ".join(spec["domain_type_reasons"] or ["KVM does not look usable"]))
    for warning in spec["warnings"]:
        module.warn(warning)
    if spec["pinning"]:
        result["actions"] = ["vCPUs pinned to %s" % spec["pinning"]["source"]]
    result["inventory_host"] = inventory_host(params, result["uuid"], result["ip"])
    result["ssh_command"] = ssh_command(result["inventory_host"])
    return result


def inventory_host(params, uuid, ip):
    """The VM as an inventory host (the arguments of ansible.builtin.add_host), from O(inventory).

    The controller logs in as the cloud-init user (with sudo unless it is root) at the VM's address, through
    the hypervisor with an SSH ProxyJump unless the controller reaches the hypervisor with a local connection.
    """
    given = params.get("inventory") or {}
    ssh_args = SSH_ARGS
    if given.get("jump_host") and given.get("node_connection") not in LOCAL_CONNECTIONS:
        user = "%s@" % given["jump_user"] if given.get("jump_user") else ""
        port = ":%d" % given["jump_port"] if given.get("jump_port") else ""
        ssh_args += " -o ProxyJump=%s%s%s" % (user, given["jump_host"], port)
    # Pipelining: one SSH round trip per task instead of four, which counts when the guest is emulated.
    host_vars = dict(ansible_host=ip or "", ansible_user=params["ssh_user"],
                     ansible_become=params["ssh_user"] != "root", ansible_ssh_common_args=ssh_args,
                     ansible_pipelining=True,
                     madengine_docker_host=given.get("docker_host") or "unix:///var/run/docker.sock",
                     madengine_vm_uuid=uuid)
    if given.get("private_key_file"):
        host_vars["ansible_ssh_private_key_file"] = given["private_key_file"]
    if given.get("node"):
        host_vars["madengine_vm_node"] = given["node"]
    host_vars.update(given.get("vars") or {})
    return dict(host_vars, name=params["name"], groups=list(given.get("groups") or ["madengine_vms"]))


def ssh_command(host_vars):
    """The ``ssh`` command line that reaches the VM as its inventory host does; empty without an SSH connection."""
    connection = host_vars.get("ansible_connection") or "ssh"
    if connection not in ("ssh", "ansible.builtin.ssh") or not host_vars.get("ansible_host"):
        return ""
    argv = ["ssh"]
    if host_vars.get("ansible_ssh_private_key_file"):
        argv += ["-i", str(host_vars["ansible_ssh_private_key_file"])]
    if host_vars.get("ansible_port"):
        argv += ["-p", str(host_vars["ansible_port"])]
    for key in ("ansible_ssh_common_args", "ansible_ssh_extra_args"):
        argv += shlex.split(str(host_vars.get(key) or ""))
    user = "%s@" % host_vars["ansible_user"] if host_vars.get("ansible_user") else ""
    return " ".join(shlex.quote(arg) for arg in argv + [user + str(host_vars["ansible_host"])])


def _known_files(params, record, meta):
    """Every file of VM ``name``: the default names, over them the state file's, then the domain metadata's."""
    name = params["name"]
    known = dict(overlay=os.path.join(params["image_dir"], "%s.qcow2" % name),
                 seed=os.path.join(params["image_dir"], "%s-seed.iso" % name),
                 console_log=os.path.join(params["log_dir"], "%s.console.log" % name),
                 state_file=os.path.join(params["state_dir"], "%s.json" % name))
    known.update({k: v for k, v in (record or {}).items() if v})
    if meta:
        known.update({k: v for k, v in meta.items() if k in ("overlay", "seed", "nvram", "console_log") and v})
    return known


def absent(module, lifecycle):
    """state absent: remove the VM and everything it owns, then say what is left (``clean``, ``leftovers``)."""
    params = module.params
    name = params["name"]
    check_name(name)
    record = load_record(params["state_dir"], name)
    dom = lookup(lifecycle.conn, name)
    meta = read_metadata(dom) if dom is not None else None
    known = _known_files(params, record, meta)
    paths = record_paths(known, params["keep_logs"]) + [known["state_file"]]
    hostdevs = list((record or {}).get("hostdevs") or (meta or {}).get("hostdevs") or [])
    hostdevs += [d["bdf"] for d in requested_devices(params)[0] if d["bdf"] not in hostdevs]
    uuid = (record or {}).get("uuid") or (dom.UUIDString() if dom is not None else stable_uuid(name))
    result = dict(uuid=uuid, overlay=known["overlay"], seed=known["seed"], nvram=known.get("nvram"),
                  console_log=known["console_log"], state_file=known["state_file"], ip=None, removed=[])
    before = dom.XMLDesc(0) if dom is not None and module._diff else None
    if module.check_mode:
        result["removed"] = (["domain"] if dom is not None else []) + [p for p in paths if os.path.lexists(p)]
    else:
        result["removed"] = lifecycle.teardown(name, record, keep_logs=params["keep_logs"])
    result["changed"] = bool(result["removed"])
    if before is not None:
        result["diff"] = dict(before=before, after="")
    result["clean"] = lifecycle.verify_clean(name, uuid, [] if module.check_mode else paths, hostdevs,
                                             HostFs(params["host_root"]))
    result["leftovers"] = list(result["clean"]["problems"])
    return result


def sweep(module, lifecycle):
    """state absent with sweep: remove every orphan older than sweep.older_than."""
    params = module.params
    older = parse_age(params["sweep"]["older_than"])
    swept, skipped = [], []
    for cand in lifecycle.sweep_candidates(params["state_dir"], params["sweep"]["name_prefix"], time.time()):
        entry = dict(name=cand["name"], age=None if cand["age"] is None else round(cand["age"], 1),
                     source=cand["source"])
        if cand["age"] is None or cand["age"] < older:
            younger = "younger than %s" % params["sweep"]["older_than"]
            entry["reason"] = "age unknown" if cand["age"] is None else younger
            skipped.append(entry)
            continue
        if not module.check_mode:
            entry["removed"] = lifecycle.teardown(cand["name"], cand.get("record"), keep_logs=params["keep_logs"],
                                                  adopt=cand["adopt"], image_dir=params["image_dir"])
        swept.append(entry)
    return dict(changed=bool(swept), swept=swept, skipped=skipped, ip=None)
