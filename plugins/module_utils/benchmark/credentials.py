# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""madengine's credential.json: registry logins and the per-model ``cred`` entries.

The file is a JSON object keyed by name.  A registry's entry is keyed by the registry itself
(``dockerhub`` for Docker Hub) and holds ``username``, ``password`` and optionally ``repository``;
a model whose ``cred`` is ``X`` gets one build argument ``X_<KEY>`` per key of entry ``X``
(``AMD_GITHUB_USERNAME``, ``AMD_GITHUB_PASSWORD`` ...).  ``MAD_DOCKERHUB_USER``,
``MAD_DOCKERHUB_PASSWORD`` and ``MAD_DOCKERHUB_REPO`` in the environment override the ``dockerhub``
entry, as in madengine.

Every value that may be secret is collected by :meth:`Credentials.secret_values` so callers can
scrub logs and messages; :meth:`Credentials.no_log_values` is the part of it that is safe to register
with Ansible's ``no_log_values`` (passwords, tokens and keys, not user names that may be common words
Ansible would then mask everywhere in the results).
"""

from __future__ import annotations

import json
import os

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError, leaf_values, load_json_file

DOCKERHUB_NAMES = ("", "docker.io", "dockerhub", "index.docker.io", "registry-1.docker.io")
DOCKERHUB_ENV = (("MAD_DOCKERHUB_USER", "username"), ("MAD_DOCKERHUB_PASSWORD", "password"),
                 ("MAD_DOCKERHUB_REPO", "repository"))
MAD_SECRETS_MARKER = "MAD_SECRETS"
_SECRET_FIELD_MARKERS = ("PASSWORD", "TOKEN", "SECRET", "KEY")
# Fields that name an account or a place, not a secret: masked wherever they appear, they would garble results.
PUBLIC_FIELDS = ("username", "user", "repository", "repo", "name", "host", "port", "ssh_key_file")


def document_secrets(document):
    """The values of a credential.json document that results must never show: all but PUBLIC_FIELDS."""
    values = []

    def walk(value, field):
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, str(key).lower())
        elif isinstance(value, list):
            for item in value:
                walk(item, field)
        elif field not in PUBLIC_FIELDS:
            values.extend(leaf_values(value))

    walk(document or {}, None)
    return values


def registry_key(registry):
    """The credential.json key of a registry: ``dockerhub`` for Docker Hub, else the registry itself."""
    return "dockerhub" if (registry or "") in DOCKERHUB_NAMES else registry


class RegistryAuth(object):
    """Login data for one registry; ``origin`` says where it came from (never the password)."""

    __slots__ = ("username", "password", "origin")

    def __init__(self, username, password, origin):
        self.username = username
        self.password = password
        self.origin = origin

    def as_auth_config(self):
        return {"username": self.username, "password": self.password}


class Credentials(object):
    """The entries of a credential.json; ``source`` is the file, ``origin`` names other sources in messages."""

    def __init__(self, entries=None, source=None, environ=None, origin=None):
        self.entries = dict(entries or {})
        self.source = source
        self.origin = origin or ("credential_file %s" % source if source else None)
        environ = os.environ if environ is None else environ
        overrides = dict((field, environ[var]) for var, field in DOCKERHUB_ENV if environ.get(var))
        if overrides:
            merged = dict(self.entries.get("dockerhub") or {})
            merged.update(overrides)
            self.entries["dockerhub"] = merged
        self.env_secrets = dict((k, v) for k, v in environ.items() if MAD_SECRETS_MARKER in k and v)
        self.environ_nas = environ.get("NAS_NODES")

    @classmethod
    def load(cls, path=None, environ=None, document=None):
        """From the content of a credential.json (``document``, never written anywhere), the file ``path``, or
        neither (then only the environment's MAD_DOCKERHUB_* and MAD_SECRETS* values)."""
        if document is not None:
            if not isinstance(document, dict):
                raise MadengineError("The credentials option must be an object keyed by credential name, as in "
                                     "credential.json.")
            return cls(document, environ=environ, origin="the credentials option")
        if not path:
            return cls(environ=environ)
        document = load_json_file(path, "credential_file")
        if not isinstance(document, dict):
            raise MadengineError("credential_file %s must hold a JSON object keyed by credential name." % path)
        return cls(document, path, environ=environ)

    def _where(self):
        return self.origin or "the credentials"

    def _entry(self, key, purpose):
        entry = self.entries.get(key)
        if entry is None:
            return None
        if not isinstance(entry, dict):
            raise MadengineError("Entry '%s' of %s (%s) must be a JSON object." % (key, self._where(), purpose))
        return entry

    def registry_entry(self, registry):
        key = registry_key(registry)
        entry = self._entry(key, "registry login")
        if entry is None and key != "dockerhub" and "/" in key:
            key = key.split("/", 1)[0]
            entry = self._entry(key, "registry login")
        return key, entry

    def registry_auth(self, registry, username=None, password=None):
        """RegistryAuth for ``registry`` (explicit options win), or None when none is configured."""
        if username or password:
            if not (username and password):
                raise MadengineError("registry_username and registry_password must be given together.")
            return RegistryAuth(username, password, "the registry_username/registry_password options")
        key, entry = self.registry_entry(registry)
        if not entry or not (entry.get("username") or entry.get("password")):
            return None
        if not entry.get("username") or not entry.get("password"):
            raise MadengineError("Entry '%s' of %s needs both 'username' and 'password' to log in to registry %s."
                                 % (key, self._where(), registry))
        for field in ("username", "password"):
            if not isinstance(entry[field], str):
                raise MadengineError("Entry '%s' of %s: '%s' must be a string." % (key, self._where(), field))
        return RegistryAuth(entry["username"], entry["password"], "%s, entry '%s'" % (self._where(), key))

    def registry_repository(self, registry):
        _key, entry = self.registry_entry(registry)
        repository = (entry or {}).get("repository")
        if repository is not None and not isinstance(repository, str):
            raise MadengineError("The 'repository' of registry %s in %s must be a string." % (registry, self._where()))
        return repository or None

    def model_build_args(self, model):
        """``{CRED_KEY: value}`` build arguments for the model's ``cred``; {} when it has none."""
        cred = model.get("cred") or ""
        if not cred:
            return {}
        if not self.origin and cred not in self.entries:
            raise MadengineError("Model '%s' needs credential '%s', but no credential_file was given."
                                 % (model.get("name"), cred))
        entry = self.entries.get(cred)
        if entry is None:
            raise MadengineError("Model '%s' needs credential '%s', which %s does not define."
                                 % (model.get("name"), cred, self._where()))
        if not isinstance(entry, dict):
            raise MadengineError("Credential '%s' of model '%s' in %s must be a JSON object."
                                 % (cred, model.get("name"), self._where()))
        args = {}
        for key, value in entry.items():
            if isinstance(value, (dict, list)) or value is None:
                raise MadengineError("Credential '%s' of model '%s' in %s: '%s' must be a string."
                                     % (cred, model.get("name"), self._where(), key))
            args["%s_%s" % (cred, str(key).upper())] = str(value)
        return args

    def nas_nodes(self):
        """madengine's NAS_NODES: the environment variable (a JSON list) over the credential entry; [] if none."""
        nodes = self.entries.get("NAS_NODES")
        if self.environ_nas:
            try:
                nodes = json.loads(self.environ_nas)
            except ValueError as exc:
                raise MadengineError("The environment variable NAS_NODES is not a JSON list: %s." % exc)
        if nodes in (None, ""):
            return []
        if not isinstance(nodes, list) or not all(isinstance(n, dict) for n in nodes):
            raise MadengineError("NAS_NODES of %s must be a list of {NAME, HOST, PORT, USERNAME, PASSWORD} objects."
                                 % self._where())
        return nodes

    def secret_values(self, models=(), extra=()):
        """Values to keep out of every log and result: passwords, the selected models' cred entries,
        MAD_SECRETS* environment values and ``extra``."""
        values = set(v for v in extra if v)
        for entry in self.entries.values():
            if isinstance(entry, dict) and isinstance(entry.get("password"), str):
                values.add(entry["password"])
            if isinstance(entry, list):
                for item in entry:
                    if isinstance(item, dict) and isinstance(item.get("PASSWORD"), str):
                        values.add(item["PASSWORD"])
        for name, entry in self.entries.items():
            if isinstance(entry, dict) and name.upper() in ("MAD_AWS_S3", "MAD_MINIO"):
                values.update(str(v) for k, v in entry.items() if k.upper() in ("PASSWORD", "USERNAME") and v)
        for model in models:
            entry = self.entries.get(model.get("cred") or "")
            if isinstance(entry, dict):
                values.update(str(v) for v in entry.values() if isinstance(v, (str, int, float)) and str(v))
        values.update(self.env_secrets.values())
        return sorted(v for v in values if v)

    def no_log_values(self, models=(), extra=()):
        """The password-like subset of :meth:`secret_values` (field names with PASSWORD, TOKEN, SECRET, KEY)."""
        values = set(v for v in extra if v)
        names = set(model.get("cred") or "" for model in models)
        for name, entry in self.entries.items():
            if isinstance(entry, dict):
                items = [entry]
            elif isinstance(entry, list):
                items = [item for item in entry if isinstance(item, dict)]
            else:
                items = []
            for item in items:
                for key, value in item.items():
                    field = str(key).upper()
                    if not isinstance(value, (str, int, float)) or not str(value):
                        continue
                    if field == "PASSWORD" or (name in names and any(m in field for m in _SECRET_FIELD_MARKERS)):
                        values.add(str(value))
        values.update(self.env_secrets.values())
        return sorted(values)
