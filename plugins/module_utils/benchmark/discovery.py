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

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.custom_model import (
    ScriptError,
    custom_model_to_dict,
    load_custom_models,
)
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError, load_json_file

_PATH_FIELDS = ("dockerfile", "scripts")
_NUMBER_FIELDS = frozenset(("n_gpus", "timeout"))

ROOT_MODELS = "models.json"
DIR_MODELS = "models.json"
DIR_SCRIPT = "get_models_json.py"

# Catalogue fields whose type we check; anything else is carried through untouched.
_STRING_FIELDS = frozenset(("url", "dockerfile", "dockercontext", "scripts", "owner", "training_precision",
                            "args", "data", "cred", "multiple_results", "skip_gpu_arch"))


class CustomEntry(dict):
    """A model from get_models_json.py: ``name`` and ``tags`` for selection, the object for the rest.

    Models from JSON files are kept as their plain dicts, which is all selection needs.
    """

    __slots__ = ("custom", "source", "dirname", "_resolved")

    def __init__(self, name, tags, custom, source, dirname):
        dict.__init__(self, name=name, tags=tags)
        self.custom = custom
        self.source = source
        self.dirname = dirname
        self._resolved = None

    def resolve(self):
        """The catalogue dict of this model; runs ``update_model()`` once, then rebases its paths."""
        if self._resolved is None:
            name = self["name"]
            try:
                self.custom.update_model()
            except Exception as exc:  # pylint: disable=broad-except
                raise MadengineError("%s: update_model() of model '%s' raised %s: %s."
                                     % (self.source, name, type(exc).__name__, exc))
            entry = custom_model_to_dict(self.custom)
            if entry.get("name") != name:
                raise MadengineError("%s: update_model() of model '%s' changed its name to %r; names "
                                     "cannot change." % (self.source, name, entry.get("name")))
            _check_types(entry, self.source, name)
            _rebase_paths(entry, self.dirname)
            entry.setdefault("args", "")
            self._resolved = entry
        return self._resolved


def resolve(entry):
    """The full catalogue dict of a discovered entry."""
    return entry.resolve() if isinstance(entry, CustomEntry) else entry


class Catalogue(object):
    """All models of one MAD tree, in discovery order.

    ``entries`` are dicts with at least ``name`` and ``tags``; ``sources`` maps names to the file
    that defines them.
    """

    def __init__(self, mad_root, entries, segments):
        self.mad_root = mad_root
        self.entries = entries
        self.by_name = dict((e["name"], e) for e in entries)
        self._segments = segments  # (file, number of entries) in the order of ``entries``

    @property
    def sources(self):
        names = iter(self.entries)
        found = {}
        for path, count in self._segments:
            for _unused in range(count):
                found.setdefault(next(names)["name"], path)
        return found

    @property
    def names(self):
        return [e["name"] for e in self.entries]

    def check_unique(self):
        if len(self.by_name) == len(self.entries):
            return
        seen = {}
        names = iter(self.entries)
        for path, count in self._segments:
            for _unused in range(count):
                name = next(names)["name"]
                if name in seen:
                    where = ("twice in %s" % path) if seen[name] == path else ("in %s and in %s" % (seen[name], path))
                    raise MadengineError("Model '%s' is defined %s." % (name, where))
                seen[name] = path


def _has_tag(tags, tag):
    if isinstance(tags, str):
        return tag in [t.strip() for t in tags.split(",")]
    return bool(tags) and tag in tags


def _check_types(entry, source, position):
    """Validate one catalogue entry; ``position`` is its 1-based index or a label for messages.

    This runs once per model of the catalogue, so the common case (a string) is tested first and
    with an exact type check.
    """
    name = entry.get("name")
    if type(name) is not str or not name or name.isspace():  # pylint: disable=unidiomatic-typecheck
        label = ("entry %d" % position) if isinstance(position, int) else position
        raise MadengineError("%s: %s has no 'name' (a non-empty string is required)." % (source, label))
    if ":" in name:
        raise MadengineError("%s: model name '%s' contains ':', which the tag grammar reserves for "
                             "arguments; rename the model." % (source, name))
    for field, value in entry.items():
        if type(value) is str or value is None:  # pylint: disable=unidiomatic-typecheck
            continue
        if field == "tags":
            if _is_str_list(value):
                continue
            raise MadengineError("%s: model '%s' field 'tags' must be a list of strings or a comma-separated "
                                 "string." % (source, name))
        if field in _STRING_FIELDS:
            raise MadengineError("%s: model '%s' field '%s' must be a string, not %s."
                                 % (source, name, field, type(value).__name__))
        if field in _NUMBER_FIELDS and (isinstance(value, bool) or not isinstance(value, int)):
            raise MadengineError("%s: model '%s' field '%s' must be an integer or a string of one, not %s."
                                 % (source, name, field, type(value).__name__))


