# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""The madengine_run task: a manifest in, containers run on this node, rows out.

:func:`run_models` is the whole module minus AnsibleModule.  It raises MadengineError for task-level
errors (bad options, a missing or corrupt manifest, a GPU vendor the node does not have, missing device
nodes, an unwritable results directory, an unreachable engine); a model that fails is a row.
"""

from __future__ import annotations

import datetime
import fcntl
import os
import re
import time
import uuid

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.context import load_context, normalise_context
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.credentials import Credentials
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.data import load_data_config
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.docker_client import DockerError, scrub
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.manifest import (
    check_directory,
    check_writable,
    load_manifest,
)
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.rows import STATUSES, write_csv
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.run import (
    UNSUPPORTED_CONTEXT_KEYS,
    Executor,
    Planner,
    RunSettings,
    select_runs,
)
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError
from ansible_collections.rocm.madengine.plugins.module_utils.host.gpu import detect, rocm_root
from ansible_collections.rocm.madengine.plugins.module_utils.host.hostfs import HostFs

CSV_NAME = "perf.csv"
# Context keys that describe one machine: a manifest's values describe the build host, not this node.
NODE_CONTEXT_KEYS = ("docker_gpus", "docker_cpus", "gpu_renderDs")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def new_run_id():
    """``20261122T101500Z-1a2b3c``: sortable by time, unique enough for one fleet."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return "%s-%s" % (now, uuid.uuid4().hex[:6])


def _load_manifest(params):
    if params.get("manifest") is not None:
        document = params["manifest"]
        source = "the manifest option"
        if not isinstance(document, dict):
            raise MadengineError("The manifest option must be a build manifest object.")
        for key in ("built_images", "built_models"):
            if not isinstance(document.get(key), dict):
                raise MadengineError("The manifest option has no '%s' object; is it a madengine build manifest?" % key)
        return document, source
    path = params["manifest_path"]
    return load_manifest(path), "manifest %s" % path


def _default_file(mad_root, name):
    if mad_root:
        path = os.path.join(mad_root, name)
        if os.path.isfile(path):
            return path
    return None


