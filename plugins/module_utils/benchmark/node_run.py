# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""A node's run (madengine_run's work): a manifest in, containers run on this node, rows out.

Task-level errors (bad options, a missing or corrupt manifest, a GPU vendor the node does not have,
missing device nodes, an unwritable results directory, an unreachable engine) fail the task with a
sentence; a model that fails is a row.
"""

from __future__ import annotations

import fcntl
import json
import os
import time

from ansible.module_utils.common.parameters import remove_values

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.context import load_context, normalise_context
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.credentials import (
    Credentials,
)
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.data import load_data_config
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.docker_client import (
    DockerError,
    client_from_module,
    scrub,
)
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.manifest import (
    check_directory,
    for_registry,
    load_manifest,
    prepare_output,
)
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.progress import ProgressJournal
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.rows import STATUSES, read_csv, write_csv
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.run import Executor
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.run_id import resolve_run_id
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.run_logs import read_tails
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.run_plan import (
    Planner,
    RunSettings,
    select_runs,
)
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.tools import CatalogueFiles
from ansible_collections.rocm.madengine.plugins.module_utils.common import (
    MadengineError,
    atomic_write_json,
    atomic_write_text,
)
from ansible_collections.rocm.madengine.plugins.module_utils.host.gpu import detect, rocm_root, tool_runner
from ansible_collections.rocm.madengine.plugins.module_utils.host.hostfs import HostFs

CSV_NAME = "perf.csv"
# Context keys that describe one machine: a manifest's values describe the build host, not this node.
NODE_CONTEXT_KEYS = ("docker_gpus", "docker_cpus", "gpu_renderDs")


def run_and_hand_over(module, credentials):
    """The run's result (failed, with msg, on a MadengineError), handed over in result_file too."""
    task = RunTask(module, credentials)
    try:
        result = task.run()
    except MadengineError as exc:
        result = dict(failed=True, msg=str(exc))
    hand_over(module, result, task.warnings)
    return result


def hand_over(module, result, warnings):
    """The result and the warnings in result_file too, where the action plugin reads them with one shell command;
    without it (it could not be written) the job file says why.  Masked as exit_json masks
    them: no secret of a no_log option reaches the file."""
    path = module.params.get("result_file")
    if not path:
        return
    document = remove_values({"result": result, "warnings": warnings}, module.no_log_values)
    try:
        atomic_write_text(path, json.dumps(document, default=str), mode=0o600)
    except OSError:
        pass


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


def madengine_summary(runs, rows, start_row):
    """The run summary in madengine's shape (its ``--summary-output`` of a run)."""
    successful, failed = [], []
    for run in runs:
        for row in run.rows:
            if row["status"] in ("SUCCESS", "SKIPPED"):
                successful.append({"model": row["model"], "image": run.key, "status": row["status"],
                                   "performance": row["performance"], "duration": row["test_duration"]})
            else:
                failed.append({"model": row["model"], "image": run.key, "status": row["status"], "error": row["error"]})
    return {"successful_runs": successful, "failed_runs": failed, "total_runs": len(successful) + len(failed),
            "session_start_row": start_row, "session_row_count": len(rows)}


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


