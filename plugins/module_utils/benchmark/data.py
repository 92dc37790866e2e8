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
* any other type: served only from a pre-staged mirror ``<mirrorlocal>/<name>`` on the node
  (``mirrorlocal`` of the provider, or ``force_mirror_local`` for every non-local provider), mounted
  read-write.  Downloading (custom scripts, MinIO, NAS, S3) is not done by madengine_run: a model whose
  data has no such mirror fails with the reason.

Mount points are ``home`` (default ``/data_dlm``) suffixed ``_<i>``, ``i`` counting the model's data
names from 0; the container gets ``MAD_DATAHOME`` and ``MAD_DATANAME`` (comma-joined).
"""

from __future__ import annotations

import copy
import os

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError, load_json_file

PROVIDER_ORDER = ("custom", "local", "minio", "nas", "aws")
DEFAULT_HOME = "/data_dlm"


class DataMount(object):
    __slots__ = ("name", "provider", "host_path", "home", "read_only", "note")

    def __init__(self, name, provider, host_path, home, read_only, note=""):
        self.name = name
        self.provider = provider
        self.host_path = host_path
        self.home = home
        self.read_only = read_only
        self.note = note

    def bind(self):
        return "%s:%s:%s" % (self.host_path, self.home, "ro" if self.read_only else "rw")

    def as_dict(self):
        return dict((name, getattr(self, name)) for name in self.__slots__)


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


def resolve(model, providers, source, force_mirror_local=None):
    """DataMounts for the model's ``data`` names; MadengineError (naming model and data) otherwise."""
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
        reasons = []
        unknown = [t for t in entry if t not in PROVIDER_ORDER]
        if unknown:
            reasons.append("unknown provider type%s %s" % ("s" if len(unknown) > 1 else "", ", ".join(unknown)))
        chosen = None
        for provider in PROVIDER_ORDER:
            config = entry.get(provider)
            if config is None:
                continue
            if not isinstance(config, dict):
                reasons.append("provider %s is not an object" % provider)
                continue
            home = "%s_%d" % ((config.get("home") or DEFAULT_HOME).rstrip("/") or DEFAULT_HOME, index)
            if provider == "local":
                path = config.get("path")
                if config.get("mirrorlocal"):
                    reasons.append("the local provider cannot have mirrorlocal")
                elif not path:
                    reasons.append("the local provider has no path")
                elif not os.path.exists(path):
                    reasons.append("local path %s does not exist on this node" % path)
                else:
                    chosen = DataMount(dataname, provider, path, home, not _is_true(config.get("readwrite")))
                    break
                continue
            mirror = force_mirror_local or config.get("mirrorlocal")
            if mirror and os.path.isdir(os.path.join(mirror, dataname)):
                chosen = DataMount(dataname, provider, os.path.join(mirror, dataname), home, False,
                                   note="pre-staged mirror")
                break
            if mirror:
                reasons.append("provider %s: mirror %s does not exist on this node (madengine_run does not download "
                               "data)" % (provider, os.path.join(mirror, dataname)))
            else:
                reasons.append("provider %s needs a download, which madengine_run does not do; pre-stage the data "
                               "and set mirrorlocal or force_mirror_local" % provider)
        if chosen is None:
            raise MadengineError("Model '%s': data '%s' is not available: %s."
                                 % (name, dataname, "; ".join(reasons) or "it has no provider"))
        mounts.append(chosen)
    return mounts


def data_env(mounts):
    if not mounts:
        return {}
    return {"MAD_DATAHOME": ",".join(m.home for m in mounts), "MAD_DATANAME": ",".join(m.name for m in mounts)}
