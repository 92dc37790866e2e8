# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""What a Dockerfile needs from outside: its base images and the build-context files it copies.

Pure text analysis, no Docker: instructions are split into logical lines (comments, parser
directives and ``\\`` continuations handled), ``FROM`` references are resolved with the global
``ARG`` defaults overridden by the build arguments, and ``COPY``/``ADD`` sources are collected.
When a source cannot be known without running the build (it holds a variable), the caller falls
back to the whole build context, so the analysis can only widen what is sent, never miss a file.
"""

from __future__ import annotations

import json
import re

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")
GLOB_CHARS = "*?["


class Instruction(object):
    __slots__ = ("keyword", "args", "line")

    def __init__(self, keyword, args, line):
        self.keyword = keyword
        self.args = args
        self.line = line

    def __repr__(self):
        return "Instruction(%r, %r)" % (self.keyword, self.args)


def instructions(text):
    """Logical instructions of a Dockerfile, in order."""
    escape = "\\"
    lines = text.splitlines()
    index = 0
    # Parser directives: leading comment lines of the form `# key=value`.
    while index < len(lines):
        match = _DIRECTIVE.match(lines[index].strip())
        if not match:
            break
        if match.group(1).lower() == "escape" and match.group(2) in ("\\", "`"):
            escape = match.group(2)
        index += 1
    result = []
    current, start = None, 0
    for number in range(index, len(lines)):
        raw = lines[number]
        stripped = raw.strip()
        if current is None:
            if not stripped or stripped.startswith("#"):
                continue
            current, start = "", number + 1
        elif stripped.startswith("#") or not stripped:
            # comments and empty lines inside a continuation are skipped
            continue
        if stripped.endswith(escape):
            current += stripped[:-1] + " "
            continue
        current += stripped
        parts = current.split(None, 1)
        result.append(Instruction(parts[0].upper(), parts[1] if len(parts) > 1 else "", start))
        current = None
    if current:
        parts = current.split(None, 1)
        result.append(Instruction(parts[0].upper(), parts[1] if len(parts) > 1 else "", start))
    return result


def substitute(text, values):
    """Docker's ``$VAR``, ``${VAR}``, ``${VAR:-default}`` and ``${VAR:+alt}`` expansion (unknown -> empty)."""
    def repl(match):
        name = match.group(1) or match.group(4)
        value = values.get(name)
        operator = match.group(2)
        if operator in (":-", "-"):
            if value is None or (operator == ":-" and value == ""):
                return match.group(3) or ""
            return value
        if operator in (":+", "+"):
            return (match.group(3) or "") if value not in (None, "") or (operator == "+" and value is not None) else ""
        return value or ""
    return _VAR.sub(repl, text)


def _split_flags(args):
    """``--flag=value`` words at the start of an instruction, then the rest."""
    words = args.split()
    flags = {}
    while words and words[0].startswith("--"):
        flag = words.pop(0)[2:]
        name, _sep, value = flag.partition("=")
        flags[name.lower()] = value
    return flags, words


def _arg_pairs(args):
    """``ARG a=1 b`` -> [(a, '1'), (b, None)]."""
    pairs = []
    for word in args.split():
        name, sep, value = word.partition("=")
        if sep and len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        pairs.append((name, value if sep else None))
    return pairs


class Analysis(object):
    """Result of :func:`analyse`."""

    def __init__(self):
        self.stages = []              # [(stage name or None, resolved base reference)]
        self.base_refs = []           # external images, in FROM order, unique
        self.final_base = None        # external image the last stage grows from (through stage aliases)
        self.copy_sources = []        # context paths/patterns used by COPY/ADD
        self.dynamic_sources = False  # a source holds a variable: the whole context is needed
        self.named_contexts = []      # --from values that are neither stages nor image references
        self.declared_args = set()


def analyse(text, build_args=None):
    """Analyse a Dockerfile's text with the given build arguments."""
    build_args = build_args or {}
    result = Analysis()
    global_args = {}
    seen_from = False
    stage_base = {}
    for inst in instructions(text):
        if inst.keyword == "ARG":
            for name, default in _arg_pairs(inst.args):
                result.declared_args.add(name)
                if not seen_from:
                    global_args[name] = build_args.get(name, default)
        elif inst.keyword == "FROM":
            seen_from = True
            _flags, words = _split_flags(inst.args)
            if not words:
                continue
            ref = substitute(words[0], dict((k, v) for k, v in global_args.items() if v is not None))
            alias = words[2].lower() if len(words) >= 3 and words[1].lower() == "as" else None
            if ref.lower() in stage_base:
                base = stage_base[ref.lower()]
            elif ref.lower() == "scratch":
                base = None
            else:
                base = ref
                if ref not in result.base_refs:
                    result.base_refs.append(ref)
            result.stages.append((alias, ref))
            if alias:
                stage_base[alias] = base
            result.final_base = base
        elif inst.keyword in ("COPY", "ADD"):
            flags, words = _split_flags(inst.args)
            source_from = flags.get("from")
            if source_from is not None:
                known = source_from.lower() in stage_base or source_from.isdigit()
                if not known and "/" not in source_from and ":" not in source_from and "." not in source_from:
                    result.named_contexts.append(source_from)
                continue
            rest = " ".join(words)
            if rest.startswith("["):
                try:
                    values = json.loads(rest)
                except ValueError:
                    values = None
                if isinstance(values, list) and all(isinstance(v, str) for v in values):
                    words = values
            if rest.startswith("<<"):
                continue  # heredoc: no context file
            sources = words[:-1]
            for source in sources:
                if inst.keyword == "ADD" and re.match(r"^[a-z]+://", source):
                    continue
                if "$" in source:
                    result.dynamic_sources = True
                result.copy_sources.append(source)
    return result


def needs_whole_context(analysis):
    return analysis.dynamic_sources or any(_normalise_source(s) in ("", ".") for s in analysis.copy_sources)


def _normalise_source(source):
    source = source.strip()
    while source.startswith("./"):
        source = source[2:]
    source = source.lstrip("/")
    if source.endswith("/") and len(source) > 1:
        source = source.rstrip("/")
    return source


def source_patterns(analysis):
    """COPY/ADD sources relative to the context root (leading ``/`` and ``./`` removed)."""
    return [_normalise_source(s) for s in analysis.copy_sources]


def is_glob(pattern):
    return any(ch in pattern for ch in GLOB_CHARS)


def infer_gpu_vendor(dockerfile_path, df_context, base_refs):
    """madengine's vendor of an image: CONTEXT, else ``.amd.``/``.nvidia.`` in the name, else the base images."""
    vendor = (df_context or {}).get("gpu_vendor")
    if isinstance(vendor, str) and vendor.upper() in ("AMD", "NVIDIA"):
        return vendor.upper()
    name = dockerfile_path.lower()
    if ".amd." in name:
        return "AMD"
    if ".nvidia." in name:
        return "NVIDIA"
    froms = " ".join(base_refs).lower()
    if "rocm" in froms:
        return "AMD"
    if "nvidia" in froms or "cuda" in froms:
        return "NVIDIA"
    return ""
