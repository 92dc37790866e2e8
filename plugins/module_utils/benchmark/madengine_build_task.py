# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""The madengine_build module's task: options in, images built/reused/pushed and a manifest out.

Task-level errors (bad options or context, unreadable files, unreachable registry, rejected
credentials) fail the task with a sentence; a model that fails is an item of ``failures`` and fails
the task at the end only when ``fail_on_error`` is set.  Check mode and the real run take each image's
decision from :func:`build.decide`; check mode reads the previous manifest instead of Docker.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.build import (
    BUILD,
    FAILED,
    REUSE,
    Builder,
    BuildPolicy,
    ManifestState,
    decide,
)
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.build_plan import Planner
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.context import (
    detect_build_context,
    filter_context,
    load_context,
    normalise_context,
)
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.credentials import (
    Credentials,
    document_secrets,
)
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.data import load_data_config
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.discovery import (
    _check_types,
    discover,
    parse_tag,
    select,
    split_tags,
)
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.docker_args import DOCKER_COMMON_ARGS
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.docker_client import (
    client_from_module,
    scrub,
)
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.fleet import (
    build_targets,
    check_profiles,
)
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.fleet import plan as fleet_plan
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.manifest import (
    build_manifest,
    check_directory,
    load_manifest,
    prepare_output,
    read_previous,
    would_change,
    write_if_changed,
)
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.run_id import resolve_run_id
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.tools import collect_files
from ansible_collections.rocm.madengine.plugins.module_utils.common import (
    MadengineError,
    absolute_paths,
    atomic_write_json,
    mask_only,
)

MANIFEST_NAME = "build_manifest.json"
DATA_NAME = "data.json"
CREDENTIAL_NAME = "credential.json"


# the module's options; its action plugin checks a task's arguments against them when it runs the task itself
ARGUMENT_SPEC = dict(
    mad_root=dict(type="path", required=True),
    tags=dict(type="list", elements="str"),
    models=dict(type="list", elements="dict"),
    additional_context=dict(type="raw"),
    additional_context_file=dict(type="path"),
    registry=dict(type="str"),
    credential_file=dict(type="path"),
    credentials=dict(type="dict", no_log=True),
    registry_username=dict(type="str"),
    registry_password=dict(type="str", no_log=True),
    manifest_path=dict(type="path"),
    run_id=dict(type="str", default=""),
    data_config=dict(type="path"),
    log_dir=dict(type="path"),
    summary_output=dict(type="path"),
    rebuild=dict(type="str", choices=["never", "always"], default="never"),
    target_archs=dict(type="list", elements="str", default=[]),
    pull=dict(type="bool", default=True),
    image_prefix=dict(type="str", default="ci-"),
    labels=dict(type="dict", default={}),
    build_network=dict(type="str", default="host"),
    build_timeout=dict(type="int", default=0),
    build_parallel=dict(type="int", default=4),
    fail_on_error=dict(type="bool", default=True),
    nodes=dict(type="dict", default={}),
    matrix=dict(type="str", choices=["all", "shard"], default="all"),
    durations=dict(type="dict", default={}),
    reuse_manifest=dict(type="path"),
)
ARGUMENT_SPEC.update(DOCKER_COMMON_ARGS)
CONSTRAINTS = dict(
    mutually_exclusive=[("tags", "models"), ("credential_file", "credentials")],
    required_one_of=[("tags", "models")],
    required_together=[("registry_username", "registry_password")],
)


def run(module):
    """The whole module after AnsibleModule: exit_json or fail_json."""
    absolute_paths(module)
    credentials = module.params.get("credentials")
    mask_only(module, "credentials", document_secrets(credentials))
    try:
        result = BuildTask(module, credentials).run()
    except MadengineError as exc:
        module.fail_json(msg=str(exc))
    failures = result["failures"]
    if failures and module.params["fail_on_error"]:
        module.fail_json(msg="%d failure(s): %s" % (len(failures), " ".join(f["error"] for f in failures)), **result)
    module.exit_json(**result)


def validate_registry(registry):
    if registry is None or not registry.strip():
        return None  # empty, as madengine_registry's default: no registry, nothing pushed
    registry = registry.strip().rstrip("/")
    if "://" in registry or any(ch.isspace() for ch in registry):
        raise MadengineError("registry %r must be a registry host[:port] (optionally /namespace), not a URL."
                             % registry)
    return registry


def models_from_option(models):
    checked = []
    for index, model in enumerate(models, 1):
        if not isinstance(model, dict):
            raise MadengineError("models item %d is a %s, not a model dict from madengine_discover."
                                 % (index, type(model).__name__))
        _check_types(model, "models option", "item %d" % index)
        entry = dict(model)
        entry.setdefault("args", "")
        checked.append(entry)
    return checked


