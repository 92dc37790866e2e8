# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""Running a node's planned containers (``run_plan.py``) and turning each into result rows.

The image is taken from the engine or pulled as the pull policy says, one container runs the model's
script directly as its command, its output streams into the model's log file (secrets masked) while it
is scanned, the container is killed at the timeout, the multiple_results CSV is read from the stopped
container, and the container is removed.
"""

from __future__ import annotations

import os
import shutil
import socket
import tarfile
import tempfile
import threading
import time

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.docker_client import (
    DEFAULT_DOCKER_HOST,
    DockerError,
    WaitTimeout,
    scrub,
    split_reference,
)
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.perf import (
    LogScanner,
    parse_multiple_results,
    truthy,
)
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.rows import COLUMNS, make_row
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.run_plan import PLACEHOLDERS, tags_text
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.sysenv import ENV_SUFFIX
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.workspace import (
    WORKSPACE,
    StepLog,
    public_url,
    safe_members,
)
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError, utc_now

# What an engine without the NVIDIA device driver (container toolkit) answers to a GPU container.
NO_NVIDIA_RUNTIME = 'could not select device driver "nvidia"'


class _LogPump(threading.Thread):
    """Copies a container's output into its log file, line by line, masking secrets and scanning.

    With ``steps`` (a workspace.StepLog) the step markers are read as they come and only the model's own
    output is scanned.
    """

    def __init__(self, stream, handle, scanner, secrets, steps=None):
        threading.Thread.__init__(self, name="madengine-log")
        self.daemon = True
        self.stream = stream
        self.handle = handle
        self.scanner = scanner
        self.secrets = secrets
        self.steps = steps
        self.error = None

    def _emit(self, raw):
        if self.handle.closed:  # a container kept running outlives its log file
            return
        text = scrub(raw.decode("utf-8", "replace"), self.secrets)
        self.handle.write(text)
        if self.steps is None:
            self.scanner.feed(text)
        elif not self.steps.feed(text) and self.steps.in_model:
            self.scanner.feed(text)

    def run(self):
        pending = b""
        try:
            for chunk in self.stream:
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    self._emit(line + b"\n")
                if not self.handle.closed:
                    self.handle.flush()
            if pending:
                self._emit(pending + b"\n")
        except Exception as exc:  # pylint: disable=broad-except
            self.error = exc
        finally:
            if not self.handle.closed:
                self.handle.flush()


class Executor(object):
    """Runs planned ModelRuns through a DockerClient and fills their rows."""

    def __init__(self, client, settings, gpu, credentials, secrets=(), progress=None, warn=None):
        self.client = client
        self.settings = settings
        self.gpu = gpu
        self.credentials = credentials
        self.secrets = list(secrets)
        self.progress = progress or (lambda msg: None)
        self.warn = warn or self.progress

    # -- images

    def _auth(self, run):
        registry = run.entry.get("registry")
        if not registry:
            ref = run.entry.get("registry_image") or ""
            registry = ref.split("/", 1)[0] if "/" in ref else None
        if not registry:
            return None
        auth = self.credentials.registry_auth(registry)
        return auth.as_auth_config() if auth is not None else None

    def _local(self, run):
        """The image already on the engine that the manifest entry names, or None."""
        entry = run.entry
        expected = entry.get("image_id")
        for ref, must_match in ((entry.get("registry_digest"), False), (entry.get("docker_image"), True),
                                (entry.get("registry_image"), True)):
            if not ref:
                continue
            image = self.client.image(ref)
            if image is not None and (not must_match or not expected or image.get("Id") == expected):
                return image
        return None

    def resolve_image(self, run):
        """Inspect dict of the image to run, per the pull policy; DockerError/MadengineError otherwise."""
        entry, policy = run.entry, self.settings.pull
        pull_ref = entry.get("registry_digest") or entry.get("registry_image")
        image = None if policy == "always" else self._local(run)
        if image is None:
            if policy == "never":
                looked = [r for r in (entry.get("registry_digest"), entry.get("docker_image"),
                                      entry.get("registry_image")) if r]
                raise MadengineError("Image %s of model '%s' is not on this node (looked for %s) and pull is never."
                                     % (run.key, run.name, ", ".join(looked)))
            if not pull_ref:
                raise MadengineError("Image %s of model '%s' is not on this node and the manifest gives no "
                                     "registry_image to pull it from; build with a registry." % (run.key, run.name))
            image = self.client.pull(pull_ref, self._auth(run))
            run.pulled = True
        return image

    def image_digest(self, run, image):
        """The registry digest of the image that ran (repo@sha256:…), else its image id."""
        digests = image.get("RepoDigests") or []
        wanted = entry_repo = None
        if run.entry.get("registry_digest"):
            wanted = run.entry["registry_digest"]
        if run.entry.get("registry_image"):
            entry_repo = split_reference(run.entry["registry_image"])[0]
        if wanted and wanted in digests:
            return wanted
        for digest in digests:
            if entry_repo and digest.split("@", 1)[0] == entry_repo:
                return digest
        return image.get("Id") or ""

    # -- one run

    def run(self, run):
        started = time.monotonic()
        run.start_time = utc_now()
        if run.action == "fail":
            run.status = "FAILURE"
            return self._finish(run, [self._row(run, "FAILURE", error=run.reason)], started)
        if run.action == "skip":
            run.status = "SKIPPED"
            return self._finish(run, [self._row(run, "SKIPPED", error=run.reason)], started)
        try:
            image = self.resolve_image(run)
        except (MadengineError, DockerError) as exc:
            run.status = "FAILURE"
            return self._finish(run, [self._row(run, "FAILURE", error=str(exc))], started)
        finally:
            run.timings["image"] = round(time.monotonic() - started, 3)
        run.image_digest = self.image_digest(run, image)
        if self.settings.skip_model_run:
            run.status = "SKIPPED"
            return self._finish(run, [self._row(run, "SKIPPED", error="skip_model_run is set")], started)
        return self._finish(run, self._run_container(run, image), started)

    def _finish(self, run, rows, started):
        run.rows = rows
        run.end_time = utc_now()
        run.timings["total"] = round(time.monotonic() - started, 3)
        for row in rows:
            row["end_time"] = run.end_time
        reason = (" (%s)" % run.reason) if run.status == "SKIPPED" else ""
        self.progress("%s: %s in %.1f s%s" % (run.name, run.status, run.timings["total"], reason))
        return rows

    def _finalise_env(self, run, image):
        env = run.spec.environment
        if self.gpu.vendor == "AMD" and "ROCM_PATH" not in env:
            image_env = dict(item.split("=", 1) for item in ((image.get("Config") or {}).get("Env") or [])
                             if "=" in item)
            env["ROCM_PATH"] = image_env.get("ROCM_PATH") or image_env.get("ROCM_HOME") or "/opt/rocm"

    def _run_container(self, run, image):
        spec = run.spec
        spec.image = image["Id"]
        self._finalise_env(run, image)
        timeout = run.timeout or None
        steps = StepLog(time.monotonic) if run.steps is not None else None
        header = "# madengine run %s of model %s on %s\n# %s\n" % (
            self.settings.run_id, run.name, self.settings.node_name, spec.docker_run(run.secret_names, self.secrets))
        scanner = LogScanner(*run.scan)
        try:
            for mount in run.data:
                mount.start_download()
        except OSError as exc:
            run.status = "FAILURE"
            return [self._row(run, "FAILURE", error="the data mirror cannot be prepared: %s" % exc)]
        try:
            with open(run.log_path, "w", encoding="utf-8") as handle:
                handle.write(header)
                handle.flush()
                clock = time.monotonic()
                try:
                    run.container_id = self.client.create_container(spec)
                    if run.scripts_tar is not None:
                        self.client.put_archive(run.container_id, "/", run.scripts_tar)
                    if run.steps is not None:
                        self.client.put_archive(run.container_id, "/", run.steps.archive())
                    self.client.start(run.container_id)
                except DockerError as exc:
                    handle.write("# %s\n" % scrub(str(exc), self.secrets))
                    run.status = "FAILURE"
                    return [self._row(run, "FAILURE", error=self._start_error(exc))]
                finally:
                    run.timings["start"] = round(time.monotonic() - clock, 3)
                clock = time.monotonic()
                self.progress("%s: started container %s (timeout %s)" % (run.name, spec.name, timeout or "none"))
                pump = _LogPump(self.client.log_stream(run.container_id), handle, scanner, self.secrets, steps)
                pump.start()
                timed_out = self._wait(run, steps, timeout)
                run.timings["run"] = round(time.monotonic() - clock, 3)
                pump.join(10 if not self.settings.keep_alive else 2)
                if timed_out:
                    handle.write("\n# madengine: timed out after %s s; the container was killed\n" % timeout)
            if steps is not None:
                self._after_steps(run, steps)
            return self._rows_after(run, scanner.finish(), timed_out, pump, steps)
        finally:
            if run.container_id is not None:
                if self.settings.keep_alive:
                    self._keep(run)
                else:
                    self._remove(run)

    def _start_error(self, exc):
        """Why a container did not start; an engine without the NVIDIA runtime is named as such."""
        text = str(exc)
        if self.gpu.vendor == "NVIDIA" and NO_NVIDIA_RUNTIME in text:
            return ("the Docker engine of %s has no NVIDIA runtime, although the node has %d NVIDIA GPU%s: install the "
                    "NVIDIA container toolkit and register it with the engine (docker_setup does, for a node whose "
                    "madengine_gpu_vendor is NVIDIA); the engine said: %s"
                    % (self.settings.node_name, self.gpu.count, "" if self.gpu.count == 1 else "s", text.rstrip(".")))
        return text

    def _wait(self, run, steps, timeout):
        """True when the run timed out (its container is then killed); sets run.exit_code otherwise."""
        if not self.settings.keep_alive:
            try:
                run.exit_code = self.client.wait(run.container_id, timeout)
                return False
            except WaitTimeout:
                self.client.kill(run.container_id)
                return True
        deadline = time.monotonic() + timeout if timeout else None
        while not steps.ended.wait(0.5):
            if not self.client.running(run.container_id):
                run.exit_code = self.client.wait(run.container_id, 10)
                return False
            if deadline is not None and time.monotonic() > deadline:
                self.client.kill(run.container_id)
                return True
        run.exit_code = steps.end_rc
        return False

    def _keep(self, run):
        run.kept = True
        if self.client.running(run.container_id):
            host = "" if self.client.docker_host == DEFAULT_DOCKER_HOST else "-H %s " % self.client.docker_host
            run.enter = "docker %sexec -it %s bash" % (host, run.spec.name)
            self.warn("The container of model '%s' is kept running: enter it with '%s' (or sh); stop and remove it "
                      "with 'docker %srm -f %s'." % (run.name, run.enter, host, run.spec.name))

    def _after_steps(self, run, steps):
        """Step results into the run: clone commit, data sizes and times, mirrors, the files the steps left."""
        run.git_commit = steps.git_commit
        failed = steps.failure[1] if steps.failure else []
        for mount in run.data:
            if mount.download:
                key = "data %s" % mount.name
                mount.duration = steps.durations.get(key)
                mount.size = steps.data_size.get(mount.name, "")
                mount.finish_download(key in steps.durations and failed[:2] != ["data", mount.name],
                                      self.settings.run_id)
            elif mount.provider != "local":
                mount.size = steps.data_size.get(mount.name, "")
        try:
            run.output_files = collect_outputs(self.client, run, self.settings.results_dir, self.secrets)
        except (DockerError, OSError, tarfile.TarError) as exc:
            self.warn("Model '%s': the files of its run could not be collected: %s" % (run.name, exc))

    def _remove(self, run):
        try:
            self.client.remove_container(run.container_id)
        except DockerError as exc:
            raise DockerError("%s The container of model '%s' may be left behind." % (exc, run.name))

    def _rows_after(self, run, scan, timed_out, pump, steps=None):
        duration = run.timings.get("run") if steps is None else steps.model_seconds
        if timed_out:
            run.status = "TIMEOUT"
            return [self._row(run, "TIMEOUT", test_duration=duration,
                              error="the run exceeded its timeout of %s s; the container was killed" % run.timeout)]
        if pump is not None and pump.error is not None:
            run.status = "FAILURE"
            return [self._row(run, "FAILURE", test_duration=duration,
                              error="reading the container output failed: %s" % pump.error)]
        step_error = step_failure(run, steps) if steps is not None else None
        code = steps.model_rc if steps is not None and steps.model_rc is not None else run.exit_code
        if step_error and (steps.model_rc is None or steps.model_rc == 0):
            run.status = "FAILURE"
            return [self._row(run, "FAILURE", test_duration=duration, error=step_error)]
        if code != 0:
            note = ("; log: %s" % scan.error_line) if scan.error_line else ""
            run.status = "FAILURE"
            return [self._row(run, "FAILURE", test_duration=duration,
                              error="the script exited with code %s%s" % (code, note))]
        if scan.error_line:
            run.status = "FAILURE"
            return [self._row(run, "FAILURE", test_duration=duration,
                              error="a log line matches error pattern '%s': %s"
                              % (scan.error_pattern, scan.error_line))]
        if run.multiple_results:
            return self._multiple_rows(run, duration)
        if scan.performance is not None:
            run.status = "SUCCESS"
            return [self._row(run, "SUCCESS", performance=scan.performance, metric=scan.metric,
                              test_duration=duration)]
        if not truthy(run.spec.environment.get("MAD_COLLECT_METRICS", "true")):
            run.status = "SUCCESS"
            return [self._row(run, "SUCCESS", test_duration=duration)]
        run.status = "FAILURE"
        return [self._row(run, "FAILURE", test_duration=duration,
                          error="the log has no 'performance: <value> <metric>' line")]

    def _multiple_rows(self, run, duration):
        name = run.multiple_results
        path = name if name.startswith("/") else "%s/%s" % ((run.spec.working_dir or "/").rstrip("/"), name)
        try:
            data = self.client.read_file(run.container_id, path)
            if data is None:
                raise MadengineError("the model wrote no multiple_results file %s" % path)
            header, rows = parse_multiple_results(data, path)
        except (MadengineError, DockerError) as exc:
            run.status = "FAILURE"
            return [self._row(run, "FAILURE", test_duration=duration, error=str(exc).rstrip("."))]
        if not rows:
            run.status = "FAILURE"
            return [self._row(run, "FAILURE", test_duration=duration,
                              error="multiple_results file %s has no rows" % path)]
        extras = [h for h in header if h and h not in ("model", "performance", "metric") and h not in COLUMNS]
        result = []
        for number, values in enumerate(rows, 1):
            fields = dict((k, values.get(k, "")) for k in extras)
            ok = values.get("performance", "") != ""
            result.append(self._row(run, "SUCCESS" if ok else "FAILURE",
                                    model="%s_%s" % (run.name, values.get("model", number)),
                                    performance=values.get("performance", ""), metric=values.get("metric", ""),
                                    test_duration=duration,
                                    error="" if ok else "row %d of %s has no performance value" % (number, path),
                                    **fields))
        run.status = "SUCCESS" if all(r["status"] == "SUCCESS" for r in result) else "FAILURE"
        return result

    def _row(self, run, status, **fields):
        gpu, entry, model, settings = self.gpu, run.entry, run.model, self.settings
        by_index = gpu.by_index()
        archs = []
        for index in run.gpu_ids:
            arch = by_index[index].arch if gpu.vendor == "AMD" else by_index[index].product
            if arch and arch not in archs:
                archs.append(arch)
        values = dict(
            model=run.name, n_gpus=len(run.gpu_ids), nnodes=model.get("nnodes") or "1",
            gpus_per_node=len(run.gpu_ids), training_precision=model.get("training_precision") or "",
            pipeline=settings.environ.get("pipeline") or "", args=run.args, tags=tags_text(model.get("tags") or []),
            docker_file=entry.get("dockerfile") or "", base_docker=entry.get("base_docker") or "",
            docker_sha=entry.get("docker_sha") or "",
            docker_image=entry.get("docker_image") or ("" if run.key in PLACEHOLDERS else run.key),
            git_commit=run.git_commit, machine_name=socket.gethostname(), deployment_type=settings.deployment_type,
            launcher="docker", gpu_architecture=",".join(archs) or gpu.arch, build_duration=entry.get("build_duration"),
            dataname=",".join(m.name for m in run.data), data_provider_type=",".join(m.provider for m in run.data),
            data_size=",".join(m.size or "" for m in run.data) if any(m.size for m in run.data) else "",
            data_download_duration=",".join(str(round(m.duration or 0.0, 3)) for m in run.data) if run.data else "",
            build_number=settings.environ.get("BUILD_NUMBER") or "0",
            additional_docker_run_options=model.get("additional_docker_run_options") or "",
            host=settings.node_name, image_digest=run.image_digest, gpu_product=gpu.product,
            gpu_ids=",".join(str(i) for i in run.gpu_ids), driver_version=gpu.driver_version,
            rocm_version=gpu.rocm_version, cuda_version=gpu.cuda_version, start_time=run.start_time,
            exit_code="" if run.exit_code is None else run.exit_code, run_id=settings.run_id,
            log_path=run.log_path if os.path.exists(run.log_path or "") else "", vm_id=settings.vm_id,
            output_files=",".join(run.output_files),
        )
        values.update(fields)
        if values.get("error"):
            values["error"] = scrub(str(values["error"]), self.secrets)
        if isinstance(values.get("test_duration"), float):
            values["test_duration"] = round(values["test_duration"], 3)
        return make_row(status=status, **values)


def step_failure(run, steps):
    """The sentence for a step that failed (None when none did), with the last line it printed."""
    if steps.failure is None:
        if steps.end_rc is None and run.exit_code not in (None, 0) and steps.model_start is None:
            return "the steps before the model stopped with exit code %s (is sh missing in the image?)" % run.exit_code
        return None
    code, words = steps.failure
    kind = words[0] if words else "workspace"
    last = steps.last_output.get(steps.step_key(words or ["workspace"]), "")
    tail = (": %s" % last) if last else ""
    if kind in ("clone", "submodules"):
        what = "cloning %s" % public_url(run.steps.clone.url) if kind == "clone" else "updating the submodules"
        return "%s failed (exit code %s)%s" % (what, code, tail)
    if kind in ("pre_script", "post_script"):
        items = run.steps.pre_scripts if kind == "pre_script" else run.steps.post_scripts
        number = int(words[1]) if len(words) > 1 and words[1].isdigit() else 0
        path = items[number - 1]["path"] if 0 < number <= len(items) else "?"
        return "%s %s failed (exit code %s)%s" % (kind.replace("_", "-"), path, code, tail)
    if kind == "data":
        name = words[1] if len(words) > 1 else ""
        mount = [m for m in run.data if m.name == name]
        provider = mount[0].provider if mount else "?"
        return ("data '%s' of model '%s' could not be downloaded by provider %s (exit code %s)%s"
                % (name, run.name, provider, code, tail))
    return "the %s step failed (exit code %s)%s" % (kind.replace("_", " "), code, tail)


def collect_outputs(client, run, results_dir, secrets):
    """Copy the files the steps left in the workspace to the node; returns their paths.

    The env CSV goes to ``results_dir`` (as madengine writes it beside perf.csv), everything else under
    ``<log name without .run.live.log>.outputs/``; shipped scripts and (unless kept) the model directory stay
    behind.
    """
    steps = run.steps
    skip = [p[len(WORKSPACE) + 1:] for p in steps.files if p.startswith(WORKSPACE + "/")]
    if not (steps.keep_model_dir):
        skip.append(steps.model_dir[len(WORKSPACE) + 1:])
    if os.path.isabs(run.multiple_results or ""):
        skip.append(run.multiple_results)
    stem = run.log_path[:-len(".run.live.log")] if run.log_path.endswith(".run.live.log") else run.log_path
    target = stem + ".outputs"
    found = []
    with tempfile.TemporaryFile() as spool:
        if not client.copy_from(run.container_id, WORKSPACE, spool):
            return found
        spool.seek(0)
        with tarfile.open(fileobj=spool, mode="r") as tar:
            for member, inner in safe_members(tar, skip):
                if member.isdir():
                    continue
                if "/" not in inner and inner.endswith(ENV_SUFFIX):
                    path = os.path.join(results_dir, inner)
                    text = tar.extractfile(member).read().decode("utf-8", "replace")
                    with open(path, "w", encoding="utf-8") as handle:
                        handle.write(scrub(text, secrets))
                else:
                    path = os.path.join(target, inner)
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    with open(path, "wb") as handle:
                        shutil.copyfileobj(tar.extractfile(member), handle)
                found.append(path)
    return found
