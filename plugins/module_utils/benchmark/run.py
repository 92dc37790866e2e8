# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""Running a manifest's images on a node: planning each container, running it, turning it into rows.

Planning (no Docker): :func:`select_runs` pairs the manifest's ``built_images`` and ``built_models``
and applies the ``tags`` filter; :class:`Planner` fits each image to the node's GPUs (vendor,
architecture, ``skip_gpu_arch``, ``n_gpus``/``docker_gpus``), resolves data and credentials and builds
the :class:`ContainerSpec` (madengine's run options per vendor, the MAD_* environment,
``docker_env_vars``, ``docker_mounts``, ``additional_docker_run_options``).

Running (:class:`Executor`): the image is taken from the engine or pulled as the pull policy says, one
container runs the model's script directly as its command, its output streams into the model's log
file (secrets masked) while it is scanned, the container is killed at the timeout, the
multiple_results CSV is read from the stopped container, and the container is removed.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import socket
import tarfile
import threading
import time

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.build import (
    SCRIPTS_IMAGE_DIR,
    ScriptsBundle,
    dockerfile_stem,
)
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.data import data_env
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.data import resolve as resolve_data
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.discovery import parse_tag, split_tags
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.docker_client import (
    LABEL_PREFIX,
    ContainerSpec,
    DockerError,
    WaitTimeout,
    apply_run_options,
    scrub,
    split_reference,
)
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.perf import (
    LogScanner,
    parse_multiple_results,
    scan_settings,
    truthy,
)
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.rows import COLUMNS, make_row
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError, utc_now
from ansible_collections.rocm.madengine.plugins.module_utils.host.gpu import normalise_nvidia_name, parse_gpu_list

DEFAULT_TIMEOUT = 7200
RUN_LABEL = LABEL_PREFIX + "run-id"
MODEL_LABEL = LABEL_PREFIX + "model"
IMAGE_LABEL = LABEL_PREFIX + "image"
NGPU_KEYS = ("gpus_per_node", "gpu_count", "n_gpus", "num_gpus", "ngpus")
# Host variables madengine hands to the container unchanged when they are set on the node.
HOST_ENV_PASSTHROUGH = (
    "MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "NODE_RANK", "NNODES", "NPROC_PER_NODE",
    "MAD_MULTI_NODE_RUNNER", "MAD_COLLECT_METRICS", "NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME", "NCCL_DEBUG",
    "NCCL_IB_DISABLE", "NCCL_NET_GDR_LEVEL", "PRIMUS_CONFIG_PATH", "PRIMUS_CLI_EXTRA", "TORCH_ELASTIC_RDZV_TIMEOUT",
    "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "MIOPEN_USER_DB_PATH",
)
AMD_GROUPS = ("video", "render")
UNSUPPORTED_CONTEXT_KEYS = ("tools", "pre_scripts", "post_scripts")
_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_.-]+")


def _split_list(value):
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part for part in re.split(r"[,\s]+", str(value or "")) if part]


def _tags_text(tags):
    items = tags.split(",") if isinstance(tags, str) else tags
    return ",".join(str(t).strip() for t in items if str(t).strip())


def container_name(run_id, key):
    return ("madengine_%s_%s" % (run_id, _NAME_CHARS.sub("_", key)))[:200]


def run_log_name(model_name, dockerfile, arch, run_id):
    """``<model, / -> _>_<dockerfile stem>[_<arch>].<run id>.run.live.log`` (madengine's name plus the run id)."""
    name = "%s_%s" % (model_name.replace("/", "_"), dockerfile_stem(dockerfile or "image"))
    if arch:
        name += "_" + arch
    return "%s.%s.run.live.log" % (name, run_id)


# ---- selecting what to run ----------------------------------------------------------------------

