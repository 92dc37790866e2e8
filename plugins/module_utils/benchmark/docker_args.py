# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""The connection options every module that talks to Docker shares, without the Docker SDK: a module declares
them before it knows whether it will need an engine (madengine_run started in the background imports the SDK
only after it has answered)."""

from __future__ import annotations

from ansible.module_utils.basic import env_fallback

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"

# Documented by the rocm.madengine.docker doc fragment.  Prefixed with docker_ so they never clash with a module's
# own options (madengine_run has its own `timeout`).
DOCKER_COMMON_ARGS = dict(
    docker_host=dict(type="str", default=DEFAULT_DOCKER_HOST, fallback=(env_fallback, ["DOCKER_HOST"])),
    docker_timeout=dict(type="int", default=60, fallback=(env_fallback, ["DOCKER_TIMEOUT"])),
    docker_api_version=dict(type="str", default="auto", fallback=(env_fallback, ["DOCKER_API_VERSION"])),
    docker_tls=dict(type="bool", default=False, fallback=(env_fallback, ["DOCKER_TLS"])),
    docker_tls_verify=dict(type="bool", default=False, fallback=(env_fallback, ["DOCKER_TLS_VERIFY"])),
    docker_ca_path=dict(type="path"),
    docker_client_cert=dict(type="path"),
    docker_client_key=dict(type="path"),
)