class CsvAppender(object):
    """Adds rows to the node's CSV after every model, under an exclusive lock of its directory."""

    def __init__(self, path, append):
        self.path = path
        self.append = append

    def add(self, rows):
        if not rows:
            return
        directory = os.path.dirname(os.path.abspath(self.path))
        fd = os.open(directory, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            write_csv(self.path, rows, append=self.append)
            self.append = True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def summarise(runs, rows, run_id, node, perf_csv, started):
    counts = dict((status, 0) for status in STATUSES)
    for row in rows:
        counts[row["status"]] += 1
    failed = [{"model": row["model"], "status": row["status"], "error": row["error"]}
              for row in rows if row["status"] in ("FAILURE", "TIMEOUT")]
    skipped = [{"model": row["model"], "reason": row["error"]} for row in rows if row["status"] == "SKIPPED"]
    return {"run_id": run_id, "node": node, "perf_csv": perf_csv, "models": len(runs), "rows": len(rows),
            "counts": counts, "failed": failed, "skipped": skipped, "duration": round(time.monotonic() - started, 3)}


def pull_images(runs, executor, check_mode, secrets, warn):
    """Make sure every image this node would run is on its engine (as the pull policy says), run nothing.

    One item per image to run: ``model``, ``image`` (manifest key), ``ref`` (what a pull asks for),
    ``pulled``, ``image_digest`` and ``error``.  An image that cannot be had is an ``error`` (and a
    warning), not a task failure: the model's run says so in its row.
    """
    images = []
    for run in runs:
        if run.action != "run":
            continue
        entry = run.entry
        item = {"model": run.name, "image": run.key,
                "ref": entry.get("registry_digest") or entry.get("registry_image") or entry.get("docker_image") or "",
                "pulled": False, "image_digest": "", "error": ""}
        if not check_mode:
            try:
                image = executor.resolve_image(run)
            except (MadengineError, DockerError) as exc:
                item["error"] = scrub(str(exc), secrets)
                warn("Model '%s': %s" % (run.name, item["error"]))
            else:
                item["pulled"] = run.pulled
                item["image_digest"] = executor.image_digest(run, image)
        images.append(item)
    return images


def run_models(params, check_mode, client_factory, warn, register_secrets, runner, progress=None, find_tool=None,
               group_ids=None, environ=None):
    """Run madengine_run; ``params`` are the module options, ``runner(argv) -> (rc, out, err)`` runs the
    GPU tools.  Returns the result dict."""
    started = time.monotonic()
    environ = dict(os.environ) if environ is None else environ
    timeout = params.get("timeout")
    if timeout is not None and timeout < 0:
        raise MadengineError("timeout must be 0 (no limit) or a number of seconds, not %d." % timeout)
    run_id = params.get("run_id") or new_run_id()
    if not _RUN_ID.match(run_id):
        raise MadengineError("run_id %r must be 1-64 letters, digits, '.', '_' or '-'." % run_id)
    mad_root = params.get("mad_root")
    if mad_root and not os.path.isdir(mad_root):
        raise MadengineError("mad_root %s is not a directory." % mad_root)

    manifest, source = _load_manifest(params)
    manifest_ctx = manifest.get("context") if isinstance(manifest.get("context"), dict) else {}
    run_ctx, run_source = load_context(params.get("additional_context"), params.get("additional_context_file"))
    ctx = dict(manifest_ctx)
    for key in NODE_CONTEXT_KEYS:
        if key in ctx and key not in run_ctx:
            value = ctx.pop(key)
            if value not in (None, "", []):
                warn("The context key '%s' (%s) of %s describes the build host and is ignored; give it in "
                     "additional_context to set it for this node." % (key, value, source))
    ctx.update(run_ctx)
    ctx = normalise_context(ctx, "the context of %s%s" % (source, (" and " + run_source) if run_ctx else ""))
    for key in UNSUPPORTED_CONTEXT_KEYS:
        if ctx.get(key):
            warn("Context key '%s' is not supported by madengine_run and is ignored." % key)

    credentials = Credentials.load(params.get("credential_file") or _default_file(mad_root, "credential.json"),
                                   environ=environ)
    if params.get("data_providers") is not None:
        data_config = None
        providers = load_data_config(None, ctx.get("data"), document=params["data_providers"])
        data_source = "the data_providers option"
    else:
        data_config = params.get("data_config") or _default_file(mad_root, "data.json")
        providers = load_data_config(data_config, ctx.get("data"))
        data_source = "data_config %s" % data_config if data_config else None
    if not data_source and ctx.get("data"):
        data_source = "the context's data"

    runs = select_runs(manifest, source, params.get("tags") or [])
    if not runs:
        raise MadengineError("%s%s holds no image to run." % (source[0].upper(), source[1:]))
    models = [r.model for r in runs]
    secrets = credentials.secret_values(models)
    register_secrets(credentials.no_log_values(models))

    host = HostFs(params.get("host_root") or "/", sys_dir=params.get("sysfs_root"), dev_dir=params.get("dev_root"))
    gpu = detect(params.get("gpu_vendor") or "auto", host, rocm_root(ctx, environ), runner=runner, find_tool=find_tool)
    manifest_path = params.get("manifest_path")
    results_dir = params.get("results_dir") or (os.path.dirname(os.path.abspath(manifest_path)) if manifest_path
                                                else os.getcwd())
    output = os.path.abspath(params.get("output") or os.path.join(results_dir, CSV_NAME))
    settings = RunSettings(
        run_id=run_id, results_dir=os.path.abspath(results_dir), timeout=timeout, pull=params.get("pull"),
        keep_alive=params.get("keep_alive"), skip_model_run=params.get("skip_model_run"),
        disable_skip_gpu_arch=params.get("disable_skip_gpu_arch"), node_name=params.get("node_name"),
        deployment_type=params.get("deployment_type"), vm_id=params.get("vm_id"), dev_root=host.path("dev"),
        mad_root=mad_root, force_mirror_local=params.get("force_mirror_local"), environ=environ)
    planner = Planner(ctx, gpu, settings, credentials, providers, data_source, group_ids=group_ids)
    runs = [planner.plan(run) for run in planner.fit(runs)]
    missing = planner.missing_devices(runs)

    result = {
        "run_id": run_id,
        "gpu": gpu.as_dict(),
        "perf_csv": output,
        "filtered": planner.filtered,
    }
    if params.get("pull_only"):
        # Images only: no container, no row, no file, and no facts (they would replace the node's rows).
        client = None
        try:
            if not check_mode and any(run.action == "run" for run in runs):
                client = client_factory()
            executor = Executor(client, settings, gpu, credentials, secrets=secrets, progress=progress)
            images = pull_images(runs, executor, check_mode, secrets, warn)
        finally:
            if client is not None:
                client.close()
        result.update(changed=any(item["pulled"] for item in images), results=[], images=images,
                      runs=[r.as_result(secrets) for r in runs],
                      summary=summarise(runs, [], run_id, settings.node_name, output, started))
        return result
    if check_mode:
        if missing:
            result["gpu"]["notes"].append("Device nodes %s do not exist on this node." % ", ".join(missing))
        rows = []
        result.update(changed=bool(runs), results=rows, runs=[r.as_result(secrets) for r in runs],
                      summary=summarise(runs, rows, run_id, settings.node_name, output, started))
        result["ansible_facts"] = {"madengine_results": rows}
        return result
    if missing:
        raise MadengineError("This node's %s GPUs are listed in %s, but device node%s %s do%s not exist; is the %s "
                             "driver loaded (dev_root is %s)?"
                             % (gpu.vendor, gpu.sysfs_root, "s" if len(missing) > 1 else "", ", ".join(missing),
                                "" if len(missing) > 1 else "es", "amdgpu" if gpu.vendor == "AMD" else "GPU",
                                settings.dev_root))
    check_directory(settings.results_dir, "results_dir")
    check_writable(output, "output")

    csv = CsvAppender(output, append=params.get("append", True))
    rows = []
    client = None
    try:
        if any(run.action == "run" for run in runs):
            client = client_factory()
        executor = Executor(client, settings, gpu, credentials, secrets=secrets, progress=progress)
        for run in runs:
            run_rows = executor.run(run)
            csv.add(run_rows)
            rows.extend(run_rows)
    finally:
        if client is not None:
            client.close()
    result.update(changed=bool(rows), results=rows, runs=[r.as_result(secrets) for r in runs],
                  summary=summarise(runs, rows, run_id, settings.node_name, output, started))
    result["ansible_facts"] = {"madengine_results": rows}
    return result