class ModelRun(object):
    """One image of the manifest on this node: the plan, then what happened."""

    def __init__(self, key, entry, model):
        self.key = key
        self.entry = entry or {}
        self.model = model or {}
        self.name = self.model.get("name") or self.entry.get("model") or key
        self.args = self.model.get("args") or ""
        self.action = "run"         # run | skip | fail
        self.reason = ""
        self.timeout = None
        self.gpu_ids = []
        self.data = []
        self.secret_names = set()
        self.spec = None
        self.scripts_tar = None     # scripts shipped into the container (image without baked scripts)
        self.log_path = ""
        self.multiple_results = self.model.get("multiple_results") or ""
        self.scan = (True, (), ())
        # outcome
        self.status = None
        self.rows = []
        self.image_digest = ""
        self.pulled = False
        self.timings = {}
        self.exit_code = None
        self.start_time = ""
        self.end_time = ""
        self.container_id = None
        self.kept = False

    def skip(self, reason):
        self.action, self.reason = "skip", reason

    def fail(self, reason):
        self.action, self.reason = "fail", reason

    def as_result(self, secrets=()):
        result = {"model": self.name, "image": self.key, "action": self.action, "reason": scrub(self.reason, secrets),
                  "timeout": self.timeout, "gpu_ids": list(self.gpu_ids), "log_path": self.log_path,
                  "data": [m.as_dict() for m in self.data],
                  "container": self.spec.as_dict(self.secret_names, secrets) if self.spec is not None else None}
        if self.status is not None:
            result.update(status=self.status, image_digest=self.image_digest, pulled=self.pulled,
                          exit_code=self.exit_code, timings=dict(self.timings), start_time=self.start_time,
                          end_time=self.end_time, rows=len(self.rows), kept=self.kept)
        return result


def select_runs(manifest, source, tags=()):
    """ModelRuns of the manifest, filtered by ``tags`` (madengine's grammar, matched on the models).

    Inconsistent manifest entries become failed runs naming the manifest; a tag that selects nothing
    raises MadengineError.
    """
    images = manifest.get("built_images") or {}
    models = manifest.get("built_models") or {}
    runs = []
    for key in list(images) + [k for k in models if k not in images]:
        entry, model = images.get(key), models.get(key)
        if entry is not None and not isinstance(entry, dict):
            raise MadengineError("%s: built_images entry %s is not an object." % (source, key))
        if model is not None and not isinstance(model, dict):
            raise MadengineError("%s: built_models entry %s is not an object." % (source, key))
        run = ModelRun(key, entry, model)
        if entry is None:
            run.fail("%s lists model '%s' under built_models key %s, but built_images has no image %s."
                     % (source, run.name, key, key))
        elif model is None:
            run.fail("%s: image %s has no built_models entry, so its model (scripts, args, multiple_results) is "
                     "unknown." % (source, key))
        elif not (entry.get("docker_image") or entry.get("registry_image") or entry.get("registry_digest")):
            run.fail("%s: model '%s' (key %s) has no image: its entry has no docker_image or registry_image."
                     % (source, run.name, key))
        runs.append(run)
    built = set(r.name for r in runs)
    for failure in ((manifest.get("summary") or {}).get("failed_builds") or []):
        if isinstance(failure, dict) and failure.get("model") and failure["model"] not in built:
            run = ModelRun("(build failed)", {}, {"name": failure["model"]})
            run.fail("the build of model '%s' failed, so %s has no image for it: %s"
                     % (failure["model"], source, str(failure.get("error") or "no reason recorded").rstrip(".")))
            runs.append(run)
            built.add(failure["model"])
    flat = split_tags(tags)
    if not flat:
        return runs
    known = set(r.name for r in runs)
    chosen, selected = set(), []
    for raw in flat:
        spec = parse_tag(raw, known)
        matched = [r for r in runs if (spec.selector == "all" and spec.scope is None)
                   or spec.matches({"name": r.name, "tags": r.model.get("tags") or []})]
        if not matched:
            raise MadengineError("Tag '%s' selects no model of %s (models: %s)."
                                 % (raw.strip(), source, ", ".join(sorted(known)) or "none"))
        for run in matched:
            if id(run) in chosen:
                continue
            chosen.add(id(run))
            if spec.extra_args:
                run.args += spec.extra_args
            selected.append(run)
    return selected


