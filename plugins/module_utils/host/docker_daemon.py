# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""A node's Docker engine as docker_setup sees it: its address, its daemon.json, and its API.

Pure functions decide what daemon.json must become and how a running engine takes it (a reload, which
running containers survive, or a restart). :class:`EngineAPI` asks the engine over plain HTTP (unix
socket or tcp): docker_setup runs before the Docker SDK is on the node, so the SDK wrapper
(benchmark/docker_client.py) cannot be used here, and nothing more than ``_ping`` and ``info`` is needed.
"""

from __future__ import annotations

import http.client as http_client
import json
import re
import socket
from urllib.parse import urlsplit

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError

# daemon.json keys a running dockerd re-reads on SIGHUP (systemctl reload); the others need a restart.
RELOADABLE_KEYS = frozenset((
    "allow-nondistributable-artifacts", "authorization-plugins", "builder", "debug", "default-runtime", "features",
    "insecure-registries", "labels", "live-restore", "max-concurrent-downloads", "max-concurrent-uploads",
    "max-download-attempts", "registry-mirrors", "runtimes", "shutdown-timeout",
))
_REGISTRY_NAME = re.compile(r"^[A-Za-z0-9.\[\]:-]+$")
_MIRROR_URL = re.compile(r"^https?://[A-Za-z0-9.\[\]:-]+/?$")
# Docker trusts these already (plain HTTP to a loopback registry is allowed).
_LOOPBACK = re.compile(r"^(localhost|127(\.[0-9]{1,3}){3}|\[::1\])(:[0-9]+)?$")


class Endpoint(object):
    """A Docker host URL: ``unix:///path/to.sock`` or ``tcp://host:port``."""

    def __init__(self, url):
        self.url = url
        parts = urlsplit(url or "")
        self.scheme = parts.scheme
        if parts.scheme == "unix" and parts.path:
            self.socket = parts.path
            self.address = None
        elif parts.scheme == "tcp" and parts.hostname:
            self.socket = None
            self.address = (parts.hostname, parts.port or 2375)
        else:
            raise MadengineError("docker_host must be a unix:// or tcp:// URL, not %r." % (url,))

    def __str__(self):
        return self.url


def trusted_registries(registries):
    """The plain-HTTP registries daemon.json must list: loopback ones dropped, bad names refused."""
    bad = [name for name in registries if not _REGISTRY_NAME.match(name or "")]
    if bad:
        raise MadengineError("insecure_registries must be host[:port] names, not %s." % ", ".join(repr(b) for b in bad))
    return [name for name in registries if not _LOOPBACK.match(name)]


def registry_mirrors(mirrors):
    """The pull-through mirrors daemon.json must list: ``http(s)://host[:port][/]`` URLs, as Docker accepts them."""
    bad = [url for url in mirrors if not _MIRROR_URL.match(url or "")]
    if bad:
        raise MadengineError("registry_mirrors must be http:// or https:// URLs of a registry (host[:port], no path), "
                             "not %s." % ", ".join(repr(b) for b in bad))
    return [url.rstrip("/") for url in mirrors]


def listed_mirrors(info):
    """The mirrors an engine's ``info`` lists, as :func:`registry_mirrors` writes them (Docker adds a ``/``)."""
    return [str(url).rstrip("/") for url in (((info or {}).get("RegistryConfig") or {}).get("Mirrors") or [])]


def parse_config(text, path):
    """daemon.json's content (None: no file) as a dict; empty means {}."""
    if text is None or not text.strip():
        return {}
    try:
        config = json.loads(text)
    except ValueError:
        raise MadengineError("%s is not valid JSON; fix or remove it before running docker_setup." % path)
    if not isinstance(config, dict):
        raise MadengineError("%s must hold a JSON object, not %s." % (path, type(config).__name__))
    return config


def wanted_config(current, registries=(), runtimes=None, default_runtime=None, settings=None, mirrors=()):
    """daemon.json as it must be: the current keys, the registries and mirrors added (kept in order), runtimes that
    are not registered yet, the default runtime, then ``settings`` over everything."""
    wanted = dict(current)
    for key, names in (("insecure-registries", registries), ("registry-mirrors", mirrors)):
        listed = list(current.get(key) or [])
        missing = [name for name in names if name not in listed and name + "/" not in listed]
        if missing:
            wanted[key] = listed + missing
    known = current.get("runtimes") or {}
    added = dict((name, spec) for name, spec in (runtimes or {}).items() if name not in known)
    if added:
        wanted["runtimes"] = dict(known, **added)
    if default_runtime:
        wanted["default-runtime"] = default_runtime
    wanted.update(settings or {})
    return wanted


def changed_keys(current, wanted):
    return sorted(key for key in wanted if current.get(key, None) != wanted[key] or key not in current)


def restart_keys(keys):
    """The changed keys a reload does not apply."""
    return sorted(key for key in keys if key not in RELOADABLE_KEYS)


def render(config):
    return json.dumps(config, indent=2, sort_keys=False) + "\n"


def untrusted(info, registries):
    """The registries an engine's ``info`` does not list as insecure (plain HTTP)."""
    configs = ((info or {}).get("RegistryConfig") or {}).get("IndexConfigs") or {}
    return [name for name in registries if name not in configs or configs[name].get("Secure", True)]


class _UnixConnection(http_client.HTTPConnection):

    def __init__(self, path, timeout):
        http_client.HTTPConnection.__init__(self, "localhost", timeout=timeout)
        self._path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class EngineAPI(object):
    """``_ping`` and ``info`` of a Docker engine over plain HTTP; nothing else."""

    def __init__(self, endpoint, timeout=5):
        self.endpoint = endpoint
        self.timeout = timeout

    def _get(self, path):
        if self.endpoint.socket:
            conn = _UnixConnection(self.endpoint.socket, self.timeout)
        else:
            conn = http_client.HTTPConnection(self.endpoint.address[0], self.endpoint.address[1], timeout=self.timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def ping(self):
        """True when the engine answers ``_ping`` with 200; the reason it does not otherwise."""
        try:
            status, _body = self._get("/_ping")
        except (OSError, http_client.HTTPException) as exc:
            return False, str(exc) or type(exc).__name__
        return status == 200, "HTTP %d" % status

    def info(self):
        try:
            status, body = self._get("/info")
        except (OSError, http_client.HTTPException) as exc:
            raise MadengineError("The Docker engine at %s does not answer (%s)." % (self.endpoint, exc))
        if status != 200:
            raise MadengineError("The Docker engine at %s answers info with HTTP %d." % (self.endpoint, status))
        try:
            return json.loads(body.decode("utf-8"))
        except ValueError:
            raise MadengineError("The Docker engine at %s answers info with something that is not JSON."
                                 % self.endpoint)
