# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""Planning the images of madengine_build, without Docker.

For each model, the Dockerfiles its CONTEXT selects, one image per Dockerfile
(and per target architecture), the build arguments, the build-context files the Dockerfile uses,
the model's scripts directory, and a digest of all of it (``inputs_digest``).

Each image is built from a tar context made here: the used files of the model's build context, the
model's scripts directory under ``.madengine-build/scripts/`` and the model's Dockerfile with one
more line, ``COPY .madengine-build/scripts/ /madengine/scripts/``.  The image therefore carries the
benchmark code and its digest identifies it; a GPU node needs no MAD checkout.

The content key of an image is ``sha256(inputs_digest, base image digests)``; it is stored as the
label ``org.rocm.madengine.content-key``.  Whether an image is built, reused or pushed is decided in
``build.py``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import os
import re
import stat
import tarfile

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.context import (
    no_dockerfile_reason,
    read_dockerfile_context,
    select_dockerfiles,
)
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.credentials import registry_key
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.docker_client import (
    CONTENT_KEY_LABEL,
    LABEL_PREFIX,
    dockerignore_included,
    split_reference,
)
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.dockerfile import (
    analyse,
    infer_gpu_vendor,
    is_glob,
    needs_whole_context,
    source_patterns,
)
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError

KEY_VERSION = 1
BUILD_DIR = ".madengine-build"
DOCKERFILE_IN_CONTEXT = BUILD_DIR + "/Dockerfile"
SCRIPTS_IN_CONTEXT = BUILD_DIR + "/scripts"
SCRIPTS_IMAGE_DIR = "/madengine/scripts"
ARCH_ARG = "MAD_SYSTEM_GPU_ARCHITECTURE"

LABEL_MODEL = LABEL_PREFIX + "model"
LABEL_DOCKERFILE = LABEL_PREFIX + "dockerfile"
LABEL_ARCH = LABEL_PREFIX + "gpu-architecture"
LABEL_SCRIPTS_DIR = LABEL_PREFIX + "scripts.dir"
LABEL_SCRIPTS_ENTRY = LABEL_PREFIX + "scripts.entry"
LABEL_SCRIPTS_RUNNER = LABEL_PREFIX + "scripts.runner"
LABEL_SCRIPTS_SOURCE = LABEL_PREFIX + "scripts.source"

_NAME_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(r"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?%s(?:/%s)*$" % (_NAME_COMPONENT, _NAME_COMPONENT))
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def valid_reference(ref):
    repository, tag = split_reference(ref)
    return bool(_REPOSITORY.match(repository)) and bool(_TAG.match(tag)) and len(repository) <= 255


def _sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


_FILE_DIGESTS = {}


def file_digest(path, st):
    """sha256 of a regular file, cached for this process by (path, inode, size, mtime)."""
    key = (path, st.st_ino, st.st_size, st.st_mtime_ns)
    digest = _FILE_DIGESTS.get(key)
    if digest is None:
        sha = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                sha.update(block)
        digest = sha.hexdigest()
        _FILE_DIGESTS[key] = digest
    return digest


# ---- names ------------------------------------------------------------------------------------

def dockerfile_stem(dockerfile):
    base = os.path.basename(dockerfile)
    return base[:-len(".Dockerfile")] if base.endswith(".Dockerfile") else base


def image_name(prefix, model_name, dockerfile, arch=None):
    """madengine's image name: ``ci-<model lower, / -> _>_<dockerfile stem>[_<arch>]`` (lower-cased)."""
    name = "%s%s_%s" % (prefix, model_name.lower().replace("/", "_"), dockerfile_stem(dockerfile))
    if arch:
        name += "_" + arch
    return name.lower()


def log_name(model_name, dockerfile, arch=None):
    name = "%s_%s" % (model_name.replace("/", "_"), dockerfile_stem(dockerfile))
    if arch:
        name += "_" + arch
    return name + ".build.live.log"


