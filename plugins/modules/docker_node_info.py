#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: docker_node_info
short_description: Learn what a node needs before its Docker engine is set up
version_added: 0.3.0
description:
  - Reads, in one call, what the C(rocm.madengine.docker_setup) role decides by - the OS family, distribution and
    package manager (as the C(distribution) and C(pkg_mgr) facts of M(ansible.builtin.setup) hold them), the Python
    interpreter the module runs with, which of the packages the role may install are missing, the GPU vendor by the
    devices present, and whether a registry already answers at an address.
  - Installed packages are asked of C(dpkg-query) on the Debian family and of C(rpm) on the RedHat and Suse
    families; on other systems, or without that tool, every package counts as missing.
  - Nothing is changed.
author:
  - ROCm madengine maintainers (@rocm)
extends_documentation_fragment:
  - rocm.madengine.attributes
  - rocm.madengine.attributes.INFO_MODULE
options:
  gpu_vendor:
    description:
      - V(AMD), V(NVIDIA) or V(NONE) (CPU only) as set, in any case; V(auto) is V(AMD) when the first of
        O(amd_devices) exists, else V(NVIDIA) when O(nvidia_device) exists, else V(NONE).
    type: str
    choices: [auto, AMD, NVIDIA, NONE, amd, nvidia, none]
    default: auto
  amd_devices:
    description: The devices of an AMD GPU node; for an AMD node, RV(amd_devices_missing) names those that do not exist.
    type: list
    elements: path
    default: [/dev/kfd, /dev/dri]
  nvidia_device:
    description: The device whose presence makes O(gpu_vendor=auto) a NVIDIA node.
    type: path
    default: /dev/nvidiactl
  install_engine:
    description: Whether the engine's packages are wanted; with V(false), RV(engine_packages) is empty.
    type: bool
    default: true
  engine_packages:
    description:
      - The engine's packages. Empty means the OS family's - C(docker.io) (Debian), C(moby-engine) (RedHat, as
        Fedora ships it; RHEL needs Docker's C(docker-ce), C(docker-ce-cli) and C(containerd.io) named here),
        C(docker) (Suse), none for any other family.
    type: list
    elements: str
    default: []
  nvidia_packages:
    description: The NVIDIA container toolkit's packages, looked up when the node is a NVIDIA node.
    type: list
    elements: str
    default: []
  packages:
    description: More packages to look up (for example the Docker SDK's, when it comes from the distribution).
    type: list
    elements: str
    default: []
  registry_listen:
    description:
      - The C(host:port) a registry listens at; empty asks no registry. Its API (C(/v2/)) is asked over plain HTTP
        on this host, a wildcard address (C(:5000), C(0.0.0.0:5000), C([::]:5000)) on loopback.
    type: str
    default: ""
notes:
  - Packages are looked up by the names given; a name with a version (C(docker.io=26.1.5)) counts as missing.
seealso:
  - module: rocm.madengine.docker_engine
  - module: rocm.madengine.docker_registry
"""

EXAMPLES = r"""
- name: Learn what the node has
  rocm.madengine.docker_node_info:
    gpu_vendor: auto
    nvidia_packages: [nvidia-container-toolkit]
  register: node

- name: Install the engine when it is missing
  ansible.builtin.package:
    name: "{{ node.engine_missing }}"
    state: present
    use: "{{ node.pkg_mgr }}"
  when: node.engine_missing | length > 0
"""

RETURN = r"""
os_family:
  description: The OS family, as the C(os_family) fact.
  returned: always
  type: str
  sample: Debian
distribution:
  description: The distribution, as the C(distribution) fact.
  returned: always
  type: str
  sample: Ubuntu
distribution_version:
  description: Its version, as the C(distribution_version) fact.
  returned: always
  type: str
  sample: "24.04"
pkg_mgr:
  description: The package manager, as the C(pkg_mgr) fact (C(unknown) when there is none Ansible knows).
  returned: always
  type: str
  sample: apt
python:
  description: The interpreter the module ran with - C(executable) and C(version).
  returned: always
  type: dict
  sample: {executable: /usr/bin/python3, version: 3.12.3}
gpu_vendor:
  description: V(AMD), V(NVIDIA) or V(NONE) - the setting, or what O(gpu_vendor=auto) found.
  returned: always
  type: str
  sample: AMD
amd_devices_missing:
  description: The O(amd_devices) that do not exist, on an AMD node; empty otherwise.
  returned: always
  type: list
  elements: str
  sample: [/dev/kfd]
engine_packages:
  description: The engine's packages wanted here (empty with O(install_engine=false)).
  returned: always
  type: list
  elements: str
  sample: [docker.io]
package_query:
  description: The tool that told which packages are installed, C(dpkg-query) or C(rpm); empty when none did.
  returned: always
  type: str
  sample: dpkg-query
missing_packages:
  description:
    - The wanted packages that are not installed - RV(engine_packages), O(nvidia_packages) on a NVIDIA node, and
      O(packages).
  returned: always
  type: list
  elements: str
  sample: [docker.io, python3-docker]
engine_missing:
  description: The RV(engine_packages) that are not installed.
  returned: always
  type: list
  elements: str
  sample: [docker.io]
registry_url:
  description: The URL the registry at O(registry_listen) is asked at; empty without O(registry_listen).
  returned: always
  type: str
  sample: http://127.0.0.1:5000/v2/
registry_answering:
  description: Whether a registry answered at RV(registry_url) (HTTP 200).
  returned: always
  type: bool
  sample: false
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rocm.madengine.plugins.module_utils.host.docker_node_info_task import run


def main():
    module = AnsibleModule(
        argument_spec=dict(
            gpu_vendor=dict(type="str", choices=["auto", "AMD", "NVIDIA", "NONE", "amd", "nvidia", "none"],
                            default="auto"),
            amd_devices=dict(type="list", elements="path", default=["/dev/kfd", "/dev/dri"]),
            nvidia_device=dict(type="path", default="/dev/nvidiactl"),
            install_engine=dict(type="bool", default=True),
            engine_packages=dict(type="list", elements="str", default=[]),
            nvidia_packages=dict(type="list", elements="str", default=[]),
            packages=dict(type="list", elements="str", default=[]),
            registry_listen=dict(type="str", default=""),
        ),
        supports_check_mode=True,
    )
    run(module)


if __name__ == "__main__":
    main()
