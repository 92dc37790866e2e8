# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""The catalogue files a run needs beside the image, and madengine's ``tools``, ``pre_scripts``, ``post_scripts``.

:class:`CatalogueFiles` answers "what is ``scripts/common/pre_scripts/x.sh``?" from, in this order, the
catalogue on the node (``mad_root``), the files the build host sent (``catalogue_files``, made by
:func:`collect_files` on the build host) and the collection's default ``scripts/common``
(``default_tools.py``).  :func:`resolve_scripts` applies the context's ``tools`` as madengine does: a tool's
pre-scripts go before the context's ``pre_scripts``, its post-scripts after the ``post_scripts``, its
``env_vars`` join the container's environment and its ``cmd`` is put in front of ``encapsulate_script``
(once per distinct command).
"""

from __future__ import annotations

import base64
import json
import os

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark import default_tools
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.data import data_names
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError

TOOLS_JSON = default_tools.COMMON + "/tools.json"
# What the build host may send to the nodes at most (the files travel as task arguments).
MAX_SENT_BYTES = 16 << 20


def _relative(path, what):
    path = str(path or "").strip()
    norm = os.path.normpath(path)
    if not path or norm.startswith("/") or norm == ".." or norm.startswith("../"):
        raise MadengineError("%s %r must be a path inside the catalogue (relative, without '..')." % (what, path))
    return norm


def _tree(root, rel):
    """(relative path, absolute path) of every regular file under ``root/rel`` (a file or a directory)."""
    base = os.path.join(root, rel)
    if os.path.isfile(base):
        return [(rel, base)]
    found = []
    for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            if os.path.isfile(full):
                found.append((os.path.relpath(full, root), full))
    return found


class CatalogueFiles(object):
    """Files of the catalogue by relative path; ``source`` names where they come from in messages."""

    def __init__(self, mad_root=None, sent=None):
        self.mad_root = mad_root
        self.sent = sent or {}
        if not isinstance(self.sent, dict):
            raise MadengineError("catalogue_files must be an object of relative path to file, as madengine_build "
                                 "returns it.")

    @property
    def source(self):
        where = []
        if self.mad_root:
            where.append("mad_root %s" % self.mad_root)
        if self.sent:
            where.append("the catalogue files the build host sent")
        return " or ".join(where + ["the collection's default scripts/common"])

    def _root_path(self, rel):
        if not self.mad_root:
            return None
        root = os.path.realpath(self.mad_root)
        path = os.path.realpath(os.path.join(root, rel))
        if path != root and not path.startswith(root + os.sep):
            return None
        return path

    def read(self, rel):
        """``(bytes, mode)`` of one file, or None when no source has it."""
        path = self._root_path(rel)
        if path and os.path.isfile(path):
            with open(path, "rb") as handle:
                return handle.read(), os.stat(path).st_mode & 0o777
        item = self.sent.get(rel)
        if isinstance(item, dict) and "content" in item:
            try:
                return base64.b64decode(item["content"]), int(item.get("mode") or 0o644)
            except (TypeError, ValueError) as exc:
                raise MadengineError("catalogue_files: %s is not base64 content: %s." % (rel, exc))
        if rel in default_tools.SCRIPTS:
            return default_tools.SCRIPTS[rel].encode("utf-8"), 0o755
        if rel == TOOLS_JSON:
            return json.dumps(default_tools.TOOLS, indent=1).encode("utf-8"), 0o644
        return None

    def below(self, rel):
        """Every file at or under ``rel`` (a file or a directory), as ``{relative path: (bytes, mode)}``."""
        found = {}
        prefix = rel.rstrip("/") + "/"
        for path in list(default_tools.SCRIPTS) + [TOOLS_JSON] + list(self.sent):
            if path == rel or path.startswith(prefix):
                found[path] = None
        root_path = self._root_path(rel)
        if root_path and os.path.exists(root_path):
            root = os.path.realpath(self.mad_root)
            for path, _full in _tree(root, os.path.relpath(root_path, root)):
                found[path] = None
        return dict((path, self.read(path)) for path in sorted(found))

    def tools(self, tools_config=None):
        """The tools.json document: ``tools_config`` (a file on this host), else the catalogue's, else the default."""
        if tools_config:
            try:
                with open(tools_config, "rb") as handle:
                    data, where = handle.read(), "tools_config %s" % tools_config
            except OSError as exc:
                raise MadengineError("tools_config %s cannot be read: %s." % (tools_config, exc.strerror or exc))
        else:
            data, _mode = self.read(TOOLS_JSON)
            where = "%s of %s" % (TOOLS_JSON, self.source)
        try:
            document = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise MadengineError("%s is not valid JSON: %s." % (where, exc))
        if not isinstance(document, dict) or not isinstance(document.get("tools"), dict):
            raise MadengineError("%s must be an object with a 'tools' object." % where)
        return document["tools"], where


