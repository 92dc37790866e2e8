# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""madengine's additional context: merge, validation and normalisation, and the Dockerfile CONTEXT filter.

* :func:`load_context` merges ``additional_context_file`` (JSON object) and ``additional_context``
  (a dict, or a string holding JSON or a Python dict literal): file first, the dict's keys win.
* :func:`normalise_context` injects ``gpu_vendor: AMD`` and ``guest_os: UBUNTU`` when missing,
  upper-cases them, checks them (``gpu_vendor`` also accepts ``NONE`` for CPU-only nodes) and checks
  the types of the keys madengine knows.  Errors name the key and where the context came from.
* :func:`select_dockerfiles` lists ``<dockerfile>.*`` and keeps the files whose ``# CONTEXT {...}``
  header (first 5 lines, a Python dict literal) agrees with the context on every shared key.
"""

from __future__ import annotations

import ast
import glob
import json
import os
import re
import shutil

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError, load_json_file

GPU_VENDORS = ("AMD", "NVIDIA", "NONE")
GUEST_OSES = ("UBUNTU", "CENTOS")
DEFAULTS = (("gpu_vendor", "AMD"), ("guest_os", "UBUNTU"))
CONTEXT_MARKER = "# CONTEXT "
CONTEXT_LINES = 5
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_OBJECT_KEYS = ("docker_env_vars", "docker_mounts", "env_vars", "k8s", "slurm", "kubernetes", "distributed",
                "vllm", "deployment_config", "deploy", "data")
_ARRAY_KEYS = ("tools", "pre_scripts", "post_scripts")
_STRING_KEYS = ("docker_gpus", "MAD_CONTAINER_IMAGE", "encapsulate_script", "docker_cpus")
_OPTIONAL_STRING_KEYS = ("MAD_ROCM_PATH",)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _type_name(value):
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def parse_context_string(text, what="additional_context"):
    """JSON first, then a Python dict literal (madengine accepts single-quoted dicts); must be an object."""
    text = text.strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as json_error:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise MadengineError("%s is neither valid JSON (%s at line %d column %d) nor a Python dict literal."
                                 % (what, json_error.msg, json_error.lineno, json_error.colno))
    if not isinstance(value, dict):
        raise MadengineError("%s must be a JSON object, not %s." % (what, _type_name(value)))
    return value


def load_context(additional_context=None, additional_context_file=None):
    """Merge the file (first) and the option (wins); returns ``(context, source description)``."""
    merged = {}
    sources = []
    if additional_context_file:
        document = load_json_file(additional_context_file, "additional_context_file")
        if not isinstance(document, dict):
            raise MadengineError("additional_context_file %s must hold a JSON object, not %s."
                                 % (additional_context_file, _type_name(document)))
        merged.update(document)
        sources.append("additional_context_file %s" % additional_context_file)
    if additional_context is not None and additional_context != "":
        if isinstance(additional_context, str):
            value = parse_context_string(additional_context)
        elif isinstance(additional_context, dict):
            value = additional_context
        else:
            raise MadengineError("additional_context must be a dict or a JSON object string, not %s."
                                 % _type_name(additional_context))
        merged.update(value)
        sources.append("additional_context")
    source = " and ".join(sources) or "the defaults"
    # Round-trip through JSON: a plain, independent copy (no shared nested dicts with the caller).
    try:
        return json.loads(json.dumps(merged)), source
    except (TypeError, ValueError) as exc:
        raise MadengineError("The context from %s holds a value JSON cannot represent: %s." % (source, exc))


def normalise_context(ctx, source="additional_context"):
    """Validate and normalise a merged context; returns a new dict.  Raises MadengineError."""
    ctx = dict(ctx)
    for key, default in DEFAULTS:
        if ctx.get(key) is None:
            ctx[key] = default
    for key, allowed in (("gpu_vendor", GPU_VENDORS), ("guest_os", GUEST_OSES)):
        value = ctx[key]
        if not isinstance(value, str):
            raise MadengineError("Context key '%s' (from %s) must be a string, not %s."
                                 % (key, source, _type_name(value)))
        value = value.strip().upper()
        if value not in allowed:
            raise MadengineError("Context key '%s' (from %s) is %r; use one of %s."
                                 % (key, source, ctx[key], ", ".join(allowed)))
        ctx[key] = value

    def fail(key, wanted):
        raise MadengineError("Context key '%s' (from %s) must be %s, not %s."
                             % (key, source, wanted, _type_name(ctx[key])))

    if "docker_build_arg" in ctx:
        args = ctx["docker_build_arg"]
        if not isinstance(args, dict):
            fail("docker_build_arg", "an object of build arguments")
        cleaned = {}
        for name, value in args.items():
            if not ENV_NAME.match(name):
                raise MadengineError("Context key 'docker_build_arg' (from %s) has an invalid build argument name %r."
                                     % (source, name))
            if not isinstance(value, (str, int, float)):
                raise MadengineError("Build argument '%s' in docker_build_arg (from %s) must be a string, a number "
                                     "or a boolean, not %s." % (name, source, _type_name(value)))
            cleaned[name] = value if isinstance(value, str) else str(value)
        ctx["docker_build_arg"] = cleaned
    for key in _OBJECT_KEYS:
        if key in ctx and not isinstance(ctx[key], dict):
            fail(key, "an object")
    if "docker_env_vars" in ctx:
        for name, value in ctx["docker_env_vars"].items():
            if not ENV_NAME.match(name):
                raise MadengineError("Context key 'docker_env_vars' (from %s) has an invalid variable name %r."
                                     % (source, name))
            if isinstance(value, (dict, list)):
                raise MadengineError("Variable '%s' in docker_env_vars (from %s) must be a scalar, not %s."
                                     % (name, source, _type_name(value)))
    if "docker_mounts" in ctx:
        for target, host in ctx["docker_mounts"].items():
            if not isinstance(host, str):
                raise MadengineError("Mount '%s' in docker_mounts (from %s) must map to a host path string, not %s."
                                     % (target, source, _type_name(host)))
    for key in _ARRAY_KEYS:
        if key in ctx and not isinstance(ctx[key], list):
            fail(key, "an array")
    for key in _STRING_KEYS:
        if key in ctx and not isinstance(ctx[key], str):
            fail(key, "a string")
    for key in _OPTIONAL_STRING_KEYS:
        if ctx.get(key) is not None and not isinstance(ctx[key], str):
            fail(key, "a string or null")
    if ctx.get("timeout") is not None and not _is_number(ctx["timeout"]):
        fail("timeout", "a number or null")
    if ctx.get("debug") is not None and not isinstance(ctx["debug"], bool):
        fail("debug", "a boolean or null")
    if "log_error_pattern_scan" in ctx and isinstance(ctx["log_error_pattern_scan"], (dict, list)):
        fail("log_error_pattern_scan", "a scalar")
    for key, non_empty in (("log_error_benign_patterns", False), ("log_error_patterns", True)):
        if key in ctx:
            value = ctx[key]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or (non_empty and not value):
                fail(key, "a non-empty array of strings" if non_empty else "an array of strings")
    return ctx


def detect_build_context(mad_root):
    """What madengine detects in build mode: ``ctx_test`` (file ``<mad_root>/ctx_test``) and ``host_os``."""
    detected = {}
    try:
        with open(os.path.join(mad_root, "ctx_test")) as handle:
            detected["ctx_test"] = handle.read().strip()
    except OSError:
        detected["ctx_test"] = "None"
    for tool, name in (("apt", "HOST_UBUNTU"), ("yum", "HOST_CENTOS"), ("zypper", "HOST_SLES"), ("tdnf", "HOST_AZURE")):
        if shutil.which(tool):
            detected["host_os"] = name
            break
    return detected


def filter_context(ctx, detected):
    """The context the CONTEXT filter sees: detected values fill only keys the user did not give."""
    merged = dict(detected)
    merged.update(ctx)
    return merged


def read_dockerfile_context(path):
    """The ``# CONTEXT {...}`` dict of a Dockerfile, or ``(None, reason)`` when it has none."""
    try:
        with open(path, "rb") as handle:
            head = [handle.readline() for _line in range(CONTEXT_LINES)]
    except OSError as exc:
        return None, "cannot be read (%s)" % (exc.strerror or exc)
    for raw in head:
        line = raw.decode("utf-8", "replace")
        if CONTEXT_MARKER in line:
            text = line.split(CONTEXT_MARKER, 1)[1].strip()
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                return None, "has a CONTEXT line that is not a Python dict literal: %s" % text
            if not isinstance(value, dict):
                return None, "has a CONTEXT line that is not a dict: %s" % text
            return value, None
    return None, "has no '# CONTEXT {...}' line in its first %d lines" % CONTEXT_LINES


