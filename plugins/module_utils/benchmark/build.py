# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""Deciding and carrying out what happens to each planned image of madengine_build.

:func:`decide` is the one place that chooses build or reuse, push or not, or failure, for the real
run and for check mode alike.  What it knows about the image's existing copies comes from an image
state: :class:`EngineState` asks the Docker engine and the registry (the real run),
:class:`ManifestState` reads the manifest the previous run wrote (check mode, no Docker call).
:class:`Builder` then carries the decision out: build, tag, push.
"""

from __future__ import annotations

import io
import time

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.build_plan import (
    DOCKERFILE_IN_CONTEXT,
    registry_repo_digest,
)
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.credentials import registry_key
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.docker_client import (
    CONTENT_KEY_LABEL,
    BuildFailed,
    DockerError,
    RegistryAuthError,
    RegistryUnreachable,
    registry_host,
    scrub,
)
from ansible_collections.rocm.madengine.plugins.module_utils.common import atomic_write_text

BUILD, REUSE, FAILED = "build", "reuse", "failed"


class BuildPolicy(object):
    """The options that shape every build of one task."""

    __slots__ = ("rebuild", "pull", "network", "build_timeout")

    def __init__(self, rebuild="never", pull=True, network="host", build_timeout=0):
        self.rebuild = rebuild or "never"
        self.pull = pull
        self.network = network
        self.build_timeout = build_timeout or 0

    @property
    def nocache(self):
        return self.rebuild == "always"


class ImageOutcome(object):
    """What happened to one image (or, in check mode, what would)."""

    def __init__(self, plan):
        self.plan = plan
        self.action = None          # decision: build | reuse | failed; after the real run: built | reused | failed
        self.reason = ""
        self.content_key = None
        self.base_digests = {}
        self.image_id = None
        self.existing = None        # the existing image as the state saw it
        self.build_duration = 0.0
        self.log_file = None
        self.pushed = False
        self.push_planned = False
        self.registry_digest = None
        self.push_error = None
        self.error = None
        self.build_command = None

    def as_result(self):
        result = {"model": self.plan.model_name, "image": self.plan.image, "dockerfile": self.plan.dockerfile,
                  "action": self.action, "reason": self.reason, "content_key": self.content_key,
                  "image_id": self.image_id, "build_duration": round(self.build_duration, 3)}
        if self.plan.arch:
            result["gpu_architecture"] = self.plan.arch
        if self.plan.registry_ref:
            result.update(registry_image=self.plan.registry_ref, pushed=self.pushed, push=self.push_planned,
                          registry_digest=self.registry_digest)
        if self.push_error:
            result["push_error"] = self.push_error
        if self.error:
            result["error"] = self.error
        return result


class ExistingImage(object):
    """An image state's answer for one plan: base digests and the image already there (if any)."""

    __slots__ = ("base_digests", "content_key", "image_id", "details")

    def __init__(self, base_digests, content_key=None, image_id=None, details=None):
        self.base_digests = base_digests    # {base reference: digest or None}
        self.content_key = content_key      # the key the existing image carries; None: there is no image
        self.image_id = image_id
        self.details = details              # state-specific (the engine's inspect dict)


class ManifestState(object):
    """Check mode: what the previous manifest records (no Docker call; a deleted image goes unnoticed)."""

    CHANGED = ("the Dockerfile, build context, scripts or build arguments changed since the manifest was "
               "written")
    SAME = "the manifest records an image with this content key"

    def __init__(self, previous):
        self.previous = previous or {}

    def missing(self, plan):
        return "the manifest has no record of this image"

    def existing(self, plan):
        entry = self.previous.get(plan.image) or {}
        bases = entry.get("base_images") if isinstance(entry.get("base_images"), dict) else {}
        if not entry:
            return ExistingImage(dict(bases))
        return ExistingImage(dict(bases), entry.get("content_key") or "", entry.get("image_id"))

    def registry_copy(self, plan, existing):
        """(the registry tag holds this image, its repo digest, a note for the reason)."""
        entry = self.previous.get(plan.image) or {}
        ref = plan.registry_ref
        if entry.get("registry_image") == ref and entry.get("registry_digest") and not entry.get("push_error"):
            return True, entry["registry_digest"], "; the manifest records registry tag %s with this image" % ref
        return False, None, "; the manifest records no push of registry tag %s" % ref