class RunTask(object):
    """One madengine_run call."""

    def __init__(self, module, credentials=None, environ=None):
        self.module = module
        self.credentials = credentials  # the credentials option (module.params holds a placeholder now)
        self.params = module.params
        self.check_mode = module.check_mode
        self.warnings = []  # what warn() said, for the result_file
        self.environ = dict(os.environ) if environ is None else environ
        self.started = time.monotonic()
        self.secrets = []

    def warn(self, message):
        self.warnings.append(message)
        self.module.warn(message)

    def run(self):
        params = self.params
        timeout = params.get("timeout")
        if timeout is not None and timeout < 0:
            raise MadengineError("timeout must be 0 (no limit) or a number of seconds, not %d." % timeout)
        run_id = resolve_run_id(params.get("run_id"))
        mad_root = params.get("mad_root")
        if mad_root and not os.path.isdir(mad_root):
            raise MadengineError("mad_root %s is not a directory." % mad_root)

        manifest, source = _load_manifest(params)
        manifest = for_registry(manifest, params.get("registry"))
        ctx = self.context(manifest, source)
        credentials = Credentials.load(None if self.credentials is not None else (
            params.get("credential_file") or _default_file(mad_root, "credential.json")),
            environ=self.environ, document=self.credentials)
        providers, data_source = self.data(ctx, mad_root)
        runs = select_runs(manifest, source, params.get("tags") or [])
        if not runs:
            raise MadengineError("%s%s holds no image to run." % (source[0].upper(), source[1:]))
        models = [r.model for r in runs]
        nas_passwords = [str(n.get("PASSWORD")) for n in credentials.nas_nodes() if n.get("PASSWORD")]
        self.secrets = credentials.secret_values(models, extra=nas_passwords)
        self.module.no_log_values.update(credentials.no_log_values(models, extra=nas_passwords))

        host = HostFs(params.get("host_root") or "/", sys_dir=params.get("sysfs_root"), dev_dir=params.get("dev_root"))
        gpu = self.detect_gpus(ctx, host)
        manifest_path = params.get("manifest_path")
        results_dir = params.get("results_dir") or (os.path.dirname(manifest_path) if manifest_path
                                                    else os.getcwd())
        output = params.get("output") or os.path.join(results_dir, CSV_NAME)
        settings = RunSettings(
            run_id=run_id, results_dir=results_dir, timeout=timeout, pull=params.get("pull"),
            keep_alive=params.get("keep_alive"), skip_model_run=params.get("skip_model_run"),
            keep_model_dir=params.get("keep_model_dir"), sys_env_details=params.get("sys_env_details"),
            tools_config=params.get("tools_config"),
            disable_skip_gpu_arch=params.get("disable_skip_gpu_arch"), node_name=params.get("node_name"),
            deployment_type=params.get("deployment_type"), vm_id=params.get("vm_id"), dev_root=host.path("dev"),
            mad_root=mad_root, force_mirror_local=params.get("force_mirror_local"), environ=self.environ)
        files = CatalogueFiles(mad_root, params.get("catalogue_files"))
        planner = Planner(ctx, gpu, settings, credentials, providers, data_source, files=files)
        runs = [planner.plan(r) for r in planner.fit(runs)]
        result = {"run_id": run_id, "gpu": gpu.as_dict(), "perf_csv": output, "filtered": planner.filtered}
        executor = Executor(None, settings, gpu, credentials, secrets=self.secrets, progress=self.module.debug,
                            warn=self.warn)
        if params.get("pull_only"):
            return self.pull_only(runs, executor, result)
        missing = planner.missing_devices(runs)
        if self.check_mode:
            if missing:
                result["gpu"]["notes"].append("Device nodes %s do not exist on this node." % ", ".join(missing))
            return self.finish(result, runs, [], settings)
        if missing:
            raise MadengineError("This node's %s GPUs are listed in %s, but device node%s %s do%s not exist; is the %s "
                                 "driver loaded (dev_root is %s)?"
                                 % (gpu.vendor, gpu.sysfs_root, "s" if len(missing) > 1 else "", ", ".join(missing),
                                    "" if len(missing) > 1 else "es", "amdgpu" if gpu.vendor == "AMD" else "GPU",
                                    settings.dev_root))
        check_directory(settings.results_dir, "results_dir")
        prepare_output(output, "output")
        append = params.get("append", True)
        start_row = len(read_csv(output)[1]) if append else 0
        rows = self.execute(runs, executor, CsvAppender(output, append))
        if params.get("summary_output"):
            prepare_output(params["summary_output"], "summary_output")
            atomic_write_json(params["summary_output"], madengine_summary(runs, rows, start_row))
            result["summary_output"] = params["summary_output"]
        if params.get("logs_dest"):
            # the action plugin writes them on the controller and drops them from the result
            paths = list(dict.fromkeys(row["log_path"] for row in rows if row.get("log_path")))
            result["log_tails"] = read_tails(paths, params["logs_max_size"])
        return self.finish(result, runs, rows, settings)

    def context(self, manifest, source):
        """The manifest's context without the build host's node keys, overridden by this run's context."""
        manifest_ctx = manifest.get("context") if isinstance(manifest.get("context"), dict) else {}
        run_ctx, run_source = load_context(self.params.get("additional_context"),
                                           self.params.get("additional_context_file"))
        ctx = dict(manifest_ctx)
        for key in NODE_CONTEXT_KEYS:
            if key in ctx and key not in run_ctx:
                value = ctx.pop(key)
                if value not in (None, "", []):
                    self.warn("The context key '%s' (%s) of %s describes the build host and is ignored; give it in "
                              "additional_context to set it for this node." % (key, value, source))
        ctx.update(run_ctx)
        return normalise_context(ctx, "the context of %s%s" % (source, (" and " + run_source) if run_ctx else ""))

    def data(self, ctx, mad_root):
        """The data providers and a phrase naming where they come from."""
        if self.params.get("data_providers") is not None:
            providers = load_data_config(None, ctx.get("data"), document=self.params["data_providers"])
            return providers, "the data_providers option"
        data_config = self.params.get("data_config") or _default_file(mad_root, "data.json")
        providers = load_data_config(data_config, ctx.get("data"))
        if data_config:
            return providers, "data_config %s" % data_config
        return providers, "the context's data" if ctx.get("data") else None

    def detect_gpus(self, ctx, host):
        return detect(self.params.get("gpu_vendor") or "auto", host, rocm_root(ctx, self.environ),
                      runner=tool_runner(self.module))

    def client(self, runs):
        """A Docker client when some model runs a container (None otherwise: no engine needed)."""
        if any(r.action == "run" for r in runs):
            return client_from_module(self.module)
        return None

    def pull_only(self, runs, executor, result):
        """Images only: no container, no row, no file, and no facts (they would replace the node's rows)."""
        executor.client = None if self.check_mode else self.client(runs)
        try:
            images = pull_images(runs, executor, self.check_mode, self.secrets, self.warn)
        finally:
            if executor.client is not None:
                executor.client.close()
        result.update(changed=any(item["pulled"] for item in images), results=[], images=images,
                      runs=[r.as_result(self.secrets) for r in runs],
                      summary=summarise(runs, [], result["run_id"], executor.settings.node_name, result["perf_csv"],
                                        self.started))
        return result

    def execute(self, runs, executor, csv):
        """Run every planned model, adding its rows to the node's CSV as soon as it is done."""
        rows = []
        journal = ProgressJournal(self.params.get("progress_file"))
        total = len(runs)
        journal.write("plan", total=total, models=[r.name for r in runs])
        executor.client = self.client(runs)
        try:
            for index, model_run in enumerate(runs):
                journal.write("start", model=model_run.name, index=index + 1, total=total, log=model_run.log_path)
                run_rows = executor.run(model_run)
                csv.add(run_rows)
                rows.extend(run_rows)
                journal.write("end", model=model_run.name, status=model_run.status, rows=len(run_rows),
                              elapsed=model_run.timings.get("total"), done=index + 1, total=total,
                              log=model_run.log_path)
        finally:
            if executor.client is not None:
                executor.client.close()
        return rows

    def finish(self, result, runs, rows, settings):
        result.update(changed=bool(runs) if self.check_mode else bool(rows), results=rows,
                      runs=[r.as_result(self.secrets) for r in runs],
                      summary=summarise(runs, rows, result["run_id"], settings.node_name, result["perf_csv"],
                                        self.started))
        result["ansible_facts"] = {"madengine_results": rows}
        return result