def context_mismatch(df_ctx, ctx):
    """None when the Dockerfile CONTEXT agrees with ``ctx``, else the first disagreement as text."""
    for key in sorted(df_ctx):
        if key in ctx and df_ctx[key] != ctx[key]:
            return "its CONTEXT wants %s=%r, the context has %r" % (key, df_ctx[key], ctx[key])
    return None


def dockerfile_candidates(mad_root, prefix):
    """Files matching ``<prefix>.*`` (relative to ``mad_root``), sorted; directories are skipped."""
    pattern = os.path.join(mad_root, glob.escape(prefix) + ".*")
    found = [p for p in glob.glob(pattern) if os.path.isfile(p)]
    return sorted(os.path.relpath(p, mad_root) for p in found)


def select_dockerfiles(mad_root, model, ctx):
    """``(selected, rejected)``: Dockerfiles (relative paths) of ``model`` for ``ctx``.

    ``rejected`` lists ``(path, reason)`` for every candidate that was not kept, so a model with
    no match can say why.
    """
    prefix = model.get("dockerfile") or ""
    if not prefix:
        return [], [("(none)", "the model has no 'dockerfile'")]
    candidates = dockerfile_candidates(mad_root, prefix)
    if not candidates:
        return [], [(prefix + ".*", "no file matches")]
    selected, rejected = [], []
    for relpath in candidates:
        df_ctx, reason = read_dockerfile_context(os.path.join(mad_root, relpath))
        if df_ctx is None:
            rejected.append((relpath, reason))
            continue
        reason = context_mismatch(df_ctx, ctx)
        if reason:
            rejected.append((relpath, reason))
        else:
            selected.append(relpath)
    return selected, rejected


def no_dockerfile_reason(model, ctx, rejected):
    """The one-sentence reason a model has no Dockerfile for ``ctx``."""
    details = "; ".join("%s %s" % (path, reason) for path, reason in rejected)
    return ("Model '%s' has no Dockerfile for gpu_vendor=%s guest_os=%s: %s."
            % (model.get("name"), ctx.get("gpu_vendor"), ctx.get("guest_os"), details))