# ---- planning -----------------------------------------------------------------------------------

class RunSettings(object):
    """The node-level options every run shares."""

    def __init__(self, **fields):
        self.run_id = fields["run_id"]
        self.results_dir = fields["results_dir"]
        self.timeout = fields.get("timeout")          # None: model's own or DEFAULT_TIMEOUT
        self.pull = fields.get("pull") or "missing"
        self.keep_alive = bool(fields.get("keep_alive"))
        self.skip_model_run = bool(fields.get("skip_model_run"))
        self.disable_skip_gpu_arch = bool(fields.get("disable_skip_gpu_arch"))
        self.node_name = fields.get("node_name") or socket.gethostname()
        self.deployment_type = fields.get("deployment_type") or "local"
        self.vm_id = fields.get("vm_id") or ""
        self.dev_root = fields.get("dev_root") or "/dev"
        self.mad_root = fields.get("mad_root")
        self.force_mirror_local = fields.get("force_mirror_local")
        self.environ = fields.get("environ") if fields.get("environ") is not None else dict(os.environ)


def effective_timeout(option, ctx, model):
    """Seconds (0 = none): the option, else the context's ``timeout``, else the model's (> 0), else 7200."""
    if option is not None:
        return int(option)
    value = ctx.get("timeout")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return int(value)
    value = model.get("timeout")
    try:
        value = int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        raise MadengineError("Model '%s': timeout %r is not a number of seconds." % (model.get("name"), value))
    return value if value is not None and value > 0 else DEFAULT_TIMEOUT


def _launcher_runner(ctx, model, environ, ngpus):
    launcher = ((ctx.get("distributed") or {}).get("launcher") or (model.get("distributed") or {}).get("launcher")
                or environ.get("MAD_LAUNCHER") or "torchrun")
    launcher = str(launcher).lower()
    if launcher in ("vllm", "sglang", "sglang-disagg", "sglang_disagg", "primus"):
        return ""
    if launcher == "deepspeed":
        return "deepspeed --num_gpus=%d" % ngpus
    return "torchrun --standalone --nproc_per_node=%d" % ngpus


def host_group_ids(names=AMD_GROUPS):
    """Group ids the node gives its GPU device nodes (video, render), for ``--group-add``."""
    import grp

    gids = []
    for name in names:
        try:
            gid = grp.getgrnam(name).gr_gid
        except KeyError:
            continue
        if str(gid) not in gids:
            gids.append(str(gid))
    return gids