def registry_image_name(registry, image, repository=None):
    """madengine's push name: ``<R>/<repository>:<image>`` or ``<R>/<image>`` (Docker Hub: no ``<R>/``)."""
    if registry_key(registry) == "dockerhub":
        return "%s:%s" % (repository, image) if repository else image
    registry = registry.rstrip("/")
    return "%s/%s:%s" % (registry, repository, image) if repository else "%s/%s" % (registry, image)


def registry_repo_digest(ref, digest):
    repository, _tag = split_reference(ref)
    return "%s@%s" % (repository, digest)


# ---- build context ----------------------------------------------------------------------------

class ContextIndex(object):
    """The files of one build-context directory that ``.dockerignore`` keeps (computed once)."""

    def __init__(self, root):
        self.root = root
        self._paths = None

    @property
    def paths(self):
        if self._paths is None:
            ignore = os.path.join(self.root, ".dockerignore")
            if os.path.isfile(ignore):
                with open(ignore, encoding="utf-8", errors="replace") as handle:
                    patterns = [line.strip() for line in handle if line.strip() and not line.strip().startswith("#")]
                kept = dockerignore_included(self.root, patterns)
            else:
                kept = set()
                for dirpath, dirnames, filenames in os.walk(self.root):
                    rel = os.path.relpath(dirpath, self.root)
                    for name in dirnames + filenames:
                        kept.add(name if rel == "." else rel + "/" + name)
            self._paths = sorted(p for p in kept if p and p != BUILD_DIR and not p.startswith(BUILD_DIR + "/"))
        return self._paths

    def select(self, patterns, everything):
        """Context paths a build needs: everything, or what the COPY/ADD ``patterns`` name (+ parents)."""
        paths = self.paths
        if everything:
            return list(paths)
        wanted = set()
        known = set(paths)
        for pattern in patterns:
            if is_glob(pattern):
                matches = [p for p in paths if fnmatch.fnmatchcase(p, pattern)]
            else:
                matches = [pattern] if pattern in known else []
            for match in matches:
                wanted.add(match)
                prefix = match + "/"
                wanted.update(p for p in paths if p.startswith(prefix))
        for path in list(wanted):
            parent = os.path.dirname(path)
            while parent:
                if parent in known:
                    wanted.add(parent)
                parent = os.path.dirname(parent)
        return sorted(wanted)


