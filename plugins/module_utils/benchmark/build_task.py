# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""The madengine_build task: options in, images built/reused/pushed and a manifest out.

:func:`run_build` is the whole module minus AnsibleModule: it raises MadengineError for task-level
errors (bad options or context, unreadable files, unreachable registry, rejected credentials) and
returns the result dict otherwise; failures of single models are in ``failures`` (``failed`` is Ansible's
own task status).
"""

from __future__ import annotations

import os

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.build import (
    Builder,
    ImageOutcome,
    Planner,
)
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.context import (
    detect_build_context,
    filter_context,
    load_context,
    normalise_context,
)
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.credentials import Credentials
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.discovery import (
    _check_types,
    discover,
    select,
)
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.docker_client import scrub
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.manifest import (
    build_manifest,
    check_directory,
    check_writable,
    read_previous,
    would_change,
    write_if_changed,
)
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError

MANIFEST_NAME = "build_manifest.json"


def _validate_registry(registry):
    if registry is None:
        return None
    registry = registry.strip().rstrip("/")
    if not registry or "://" in registry or any(ch.isspace() for ch in registry):
        raise MadengineError("registry %r must be a registry host[:port] (optionally /namespace), not a URL."
                             % registry)
    return registry


def _models_from_option(models):
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


def _predict(plan, previous, rebuild, registry):
    """Check mode: what would happen to ``plan``, from the previous manifest only (no Docker)."""
    outcome = ImageOutcome(plan)
    outcome.build_command = plan.build_command()
    entry = previous.get(plan.image) or {}
    bases = entry.get("base_images") if isinstance(entry.get("base_images"), dict) else {}
    key = plan.content_key(bases)
    if rebuild == "always":
        outcome.action, outcome.reason = "build", "rebuild is always"
    elif not entry:
        outcome.action, outcome.reason = "build", "the manifest has no record of this image"
    elif entry.get("inputs_digest") != plan.inputs_digest or entry.get("content_key") != key:
        outcome.action, outcome.reason = "build", ("the Dockerfile, build context, scripts or build arguments "
                                                   "changed since the manifest was written")
    else:
        outcome.action, outcome.reason = "reuse", "the manifest records an image with this content key"
        outcome.content_key = key
        outcome.base_digests = dict(bases)
        outcome.image_id = entry.get("image_id")
        outcome.build_duration = float(entry.get("build_duration") or 0.0)
        outcome.log_file = entry.get("log_file") or None
    if plan.registry_ref:
        recorded = entry.get("registry_image") == plan.registry_ref and entry.get("registry_digest") \
            and not entry.get("push_error")
        outcome.push_planned = outcome.action == "build" or not recorded
        if not outcome.push_planned:
            outcome.registry_digest = entry.get("registry_digest")
    return outcome


def run_build(params, check_mode, client_factory, warn, register_secrets):
    """Run madengine_build; ``params`` are the module options.  Returns the result dict."""
    mad_root = params["mad_root"]
    if not mad_root or not os.path.isdir(mad_root):
        raise MadengineError("mad_root %s is not a directory." % (mad_root or "(empty)"))
    registry = _validate_registry(params.get("registry"))
    ctx, source = load_context(params.get("additional_context"), params.get("additional_context_file"))
    ctx = normalise_context(ctx, source)
    credentials = Credentials.load(params.get("credential_file"))

    if params.get("models") is not None:
        models = _models_from_option(params["models"])
    else:
        tags = params.get("tags") or []
        if not [t for t in tags if t and t.strip()]:
            raise MadengineError("Give tags (for example 'all') or models to build; both are empty.")
        models, notes = select(discover(mad_root), tags)
        for note in notes:
            warn(note)
    if not models:
        raise MadengineError("No models to build: the models option is empty.")
    secrets = credentials.secret_values(models, extra=[params.get("registry_password")])
    register_secrets(credentials.no_log_values(models, extra=[params.get("registry_password")]))

    manifest_path = params.get("manifest_path") or os.path.join(mad_root, MANIFEST_NAME)
    manifest_dir = os.path.dirname(os.path.abspath(manifest_path))
    if check_mode and not os.path.exists(manifest_dir):
        # a dry run before the first real one (a playbook makes the directory first): nothing to compare with
        warn("manifest_path %s: directory %s does not exist yet, so there is no earlier manifest and every image "
             "is planned as a build (a real run needs the directory)." % (manifest_path, manifest_dir))
    else:
        check_writable(manifest_path, "manifest_path")
    log_dir = params.get("log_dir") or os.path.dirname(os.path.abspath(manifest_path))
    check_directory(log_dir, "log_dir", create=not check_mode)

    auth = None
    if registry:
        auth = credentials.registry_auth(registry, params.get("registry_username"), params.get("registry_password"))
    planner = Planner(mad_root, ctx, filter_context(ctx, detect_build_context(mad_root)), credentials,
                      image_prefix=params.get("image_prefix") or "", target_archs=params.get("target_archs") or [],
                      registry=registry, log_dir=log_dir, labels=params.get("labels"))
    plans, failures = planner.plan(models)
    for message in planner.warnings:
        warn(message)
    previous_doc = read_previous(manifest_path)
    previous = previous_doc.get("built_images") if isinstance(previous_doc.get("built_images"), dict) else {}
    rebuild = params.get("rebuild") or "never"

    outcomes = []
    if check_mode:
        outcomes = [_predict(plan, previous, rebuild, registry) for plan in plans]
    elif plans:
        client = client_factory()
        try:
            builder = Builder(client, rebuild=rebuild, pull=params.get("pull", True),
                              network=params.get("build_network") or None,
                              build_timeout=params.get("build_timeout") or 0, registry=registry, auth=auth,
                              secrets=secrets, previous=previous, warn=warn)
            if registry:
                builder.check_registry(plans[0].registry_ref)
            outcomes = [builder.run(plan) for plan in plans]
        finally:
            client.close()

    for outcome in outcomes:
        if outcome.action == "failed":
            failure = {"model": outcome.plan.model_name, "image": outcome.plan.image,
                       "dockerfile": outcome.plan.dockerfile, "stage": "build", "error": outcome.error}
            if outcome.log_file:
                failure["log_file"] = outcome.log_file
            if outcome.plan.arch:
                failure["architecture"] = outcome.plan.arch
            failures.append(failure)
        elif outcome.push_error:
            failures.append({"model": outcome.plan.model_name, "image": outcome.plan.image,
                             "dockerfile": outcome.plan.dockerfile, "stage": "push", "error": outcome.push_error})

    if check_mode:
        manifest_outcomes = []
        for outcome in outcomes:
            predicted = ImageOutcome(outcome.plan)
            predicted.__dict__.update(outcome.__dict__)
            predicted.action = "built" if outcome.action == "build" else "reused"
            manifest_outcomes.append(predicted)
    else:
        manifest_outcomes = outcomes
    manifest = build_manifest(manifest_outcomes, failures, ctx, models, registry)
    if check_mode:
        manifest_changed = would_change(manifest_path, manifest)
    else:
        manifest_changed = write_if_changed(manifest_path, manifest)

    if check_mode:
        built = [o.plan.image for o in outcomes if o.action == "build"]
        reused = [o.plan.image for o in outcomes if o.action == "reuse"]
        pushed = [o.plan.registry_ref for o in outcomes if o.push_planned]
    else:
        built = [o.plan.image for o in outcomes if o.action == "built"]
        reused = [o.plan.image for o in outcomes if o.action == "reused"]
        pushed = [o.plan.registry_ref for o in outcomes if o.pushed]
    images = [o.as_result() for o in outcomes]
    for failure in failures:
        failure["error"] = scrub(failure["error"], secrets)
    return {
        "changed": bool(built or pushed or manifest_changed),
        "built": built,
        "reused": reused,
        "pushed": pushed,
        "failures": failures,
        "images": images,
        "manifest": manifest,
        "manifest_path": os.path.abspath(manifest_path),
        "manifest_changed": manifest_changed,
    }