class Planner(object):
    """Fits ModelRuns to the node and builds their containers; no Docker call."""

    def __init__(self, ctx, gpu, settings, credentials, data_providers, data_source, group_ids=None):
        self.ctx = ctx
        self.gpu = gpu
        self.settings = settings
        self.credentials = credentials
        self.data_providers = data_providers
        self.data_source = data_source
        self.group_ids = host_group_ids() if group_ids is None else list(group_ids)
        self.available = self._available_gpus()
        self.filtered = []

    def _available_gpus(self):
        detected = [g.index for g in self.gpu.gpus]
        if self.gpu.vendor == "NONE":
            return []
        if self.ctx.get("docker_gpus") in (None, ""):
            return detected
        wanted = parse_gpu_list(self.ctx["docker_gpus"], "Context key 'docker_gpus'")
        unknown = [i for i in wanted if i not in detected]
        if unknown:
            raise MadengineError("Context key 'docker_gpus' (%s) names GPU %s, but this node's %s GPUs are %s."
                                 % (self.ctx["docker_gpus"], ",".join(str(i) for i in unknown), self.gpu.vendor,
                                    ",".join(str(i) for i in detected)))
        return wanted

    # -- fitting images to the node

    def _fits(self, run):
        vendor = (run.entry.get("gpu_vendor") or "").upper()
        arch = run.entry.get("gpu_architecture") or ""
        if vendor and vendor != self.gpu.vendor:
            return "image %s is built for %s GPUs, and this node's gpu_vendor is %s" % (
                run.key, vendor, self.gpu.vendor)
        if arch and arch != self.gpu.arch:
            return "image %s is built for %s, and this node's architecture is %s" % (
                run.key, arch, self.gpu.arch or "none (CPU)")
        return None

    def fit(self, runs):
        """Drop images for another vendor/architecture when the model has one that fits; else SKIPPED."""
        reasons = dict((id(r), self._fits(r)) for r in runs if r.action == "run")
        fitting = set(r.name for r in runs if r.action == "run" and reasons[id(r)] is None)
        kept, reported = [], set()
        for run in runs:
            reason = reasons.get(id(run))
            if reason is None:
                kept.append(run)
            elif run.name in fitting:
                self.filtered.append({"model": run.name, "image": run.key, "reason": reason})
            elif run.name not in reported:
                reported.add(run.name)
                run.skip("no image of model '%s' fits this node: %s" % (run.name, reason))
                kept.append(run)
            else:
                self.filtered.append({"model": run.name, "image": run.key, "reason": reason})
        return kept

    # -- one run

    def plan(self, run):
        if run.action == "fail":
            return run
        try:
            self._plan(run)
        except MadengineError as exc:
            run.fail(str(exc))
        return run

    def _skip_arch(self, run):
        skip = _split_list(run.model.get("skip_gpu_arch"))
        if not skip or self.settings.disable_skip_gpu_arch or self.gpu.vendor == "NONE":
            return None
        names = [self.gpu.arch]
        if self.gpu.vendor == "NVIDIA":
            names.append(normalise_nvidia_name(self.gpu.product))
        hit = [n for n in names if n and n in skip]
        if hit:
            return "skip_gpu_arch of model '%s' lists %s, this node's GPU architecture" % (run.name, hit[0])
        return None

    def _requested_gpus(self, run):
        for key in NGPU_KEYS:
            if self.ctx.get(key) not in (None, ""):
                value, where = self.ctx[key], "context key '%s'" % key
                break
        else:
            value, where = run.model.get("n_gpus", 1), "n_gpus"
            if value in (None, ""):
                value = 1
        try:
            return int(str(value).strip()), where
        except ValueError:
            raise MadengineError("Model '%s': %s %r is not a number of GPUs." % (run.name, where, value))

    def _assign_gpus(self, run):
        if self.gpu.vendor == "NONE":
            return []
        wanted, where = self._requested_gpus(run)
        if wanted < 0:
            return list(self.available)
        if wanted > len(self.available):
            raise MadengineError("Model '%s' needs %d GPUs (%s), but this node gives %d (%s)."
                                 % (run.name, wanted, where, len(self.available),
                                    "docker_gpus %s" % self.ctx["docker_gpus"] if self.ctx.get("docker_gpus")
                                    else "GPUs %s" % (",".join(str(i) for i in self.available) or "none")))
        return list(self.available[:wanted])

    def _command(self, run):
        scripts = run.entry.get("scripts")
        if isinstance(scripts, dict) and scripts.get("entry"):
            workdir = scripts.get("image_dir") or SCRIPTS_IMAGE_DIR
            base = [scripts.get("runner") or "bash", scripts["entry"]]
        elif run.model.get("scripts") and self.settings.mad_root:
            bundle = ScriptsBundle.from_model(self.settings.mad_root, run.model)
            run.scripts_tar = _scripts_tar(bundle)
            workdir, base = SCRIPTS_IMAGE_DIR, [bundle.runner, bundle.entry]
        elif run.model.get("scripts"):
            raise MadengineError("Model '%s': image %s has no scripts baked in (its manifest entry has no 'scripts'); "
                                 "rebuild it with madengine_build or give mad_root to ship them."
                                 % (run.name, run.key))
        else:
            raise MadengineError("Model '%s' has no scripts to run." % run.name)
        args = self.ctx["model_args"] if isinstance(self.ctx.get("model_args"), str) else run.args
        run.args = args
        try:
            words = base + shlex.split(args or "")
        except ValueError as exc:
            raise MadengineError("Model '%s': args %r cannot be split into words: %s." % (run.name, args, exc))
        prefix = self.ctx.get("encapsulate_script") or ""
        if prefix:
            return workdir, ["sh", "-c", "%s %s" % (prefix, " ".join(shlex.quote(w) for w in words))]
        return workdir, words

    def _environment(self, run):
        gpu, ctx, environ = self.gpu, self.ctx, self.settings.environ
        ngpus = len(run.gpu_ids)
        env = {"MAD_GPU_VENDOR": gpu.vendor, "MAD_SYSTEM_NGPUS": str(gpu.count)}
        if gpu.arch:
            env["MAD_SYSTEM_GPU_ARCHITECTURE"] = gpu.arch
        if gpu.hip_version:
            env["MAD_SYSTEM_HIP_VERSION"] = gpu.hip_version
        if gpu.product:
            env["MAD_SYSTEM_GPU_PRODUCT_NAME"] = gpu.product
        env["MAD_GUEST_OS"] = str(ctx.get("guest_os") or "UBUNTU")
        env["MAD_RUNTIME_NGPUS"] = str(ngpus)
        runner = _launcher_runner(ctx, run.model, environ, max(ngpus, 1))
        env["MAD_MULTI_NODE_RUNNER"] = runner
        env["MAD_MODEL_NAME"] = run.name
        if run.multiple_results:
            env["MAD_OUTPUT_CSV"] = run.multiple_results
        env["JENKINS_BUILD_NUMBER"] = environ.get("BUILD_NUMBER") or "0"
        for name in HOST_ENV_PASSTHROUGH:
            if environ.get(name) is not None:
                env[name] = environ[name]
        if environ.get("HIP_VISIBLE_DEVICES") is not None:
            env["RAY_EXPERIMENTAL_NOSET_HIP_VISIBLE_DEVICES"] = ""
        for name, value in environ.items():
            if "MAD_SECRETS" in name:
                env[name] = value
                run.secret_names.add(name)
        env.update(data_env(run.data))
        cred = self.credentials.model_build_args(run.model)
        env.update(cred)
        run.secret_names.update(cred)
        for name, value in (ctx.get("docker_env_vars") or {}).items():
            if value is not None:
                env[name] = value if isinstance(value, str) else str(value)
        return env

    def _plan(self, run):
        run.timeout = effective_timeout(self.settings.timeout, self.ctx, run.model)
        run.log_path = os.path.join(self.settings.results_dir, run_log_name(
            run.name, run.entry.get("dockerfile"), run.entry.get("gpu_architecture"), self.settings.run_id))
        run.scan = scan_settings(self.ctx, run.model)
        if run.action == "skip":
            return
        reason = self._skip_arch(run)
        if reason:
            run.skip(reason)
            return
        if run.model.get("url"):
            raise MadengineError("Model '%s' has a url (%s): cloning a repository inside the container is not "
                                 "supported; bake the code into the image." % (run.name, run.model["url"]))
        run.gpu_ids = self._assign_gpus(run)
        run.data = resolve_data(run.model, self.data_providers, self.data_source, self.settings.force_mirror_local)
        workdir, command = self._command(run)
        image_ref = run.entry.get("registry_image") or run.entry.get("docker_image") or run.key
        spec = ContainerSpec(container_name(self.settings.run_id, run.key), image_ref, command, working_dir=workdir,
                             environment=self._environment(run),
                             labels={RUN_LABEL: self.settings.run_id, MODEL_LABEL: run.name, IMAGE_LABEL: run.key})
        spec.user = "root"
        spec.network_mode = "host"
        spec.ipc_mode = "host"
        vendor = self.gpu.vendor
        if vendor == "AMD":
            dev = self.settings.dev_root
            spec.devices.append("%s:/dev/kfd:rwm" % os.path.join(dev, "kfd"))
            by_index = self.gpu.by_index()
            for index in run.gpu_ids:
                minor = by_index[index].render_minor
                if minor:
                    host = os.path.join(dev, "dri", "renderD%d" % minor)
                    spec.devices.append("%s:/dev/dri/renderD%d:rwm" % (host, minor))
            spec.group_add = list(self.group_ids)
            spec.cap_add = ["SYS_PTRACE"]
            spec.security_opt = ["seccomp=unconfined", "apparmor=unconfined"]
        elif vendor == "NVIDIA":
            spec.device_requests = [{"driver": "nvidia", "device_ids": [str(i) for i in run.gpu_ids],
                                     "capabilities": [["gpu"]]}]
            spec.cap_add = ["SYS_PTRACE", "SYS_NICE"]
            spec.security_opt = ["seccomp=unconfined", "apparmor=unconfined"]
        if self.ctx.get("docker_cpus"):
            spec.cpuset_cpus = str(self.ctx["docker_cpus"]).replace(" ", "")
        spec.binds = [m.bind() for m in run.data]
        for target, host in (self.ctx.get("docker_mounts") or {}).items():
            spec.binds.append("%s:%s:rw" % (host, target))
        options = run.model.get("additional_docker_run_options") or ""
        if options:
            try:
                apply_run_options(spec, options)
            except ValueError as exc:
                raise MadengineError("Model '%s': additional_docker_run_options: %s." % (run.name, exc))
        run.spec = spec

    def missing_devices(self, runs):
        """Host device nodes the planned containers need but the node does not have."""
        missing = []
        for run in runs:
            if run.spec is None or run.action != "run":
                continue
            for device in run.spec.devices:
                host = device.split(":", 1)[0]
                if not os.path.exists(host) and host not in missing:
                    missing.append(host)
        return missing