class ScriptsBundle(object):
    """A model's scripts directory, baked into its image at SCRIPTS_IMAGE_DIR."""

    __slots__ = ("source_dir", "entry", "runner", "files")

    def __init__(self, source_dir, entry, runner, files):
        self.source_dir = source_dir  # relative to mad_root
        self.entry = entry            # relative to SCRIPTS_IMAGE_DIR
        self.runner = runner          # bash | python3
        self.files = files            # [(relative path, absolute path)] directories included

    def as_dict(self):
        return {"source_dir": self.source_dir, "image_dir": SCRIPTS_IMAGE_DIR, "entry": self.entry,
                "runner": self.runner, "command": "%s %s" % (self.runner, self.entry)}

    @classmethod
    def from_model(cls, mad_root, model):
        """The bundle of a model (None when it has no ``scripts``); MadengineError on a bad path."""
        scripts = model.get("scripts") or ""
        name = model.get("name")
        if not scripts:
            return None
        root = os.path.realpath(mad_root)
        path = os.path.realpath(os.path.join(mad_root, scripts))
        if path != root and not path.startswith(root + os.sep):
            raise MadengineError("Model '%s': scripts path %s lies outside mad_root %s." % (name, scripts, mad_root))
        if os.path.isdir(path):
            source_dir, entry, runner = path, "run.sh", "bash"
            if not os.path.isfile(os.path.join(path, "run.sh")):
                raise MadengineError("Model '%s': scripts directory %s has no run.sh." % (name, scripts))
        elif os.path.isfile(path):
            source_dir, entry = os.path.dirname(path), os.path.basename(path)
            runner = "python3" if entry.endswith(".py") else "bash"
        else:
            raise MadengineError("Model '%s': scripts path %s does not exist under mad_root %s."
                                 % (name, scripts, mad_root))
        files = []
        seen = set()
        for dirpath, dirnames, filenames in os.walk(source_dir, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in seen:
                dirnames[:] = []
                continue
            seen.add(real)
            dirnames.sort()
            rel = os.path.relpath(dirpath, source_dir)
            for dirname in dirnames:
                files.append((dirname if rel == "." else rel + "/" + dirname, os.path.join(dirpath, dirname)))
            for filename in sorted(filenames):
                full = os.path.join(dirpath, filename)
                if os.path.exists(full):  # dangling links are left out, as cp -L would fail on them
                    files.append((filename if rel == "." else rel + "/" + filename, full))
        return cls(os.path.relpath(source_dir, root), entry, runner, sorted(files))


# ---- one image --------------------------------------------------------------------------------

class ImagePlan(object):
    """Everything needed to build (or skip) one image, computed without Docker."""

    def __init__(self, **fields):
        self.model = fields["model"]
        self.model_name = fields["model"]["name"]
        self.image = fields["image"]
        self.dockerfile = fields["dockerfile"]
        self.arch = fields.get("arch")
        self.context_rel = fields["context_rel"]
        self.context_dir = fields["context_dir"]
        self.context_files = fields["context_files"]
        self.scripts = fields["scripts"]
        self.build_args = fields["build_args"]
        self.secret_build_args = fields["secret_build_args"]
        self.labels = fields["labels"]
        self.dockerfile_bytes = fields["dockerfile_bytes"]
        self.analysis = fields["analysis"]
        self.gpu_vendor = fields["gpu_vendor"]
        self.registry_ref = fields.get("registry_ref")
        self.log_file = fields["log_file"]
        self.inputs_digest = self._inputs_digest()

    @property
    def all_build_args(self):
        merged = dict(self.build_args)
        merged.update(self.secret_build_args)
        return merged

    def _entries(self):
        """(tar name, absolute path) for every file of the tar, Dockerfile excluded."""
        entries = [(rel, os.path.join(self.context_dir, rel)) for rel in self.context_files]
        if self.scripts is not None:
            entries.append((BUILD_DIR, None))
            entries.append((SCRIPTS_IN_CONTEXT, None))
            entries.extend((SCRIPTS_IN_CONTEXT + "/" + rel, path) for rel, path in self.scripts.files)
        return entries

    def _inputs_digest(self):
        files = []
        for name, path in self._entries():
            if path is None:
                continue
            dereference = name.startswith(SCRIPTS_IN_CONTEXT + "/")
            st = os.stat(path) if dereference else os.lstat(path)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                files.append([name, "link", os.readlink(path)])
            elif stat.S_ISDIR(st.st_mode):
                files.append([name, "dir", mode])
            elif stat.S_ISREG(st.st_mode):
                files.append([name, "file", mode, file_digest(path, st)])
        document = {
            "version": KEY_VERSION,
            "dockerfile": _sha256_bytes(self.dockerfile_bytes),
            "files": files,
            "build_args": sorted(self.build_args.items()),
            # Only the names: a digest of a secret would let anyone with the image test guesses.
            "secret_build_args": sorted(self.secret_build_args),
            "labels": sorted(self.labels.items()),
        }
        return "sha256:" + _sha256_bytes(json.dumps(document, sort_keys=True).encode("utf-8"))

    def content_key(self, base_digests):
        """The content key for the given ``{base reference: digest}``."""
        lines = [self.inputs_digest] + ["%s=%s" % (ref, base_digests.get(ref) or "unresolved")
                                        for ref in sorted(self.analysis.base_refs)]
        return "sha256:" + _sha256_bytes("\n".join(lines).encode("utf-8"))

    def final_dockerfile(self, content_key):
        """The Dockerfile sent to the engine: the model's, the scripts COPY, and one LABEL line."""
        labels = dict(self.labels)
        labels[CONTENT_KEY_LABEL] = content_key
        words = ["%s=%s" % (_label_quote(k), _label_quote(v)) for k, v in sorted(labels.items())]
        return self.dockerfile_bytes + ("LABEL %s\n" % " ".join(words)).encode("utf-8")

    def write_tar(self, fileobj, content_key):
        """The build context: used context files, the scripts and the Dockerfile (uncompressed tar)."""
        with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, path in self._entries():
                if path is None:
                    info = tarfile.TarInfo(name)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    info.mtime = 0
                    tar.addfile(info)
                    continue
                source = os.path.realpath(path) if name.startswith(SCRIPTS_IN_CONTEXT + "/") else path
                info = tar.gettarinfo(source, arcname=name)
                if info is None:  # sockets and the like
                    continue
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if info.isreg():
                    with open(source, "rb") as handle:
                        tar.addfile(info, handle)
                else:
                    tar.addfile(info)
            dockerfile = self.final_dockerfile(content_key)
            info = tarfile.TarInfo(DOCKERFILE_IN_CONTEXT)
            info.size = len(dockerfile)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(dockerfile))
        fileobj.seek(0)
        return fileobj

    def build_command(self, pull=True, nocache=False, network="host"):
        """The equivalent ``docker build`` of the model's own Dockerfile, secrets masked."""
        words = ["docker", "build"]
        if nocache:
            words.append("--no-cache")
        if network:
            words.append("--network=%s" % network)
        words += ["-t", self.image]
        if pull:
            words.append("--pull")
        words += ["-f", self.dockerfile]
        for name, value in self.build_args.items():
            words += ["--build-arg", "%s=%s" % (name, _shell_quote(value))]
        for name in self.secret_build_args:
            words += ["--build-arg", "%s=********" % name]
        words.append(self.context_rel)
        return " ".join(words)


