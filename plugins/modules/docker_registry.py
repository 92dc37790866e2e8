#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: docker_registry
short_description: Run a Docker registry on a node and wait until it answers
version_added: 0.3.0
description:
  - Makes a Docker registry (the CNCF distribution registry) answer at O(listen), in one of three ways.
  - O(method=package) under systemd - makes the storage directory (owned by O(storage_owner), mode C(0750)), writes
    the registry's O(config), enables and starts the unit O(service_name), and restarts a running unit whose
    configuration changed.
  - O(method=package) without systemd - a registry that already answers at O(listen) is reused as it is. Otherwise
    makes the storage directory and the configuration's directory (mode C(0755)), writes O(config) and starts
    O(binary) in a session of its own that outlives the task, appending its output to O(log) and writing its pid
    to O(pidfile).
  - O(method=container) - makes the storage directory (mode C(0755)) and, through the C(docker) command and the
    engine at O(docker_host), creates the container O(container) from O(image) (restart policy C(always), host
    network, C(REGISTRY_HTTP_ADDR) set to O(listen), the storage as C(/var/lib/registry)), or starts it when it
    is stopped. A container of that name is otherwise left as it is.
  - Then waits up to O(wait_timeout) seconds for the registry's API (C(/v2/)) to answer over plain HTTP on this
    host (a wildcard O(listen) address on loopback).
  - The registry's binary or package is not installed here; the C(rocm.madengine.docker_setup) role installs the
    package first.
author:
  - ROCm madengine maintainers (@rocm)
extends_documentation_fragment:
  - rocm.madengine.attributes
attributes:
  check_mode:
    support: full
    details:
      - Returns the RV(actions) it would take; nothing is written, started or created.
  diff_mode:
    support: full
    details:
      - Shows O(config) before and after.
  idempotent:
    support: full
options:
  method:
    description: V(package) (the distribution's registry, as a service or in the background) or V(container).
    type: str
    choices: [package, container]
    default: package
  listen:
    description: The registry's C(host:port); C(:5000), C(0.0.0.0:5000) or C([::]:5000) listens on every address.
    type: str
    default: 127.0.0.1:5000
  storage:
    description: Where the registry keeps the images.
    type: path
    default: /var/lib/docker-registry
  storage_owner:
    description: The user that owns O(storage) under systemd (the service runs as it; the package makes it).
    type: str
    default: docker-registry
  config:
    description: The registry's configuration file, with O(method=package).
    type: path
    default: /etc/docker/registry/config.yml
  service_mode:
    description:
      - With O(method=package), V(systemd) (the unit O(service_name)), V(background) (O(binary) started here), or
        V(auto) - systemd when C(/run/systemd/system) exists.
    type: str
    choices: [auto, systemd, background]
    default: auto
  service_name:
    description: The registry's systemd unit.
    type: str
    default: docker-registry
  binary:
    description: The registry's program, for the background mode.
    type: str
    default: docker-registry
  log:
    description: The log the background registry appends to.
    type: path
    default: /var/log/docker-registry.log
  pidfile:
    description: Where the pid of the registry started in the background is written.
    type: path
    default: /var/run/docker-registry.pid
  image:
    description: The registry image, with O(method=container) (it must be pullable by the engine).
    type: str
    default: registry:2
  container:
    description: The registry container's name, with O(method=container).
    type: str
    default: madengine-registry
  docker_host:
    description: The engine that runs the container, C(unix:///path/to/docker.sock) or C(tcp://host:port).
    type: str
    default: unix:///var/run/docker.sock
  wait_timeout:
    description: Seconds to wait for the registry to answer.
    type: int
    default: 60
seealso:
  - module: rocm.madengine.docker_engine
  - name: The distribution registry's configuration
    description: The keys of config.yml.
    link: https://distribution.github.io/distribution/about/configuration/
"""

EXAMPLES = r"""
- name: Run the distribution's registry for the fleet, on every address of the build host
  rocm.madengine.docker_registry:
    listen: 0.0.0.0:5000
    storage: /srv/registry

- name: Run the registry as a container of the node's engine
  rocm.madengine.docker_registry:
    method: container
    image: registry:2
    listen: 127.0.0.1:5000
"""

RETURN = r"""
actions:
  description:
    - What was done (or, in check mode, would be), in order - C(directories), C(config), C(enable), C(start),
      C(restart), C(create).
  returned: always
  type: list
  elements: str
  sample: [directories, config, start]
url:
  description: The URL the registry's API was asked at.
  returned: always
  type: str
  sample: http://127.0.0.1:5000/v2/
answering:
  description: Whether the registry answers (before the run in check mode, after it otherwise).
  returned: always
  type: bool
  sample: true
method:
  description: The O(method).
  returned: always
  type: str
  sample: package
service_mode:
  description: How the package's registry is run, V(systemd) or V(background).
  returned: with O(method=package)
  type: str
  sample: background
container_state:
  description: The container as found, V(absent), V(stopped) or V(running); empty with O(method=package).
  returned: always
  type: str
  sample: absent
pid:
  description: The pid of the registry started in the background.
  returned: when it was started here
  type: int
  sample: 4242
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rocm.madengine.plugins.module_utils.host.docker_registry_task import run


def main():
    module = AnsibleModule(
        argument_spec=dict(
            method=dict(type="str", choices=["package", "container"], default="package"),
            listen=dict(type="str", default="127.0.0.1:5000"),
            storage=dict(type="path", default="/var/lib/docker-registry"),
            storage_owner=dict(type="str", default="docker-registry"),
            config=dict(type="path", default="/etc/docker/registry/config.yml"),
            service_mode=dict(type="str", choices=["auto", "systemd", "background"], default="auto"),
            service_name=dict(type="str", default="docker-registry"),
            binary=dict(type="str", default="docker-registry"),
            log=dict(type="path", default="/var/log/docker-registry.log"),
            pidfile=dict(type="path", default="/var/run/docker-registry.pid"),
            image=dict(type="str", default="registry:2"),
            container=dict(type="str", default="madengine-registry"),
            docker_host=dict(type="str", default="unix:///var/run/docker.sock"),
            wait_timeout=dict(type="int", default=60),
        ),
        supports_check_mode=True,
    )
    run(module)


if __name__ == "__main__":
    main()