def _is_str_list(value):
    if not isinstance(value, list):
        return False
    try:
        "".join(value)  # the cheapest complete check: join() refuses anything but strings
    except TypeError:
        return False
    return True


def _rebase_paths(entry, dirname):
    for field in _PATH_FIELDS:
        value = entry.get(field)
        if value:
            entry[field] = os.path.normpath(os.path.join("scripts", dirname, value))


def _read_static(path, source, dirname):
    document = load_json_file(path, "model catalogue")
    if not isinstance(document, list):
        raise MadengineError("%s must hold a JSON array of model objects, not a %s."
                             % (source, type(document).__name__))
    entries = []
    prefix = None if dirname is None else dirname + "/"
    for index, entry in enumerate(document, 1):
        # The parsed objects are ours alone: they are completed in place, not copied.
        if not isinstance(entry, dict):
            raise MadengineError("%s: entry %d is a %s, not a model object." % (source, index, type(entry).__name__))
        _check_types(entry, source, index)
        if prefix is not None:
            entry["name"] = prefix + entry["name"]
            for field in _PATH_FIELDS:
                value = entry.get(field)
                if value:
                    # plain relative paths need no normalising; the rest goes through normpath
                    if value[0] in "/." or "/." in value or "//" in value or value[-1] == "/":
                        entry[field] = os.path.normpath(os.path.join("scripts", dirname, value))
                    else:
                        entry[field] = "scripts/" + prefix + value
        if "args" not in entry:
            entry["args"] = ""
        entries.append(entry)
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
        entries.append(CustomEntry(model.name, as_dict.get("tags"), model, source, dirname))
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
    segments = [(root_file, len(entries))]
    scripts_dir = os.path.join(mad_root, "scripts")
    custom, custom_segments = [], []
    if os.path.isdir(scripts_dir):
        with os.scandir(scripts_dir) as listing:
            dirnames = sorted(item.name for item in listing if item.is_dir())
        for dirname in dirnames:
            directory = os.path.join(scripts_dir, dirname)
            files = os.listdir(directory)
            has_static, has_script = DIR_MODELS in files, DIR_SCRIPT in files
            if has_static and has_script:
                raise MadengineError("%s holds both %s and %s; keep one of them." % (directory, DIR_MODELS, DIR_SCRIPT))
            if has_static:
                path = os.path.join(directory, DIR_MODELS)
                found = _read_static(path, path, dirname)
                entries.extend(found)
                segments.append((path, len(found)))
            elif has_script:
                path = os.path.join(directory, DIR_SCRIPT)
                found = _read_custom(path, path, dirname)
                custom.extend(found)
                custom_segments.append((path, len(found)))
    catalogue = Catalogue(mad_root, entries + custom, segments + custom_segments)
    catalogue.check_unique()
    return catalogue


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
            name = entry["name"]
            if not name.startswith(scope + "/"):
                return False
            return wanted == "all" or name == scope + "/" + wanted or _has_tag(entry.get("tags"), wanted)
        return self.selector in ("all", entry["name"]) or _has_tag(entry.get("tags"), self.selector)


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
        tags = entry.get("tags")
        vocabulary.update(t.strip() for t in (tags.split(",") if isinstance(tags, str) else tags or []))
    close = difflib.get_close_matches(selector, sorted(vocabulary), n=5, cutoff=0.6)
    return (" Close names: %s." % ", ".join(close)) if close else ""


def select(catalogue, tags):
    """Models selected by ``tags`` (all models when empty), as catalogue dicts with augmented ``args``.

    The dicts are the catalogue's own unless tag arguments changed them: copy one before changing it.

    Returns ``(models, notes)``; ``notes`` lists duplicates that were dropped.
    """
    flat = split_tags(tags) or ["all"]
    selected, chosen, notes = [], {}, []
    known = catalogue.by_name
    for raw in flat:
        spec = parse_tag(raw, known)
        if spec.selector == "all" and spec.scope is None:
            matched = catalogue.entries
        else:
            matched = [e for e in catalogue.entries if spec.matches(e)]
        if not matched:
            where = (" in scripts/%s" % spec.scope[0]) if spec.scope else ""
            raise MadengineError("Tag '%s' selects no model%s of the catalogue at %s.%s"
                                 % (spec.raw, where, catalogue.mad_root, _suggest(catalogue, spec.selector)))
        for entry in matched:
            name = entry["name"]
            if name in chosen:
                if chosen[name] != spec.extra_args:
                    notes.append("Model '%s' was selected again by tag '%s' with other arguments (%r); the "
                                 "first selection (%r) is kept." % (name, spec.raw, spec.extra_args, chosen[name]))
                continue
            chosen[name] = spec.extra_args
            model = entry.resolve() if isinstance(entry, CustomEntry) else entry
            if spec.extra_args:
                model = dict(model)
                model["args"] = (model.get("args") or "") + spec.extra_args
            selected.append(model)
    return selected, notes


def discover_and_select(mad_root, tags):
    return select(discover(mad_root), tags)
