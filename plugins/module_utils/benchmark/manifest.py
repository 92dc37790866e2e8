# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""The build manifest (madengine's ``build_manifest.json``): assembling, reading and writing it.

Top-level keys are madengine's (``built_images``, ``built_models``, ``context``,
``credentials_required``, ``registry``, ``summary``, ``deployment_config``, ``push_failures``);
each ``built_images`` entry has madengine's fields plus ours (``image_id``, ``content_key``,
``inputs_digest``, ``base_images``, ``registry_digest``, ``build_context``, ``scripts``).  The
document holds nothing that changes between two runs that change nothing, so an unchanged build
leaves the file byte-for-byte as it was.
"""

from __future__ import annotations

import copy
import json
import os

from ansible_collections.rocm.madengine.plugins.module_utils.common import (
    MadengineError,
    load_json_file,
)
from ansible_collections.rocm.madengine.plugins.module_utils.common import (
    write_if_changed as _write_bytes_if_changed,
)

FORMAT = 1
GENERATOR = "rocm.madengine.madengine_build"
_DEPLOYMENT_KEYS = ("slurm", "k8s", "kubernetes", "distributed", "vllm")


def check_writable(path, what):
    """Fail with a sentence when a file cannot be created at ``path`` (nothing is written)."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise MadengineError("%s %s cannot be written: it is a directory." % (what, path))
    probe = directory
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if probe != directory:
        if os.path.exists(probe) and not os.path.isdir(probe):
            raise MadengineError("%s %s cannot be written: %s is not a directory." % (what, path, probe))
        raise MadengineError("%s %s cannot be written: directory %s does not exist." % (what, path, directory))
    if not os.path.isdir(directory):
        raise MadengineError("%s %s cannot be written: %s is not a directory." % (what, path, directory))
    if not os.access(directory, os.W_OK | os.X_OK):
        raise MadengineError("%s %s cannot be written: directory %s is not writable." % (what, path, directory))
    if os.path.exists(path) and not os.access(path, os.W_OK) and not os.access(directory, os.W_OK):
        raise MadengineError("%s %s cannot be written: permission denied." % (what, path))


def prepare_output(path, what):
    """Fail with a sentence unless a file can be written at ``path``; its directory is made when missing."""
    directory = os.path.dirname(os.path.abspath(path))
    probe = directory
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if probe != directory and os.path.isdir(probe):
        try:
            os.makedirs(directory)
        except OSError as exc:
            raise MadengineError("%s %s cannot be written: directory %s cannot be created: %s."
                                 % (what, path, directory, exc.strerror or exc))
    check_writable(path, what)


