# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""Reading a MAD model catalogue and selecting models with madengine's tag grammar.

Sources, in this order (the order is deterministic, unlike madengine's directory listing):

1. ``<mad_root>/models.json`` entries in file order;
2. ``scripts/<dir>/models.json`` entries, directories sorted by name, names prefixed ``<dir>/``,
   ``dockerfile``/``scripts`` rebased onto ``scripts/<dir>``;
3. ``scripts/<dir>/get_models_json.py`` models (``list_models()``), directories sorted by name,
   names prefixed ``<dir>/``; ``update_model()`` runs once when a model is selected, then its
   paths are rebased.

Tag grammar (each element of ``tags`` may itself be a comma-separated list):

* ``all``, a tag, or an exact model name;
* ``dir/all``, ``dir/<tag>``, ``dir/<model>`` (exactly one ``/`` and no ``:``): models of ``scripts/dir``;
* ``<selector>:k=v:k2=v2``: appends `` --k v --k2 v2`` to the selected models' ``args``;
* ``dir:model[:k=v]``: read as ``dir/model[:k=v]`` when ``dir/model`` names a discovered model.

Selections are de-duplicated by model name; the first occurrence wins.
"""

from __future__ import annotations

import difflib
import os

from ansible_collections.rocm.madengine.plugins.module_utils._common import MadengineError, load_json_file
from ansible_collections.rocm.madengine.plugins.module_utils._custom_model import (
    ScriptError,
    custom_model_to_dict,
    load_custom_models,
)

ROOT_MODELS = "models.json"
DIR_MODELS = "models.json"
DIR_SCRIPT = "get_models_json.py"

# Catalogue fields whose type we check; anything else is carried through untouched.
_STRING_FIELDS = ("url", "dockerfile", "dockercontext", "scripts", "owner", "training_precision", "args",
                  "data", "cred", "multiple_results", "skip_gpu_arch")


class CatalogueEntry(object):
    """One discovered model. ``static`` entries hold their dict; ``custom`` ones the Python object."""

    __slots__ = ("name", "source", "dirname", "data", "custom", "_resolved")

    def __init__(self, name, source, dirname=None, data=None, custom=None):
        self.name = name
        self.source = source
        self.dirname = dirname
        self.data = data
        self.custom = custom
        self._resolved = None

    @property
    def tags(self):
        return self.data.get("tags") if self.custom is None else getattr(self.custom, "tags", None)

    def resolve(self):
        """The catalogue dict of this model (runs a custom model's ``update_model()`` once)."""
        if self._resolved is None:
            if self.custom is None:
                self._resolved = self.data
            else:
                try:
                    self.custom.update_model()
                except Exception as exc:  # pylint: disable=broad-except
                    raise MadengineError("%s: update_model() of model '%s' raised %s: %s."
                                         % (self.source, self.name, type(exc).__name__, exc))
                entry = custom_model_to_dict(self.custom)
                if entry.get("name") != self.name:
                    raise MadengineError("%s: update_model() of model '%s' changed its name to %r; names "
                                         "cannot change." % (self.source, self.name, entry.get("name")))
                _check_types(entry, self.source, self.name)
                _rebase_paths(entry, self.dirname)
                entry.setdefault("args", "")
                self._resolved = entry
        return self._resolved


class Catalogue(object):
    """All models of one MAD tree, in discovery order."""

    def __init__(self, mad_root, entries):
        self.mad_root = mad_root
        self.entries = entries
        self.by_name = dict((e.name, e) for e in entries)

    @property
    def names(self):
        return [e.name for e in self.entries]


def _has_tag(tags, tag):
    if isinstance(tags, str):
        return tag in [t.strip() for t in tags.split(",")]
    return bool(tags) and tag in tags


def _check_types(entry, source, label):
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise MadengineError("%s: %s has no 'name' (a non-empty string is required)." % (source, label))
    if ":" in name:
        raise MadengineError("%s: model name '%s' contains ':', which the tag grammar reserves for "
                             "arguments; rename the model." % (source, name))
    for field in _STRING_FIELDS:
        value = entry.get(field)
        if value is not None and not isinstance(value, str):
            raise MadengineError("%s: model '%s' field '%s' must be a string, not %s."
                                 % (source, name, field, type(value).__name__))
    tags = entry.get("tags")
    if tags is not None and not isinstance(tags, str) and not (
            isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
        raise MadengineError("%s: model '%s' field 'tags' must be a list of strings or a comma-separated "
                             "string." % (source, name))
    for field in ("n_gpus", "timeout"):
        value = entry.get(field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, str))):
            raise MadengineError("%s: model '%s' field '%s' must be an integer or a string of one, not %s."
                                 % (source, name, field, type(value).__name__))


def _rebase_paths(entry, dirname):
    for field in ("dockerfile", "scripts"):
        value = entry.get(field)
        if value:
            entry[field] = os.path.normpath(os.path.join("scripts", dirname, value))


def _read_static(path, source, dirname):
    document = load_json_file(path, "model catalogue")
    if not isinstance(document, list):
        raise MadengineError("%s must hold a JSON array of model objects, not a %s."
                             % (source, type(document).__name__))
    entries = []
    for index, raw in enumerate(document, 1):
        label = "entry %d" % index
        if not isinstance(raw, dict):
            raise MadengineError("%s: %s is a %s, not a model object." % (source, label, type(raw).__name__))
        _check_types(raw, source, label)
        entry = dict(raw)
        if dirname is not None:
            entry["name"] = dirname + "/" + entry["name"]
            _rebase_paths(entry, dirname)
        entry.setdefault("args", "")
        entries.append(CatalogueEntry(entry["name"], source, dirname, data=entry))
    return entries


def _read_custom(path, source, dirname):
    try:
        models = load_custom_models(path)
    except ScriptError as exc:
        raise MadengineError("%s could not be loaded: %s." % (source, exc.detail))
    if not isinstance(models, (list, tuple)):
        raise MadengineError("%s: list_models() must return a list of CustomModel objects, not a %s."
                             % (source, type(models).__name__))
    entries = []
    for index, model in enumerate(models, 1):
        as_dict = custom_model_to_dict(model)
        if as_dict is None:
            raise MadengineError("%s: list_models() item %d is a %s; use or subclass "
                                 "madengine.utils.discover_models.CustomModel."
                                 % (source, index, type(model).__name__))
        _check_types(as_dict, source, "list_models() item %d" % index)
        model.name = dirname + "/" + as_dict["name"]
        entries.append(CatalogueEntry(model.name, source, dirname, custom=model))
    return entries


def discover(mad_root):
    """Read every model of the MAD tree at ``mad_root``; raises MadengineError on bad input."""
    if not mad_root or not os.path.isdir(mad_root):
        raise MadengineError("mad_root %s is not a directory." % (mad_root or "(empty)"))
    root_file = os.path.join(mad_root, ROOT_MODELS)
    if not os.path.isfile(root_file):
        raise MadengineError("mad_root %s has no %s; a MAD catalogue needs one at its root."
                             % (mad_root, ROOT_MODELS))
    entries = _read_static(root_file, root_file, None)
    scripts_dir = os.path.join(mad_root, "scripts")
    custom = []
    if os.path.isdir(scripts_dir):
        for dirname in sorted(os.listdir(scripts_dir)):
            directory = os.path.join(scripts_dir, dirname)
            if not os.path.isdir(directory):
                continue
            static_file = os.path.join(directory, DIR_MODELS)
            script_file = os.path.join(directory, DIR_SCRIPT)
            has_static, has_script = os.path.isfile(static_file), os.path.isfile(script_file)
            if has_static and has_script:
                raise MadengineError("%s holds both %s and %s; keep one of them." % (directory, DIR_MODELS, DIR_SCRIPT))
            if has_static:
                entries.extend(_read_static(static_file, static_file, dirname))
            elif has_script:
                custom.extend(_read_custom(script_file, script_file, dirname))
    entries.extend(custom)
    seen = {}
    for entry in entries:
        if entry.name in seen:
            raise MadengineError("Model '%s' is defined twice: in %s and in %s."
                                 % (entry.name, seen[entry.name], entry.source))
        seen[entry.name] = entry.source
    return Catalogue(mad_root, entries)


class TagSelector(object):
    """One parsed tag: what it selects and the extra arguments it appends."""

    __slots__ = ("raw", "selector", "extra_args", "scope")

    def __init__(self, raw, selector, extra_args, scope):
        self.raw = raw
        self.selector = selector
        self.extra_args = extra_args
        self.scope = scope

    def matches(self, entry):
        if self.scope is not None:
            scope, wanted = self.scope
            if not entry.name.startswith(scope + "/"):
                return False
            return wanted == "all" or entry.name == scope + "/" + wanted or _has_tag(entry.tags, wanted)
        return self.selector in ("all", entry.name) or _has_tag(entry.tags, self.selector)


def _extra_args(parts):
    """``['k=v', 'flag']`` -> ``' --k v --flag'`` (madengine's exact shape, leading space included)."""
    parts = [p.replace("=", " ") for p in parts]
    return " --" + " --".join(parts) if parts else ""


def parse_tag(raw, known_names=()):
    """Parse one tag (no commas).  ``known_names`` lets ``dir:model`` resolve to ``dir/model``."""
    tag = raw.strip()
    parts = [p.strip() for p in tag.split(":") if p.strip()]
    if not parts:
        raise MadengineError("Tag %r selects nothing: it is empty." % raw)
    if ":" in tag and not tag.startswith(":") and len(parts) >= 2 and "=" not in parts[1] \
            and "/" not in parts[0] and parts[0] + "/" + parts[1] in known_names:
        return TagSelector(tag, parts[0] + "/" + parts[1], _extra_args(parts[2:]), None)
    if tag.startswith(":"):
        raise MadengineError("Tag %r has arguments but no model or tag before the first ':'." % raw)
    scope = None
    if tag.count("/") == 1 and ":" not in tag:
        left, right = tag.split("/", 1)
        if left and right:
            scope = (left, right)
    return TagSelector(tag, parts[0], _extra_args(parts[1:]), scope)


def split_tags(tags):
    """Flatten a list of tags whose elements may be comma-separated."""
    flat = []
    for item in tags or []:
        if not isinstance(item, str):
            raise MadengineError("Tags must be strings; got %r." % (item,))
        flat.extend(part for part in item.split(",") if part.strip())
    return flat


def _suggest(catalogue, selector):
    vocabulary = set(catalogue.names)
    for entry in catalogue.entries:
        tags = entry.tags
        vocabulary.update(t.strip() for t in (tags.split(",") if isinstance(tags, str) else tags or []))
    close = difflib.get_close_matches(selector, sorted(vocabulary), n=5, cutoff=0.6)
    return (" Close names: %s." % ", ".join(close)) if close else ""


def select(catalogue, tags):
    """Models selected by ``tags`` (all models when empty), as catalogue dicts with augmented ``args``.

    Returns ``(models, notes)``; ``notes`` lists duplicates that were dropped.
    """
    flat = split_tags(tags) or ["all"]
    selected, chosen, notes = [], {}, []
    known = catalogue.by_name
    for raw in flat:
        spec = parse_tag(raw, known)
        matched = [e for e in catalogue.entries if spec.matches(e)]
        if not matched:
            where = (" in scripts/%s" % spec.scope[0]) if spec.scope else ""
            raise MadengineError("Tag '%s' selects no model%s of the catalogue at %s.%s"
                                 % (spec.raw, where, catalogue.mad_root, _suggest(catalogue, spec.selector)))
        for entry in matched:
            if entry.name in chosen:
                if chosen[entry.name] != spec.extra_args:
                    notes.append("Model '%s' was selected again by tag '%s' with other arguments (%r); the "
                                 "first selection (%r) is kept." % (entry.name, spec.raw, spec.extra_args,
                                                                    chosen[entry.name]))
                continue
            chosen[entry.name] = spec.extra_args
            model = dict(entry.resolve())
            model["args"] = (model.get("args") or "") + spec.extra_args
            selected.append(model)
    return selected, notes


def discover_and_select(mad_root, tags):
    return select(discover(mad_root), tags)