def data_providers(path, mad_root):
    """The data.json the nodes need (``path``, else ``<mad_root>/data.json`` when there is one), or None."""
    if not path:
        default = os.path.join(mad_root, DATA_NAME)
        path = default if os.path.isfile(default) else None
    return load_data_config(path) if path else None


def default_credential_file(path, mad_root):
    """``path``, else ``<mad_root>/credential.json`` when there is one (madengine reads it from the MAD tree)."""
    if path:
        return path
    default = os.path.join(mad_root, CREDENTIAL_NAME)
    return default if os.path.isfile(default) else None


def image_models(manifest, selected):
    """Names of the selected models that have an image, a recorded build failure or a vendor without a Dockerfile,
    in selection order."""
    names = set(model.get("name") for model in manifest["built_models"].values())
    names.update(failure.get("model") for failure in manifest["summary"]["failed_builds"])
    names.update(skip.get("model") for skip in manifest.get("skipped_builds") or ())
    ordered = []
    for model in selected:
        if model.get("name") in names and model["name"] not in ordered:
            ordered.append(model["name"])
    return ordered


def outcome_failures(outcomes):
    """The build and push failures among the outcomes (plan failures come from the Planner)."""
    failures = []
    for outcome in outcomes:
        plan = outcome.plan
        if outcome.action == FAILED:
            failure = {"model": plan.model_name, "image": plan.image, "dockerfile": plan.dockerfile,
                       "stage": "build", "error": outcome.error}
            if outcome.log_file:
                failure["log_file"] = outcome.log_file
            if plan.arch:
                failure["architecture"] = plan.arch
            failures.append(failure)
        elif outcome.push_error:
            failures.append({"model": plan.model_name, "image": plan.image, "dockerfile": plan.dockerfile,
                             "stage": "push", "error": outcome.push_error})
    return failures


def fleet_profiles(params):
    """``(profiles, targets)`` of the nodes option (``({}, None)`` without nodes: the context decides)."""
    if not params.get("nodes"):
        if params.get("matrix", "all") != "all":
            raise MadengineError("matrix %s needs the nodes option (the nodes and their GPU profiles)."
                                 % params["matrix"])
        return {}, None
    profiles = check_profiles(params["nodes"])
    return profiles, build_targets(profiles, params.get("target_archs") or ())


def fleet_result(models, profiles, targets, params, skipped=()):
    """What the nodes run: ``assignments`` (node -> models), ``groups`` and ``targets`` (empty without nodes)."""
    if not profiles:
        return {"assignments": {}, "groups": [], "targets": []}
    unsupported = {}
    for gap in skipped:
        unsupported.setdefault(gap.get("model"), []).append(str(gap.get("gpu_vendor") or "").upper())
    assignments, groups = fleet_plan(models, profiles, params.get("matrix") or "all", params.get("durations"),
                                     unsupported)
    return {"assignments": assignments, "groups": groups,
            "targets": [{"gpu_vendor": vendor, "gpu_architecture": arch} for vendor, arch in targets]}


def manifest_models(manifest, tags, source):
    """The models of a manifest (image, failed or skipped), in its order, filtered by ``tags``."""
    models, seen = [], set()
    entries = list(manifest["built_models"].values())
    entries += [{"name": f.get("model")} for f in (manifest.get("summary") or {}).get("failed_builds") or ()]
    entries += [{"name": s.get("model")} for s in manifest.get("skipped_builds") or ()]
    for entry in entries:
        if isinstance(entry, dict) and entry.get("name") and entry["name"] not in seen:
            seen.add(entry["name"])
            models.append(entry)
    flat = [t for t in split_tags(tags) if t != "all"]
    if not flat:
        return models
    known = [m["name"] for m in models]
    chosen = []
    for raw in flat:
        spec = parse_tag(raw, known)
        matched = [m for m in models if spec.matches({"name": m["name"], "tags": m.get("tags") or []})]
        if not matched:
            raise MadengineError("Tag '%s' selects no model of %s (models: %s)." % (raw, source, ", ".join(known)))
        chosen.extend(m for m in matched if m not in chosen)
    return [m for m in models if m in chosen]


def missing_images(manifest, models, targets):
    """``model for vendor arch`` of every selected model and node kind a reused manifest has no image for (a model
    the build skipped for that vendor is not missing)."""
    have, gaps = {}, set()
    for entry in manifest["built_images"].values():
        if isinstance(entry, dict):
            have.setdefault(entry.get("model"), []).append(((entry.get("gpu_vendor") or "").upper(),
                                                            entry.get("gpu_architecture") or ""))
    for gap in manifest.get("skipped_builds") or ():
        gaps.add((gap.get("model"), str(gap.get("gpu_vendor") or "").upper()))
    missing = []
    for vendor, arch in targets or ():
        for model in models:
            if (model, vendor) not in gaps and not any(
                    v in ("", vendor) and a in ("", arch) for v, a in have.get(model, ())):
                missing.append("%s for %s" % (model, ("%s %s" % (vendor, arch)) if arch else vendor))
    return missing