def _scripts_tar(bundle):
    """A tar holding the model's scripts directory at madengine/scripts (extracted at /)."""
    buffer = io.BytesIO()
    prefix = SCRIPTS_IMAGE_DIR.lstrip("/")
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        parts = prefix.split("/")
        for depth in range(1, len(parts) + 1):
            info = tarfile.TarInfo("/".join(parts[:depth]))
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for rel, path in bundle.files:
            info = tar.gettarinfo(os.path.realpath(path), arcname="%s/%s" % (prefix, rel))
            if info is None:
                continue
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if info.isreg():
                with open(os.path.realpath(path), "rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    return buffer.getvalue()


# ---- running --------------------------------------------------------------------------------------

class _LogPump(threading.Thread):
    """Copies a container's output into its log file, line by line, masking secrets and scanning."""

    def __init__(self, stream, handle, scanner, secrets):
        threading.Thread.__init__(self, name="madengine-log")
        self.daemon = True
        self.stream = stream
        self.handle = handle
        self.scanner = scanner
        self.secrets = secrets
        self.error = None

    def _emit(self, raw):
        text = scrub(raw.decode("utf-8", "replace"), self.secrets)
        self.handle.write(text)
        self.scanner.feed(text)

    def run(self):
        pending = b""
        try:
            for chunk in self.stream:
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    self._emit(line + b"\n")
                self.handle.flush()
            if pending:
                self._emit(pending + b"\n")
        except Exception as exc:  # pylint: disable=broad-except
            self.error = exc
        finally:
            self.handle.flush()


class Executor(object):
    """Runs planned ModelRuns through a DockerClient and fills their rows."""

    def __init__(self, client, settings, gpu, credentials, secrets=(), progress=None):
        self.client = client
        self.settings = settings
        self.gpu = gpu
        self.credentials = credentials
        self.secrets = list(secrets)
        self.progress = progress or (lambda msg: None)

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
        header = "# madengine run %s of model %s on %s\n# %s\n" % (
            self.settings.run_id, run.name, self.settings.node_name, spec.docker_run(run.secret_names, self.secrets))
        scanner = LogScanner(*run.scan)
        try:
            with open(run.log_path, "w", encoding="utf-8") as handle:
                handle.write(header)
                handle.flush()
                clock = time.monotonic()
                try:
                    run.container_id = self.client.create_container(spec)
                    if run.scripts_tar is not None:
                        self.client.put_archive(run.container_id, "/", run.scripts_tar)
                    self.client.start(run.container_id)
                except DockerError as exc:
                    handle.write("# %s\n" % scrub(str(exc), self.secrets))
                    run.status = "FAILURE"
                    return [self._row(run, "FAILURE", error=str(exc))]
                finally:
                    run.timings["start"] = round(time.monotonic() - clock, 3)
                clock = time.monotonic()
                self.progress("%s: started container %s (timeout %s)" % (run.name, spec.name, timeout or "none"))
                pump = _LogPump(self.client.log_stream(run.container_id), handle, scanner, self.secrets)
                pump.start()
                timed_out = False
                try:
                    run.exit_code = self.client.wait(run.container_id, timeout)
                except WaitTimeout:
                    timed_out = True
                    self.client.kill(run.container_id)
                run.timings["run"] = round(time.monotonic() - clock, 3)
                pump.join(10)
                if timed_out:
                    handle.write("\n# madengine: timed out after %s s; the container was killed\n" % timeout)
            return self._rows_after(run, scanner.finish(), timed_out, pump)
        finally:
            if run.container_id is not None:
                if self.settings.keep_alive:
                    run.kept = True
                else:
                    self._remove(run)

    def _remove(self, run):
        try:
            self.client.remove_container(run.container_id)
        except DockerError as exc:
            raise DockerError("%s The container of model '%s' may be left behind." % (exc, run.name))

    def _rows_after(self, run, scan, timed_out, pump):
        duration = run.timings.get("run")
        if timed_out:
            run.status = "TIMEOUT"
            return [self._row(run, "TIMEOUT", test_duration=duration,
                              error="the run exceeded its timeout of %s s; the container was killed" % run.timeout)]
        if pump is not None and pump.error is not None:
            run.status = "FAILURE"
            return [self._row(run, "FAILURE", test_duration=duration,
                              error="reading the container output failed: %s" % pump.error)]
        if run.exit_code != 0:
            note = ("; log: %s" % scan.error_line) if scan.error_line else ""
            run.status = "FAILURE"
            return [self._row(run, "FAILURE", test_duration=duration,
                              error="the script exited with code %s%s" % (run.exit_code, note))]
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
            pipeline=settings.environ.get("pipeline") or "", args=run.args, tags=_tags_text(model.get("tags") or []),
            docker_file=entry.get("dockerfile") or "", base_docker=entry.get("base_docker") or "",
            docker_sha=entry.get("docker_sha") or "", docker_image=entry.get("docker_image") or run.key,
            git_commit="", machine_name=socket.gethostname(), deployment_type=settings.deployment_type,
            launcher="docker", gpu_architecture=",".join(archs) or gpu.arch, build_duration=entry.get("build_duration"),
            dataname=",".join(m.name for m in run.data), data_provider_type=",".join(m.provider for m in run.data),
            data_size="", data_download_duration="0" if run.data else "",
            build_number=settings.environ.get("BUILD_NUMBER") or "0",
            additional_docker_run_options=model.get("additional_docker_run_options") or "",
            host=settings.node_name, image_digest=run.image_digest, gpu_product=gpu.product,
            gpu_ids=",".join(str(i) for i in run.gpu_ids), driver_version=gpu.driver_version,
            rocm_version=gpu.rocm_version, cuda_version=gpu.cuda_version, start_time=run.start_time,
            exit_code="" if run.exit_code is None else run.exit_code, run_id=settings.run_id,
            log_path=run.log_path if os.path.exists(run.log_path or "") else "", vm_id=settings.vm_id,
        )
        values.update(fields)
        if values.get("error"):
            values["error"] = scrub(str(values["error"]), self.secrets)
        if isinstance(values.get("test_duration"), float):
            values["test_duration"] = round(values["test_duration"], 3)
        return make_row(status=status, **values)