class EngineState(object):
    """The real run: the engine's images and the registry's tags, looked up through a DockerClient."""

    CHANGED = "the Dockerfile, build context, scripts, build arguments or base image changed"
    SAME = "the local image carries the content key"

    def __init__(self, client, pull=True, registry=None, auth=None, warn=None):
        self.client = client
        self.pull = pull
        self.registry = registry
        self.auth = auth
        self.warn = warn or (lambda msg: None)
        self._bases = {}

    def missing(self, plan):
        return "the engine has no image %s" % plan.image

    def auth_for(self, ref):
        if self.auth is not None and self.registry and registry_host(ref) == registry_host(self.registry + "/x"):
            return self.auth.as_auth_config()
        return None

    def base_digest(self, ref):
        """What the build will start from: registry digest (pull) or local image id."""
        if ref in self._bases:
            return self._bases[ref]
        value = None
        local = None
        if not self.pull:
            local = self.client.image(ref)
            if local is not None:
                value = "image:" + local["Id"]
        if value is None:
            try:
                digest = self.client.registry_digest(ref, self.auth_for(ref))
            except (RegistryUnreachable, RegistryAuthError) as exc:
                self.warn("Base image %s could not be looked up: %s" % (ref, exc))
                digest = None
            if digest:
                value = digest
            else:
                local = local or self.client.image(ref)
                value = ("image:" + local["Id"]) if local is not None else None
        self._bases[ref] = value
        return value

    def existing(self, plan):
        bases = dict((ref, self.base_digest(ref)) for ref in plan.analysis.base_refs)
        local = self.client.image(plan.image)
        if local is None:
            return ExistingImage(bases)
        labels = (local.get("Config") or {}).get("Labels") or {}
        return ExistingImage(bases, labels.get(CONTENT_KEY_LABEL) or "", local["Id"], local)

    def registry_copy(self, plan, existing):
        ref = plan.registry_ref
        remote = self.client.registry_digest(ref, self.auth_for(ref))
        repo_digest = registry_repo_digest(ref, remote) if remote else None
        if repo_digest and repo_digest in ((existing.details or {}).get("RepoDigests") or []):
            return True, repo_digest, "; registry tag %s holds the same image" % ref
        return False, None, ("; registry tag %s is missing" % ref) if not remote else (
            "; registry tag %s holds another image" % ref)


def decide(plan, policy, state, previous=None, secrets=()):
    """The one decision for ``plan``: build, reuse or failed, and whether to push; an ImageOutcome.

    ``state`` says what exists (EngineState for the real run, ManifestState for check mode); ``previous``
    is the previous manifest's ``built_images`` (the build time and log of a reused image come from it).
    """
    outcome = ImageOutcome(plan)
    outcome.build_command = plan.build_command(pull=policy.pull, nocache=policy.nocache, network=policy.network)
    try:
        existing = state.existing(plan)
    except DockerError as exc:
        outcome.action = FAILED
        outcome.error = "Model '%s', image %s: %s" % (plan.model_name, plan.image, exc)
        return outcome
    outcome.existing = existing
    outcome.base_digests = existing.base_digests
    outcome.content_key = plan.content_key(existing.base_digests)
    if policy.rebuild == "always":
        outcome.action, outcome.reason = BUILD, "rebuild is always"
    elif existing.content_key is None:
        outcome.action, outcome.reason = BUILD, state.missing(plan)
    elif existing.content_key != outcome.content_key:
        outcome.action, outcome.reason = BUILD, state.CHANGED
    else:
        outcome.action, outcome.reason = REUSE, state.SAME
        outcome.image_id = existing.image_id
        recorded = (previous or {}).get(plan.image) or {}
        if recorded.get("content_key") == outcome.content_key:
            outcome.build_duration = float(recorded.get("build_duration") or 0.0)
            outcome.log_file = recorded.get("log_file") or None
    if plan.registry_ref:
        if outcome.action == BUILD:
            outcome.push_planned = True
        else:
            try:
                holds, digest, note = state.registry_copy(plan, existing)
            except DockerError as exc:
                outcome.push_error = scrub(str(exc), secrets)
            else:
                outcome.reason += note
                outcome.push_planned = not holds
                outcome.registry_digest = digest
    return outcome


