#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: docker_engine
short_description: Keep a node's Docker engine running with the daemon.json it needs
version_added: 0.2.0
description:
  - Merges the wanted keys into the engine's C(daemon.json) (plain-HTTP registries to trust, container runtimes,
    the default runtime, any other key) and keeps every other key of the file as it is.
  - Makes the engine answer at O(docker_host) - with C(systemctl start) under systemd, or on a host without systemd
    by starting C(dockerd) in the background with that socket, pid file and C(daemon.json). An engine that already
    answers is reused.
  - Applies a changed C(daemon.json) to a running engine with a reload (C(systemctl reload), or C(SIGHUP) to the
    background C(dockerd)), which running containers survive. Keys Docker cannot reload need a restart, which stops
    running containers - refused unless O(allow_restart) is true, before anything changes.
  - Then asks the engine whether it lists the registries as insecure, uses the mirrors and knows the runtimes, and
    fails naming what it has not taken.
  - Used by the C(rocm.madengine.docker_setup) role; it needs no Docker SDK (it talks plain HTTP to the engine).
author:
  - ROCm madengine maintainers (@rocm)
options:
  docker_host:
    description:
      - The engine's address, C(unix:///path/to/docker.sock) or C(tcp://host:port) (plain HTTP).
      - Only an engine on a unix socket is started in the background; a C(tcp://) engine must already answer.
    type: str
    default: unix:///var/run/docker.sock
  daemon_json:
    description: The engine's configuration file. A missing or empty file is an empty object.
    type: path
    default: /etc/docker/daemon.json
  insecure_registries:
    description:
      - Plain-HTTP registries (C(host[:port])) the engine must trust, added to C(insecure-registries).
      - Loopback names (C(localhost), C(127.0.0.0/8), C([::1])) are skipped; Docker trusts them already.
    type: list
    elements: str
    default: []
  registry_mirrors:
    description:
      - Pull-through registry mirrors (C(http://host:port) or C(https://host[:port])) added to C(registry-mirrors),
        in order; the engine asks them first for Docker Hub images. A reload applies them.
      - A plain-HTTP mirror's C(host:port) must be trusted too (O(insecure_registries)) unless it is on loopback.
    type: list
    elements: str
    default: []
  runtimes:
    description:
      - "Container runtimes to register, C({name: path}) or C({name: {path: ..., runtimeArgs: [...]}})."
      - A runtime C(daemon.json) already names is left as it is.
    type: dict
    default: {}
  default_runtime:
    description: The C(default-runtime) key; empty leaves it alone.
    type: str
    default: ""
  daemon_options:
    description: More C(daemon.json) keys, set over the file's and over the keys above.
    type: dict
    default: {}
  allow_restart:
    description: Allow a restart of a running engine (running containers stop) for keys a reload does not apply.
    type: bool
    default: false
  service_mode:
    description:
      - V(systemd) (the engine is the unit O(service_name)), V(background) (a C(dockerd) of its own pid file), or
        V(auto) - systemd when C(/run/systemd/system) exists.
    type: str
    choices: [auto, systemd, background]
    default: auto
  service_name:
    description: The engine's systemd unit.
    type: str
    default: docker
  dockerd:
    description: The daemon binary the background mode starts.
    type: str
    default: dockerd
  dockerd_args:
    description: More arguments of the background C(dockerd) (for example C(--data-root) of a second engine).
    type: list
    elements: str
    default: []
  dockerd_log:
    description: The log the background C(dockerd) appends to.
    type: path
    default: /var/log/dockerd.log
  pidfile:
    description: The background C(dockerd)'s pid file, through which it is reloaded or restarted.
    type: path
    default: /var/run/docker.pid
  wait_timeout:
    description: Seconds to wait for the engine to answer after a start or a restart.
    type: int
    default: 60
extends_documentation_fragment:
  - rocm.madengine.attributes
attributes:
  check_mode:
    support: full
    details:
      - Returns the RV(actions) it would take; nothing is written, started or signalled.
  diff_mode:
    support: full
    details:
      - Shows C(daemon.json) before and after.
  idempotent:
    support: full
notes:
  - A changed C(daemon.json) is written through a temporary file and a rename, with a backup of the old one next to it.
seealso:
  - name: Docker daemon configuration file
    description: The keys of daemon.json and which of them a reload applies.
    link: https://docs.docker.com/reference/cli/dockerd/#daemon-configuration-file
"""

EXAMPLES = r"""
---
- name: Trust the build host's registry and keep the engine running
  rocm.madengine.docker_engine:
    insecure_registries: [build01.example.com:5000]

- name: A second engine of its own on a node without systemd, with the nvidia runtime
  rocm.madengine.docker_engine:
    docker_host: unix:///run/docker-bench/docker.sock
    daemon_json: /etc/docker-bench/daemon.json
    pidfile: /run/docker-bench/docker.pid
    dockerd_log: /var/log/docker-bench.log
    dockerd_args: [--data-root, /var/lib/docker-bench, --exec-root, /run/docker-bench/exec]
    service_mode: background
    runtimes:
      nvidia: nvidia-container-runtime

- name: Change the storage driver, restarting the engine
  rocm.madengine.docker_engine:
    daemon_options:
      storage-driver: overlay2
    allow_restart: true
"""

RETURN = r"""
actions:
  description:
    - What was done (or, in check mode, would be), in order - C(write), C(start), C(reload), C(restart), C(enable).
  returned: always
  type: list
  elements: str
  sample: [write, reload]
changed_keys:
  description: The C(daemon.json) keys whose value changes.
  returned: always
  type: list
  elements: str
  sample: [insecure-registries]
restart_keys:
  description: The changed keys a reload does not apply.
  returned: always
  type: list
  elements: str
  sample: []
daemon_json:
  description: C(daemon.json) as wanted.
  returned: always
  type: dict
  sample: {insecure-registries: [build01.example.com:5000]}
service_mode:
  description: How the engine is run, V(systemd) or V(background).
  returned: always
  type: str
  sample: background
answering:
  description: Whether the engine answers (before the run in check mode, after it otherwise).
  returned: always
  type: bool
  sample: true
server_version:
  description: The engine's version.
  returned: success, not in check mode
  type: str
  sample: 26.1.5
was:
  description: Why the engine did not answer before it was started.
  returned: when the engine was started
  type: str
  sample: "[Errno 2] No such file or directory"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rocm.madengine.plugins.module_utils.host.docker_engine_task import run


def main():
    module = AnsibleModule(
        argument_spec=dict(
            docker_host=dict(type="str", default="unix:///var/run/docker.sock"),
            daemon_json=dict(type="path", default="/etc/docker/daemon.json"),
            insecure_registries=dict(type="list", elements="str", default=[]),
            registry_mirrors=dict(type="list", elements="str", default=[]),
            runtimes=dict(type="dict", default={}),
            default_runtime=dict(type="str", default=""),
            daemon_options=dict(type="dict", default={}),
            allow_restart=dict(type="bool", default=False),
            service_mode=dict(type="str", choices=["auto", "systemd", "background"], default="auto"),
            service_name=dict(type="str", default="docker"),
            dockerd=dict(type="str", default="dockerd"),
            dockerd_args=dict(type="list", elements="str", default=[]),
            dockerd_log=dict(type="path", default="/var/log/dockerd.log"),
            pidfile=dict(type="path", default="/var/run/docker.pid"),
            wait_timeout=dict(type="int", default=60),
        ),
        supports_check_mode=True,
    )
    run(module)


if __name__ == "__main__":
    main()