def _script_list(value, what):
    if value in (None, ""):
        return []
    if not isinstance(value, list):
        raise MadengineError("%s must be a list of {path, args} objects." % what)
    items = []
    for index, item in enumerate(value):
        if not isinstance(item, dict) or not item.get("path"):
            raise MadengineError("%s item %d must be an object with a 'path'." % (what, index))
        items.append({"path": _relative(item["path"], "%s item %d path" % (what, index)),
                      "args": str(item.get("args") or "").strip()})
    return items


class ScriptPlan(object):
    """What runs around a model: pre- and post-scripts, the tools' environment and the command prefix."""

    def __init__(self):
        self.pre_scripts = []
        self.post_scripts = []
        self.env = {}
        self.encapsulate = ""
        self.tools = []

    def as_dict(self):
        return {"tools": list(self.tools), "pre_scripts": list(self.pre_scripts),
                "post_scripts": list(self.post_scripts), "encapsulate_script": self.encapsulate,
                "tool_env": sorted(self.env)}


def resolve_scripts(ctx, files, tools_config=None):
    """The ScriptPlan of the context (``tools``, ``pre_scripts``, ``post_scripts``, ``encapsulate_script``)."""
    plan = ScriptPlan()
    plan.pre_scripts = _script_list(ctx.get("pre_scripts"), "Context key 'pre_scripts'")
    plan.post_scripts = _script_list(ctx.get("post_scripts"), "Context key 'post_scripts'")
    plan.encapsulate = str(ctx.get("encapsulate_script") or "")
    wanted = ctx.get("tools") or []
    if not wanted:
        return plan
    catalogue, where = files.tools(tools_config)
    added = []
    for index, item in enumerate(wanted):
        if not isinstance(item, dict) or not item.get("name"):
            raise MadengineError("Context key 'tools' item %d must be an object with a 'name'." % index)
        name = str(item["name"])
        if not isinstance(catalogue.get(name), dict):
            raise MadengineError("Tool '%s' of the context is not in %s (tools: %s)."
                                 % (name, where, ", ".join(sorted(catalogue)) or "none"))
        tool = dict(catalogue[name])
        if item.get("cmd"):
            tool["cmd"] = item["cmd"]
        env = dict(tool.get("env_vars") or {})
        env.update(item.get("env_vars") or {})
        plan.pre_scripts = _script_list(tool.get("pre_scripts"), "Tool '%s' pre_scripts" % name) + plan.pre_scripts
        plan.post_scripts += _script_list(tool.get("post_scripts"), "Tool '%s' post_scripts" % name)
        plan.env.update(dict((str(k), str(v)) for k, v in env.items()))
        cmd = str(tool.get("cmd") or "").strip()
        if cmd and cmd not in added:
            plan.encapsulate = ("%s %s" % (cmd, plan.encapsulate)).strip()
            added.append(cmd)
        plan.tools.append(name)
    return plan


def collect_files(mad_root, ctx, models, providers):
    """What the nodes need of the catalogue beside the images, as ``{relative path: {content, mode}}``.

    ``scripts/common`` whole when the context names tools or scripts (a tool's ``cmd`` may use any file of it),
    the context's pre/post-scripts, and the ``custom`` data provider scripts of the models' data.  None when
    nothing is needed.
    """
    files = CatalogueFiles(mad_root)
    wanted = []
    if ctx.get("tools") or ctx.get("pre_scripts") or ctx.get("post_scripts"):
        if os.path.isdir(os.path.join(mad_root, default_tools.COMMON)):
            wanted.append(default_tools.COMMON)
        for key in ("pre_scripts", "post_scripts"):
            wanted.extend(item["path"] for item in _script_list(ctx.get(key), "Context key '%s'" % key))
    for model in models:
        for name in data_names(model):
            custom = ((providers or {}).get(name) or {}).get("custom")
            if isinstance(custom, dict) and custom.get("path"):
                wanted.append(_relative(custom["path"], "Data '%s' custom path" % name))
    sent, total = {}, 0
    root = os.path.realpath(mad_root)
    for rel in wanted:
        path = files._root_path(rel)
        if not path or not os.path.exists(path):
            continue
        for name, full in _tree(root, os.path.relpath(path, root)):
            if name in sent:
                continue
            with open(full, "rb") as handle:
                data = handle.read()
            total += len(data)
            if total > MAX_SENT_BYTES:
                raise MadengineError("The catalogue files the nodes need (%s) exceed %d MiB; give the nodes the "
                                     "catalogue (mad_root) instead." % (", ".join(wanted), MAX_SENT_BYTES >> 20))
            sent[name] = {"content": base64.b64encode(data).decode("ascii"), "mode": os.stat(full).st_mode & 0o777}
    return sent or None