def check_directory(path, what, create=True):
    """Fail with a sentence unless ``path`` is a writable directory (created when ``create``)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise MadengineError("%s %s is not a directory." % (what, path))
    if not os.path.isdir(path):
        if not create:
            return
        try:
            os.makedirs(path)
        except OSError as exc:
            raise MadengineError("%s %s cannot be created: %s." % (what, path, exc.strerror or exc))
    if not os.access(path, os.W_OK | os.X_OK):
        raise MadengineError("%s %s is not writable." % (what, path))


def read_previous(path):
    """The manifest already at ``path`` (a dict), or {} when there is none or it is unreadable."""
    if not path or not os.path.isfile(path):
        return {}
    try:
        document = load_json_file(path, "manifest")
    except MadengineError:
        return {}
    return document if isinstance(document, dict) else {}


def load_manifest(path):
    """A manifest for a consumer (madengine_run): strict, with errors naming the file."""
    document = load_json_file(path, "manifest")
    if not isinstance(document, dict):
        raise MadengineError("Manifest %s must hold a JSON object." % path)
    for key in ("built_images", "built_models"):
        if not isinstance(document.get(key), dict):
            raise MadengineError("Manifest %s has no '%s' object; is it a madengine build manifest?" % (path, key))
    return document


def for_registry(manifest, registry):
    """The manifest as a node that reaches the build's registry at another address sees it.

    Each image pushed to the build's registry is pulled as ``<registry>/<repository>`` by the same digest
    (the digests stay the identity of what runs); the build's own references are kept as ``build_registry``,
    ``build_registry_image`` and ``build_registry_digest``.  ``registry`` empty or the build's: unchanged.
    """
    registry = (registry or "").rstrip("/")
    images = manifest.get("built_images") or {}
    if not registry or not isinstance(images, dict):
        return manifest
    renamed = dict(manifest)
    renamed["built_images"] = dict(images)
    for key, entry in images.items():
        build = entry.get("registry") if isinstance(entry, dict) else None
        if not build or build.rstrip("/") == registry or "/" in build.rstrip("/"):
            continue
        prefix = build.rstrip("/") + "/"
        seen = dict(entry, registry=registry, build_registry=build)
        for field in ("registry_image", "registry_digest"):
            if str(seen.get(field) or "").startswith(prefix):
                seen["build_" + field] = seen[field]
                seen[field] = registry + "/" + seen[field][len(prefix):]
        renamed["built_images"][key] = seen
    return renamed


def image_entry(outcome, registry=None):
    """The ``built_images`` entry of one image outcome (madengine fields first, then ours)."""
    plan = outcome.plan
    base = plan.analysis.final_base or ""
    base_digest = outcome.base_digests.get(base) or ""
    entry = {
        "model": plan.model_name,
        "docker_image": plan.image,
        "dockerfile": plan.dockerfile,
        "base_docker": base,
        "docker_sha": base_digest if base_digest.startswith("sha256:") else "",
        "build_duration": round(outcome.build_duration, 3),
        "build_command": outcome.build_command,
        "log_file": outcome.log_file or "",
        "gpu_vendor": plan.gpu_vendor,
    }
    if plan.arch:
        entry["gpu_architecture"] = plan.arch
    if registry:
        entry["registry"] = registry
        entry["registry_image"] = plan.registry_ref
    if outcome.push_error:
        entry["push_error"] = outcome.push_error
    entry.update({
        "image_id": outcome.image_id,
        "content_key": outcome.content_key,
        "inputs_digest": plan.inputs_digest,
        "base_images": dict(outcome.base_digests),
        "registry_digest": outcome.registry_digest if registry else None,
        "build_context": plan.context_rel,
        "scripts": plan.scripts.as_dict() if plan.scripts is not None else None,
    })
    if not registry:
        del entry["registry_digest"]
    return entry


def model_entry(outcome, registry=None):
    model = copy.deepcopy(outcome.plan.model)
    if registry and outcome.plan.registry_ref and not outcome.push_error:
        env = model.get("env_vars") if isinstance(model.get("env_vars"), dict) else {}
        env = dict(env)
        env["DOCKER_IMAGE_NAME"] = outcome.plan.registry_ref
        model["env_vars"] = env
    return model


def manifest_context(ctx):
    """The context recorded in the manifest (madengine's dict shape; secrets never enter ``ctx``)."""
    recorded = copy.deepcopy(ctx)
    for key in ("docker_env_vars", "docker_mounts", "docker_build_arg"):
        recorded.setdefault(key, {})
    return recorded


def deployment_config(ctx):
    config = {"target": "k8s" if ("k8s" in ctx or "kubernetes" in ctx) else "slurm" if "slurm" in ctx else "local"}
    for key in _DEPLOYMENT_KEYS:
        if key in ctx:
            config[key] = copy.deepcopy(ctx[key])
    env = dict(ctx.get("env_vars") or {})
    env.pop("MIOPEN_USER_DB_PATH", None)
    config["env_vars"] = env
    config["debug"] = bool(ctx.get("debug"))
    return config


def build_manifest(outcomes, failures, ctx, models, registry=None):
    """The whole manifest document for the images of one run."""
    built_images, built_models = {}, {}
    successful, pushes_ok, pushes_failed, failed_builds = [], [], [], []
    for outcome in outcomes:
        if outcome.action in ("built", "reused"):
            entry = image_entry(outcome, registry)
            built_images[outcome.plan.image] = entry
            built_models[outcome.plan.image] = model_entry(outcome, registry)
            successful.append(entry)
            if registry:
                if outcome.push_error:
                    pushes_failed.append({"image": outcome.plan.image, "registry_image": outcome.plan.registry_ref,
                                          "error": outcome.push_error})
                else:
                    pushes_ok.append({"image": outcome.plan.image, "registry_image": outcome.plan.registry_ref,
                                      "registry_digest": outcome.registry_digest})
    for failure in failures:
        if failure.get("stage") == "push":
            continue
        item = {"model": failure.get("model"), "error": failure.get("error")}
        for key in ("architecture", "dockerfile", "image"):
            if failure.get(key):
                item[key] = failure[key]
        failed_builds.append(item)
    creds = []
    for model in models:
        cred = model.get("cred") or ""
        if cred and cred not in creds:
            creds.append(cred)
    document = {
        "built_images": built_images,
        "built_models": built_models,
        "context": manifest_context(ctx),
        "credentials_required": creds,
    }
    if registry:
        document["registry"] = registry
    if pushes_failed:
        document["push_failures"] = pushes_failed
    document["summary"] = {
        "successful_builds": successful,
        "failed_builds": failed_builds,
        "total_build_time": round(sum(e["build_duration"] for e in successful), 3),
        "successful_pushes": pushes_ok,
        "failed_pushes": pushes_failed,
    }
    document["deployment_config"] = deployment_config(ctx)
    document["generator"] = {"name": GENERATOR, "format": FORMAT}
    return document


def serialise(document):
    return (json.dumps(document, indent=2, sort_keys=False) + "\n").encode("utf-8")


def write_if_changed(path, document, check_mode=False):
    """Write ``document`` atomically unless the file already holds exactly it; True if it differs."""
    return _write_bytes_if_changed(path, serialise(document), check_mode=check_mode)


def would_change(path, document):
    return write_if_changed(path, document, check_mode=True)
