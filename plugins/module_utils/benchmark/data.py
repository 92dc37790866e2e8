# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""madengine's data providers (``data.json``): which host directory a model's data comes from.

``data.json`` maps a data name to providers: ``{"<name>": {"<type>": {config}, ...}}``; the context's
``data`` object overlays it (per name).  Provider types are tried in madengine's order
``custom, local, minio, nas, aws``; the first one that can serve the data on this node is used:

* ``local``: ``path`` exists on the node; it is mounted at ``home`` (read-only unless ``readwrite``).
  ``mirrorlocal`` is not allowed with ``local`` (as in madengine).
* ``custom``: the provider's script (``path`` in the catalogue) runs in the container in ``home`` with its
  ``args`` before the model, as in madengine.
* ``nas``: the first node of ``NAS_NODES`` (credential.json or the environment) that answers on its SSH
  port; ``path`` is copied with rsync over SSH (password from the entry) into ``home`` in the container.
* ``minio`` and ``aws``: served only from a mirror (below); madengine_run does not download from S3.
* A mirror ``<mirrorlocal>/<name>`` (``mirrorlocal`` of the provider, or ``force_mirror_local`` for every
  non-local provider) is mounted read-write at ``home``: a download fills it, and the next run reuses it
  without downloading.  A mirror a download left incomplete (``.<name>.madengine-partial`` beside it) is
  downloaded again; a mirror directory someone staged by hand is used as it is.