def _label_quote(value):
    """A double-quoted Dockerfile word: backslashes, quotes and ``$`` escaped (no expansion)."""
    return '"%s"' % value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")


def _shell_quote(value):
    if value and re.match(r"^[A-Za-z0-9_@%+=:,./-]+$", value):
        return value
    return "'" + value.replace("'", "'\"'\"'") + "'"


def _model_context_dir(model):
    context = model.get("dockercontext") or ""
    if context:
        return context
    return "." if "primus" in (model.get("dockerfile") or "").lower() else "docker"


def _final_dockerfile(text, scripts):
    """The model's Dockerfile plus the scripts layer (the LABEL line is added at build time)."""
    text += "" if text.endswith("\n") else "\n"
    text += "\n# added by rocm.madengine\n"
    if scripts is not None:
        text += "COPY %s/ %s/\n" % (SCRIPTS_IN_CONTEXT, SCRIPTS_IMAGE_DIR)
    return text.encode("utf-8")


class Planner(object):
    """Turns selected models into ImagePlans (and per-model failures), without Docker."""

    def __init__(self, mad_root, ctx, filter_ctx, credentials, image_prefix="ci-", target_archs=(), registry=None,
                 log_dir=None, labels=None, targets=None):
        self.mad_root = mad_root
        self.ctx = ctx
        self.filter_ctx = filter_ctx
        self.credentials = credentials
        self.image_prefix = image_prefix
        self.registry = registry
        self.log_dir = log_dir
        self.user_labels = dict((str(k), str(v)) for k, v in (labels or {}).items())
        self.indexes = {}
        self.warnings = []
        # (vendor, architecture) pairs of the nodes, or None: the context's gpu_vendor and target_archs
        self.targets = list(targets) if targets is not None else None
        self.skipped = []
        self._arch_args = {}
        ctx_args = ctx.get("docker_build_arg") or {}
        self.archs = list(target_archs or [])
        self.fixed_arch = ctx_args.get(ARCH_ARG)
        if (self.archs or any(arch for _vendor, arch in self.targets or ())) and ARCH_ARG in ctx_args:
            self.warnings.append("%s ignored: the context sets docker_build_arg.%s=%s."
                                 % ("The nodes' architectures are" if self.targets else "target_archs is",
                                    ARCH_ARG, ctx_args[ARCH_ARG]))
        if ARCH_ARG in ctx_args:
            self.archs = []
        self.repository = credentials.registry_repository(registry) if registry else None

    def _index(self, context_dir):
        if context_dir not in self.indexes:
            self.indexes[context_dir] = ContextIndex(context_dir)
        return self.indexes[context_dir]

    def plan(self, models):
        plans, failures, seen = [], [], {}
        for model in models:
            try:
                model_plans = self.plan_model(model)
            except MadengineError as exc:
                failures.append({"model": model.get("name"), "stage": "plan", "error": str(exc)})
                continue
            for item in model_plans:
                if isinstance(item, dict):
                    failures.append(item)
                elif item.image in seen:
                    self.warnings.append("Image %s of model '%s' is already built for model '%s'; the duplicate is "
                                         "skipped." % (item.image, item.model_name, seen[item.image]))
                else:
                    seen[item.image] = item.model_name
                    plans.append(item)
        return plans, failures

    def _declares_arch(self, dockerfile):
        """Whether a Dockerfile takes the architecture build argument (else one image serves every architecture)."""
        if dockerfile not in self._arch_args:
            try:
                with open(os.path.join(self.mad_root, dockerfile), "rb") as handle:
                    text = handle.read().decode("utf-8", "replace")
            except OSError:
                text = ""  # _plan_image names the unreadable file
            self._arch_args[dockerfile] = ARCH_ARG in analyse(text).declared_args
        return self._arch_args[dockerfile] and self.fixed_arch is None

    def _context_choices(self, model):
        """``[(dockerfile, arch)]`` of the build context's gpu_vendor and target_archs (madengine's build)."""
        dockerfiles, rejected = select_dockerfiles(self.mad_root, model, self.filter_ctx)
        if not dockerfiles:
            raise MadengineError(no_dockerfile_reason(model, self.ctx, rejected))
        return [(dockerfile, arch) for dockerfile in dockerfiles for arch in (self.archs or [None])]

    def _fleet_choices(self, model):
        """``[(dockerfile, arch)]`` for the nodes' (vendor, architecture) targets.

        A Dockerfile is built once per architecture only when it takes the architecture build argument.  A vendor
        for which the model has no Dockerfile (while it has some for another) is recorded in ``skipped``: its nodes
        skip the model with that reason.
        """
        archs_of = {}
        for vendor, arch in self.targets:
            archs_of.setdefault(vendor, []).append(arch or None)
        choices, gaps, first = [], [], None
        for vendor, archs in archs_of.items():
            ctx = dict(self.filter_ctx, gpu_vendor=vendor)
            dockerfiles, rejected = select_dockerfiles(self.mad_root, model, ctx)
            if not dockerfiles:
                gaps.append({"model": model.get("name"), "gpu_vendor": vendor,
                             "reason": no_dockerfile_reason(model, ctx, rejected).rstrip(".")})
                first = first or (ctx, rejected)
            for dockerfile in dockerfiles:
                for arch in (archs if self._declares_arch(dockerfile) else [None]):
                    if (dockerfile, arch) not in choices:
                        choices.append((dockerfile, arch))
        if gaps and not choices:
            any_vendor = dict((k, v) for k, v in self.filter_ctx.items() if k != "gpu_vendor")
            if not select_dockerfiles(self.mad_root, model, any_vendor)[0]:
                raise MadengineError(no_dockerfile_reason(model, first[0], first[1]))
        self.skipped.extend(gaps)
        return choices

    def plan_model(self, model):
        name = model.get("name")
        choices = self._fleet_choices(model) if self.targets is not None else self._context_choices(model)
        scripts = ScriptsBundle.from_model(self.mad_root, model)
        context_rel = _model_context_dir(model)
        context_dir = os.path.normpath(os.path.join(self.mad_root, context_rel))
        if not os.path.isdir(context_dir):
            raise MadengineError("Model '%s': build context %s is not a directory under mad_root %s."
                                 % (name, context_rel, self.mad_root))
        secret_args = dict((k, v) for k, v in self.credentials.env_secrets.items())
        secret_args.update(self.credentials.model_build_args(model))
        result = []
        for dockerfile, arch in choices:
            try:
                result.append(self._plan_image(model, dockerfile, arch, scripts, context_rel, context_dir,
                                               secret_args))
            except MadengineError as exc:
                failure = {"model": name, "dockerfile": dockerfile, "stage": "plan", "error": str(exc)}
                if arch:
                    failure["architecture"] = arch
                result.append(failure)
        return result

    def _plan_image(self, model, dockerfile, arch, scripts, context_rel, context_dir, secret_args):
        name = model["name"]
        path = os.path.join(self.mad_root, dockerfile)
        try:
            with open(path, "rb") as handle:
                text = handle.read().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise MadengineError("Model '%s': cannot read Dockerfile %s: %s." % (name, dockerfile, exc))
        build_args = dict((k, v) for k, v in (self.ctx.get("docker_build_arg") or {}).items() if k not in secret_args)
        if arch:
            build_args[ARCH_ARG] = arch
        analysis = analyse(text, dict(build_args, **secret_args))
        if not analysis.base_refs and not analysis.stages:
            raise MadengineError("Model '%s': Dockerfile %s has no FROM instruction." % (name, dockerfile))
        for ref in analysis.base_refs:
            if not ref or not valid_reference(ref):
                raise MadengineError("Model '%s': Dockerfile %s builds FROM %r, which is not a valid image "
                                     "reference (is a build argument missing?)." % (name, dockerfile, ref))
        for named in analysis.named_contexts:
            raise MadengineError("Model '%s': Dockerfile %s copies from the named build context '%s', which needs "
                                 "BuildKit; the Engine API builder cannot provide it." % (name, dockerfile, named))
        index = self._index(context_dir)
        try:
            context_files = index.select(source_patterns(analysis), needs_whole_context(analysis))
        except OSError as exc:
            raise MadengineError("Model '%s': cannot read build context %s: %s." % (name, context_rel, exc))
        image = image_name(self.image_prefix, name, dockerfile, arch)
        if not valid_reference(image):
            raise MadengineError("Model '%s': image name %s (from image_prefix %r) is not a valid Docker image name."
                                 % (name, image, self.image_prefix))
        registry_ref = None
        if self.registry:
            registry_ref = registry_image_name(self.registry, image, self.repository)
            if not valid_reference(registry_ref):
                raise MadengineError("Model '%s': registry image name %s is not a valid Docker image reference."
                                     % (name, registry_ref))
        labels = dict(self.user_labels)
        labels.update({LABEL_MODEL: name, LABEL_DOCKERFILE: dockerfile})
        for key, value in labels.items():
            if any(ord(ch) < 32 for ch in key + value):
                raise MadengineError("Model '%s': label %r has control characters; labels must be single-line text."
                                     % (name, key))
        if arch:
            labels[LABEL_ARCH] = arch
        if scripts is not None:
            labels.update({LABEL_SCRIPTS_DIR: SCRIPTS_IMAGE_DIR, LABEL_SCRIPTS_ENTRY: scripts.entry,
                           LABEL_SCRIPTS_RUNNER: scripts.runner, LABEL_SCRIPTS_SOURCE: scripts.source_dir})
        df_ctx, _reason = read_dockerfile_context(path)
        return ImagePlan(
            model=model, image=image, dockerfile=dockerfile, arch=arch, context_rel=context_rel,
            context_dir=context_dir, context_files=context_files, scripts=scripts, build_args=build_args,
            secret_build_args=secret_args, labels=labels, dockerfile_bytes=_final_dockerfile(text, scripts),
            analysis=analysis, gpu_vendor=infer_gpu_vendor(dockerfile, df_ctx, analysis.base_refs),
            registry_ref=registry_ref,
            log_file=os.path.join(self.log_dir, log_name(name, dockerfile, arch)) if self.log_dir else None)
