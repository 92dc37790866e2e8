# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""Planning a manifest's images on a node, without Docker: which run, where, and in which container.

:func:`select_runs` pairs the manifest's ``built_images`` and ``built_models``
and applies the ``tags`` filter; :class:`Planner` fits each image to the node's GPUs (vendor,
architecture, ``skip_gpu_arch``, ``n_gpus``/``docker_gpus``), resolves data and credentials and builds
the :class:`ContainerSpec` (madengine's run options per vendor, the MAD_* environment,
``docker_env_vars``, ``docker_mounts``, ``additional_docker_run_options``).  ``run.py`` runs the plans.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import socket
import tarfile

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.build_plan import (
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
    apply_run_options,
    scrub,
)
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.perf import scan_settings
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.run_steps import plan_steps
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.tools import CatalogueFiles, resolve_scripts
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.workspace import DRIVER, WORKSPACE
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError
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
# Keys of the runs standing for a model without an image: its build failed, or its Dockerfiles are for other vendors.
PLACEHOLDERS = ("(build failed)", "(no image)")
_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_.-]+")


def _split_list(value):
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part for part in re.split(r"[,\s]+", str(value or "")) if part]


def tags_text(tags):
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
        self.steps = None           # workspace.Steps when the model needs steps around its script
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
        self.enter = ""             # how to enter a container kept running
        self.git_commit = ""
        self.output_files = []
        # from the manifest: this model's build failures, and {vendor: reason} of vendors it has no Dockerfile for
        self.build_failures = []
        self.no_dockerfile = {}

    def skip(self, reason):
        self.action, self.reason = "skip", reason

    def fail(self, reason):
        self.action, self.reason = "fail", reason

    def planned(self, secrets=()):
        """The plan in a few words: ``run <image>``, ``skip: <reason>`` or ``fail: <reason>``."""
        if self.action == "run":
            return "run %s" % self.key
        return "%s: %s" % (self.action, scrub(self.reason, secrets))

    def as_result(self, secrets=()):
        result = {"model": self.name, "image": self.key, "action": self.action, "reason": scrub(self.reason, secrets),
                  "planned": self.planned(secrets),
                  "timeout": self.timeout, "gpu_ids": list(self.gpu_ids), "log_path": self.log_path,
                  "data": [m.as_dict() for m in self.data],
                  "container": self.spec.as_dict(self.secret_names, secrets) if self.spec is not None else None}
        if self.status is not None:
            result.update(status=self.status, image_digest=self.image_digest, pulled=self.pulled,
                          exit_code=self.exit_code, timings=dict(self.timings), start_time=self.start_time,
                          end_time=self.end_time, rows=len(self.rows), kept=self.kept, enter=self.enter,
                          output_files=list(self.output_files))
        if self.steps is not None:
            result["steps"] = {"clone": self.steps.clone.url if self.steps.clone else None,
                               "pre_scripts": [i["path"] for i in self.steps.pre_scripts],
                               "post_scripts": [i["path"] for i in self.steps.post_scripts],
                               "model_dir": self.steps.model_dir, "command": scrub(self.steps.command, secrets)}
        return result


def without_image(run):
    """A run of the same model standing for no image (the key of a model built for other vendors only)."""
    other = ModelRun(PLACEHOLDERS[1], {}, run.model)
    other.args, other.build_failures, other.no_dockerfile = run.args, run.build_failures, run.no_dockerfile
    return other


