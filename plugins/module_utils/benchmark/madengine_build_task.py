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
    select,
)
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.docker_client import (
    client_from_module,
    scrub,
)
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.manifest import (
    build_manifest,
    check_directory,
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


def image_models(manifest, selected):
    """Names of the selected models that have an image or a recorded build failure, in selection order."""
    names = set(model.get("name") for model in manifest["built_models"].values())
    names.update(failure.get("model") for failure in manifest["summary"]["failed_builds"])
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
        if not mad_root or not os.path.isdir(mad_root):
            raise MadengineError("mad_root %s is not a directory." % (mad_root or "(empty)"))
        run_id = resolve_run_id(params.get("run_id"))
        registry = validate_registry(params.get("registry"))
        ctx, source = load_context(params.get("additional_context"), params.get("additional_context_file"))
        ctx = normalise_context(ctx, source)
        providers = data_providers(params.get("data_config"), mad_root)
        credentials = Credentials.load(params.get("credential_file"), document=self.credentials)
        selected = self.selected_models(mad_root)
        extra = [params.get("registry_password")]
        self.secrets = credentials.secret_values(selected, extra=extra)
        self.module.no_log_values.update(credentials.no_log_values(selected, extra=extra))

        manifest_path, log_dir = self.locations(mad_root)
        planner = Planner(mad_root, ctx, filter_context(ctx, detect_build_context(mad_root)), credentials,
                          image_prefix=params.get("image_prefix") or "", target_archs=params.get("target_archs") or [],
                          registry=registry, log_dir=log_dir, labels=params.get("labels"))
        plans, failures = planner.plan(selected)
        for message in planner.warnings:
            self.warn(message)
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
        if self.check_mode:
            manifest_changed = would_change(manifest_path, manifest)
        else:
            manifest_changed = write_if_changed(manifest_path, manifest)
        if params.get("summary_output") and not self.check_mode:
            prepare_output(params["summary_output"], "summary_output")
            atomic_write_json(params["summary_output"], manifest["summary"])
        return self.result(outcomes, failures, manifest, manifest_path, manifest_changed, {
            "run_id": run_id, "selected": selected, "models": image_models(manifest, selected),
            "data_providers": providers, "catalogue_files": collect_files(mad_root, ctx, selected, providers)})

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
            return [builder.run(plan) for plan in plans]
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
