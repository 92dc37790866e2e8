# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment(object):

    # Connection to the Docker engine; matches DOCKER_COMMON_ARGS in module_utils/benchmark/docker_args.py.
    DOCUMENTATION = r"""
options:
  docker_host:
    description:
      - The Docker engine to talk to, as a URL (C(unix:///var/run/docker.sock), C(tcp://host:2376)).
      - When not given, the E(DOCKER_HOST) environment variable is used, then the local socket.
    type: str
    default: unix:///var/run/docker.sock
  docker_timeout:
    description:
      - Seconds to wait for an answer of the Docker engine to one request (E(DOCKER_TIMEOUT)).
      - Long operations such as builds have their own limits.
    type: int
    default: 60
  docker_api_version:
    description:
      - Engine API version to use; C(auto) asks the engine (E(DOCKER_API_VERSION)).
    type: str
    default: auto
  docker_tls:
    description:
      - Talk to the engine over TLS without verifying its certificate (E(DOCKER_TLS)).
    type: bool
    default: false
  docker_tls_verify:
    description:
      - Talk to the engine over TLS and verify its certificate (E(DOCKER_TLS_VERIFY)).
    type: bool
    default: false
  docker_ca_path:
    description:
      - CA certificate that signed the engine's certificate, for O(docker_tls_verify).
    type: path
  docker_client_cert:
    description:
      - Client certificate for TLS client authentication.
    type: path
  docker_client_key:
    description:
      - Key of O(docker_client_cert).
    type: path
requirements:
  - Docker SDK for Python (C(docker>=7.1.0)) on the host that runs the module. An older one (down to 5.0) works with
    the HTTP libraries it was made for, requests before 2.29 and urllib3 1.x, as Debian 12 and Ubuntu 22.04 package
    them (C(python3-docker)); the module names any other combination.
notes:
  - The module talks to the engine through the Engine API, never through the C(docker) CLI.
"""