Mount points are ``home`` (default ``/data_dlm``) suffixed ``_<i>``, ``i`` counting the model's data
names from 0; the container gets ``MAD_DATAHOME`` and ``MAD_DATANAME`` (comma-joined).
"""

from __future__ import annotations

import copy
import json
import os
import socket

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError, load_json_file

PROVIDER_ORDER = ("custom", "local", "minio", "nas", "aws")
DEFAULT_HOME = "/data_dlm"
PARTIAL = ".%s.madengine-partial"
COMPLETE = ".%s.madengine-mirror"
NAS_CONNECT_TIMEOUT = 5


class DataMount(object):
    __slots__ = ("name", "provider", "host_path", "home", "read_only", "note", "download", "mirror", "size",
                 "duration")

    def __init__(self, name, provider, host_path, home, read_only, note="", download=None, mirror=None):
        self.name = name
        self.provider = provider
        self.host_path = host_path    # None: the data lives in the container only
        self.home = home
        self.read_only = read_only
        self.note = note
        self.download = download      # what the container does to get the data, or None
        self.mirror = mirror          # the mirror root (the host_path's parent) a download fills
        self.size = ""
        self.duration = None

    def bind(self):
        return "%s:%s:%s" % (self.host_path, self.home, "ro" if self.read_only else "rw")

    def as_dict(self):
        result = dict((name, getattr(self, name)) for name in self.__slots__)
        if self.download:
            result["download"] = dict((k, v) for k, v in self.download.items() if k != "password")
        return result

    def start_download(self):
        """Before the container starts: the mirror directory exists and is marked incomplete."""
        if self.download and self.mirror:
            os.makedirs(self.host_path, exist_ok=True)
            with open(os.path.join(self.mirror, PARTIAL % self.name), "w") as handle:
                handle.write("downloading\n")

    def finish_download(self, ok, run_id=""):
        """After the container: a complete download marks the mirror reusable."""
        if not (self.download and self.mirror) or not ok:
            return
        complete = os.path.join(self.mirror, COMPLETE % self.name)
        with open(complete + ".tmp", "w") as handle:
            json.dump({"provider": self.provider, "size": self.size, "duration": self.duration, "run_id": run_id},
                      handle)
        os.replace(complete + ".tmp", complete)
        try:
            os.remove(os.path.join(self.mirror, PARTIAL % self.name))
        except OSError:
            pass


def load_data_config(path, ctx_data=None, document=None):
    """The data providers: ``path`` (data.json), or ``document`` (its content), overlaid by the context's
    ``data`` object."""
    if document is not None:
        if not isinstance(document, dict):
            raise MadengineError("data_providers must be an object keyed by data name, as in data.json.")
    elif path:
        document = load_json_file(path, "data_config")
        if not isinstance(document, dict):
            raise MadengineError("data_config %s must hold a JSON object keyed by data name." % path)
    else:
        document = {}
    document = copy.deepcopy(document)
    for name, providers in (ctx_data or {}).items():
        if isinstance(providers, dict) and isinstance(document.get(name), dict):
            merged = dict(document[name])
            merged.update(providers)
            document[name] = merged
        else:
            document[name] = providers
    return document


def _is_true(value):
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def data_names(model):
    value = model.get("data") or ""
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).split(",") if part.strip()]


def reachable(host, port, timeout=NAS_CONNECT_TIMEOUT):
    try:
        with socket.create_connection((str(host), int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


class _Choice(object):
    """Picks the provider of one data name on this node, collecting why the others cannot serve it."""

    def __init__(self, dataname, index, force_mirror_local, files, nas_nodes):
        self.dataname = dataname
        self.index = index
        self.force_mirror_local = force_mirror_local
        self.files = files
        self.nas_nodes = nas_nodes
        self.reasons = []

    def home(self, config):
        return "%s_%d" % ((config.get("home") or DEFAULT_HOME).rstrip("/") or DEFAULT_HOME, self.index)

    def local(self, config):
        path = config.get("path")
        if config.get("mirrorlocal"):
            self.reasons.append("the local provider cannot have mirrorlocal")
        elif not path:
            self.reasons.append("the local provider has no path")
        elif not os.path.exists(path):
            self.reasons.append("local path %s does not exist on this node" % path)
        else:
            return DataMount(self.dataname, "local", path, self.home(config), not _is_true(config.get("readwrite")))
        return None

    def mirrored(self, provider, config):
        """(mirror root or None, a DataMount when the mirror can be used as it is)."""
        mirror = self.force_mirror_local or config.get("mirrorlocal")
        if not mirror:
            return None, None
        if not os.path.isdir(mirror):
            self.reasons.append("provider %s: mirrorlocal %s does not exist on this node" % (provider, mirror))
            return None, None
        path = os.path.join(mirror, self.dataname)
        if os.path.isdir(path) and not os.path.exists(os.path.join(mirror, PARTIAL % self.dataname)):
            done = os.path.exists(os.path.join(mirror, COMPLETE % self.dataname))
            return mirror, DataMount(self.dataname, provider, path, self.home(config), False,
                                     note="mirror reused" if done else "pre-staged mirror")
        return mirror, None

    def download(self, provider, config, mirror):
        """A DataMount whose data the container downloads (into the mirror when there is one), or None."""
        if provider == "custom":
            script = str(config.get("path") or "")
            if not script:
                self.reasons.append("provider custom has no path (its script)")
                return None
            if self.files is None or self.files.read(os.path.normpath(script)) is None:
                self.reasons.append("provider custom: script %s is not in %s" % (
                    script, self.files.source if self.files is not None else "the catalogue (no mad_root)"))
                return None
            download = {"kind": "custom", "path": os.path.normpath(script), "args": str(config.get("args") or "")}
        elif provider == "nas":
            node = self.nas_node(config)
            if node is None:
                return None
            download = dict(node, kind="nas", path=str(config.get("path") or ""))
            if not download["path"]:
                self.reasons.append("provider nas has no path")
                return None
        else:
            self.reasons.append("provider %s needs a download from S3, which madengine_run does not do; pre-stage "
                                "the data in a mirror (mirrorlocal or force_mirror_local)" % provider)
            return None
        host_path = os.path.join(mirror, self.dataname) if mirror else None
        return DataMount(self.dataname, provider, host_path, self.home(config), False,
                         note="downloaded by the container", download=download, mirror=mirror)

    def nas_node(self, config):
        nodes = self.nas_nodes or []
        tried = []
        for node in nodes:
            if not isinstance(node, dict) or not node.get("HOST"):
                continue
            port = node.get("PORT") or 22
            tried.append("%s (%s:%s)" % (node.get("NAME") or node["HOST"], node["HOST"], port))
            if reachable(node["HOST"], port):
                return {"name": str(node.get("NAME") or node["HOST"]), "host": str(node["HOST"]), "port": int(port),
                        "user": str(node.get("USERNAME") or "root"), "password": str(node.get("PASSWORD") or "")}
        self.reasons.append("provider nas: %s" % ("no NAS node answers on its SSH port (tried %s)" % ", ".join(tried)
                                                  if tried else "no NAS_NODES are configured"))
        return None


def resolve(model, providers, source, force_mirror_local=None, files=None, nas_nodes=None):
    """DataMounts for the model's ``data`` names; MadengineError (naming model and data) otherwise.

    ``files`` (a tools.CatalogueFiles) holds the ``custom`` providers' scripts; ``nas_nodes`` is madengine's
    ``NAS_NODES`` list.
    """
    name = model.get("name")
    mounts = []
    for index, dataname in enumerate(data_names(model)):
        entry = providers.get(dataname)
        if entry is None and not source:
            raise MadengineError("Model '%s' needs data '%s', but no data_config was given." % (name, dataname))
        if entry is None:
            raise MadengineError("Model '%s' needs data '%s', which %s does not define." % (name, dataname, source))
        if not isinstance(entry, dict):
            raise MadengineError("Data '%s' in %s must be an object of providers." % (dataname, source))
        choice = _Choice(dataname, index, force_mirror_local, files, nas_nodes)
        unknown = [t for t in entry if t not in PROVIDER_ORDER]
        if unknown:
            choice.reasons.append("unknown provider type%s %s" % ("s" if len(unknown) > 1 else "", ", ".join(unknown)))
        chosen = None
        for provider in PROVIDER_ORDER:
            config = entry.get(provider)
            if config is None:
                continue
            if not isinstance(config, dict):
                choice.reasons.append("provider %s is not an object" % provider)
            elif provider == "local":
                chosen = choice.local(config)
            else:
                mirror, chosen = choice.mirrored(provider, config)
                if chosen is None and (mirror or not (force_mirror_local or config.get("mirrorlocal"))):
                    chosen = choice.download(provider, config, mirror)
            if chosen is not None:
                break
        if chosen is None:
            raise MadengineError("Model '%s': data '%s' is not available: %s."
                                 % (name, dataname, "; ".join(choice.reasons) or "it has no provider"))
        mounts.append(chosen)
    return mounts


def data_env(mounts):
    if not mounts:
        return {}
    return {"MAD_DATAHOME": ",".join(m.home for m in mounts), "MAD_DATANAME": ",".join(m.name for m in mounts)}