class Builder(object):
    """Carries out the decisions for planned images through a DockerClient: build, tag, push."""

    def __init__(self, client, policy, registry=None, auth=None, secrets=(), previous=None, warn=None):
        self.client = client
        self.policy = policy
        self.registry = registry
        self.auth = auth
        self.secrets = list(secrets)
        self.previous = previous or {}
        self.state = EngineState(client, pull=policy.pull, registry=registry, auth=auth, warn=warn)

    def check_registry(self, probe_ref):
        """Fail fast (task-level) when the registry is unreachable or refuses us."""
        if self.auth is not None:
            try:
                self.client.login(self.registry.split("/", 1)[0] if registry_key(self.registry) != "dockerhub"
                                  else "https://index.docker.io/v1/", self.auth.username, self.auth.password)
            except RegistryAuthError as exc:
                raise RegistryAuthError("%s (credentials from %s)" % (str(exc).rstrip("."), self.auth.origin) + ".")
        try:
            self.client.registry_digest(probe_ref, self.state.auth_for(probe_ref))
        except RegistryAuthError as exc:
            if self.auth is None:
                raise RegistryAuthError("%s Give credentials for registry %s in credential_file (entry '%s') or "
                                        "with registry_username/registry_password."
                                        % (exc, self.registry, registry_key(self.registry)))
            raise

    def run(self, plan):
        outcome = decide(plan, self.policy, self.state, self.previous, self.secrets)
        if outcome.action == FAILED:
            return outcome
        if outcome.action == BUILD:
            try:
                self._build(plan, outcome)
            except BuildFailed as exc:
                outcome.action = FAILED
                outcome.error = "Model '%s': building %s from %s failed: %s." % (
                    plan.model_name, plan.image, plan.dockerfile, str(exc).rstrip("."))
                return outcome
            except DockerError as exc:
                outcome.action = FAILED
                outcome.error = "Model '%s', image %s: %s" % (plan.model_name, plan.image, exc)
                return outcome
        else:
            outcome.action = "reused"
        if outcome.push_planned:
            self._push(plan, outcome)
        return outcome

    def _build(self, plan, outcome):
        fileobj = plan.write_tar(io.BytesIO(), outcome.content_key)
        started = time.monotonic()
        log = ""
        try:
            outcome.image_id, log = self.client.build(
                fileobj, plan.image, DOCKERFILE_IN_CONTEXT, buildargs=plan.all_build_args,
                pull=self.policy.pull, nocache=self.policy.nocache, network_mode=self.policy.network,
                timeout=self.policy.build_timeout, secrets=self.secrets)
        except BuildFailed as exc:
            log = exc.log
            raise
        finally:
            outcome.build_duration = time.monotonic() - started
            if plan.log_file:
                header = "# %s\n# content key %s\n" % (outcome.build_command, outcome.content_key)
                atomic_write_text(plan.log_file, scrub(header + log, self.secrets))
                outcome.log_file = plan.log_file
        outcome.action = "built"

    def _push(self, plan, outcome):
        ref = plan.registry_ref
        try:
            self.client.tag(outcome.image_id, ref)
            digest = self.client.push(ref, self.state.auth_for(ref))
            outcome.pushed = True
            outcome.registry_digest = registry_repo_digest(ref, digest)
        except DockerError as exc:
            outcome.push_error = scrub(str(exc), self.secrets)
