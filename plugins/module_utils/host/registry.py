# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""A Docker registry on a node: the address it listens at, the URL it is asked at, its configuration file.

The registry's API is asked over plain HTTP on this host (never through a proxy); a wildcard listen address
(``:5000``, ``0.0.0.0:5000``, ``[::]:5000``) is asked on loopback.
"""

from __future__ import annotations

import http.client as http_client
import json
import re

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError

_LISTEN = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[^:\[\]/\s]*):(?P<port>[0-9]{1,5})$")
_WILDCARDS = ("", "0.0.0.0", "[::]")

CONFIG_HEADER = "# Written by rocm.madengine.docker_registry; a change here is overwritten on its next run.\n"


def parse_listen(listen, name="listen"):
    """(host, port) of a ``host:port`` listen address; the option ``name`` is named when it is not one."""
    match = _LISTEN.match(listen if isinstance(listen, str) else "")
    port = int(match.group("port")) if match else 0
    if not 0 < port < 65536:
        raise MadengineError("%s must be host:port with a port from 1 to 65535 (for example 127.0.0.1:5000), not %r."
                             % (name, listen))
    return match.group("host"), port


def api_url(listen, name="listen"):
    """The URL of the registry's API on this host (``http://host:port/v2/``)."""
    host, port = parse_listen(listen, name)
    return "http://%s:%d/v2/" % ("127.0.0.1" if host in _WILDCARDS else host, port)


def answers(listen, timeout=5):
    """(True, "HTTP 200") when the registry at ``listen`` answers its API, else (False, why not)."""
    host, port = parse_listen(listen)
    host = "127.0.0.1" if host in _WILDCARDS else host.strip("[]")
    conn = http_client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/v2/")
        status = conn.getresponse().status
    except (OSError, http_client.HTTPException) as exc:
        return False, str(exc) or type(exc).__name__
    finally:
        conn.close()
    return status == 200, "HTTP %d" % status


def render_config(listen, storage):
    """The distribution registry's config.yml: the filesystem storage (deletes allowed) and the listen address (both
    quoted: a JSON string is a YAML one)."""
    parse_listen(listen)
    return (CONFIG_HEADER
            + "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\n"
              "  delete:\n    enabled: true\nhttp:\n  addr: %s\n" % (json.dumps(storage), json.dumps(listen)))