class BuildTask(object):
    """One madengine_build call."""

    def __init__(self, module, credentials=None):
        self.module = module
        self.credentials = credentials  # the credentials option (module.params holds a placeholder now)
        self.params = module.params
        self.check_mode = module.check_mode
        self.warn = module.warn
        self.secrets = []

    def run(self):
        params = self.params
        mad_root = params["mad_root"]
        run_id = resolve_run_id(params.get("run_id"))
        profiles, targets = fleet_profiles(params)
        if params.get("reuse_manifest"):
            return self.reuse(params["reuse_manifest"], run_id, profiles, targets)
        if not mad_root or not os.path.isdir(mad_root):
            raise MadengineError("mad_root %s is not a directory." % (mad_root or "(empty)"))
        registry = validate_registry(params.get("registry"))
        ctx, source = load_context(params.get("additional_context"), params.get("additional_context_file"))
        vendors = sorted(set(v for v, _a in targets or ()))
        if targets is not None and ctx.get("gpu_vendor") and vendors != [str(ctx["gpu_vendor"]).upper()]:
            self.warn("The build context's gpu_vendor %s is not used: Dockerfiles are chosen for the vendors of the "
                      "nodes (%s)." % (ctx["gpu_vendor"], ", ".join(vendors)))
        ctx = normalise_context(ctx, source)
        providers = data_providers(params.get("data_config"), mad_root)
        credentials = Credentials.load(None if self.credentials is not None else default_credential_file(
            params.get("credential_file"), mad_root), document=self.credentials)
        selected = self.selected_models(mad_root)
        extra = [params.get("registry_password")]
        self.secrets = credentials.secret_values(selected, extra=extra)
        self.module.no_log_values.update(credentials.no_log_values(selected, extra=extra))

        manifest_path, log_dir = self.locations(mad_root)
        planner = Planner(mad_root, ctx, filter_context(ctx, detect_build_context(mad_root)), credentials,
                          image_prefix=params.get("image_prefix") or "", target_archs=params.get("target_archs") or [],
                          registry=registry, log_dir=log_dir, labels=params.get("labels"), targets=targets)
        plans, failures = planner.plan(selected)
        for message in planner.warnings:
            self.warn(message)
        fleet = fleet_result(image_models({"built_models": dict((p.image, p.model) for p in plans),
                                           "summary": {"failed_builds": failures},
                                           "skipped_builds": planner.skipped}, selected), profiles, targets, params,
                             planner.skipped)
        previous_doc = read_previous(manifest_path)
        previous = previous_doc.get("built_images") if isinstance(previous_doc.get("built_images"), dict) else {}
        policy = BuildPolicy(rebuild=params.get("rebuild"), pull=params.get("pull", True),
                             network=params.get("build_network") or None, build_timeout=params.get("build_timeout"))
        if self.check_mode:
            outcomes = [decide(plan, policy, ManifestState(previous), previous, self.secrets) for plan in plans]
        else:
            outcomes = self.build(plans, policy, registry, credentials, previous)
        failures.extend(outcome_failures(outcomes))
        for failure in failures:
            failure["error"] = scrub(failure["error"], self.secrets)

        manifest = build_manifest([self.as_done(o) for o in outcomes], failures, ctx, selected, registry)
        if targets is not None:
            manifest["targets"] = fleet["targets"]
            manifest["skipped_builds"] = planner.skipped
        if self.check_mode:
            manifest_changed = would_change(manifest_path, manifest)
        else:
            manifest_changed = write_if_changed(manifest_path, manifest)
        if params.get("summary_output") and not self.check_mode:
            prepare_output(params["summary_output"], "summary_output")
            atomic_write_json(params["summary_output"], manifest["summary"])
        fleet.update(run_id=run_id, selected=selected, models=image_models(manifest, selected),
                     data_providers=providers, skipped_builds=planner.skipped,
                     catalogue_files=collect_files(mad_root, ctx, selected, providers))
        return self.result(outcomes, failures, manifest, manifest_path, manifest_changed, fleet)

    def reuse(self, path, run_id, profiles, targets):
        """A manifest built earlier, instead of a build: nothing is built, pushed or written."""
        manifest = load_manifest(path)
        source = "manifest %s" % path
        selected = manifest_models(manifest, self.params.get("tags") or [], source)
        if not selected:
            raise MadengineError("%s holds no model." % source[0].upper() + source[1:])
        missing = missing_images(manifest, [m["name"] for m in selected], targets)
        if missing:
            self.warn("%s has no image of %s: the nodes of those kinds skip or fail those models."
                      % (source, ", ".join(missing)))
        mad_root = self.params.get("mad_root")
        has_tree = bool(mad_root and os.path.isdir(mad_root))
        providers = data_providers(self.params.get("data_config"), mad_root) if (
            self.params.get("data_config") or has_tree) else None
        names = [m["name"] for m in selected]
        result = fleet_result(names, profiles, targets, self.params, manifest.get("skipped_builds") or ())
        # the files the nodes need beside the images follow the context the manifest was built with
        files = collect_files(mad_root, manifest.get("context") or {}, selected, providers) if has_tree else None
        result.update(run_id=run_id, selected=selected, models=names, data_providers=providers,
                      skipped_builds=list(manifest.get("skipped_builds") or []), catalogue_files=files)
        reused = sorted(key for key, entry in manifest["built_images"].items()
                        if isinstance(entry, dict) and entry.get("model") in names)
        result.update(changed=False, built=[], reused=reused, pushed=[], failures=[],
                      images=[], manifest=manifest, manifest_path=os.path.abspath(path), manifest_changed=False)
        return result

    def selected_models(self, mad_root):
        """The models to build: the ``models`` option, or what ``tags`` select from the catalogue."""
        if self.params.get("models") is not None:
            models = models_from_option(self.params["models"])
        else:
            tags = self.params.get("tags") or []
            if not [t for t in tags if t and t.strip()]:
                raise MadengineError("Give tags (for example 'all') or models to build; both are empty.")
            models, notes = select(discover(mad_root), tags)
            for note in notes:
                self.warn(note)
        if not models:
            raise MadengineError("No models to build: the models option is empty.")
        return models

    def locations(self, mad_root):
        """The manifest path and the log directory, both made when missing (not in check mode)."""
        manifest_path = self.params.get("manifest_path") or os.path.join(mad_root, MANIFEST_NAME)
        manifest_dir = os.path.dirname(manifest_path)
        if self.check_mode and not os.path.exists(manifest_dir):
            # a dry run before the first real one: nothing to compare with
            self.warn("manifest_path %s: directory %s does not exist yet, so there is no earlier manifest and every "
                      "image is planned as a build." % (manifest_path, manifest_dir))
        else:
            prepare_output(manifest_path, "manifest_path")
        log_dir = self.params.get("log_dir") or manifest_dir
        check_directory(log_dir, "log_dir", create=not self.check_mode)
        return manifest_path, log_dir

    def build(self, plans, policy, registry, credentials, previous):
        """The real run: every plan through the engine (no engine is contacted when nothing is planned)."""
        if not plans:
            return []
        auth = None
        if registry:
            auth = credentials.registry_auth(registry, self.params.get("registry_username"),
                                             self.params.get("registry_password"))
        client = client_from_module(self.module)
        try:
            builder = Builder(client, policy, registry=registry, auth=auth, secrets=self.secrets, previous=previous,
                              warn=self.warn)
            if registry:
                builder.check_registry(plans[0].registry_ref)
            workers = min(max(self.params.get("build_parallel") or 1, 1), len(plans))
            if workers == 1:
                return [builder.run(plan) for plan in plans]
            # the engine builds (and pushes) several images at once; the outcomes stay in the plans' order
            with ThreadPoolExecutor(max_workers=workers) as pool:
                return list(pool.map(builder.run, plans))
        finally:
            client.close()

    def as_done(self, outcome):
        """The outcome as the manifest records it: in check mode, a planned build or reuse as done."""
        if not self.check_mode or outcome.action not in (BUILD, REUSE):
            return outcome
        done = type(outcome)(outcome.plan)
        done.__dict__.update(outcome.__dict__)
        done.action = "built" if outcome.action == BUILD else "reused"
        return done

    def result(self, outcomes, failures, manifest, manifest_path, manifest_changed, extra):
        if self.check_mode:
            built = [o.plan.image for o in outcomes if o.action == BUILD]
            reused = [o.plan.image for o in outcomes if o.action == REUSE]
            pushed = [o.plan.registry_ref for o in outcomes if o.push_planned]
        else:
            built = [o.plan.image for o in outcomes if o.action == "built"]
            reused = [o.plan.image for o in outcomes if o.action == "reused"]
            pushed = [o.plan.registry_ref for o in outcomes if o.pushed]
        result = {
            "changed": bool(built or pushed or manifest_changed),
            "built": built,
            "reused": reused,
            "pushed": pushed,
            "failures": failures,
            "images": [o.as_result() for o in outcomes],
            "manifest": manifest,
            "manifest_path": manifest_path,
            "manifest_changed": manifest_changed,
        }
        result.update(extra)
        return result