def build_gaps(manifest):
    """``(failed, gaps)``: the manifest's build failures by model, and {model: {vendor: reason}} of its
    ``skipped_builds`` (vendors a model has no Dockerfile for)."""
    failed, gaps = {}, {}
    for failure in ((manifest.get("summary") or {}).get("failed_builds") or []):
        if isinstance(failure, dict) and failure.get("model"):
            failed.setdefault(failure["model"], []).append(failure)
    for gap in manifest.get("skipped_builds") or []:
        if isinstance(gap, dict) and gap.get("model"):
            gaps.setdefault(gap["model"], {})[str(gap.get("gpu_vendor") or "").upper()] = str(gap.get("reason") or "")
    return failed, gaps


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
    failed, gaps = build_gaps(manifest)
    for failure in ((manifest.get("summary") or {}).get("failed_builds") or []):
        if isinstance(failure, dict) and failure.get("model") and failure["model"] not in built:
            run = ModelRun(PLACEHOLDERS[0], {}, {"name": failure["model"]})
            run.fail("the build of model '%s' failed, so %s has no image for it: %s"
                     % (failure["model"], source, str(failure.get("error") or "no reason recorded").rstrip(".")))
            runs.append(run)
            built.add(failure["model"])
    for name in gaps:
        if name not in built:
            run = ModelRun(PLACEHOLDERS[1], {}, {"name": name})
            run.skip("the build made no image of model '%s' for this node's GPU vendor" % name)
            runs.append(run)
            built.add(name)
    for run in runs:
        run.build_failures = failed.get(run.name, [])
        run.no_dockerfile = gaps.get(run.name, {})
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
        self.keep_model_dir = bool(fields.get("keep_model_dir"))
        self.sys_env_details = fields.get("sys_env_details")   # None: the context's gen_sys_env_details
        self.tools_config = fields.get("tools_config")
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
    """Seconds (0 = none): the option, else the context's ``timeout``, else the model's (> 0), else 7200;
    times the context's ``timeout_multiplier``."""
    multiplier = ctx.get("timeout_multiplier", 1)
    if multiplier in (None, ""):
        multiplier = 1
    if isinstance(multiplier, bool) or not isinstance(multiplier, (int, float)) or multiplier <= 0:
        raise MadengineError("Context key 'timeout_multiplier' must be a number above 0, not %r." % (multiplier,))
    if option is not None:
        base = int(option)
    elif isinstance(ctx.get("timeout"), (int, float)) and not isinstance(ctx["timeout"], bool) and ctx["timeout"] >= 0:
        base = int(ctx["timeout"])
    else:
        value = model.get("timeout")
        try:
            value = int(value) if value not in (None, "") else None
        except (TypeError, ValueError):
            raise MadengineError("Model '%s': timeout %r is not a number of seconds." % (model.get("name"), value))
        base = value if value is not None and value > 0 else DEFAULT_TIMEOUT
    return int(-(-base * multiplier // 1)) if base else 0


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

    def __init__(self, ctx, gpu, settings, credentials, data_providers, data_source, group_ids=None, files=None):
        self.ctx = ctx
        self.gpu = gpu
        self.settings = settings
        self.credentials = credentials
        self.data_providers = data_providers
        self.data_source = data_source
        self.group_ids = host_group_ids() if group_ids is None else list(group_ids)
        self.files = files if files is not None else CatalogueFiles(settings.mad_root)
        self.scripts = resolve_scripts(ctx, self.files, settings.tools_config)
        self.available = self._available_gpus()
        self.filtered = []

    def _available_gpus(self):
        detected = [g.index for g in self.gpu.gpus]
        if self.gpu.vendor == "NONE":
            return []
        if self.ctx.get("docker_gpus") in (None, "") or str(self.ctx["docker_gpus"]).strip().lower() == "all":
            return detected
        wanted = parse_gpu_list(self.ctx["docker_gpus"], "Context key 'docker_gpus'")
        unknown = [i for i in wanted if i not in detected]
        if unknown:
            raise MadengineError("Context key 'docker_gpus' (%s) names GPU %s, but this node's %s GPUs are %s."
                                 % (self.ctx["docker_gpus"], ",".join(str(i) for i in unknown), self.gpu.vendor,
                                    ",".join(str(i) for i in detected)))
        return wanted

    # -- fitting images to the node

    def _arch_matches(self, arch):
        """An image's architecture against the node's: ``gfx942``; NVIDIA's short name or its product name."""
        names = [n for n in (self.gpu.build_arch, self.gpu.arch) if n]
        return any(arch.lower() == name.lower() for name in names)

    def _fits(self, run):
        vendor = (run.entry.get("gpu_vendor") or "").upper()
        arch = run.entry.get("gpu_architecture") or ""
        if vendor and vendor != self.gpu.vendor:
            return "image %s is built for %s GPUs, and this node's gpu_vendor is %s" % (
                run.key, vendor, self.gpu.vendor)
        if arch and not self._arch_matches(arch):
            return "image %s is built for %s, and this node's architecture is %s" % (
                run.key, arch, self.gpu.build_arch or "none (CPU)")
        return None

    def _unfit_reason(self, run, reason):
        """Why a model has no image for this node: no Dockerfile for its vendor (SKIPPED), its build for this
        node's architecture failed (FAILURE), or what the images are built for (SKIPPED)."""
        if self.gpu.vendor in run.no_dockerfile:
            return "skip", run.no_dockerfile[self.gpu.vendor]
        if run.key == PLACEHOLDERS[0]:
            return run.action, run.reason
        for failure in run.build_failures:
            if (failure.get("architecture") or "") in ("", self.gpu.build_arch):
                return "fail", "the build of model '%s' for %s failed: %s" % (
                    run.name, failure.get("architecture") or "this node", str(failure.get("error")
                                                                              or "no reason recorded").rstrip("."))
        if run.key == PLACEHOLDERS[1]:
            return "fail", "the manifest has no image of model '%s' for gpu_vendor %s" % (run.name, self.gpu.vendor)
        return "skip", "no image of model '%s' fits this node: %s" % (run.name, reason)

    def _most_specific(self, runs):
        """Of a model's fitting images of one Dockerfile, those built for the node's architecture when there are."""
        specific = set(r.entry.get("dockerfile") for r in runs if r.entry.get("gpu_architecture"))
        kept = []
        for run in runs:
            if not run.entry.get("gpu_architecture") and run.entry.get("dockerfile") in specific:
                self.filtered.append({"model": run.name, "image": run.key, "reason": "an image built for %s fits "
                                      "this node better" % self.gpu.build_arch})
            else:
                kept.append(run)
        return kept

    def fit(self, runs):
        """Keep the images that fit the node (the most specific of each Dockerfile); a model without one is
        SKIPPED (or FAILURE when its build for this node failed)."""
        reasons = dict((id(r), self._fits(r)) for r in runs if r.action == "run")
        fitting = {}
        for run in runs:
            if run.action == "run" and reasons[id(run)] is None:
                fitting.setdefault(run.name, []).append(run)
        keep = set(id(r) for group in fitting.values() for r in self._most_specific(group))
        kept, reported = [], set()
        for run in runs:
            reason = reasons.get(id(run))
            if id(run) in keep or (run.action != "run" and run.key not in PLACEHOLDERS):
                kept.append(run)  # a fitting image, or a manifest entry that cannot run (a FAILURE row)
            elif run.name in fitting or run.name in reported:
                if reason is not None:
                    self.filtered.append({"model": run.name, "image": run.key, "reason": reason})
            else:
                reported.add(run.name)
                action, why = self._unfit_reason(run, reason or run.reason)
                # a model with no Dockerfile for this vendor: its row names no image, none was built for it
                unfit = without_image(run) if self.gpu.vendor in run.no_dockerfile else run
                unfit.fail(why) if action == "fail" else unfit.skip(why)
                kept.append(unfit)
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
        env.update(self.scripts.env)
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
        run.gpu_ids = self._assign_gpus(run)
        run.data = resolve_data(run.model, self.data_providers, self.data_source, self.settings.force_mirror_local,
                                files=self.files, nas_nodes=self.credentials.nas_nodes())
        workdir, words = self._command(run)
        prefix = self.scripts.encapsulate
        run.steps = plan_steps(run, self.settings, self.ctx, self.scripts, self.files, self.credentials, workdir,
                               words, prefix)
        if run.steps is not None:
            workdir, command = WORKSPACE, ["sh", DRIVER]
        elif prefix:
            command = ["sh", "-c", "%s %s" % (prefix, " ".join(shlex.quote(w) for w in words))]
        else:
            command = words
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
        spec.binds = [m.bind() for m in run.data if m.host_path]
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
