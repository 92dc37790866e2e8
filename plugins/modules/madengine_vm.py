#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: madengine_vm
short_description: Lifecycle of one ephemeral libvirt VM for a benchmark, cleaned up without leftovers
version_added: 0.1.0
description:
  - Creates, starts, stops and removes one libvirt domain that a benchmark runs in. The module never runs
    the workload itself; add the VM to the inventory with M(ansible.builtin.add_host) from the returned
    RV(ip) and run the benchmark tasks there.
  - O(state=running) creates a qcow2 overlay on O(base_image) (explicit backing format), a cloud-init NoCloud
    seed ISO with O(ssh_user) and O(ssh_pubkey) (attached as O(seed_device) says), renders the domain XML from
    the collection's Jinja2 template, defines and starts the domain and waits for it (O(wait_for)). Transient
    failures (QEMU dying at start-up, timeouts, I/O errors) are retried with exponential backoff after a full
    teardown; configuration errors are never retried.
  - Every domain carries metadata in the C(urn:rocm:madengine:vm:1) namespace (run id, creation time, spec hash,
    the files it owns) and a stable UUID derived from its name, so re-running with the same options is
    idempotent and a later run can find it.
  - Before anything is created, a state file in O(state_dir) records every path that will exist, so
    O(state=absent) cleans up even when the domain is already gone or the play was killed.
  - O(state=absent) destroys the domain, undefines it with the NVRAM, managed-save, snapshot and checkpoint
    metadata flags (falling back to fewer flags when the driver rejects one), then deletes the overlay, the
    seed, the NVRAM file, the console log (unless O(keep_logs)) and the state file, and verifies the host is clean.
  - With O(sweep), O(state=absent) removes every orphan older than O(sweep.older_than) instead of one VM.
author:
  - ROCm madengine maintainers (@rocm)
extends_documentation_fragment:
  - rocm.madengine.attributes
  - rocm.madengine.attributes.ACTION_GROUP
attributes:
  action_group:
    membership:
      - rocm.madengine.host
  check_mode:
    support: full
    details:
      - Inputs are validated (base image, devices, host capabilities) and nothing is created or removed.
  diff_mode:
    support: full
    details:
      - The diff is the domain XML before and after.
  idempotent:
    support: full
options:
  name:
    description:
      - Name of the domain. Also names its overlay C(<image_dir>/<name>.qcow2), seed C(<image_dir>/<name>-seed.iso),
        console log C(<log_dir>/<name>.console.log) and state file C(<state_dir>/<name>.json).
      - Required unless O(sweep) is given.
    type: str
  state:
    description:
      - V(running) creates and starts the VM; V(stopped) creates it without starting it, or shuts a running one down;
        V(absent) removes it and everything it owns.
    type: str
    choices: [running, stopped, absent]
    default: running
  uri:
    description: libvirt connection URI.
    type: str
    default: qemu:///system
  base_image:
    description:
      - Absolute path of the qcow2 base image on the hypervisor. It is only read; the VM writes to its overlay.
      - Required when O(state) is V(running) or V(stopped).
    type: path
  vcpus:
    description: Number of virtual CPUs.
    type: int
    default: 2
  memory:
    description: Guest memory, e.g. V(16G) or V(8192M); a bare number is MiB.
    type: str
    default: 4G
  disk_size:
    description:
      - Virtual size of the overlay, e.g. V(100G); a bare number is GiB. It may not be smaller than the base.
      - Defaults to the base image's virtual size.
    type: str
  hostdevs:
    description:
      - PCI devices to pass through, as addresses (V(0000:83:00.0) or V(83:00.0)) or dicts with C(bdf) and C(managed).
      - The devices of O(passthrough) come first; these are added to them.
    type: list
    elements: raw
    default: []
  passthrough:
    description:
      - The registered result of M(rocm.madengine.gpu_passthrough); its
        RV(rocm.madengine.gpu_passthrough#module:hostdevs) and RV(rocm.madengine.gpu_passthrough#module:mdevs) are
        passed to the VM before O(hostdevs) and O(mdevs). A skipped task's result (no such keys) adds nothing.
    type: dict
    default: {}
  managed:
    description:
      - Default C(managed) attribute of O(hostdevs). V(false) when M(rocm.madengine.gpu_passthrough) bound the
        devices (libvirt then never rebinds them); V(true) lets libvirt bind and reattach them itself.
    type: bool
    default: false
  mdevs:
    description: UUIDs of mediated devices (vGPU) to attach, after those of O(passthrough).
    type: list
    elements: str
    default: []
  ssh_user:
    description: User cloud-init creates (with passwordless sudo) and authorises O(ssh_pubkey) for.
    type: str
    default: root
  ssh_pubkey:
    description: OpenSSH public key(s), one per line, authorised for O(ssh_user) through the cloud-init seed.
    type: str
  seed_device:
    description:
      - How the cloud-init seed ISO is attached. V(virtio) - a read-only virtio disk, seen by every kernel that
        boots from the virtio root disk; V(cdrom) - a SATA CD-ROM, for images that look for the seed there (it needs
        an AHCI driver, which Debian's C(cloud) kernel flavour lacks).
    type: str
    choices: [virtio, cdrom]
    default: virtio
  user_data:
    description:
      - More cloud-config keys merged into the generated C(user-data) (e.g. C(packages), C(runcmd)).
      - Treated as secret; it only reaches the seed ISO, which is deleted with the VM.
    type: dict
  wait_for:
    description:
      - V(none) returns once the domain started; V(ip) waits for an address; V(ssh) also waits for an SSH banner.
    type: str
    choices: [none, ip, ssh]
    default: ip
  ip_sources:
    description:
      - Where the address is looked up, in order. V(lease) (libvirt network DHCP leases), V(agent) (QEMU guest
        agent), V(arp) (host neighbour table), V(console) (cloud-init's C(ci-info) net device table in the
        console log; useful on bridged or user-mode networks).
    type: list
    elements: str
    choices: [lease, agent, arp, console]
    default: [lease, agent, arp, console]
  ssh_port:
    description: Port probed when O(wait_for=ssh).
    type: int
    default: 22
  boot_timeout:
    description: Seconds to wait for O(wait_for) before the attempt counts as failed (and is retried).
    type: int
    default: 300
  retries:
    description: How many times a transient failure is retried (after a full teardown) before the task fails.
    type: int
    default: 3
  retry_delay:
    description: First retry delay in seconds; it doubles on each retry, with 20% jitter.
    type: float
    default: 5.0
  recreate:
    description: Remove and recreate the VM when it exists with a different specification, instead of failing.
    type: bool
    default: false
  stop_timeout:
    description: Seconds O(state=stopped) waits for an ACPI shutdown before it destroys the domain.
    type: int
    default: 60
  verify_clean:
    description:
      - With O(state=absent), fail when anything is left afterwards (domain, overlay, seed, NVRAM, state file,
        or a process holding the VFIO group of one of the VM's O(hostdevs)). RV(clean) is returned either way.
    type: bool
    default: true
  keep_logs:
    description: Keep the console log when the VM is removed.
    type: bool
    default: false
  image_dir:
    description: Directory of the overlay and the seed ISO.
    type: path
    default: /var/lib/libvirt/images
  state_dir:
    description: Directory of the state files (one JSON file per VM, mode 0600).
    type: path
    default: /var/lib/madengine/vm
  log_dir:
    description: Directory of the console log (the guest's serial console).
    type: path
    default: /var/log/libvirt/qemu
  domain_type:
    description:
      - V(auto) uses V(kvm) only when the CPU has vmx/svm, C(kvm_intel) or C(kvm_amd) is loaded and C(/dev/kvm)
        opens read-write; otherwise V(qemu) (software emulation).
    type: str
    choices: [auto, kvm, qemu]
    default: auto
  firmware:
    description: V(efi) (OVMF, chosen by libvirt; needed for large-BAR GPUs) or V(bios).
    type: str
    choices: [efi, bios]
    default: efi
  machine:
    description: QEMU machine type.
    type: str
    default: q35
  cpu_pinning:
    description:
      - V(auto) pins the vCPUs (and the memory, with C(numatune)) to the NUMA node of the first hostdev, read from
        sysfs; V(none) does not pin; anything else is a CPU list such as V(0-7,16-23) the vCPUs are pinned to.
    type: str
    default: auto
  hugepages:
    description: Back guest memory with huge pages of O(hugepage_size); fails early when not enough are free.
    type: bool
    default: false
  hugepage_size:
    description: Huge page size, e.g. V(1G) or V(2M).
    type: str
    default: 1G
  maxphysaddr:
    description:
      - Guest physical address bits with KVM. V(passthrough) copies the host's (large-BAR GPUs need it),
        a number emulates that many bits, V(none) leaves QEMU's default.
    type: str
    default: passthrough
  network:
    description: Name of the libvirt network (O(network_type=network)) or of the host bridge (O(network_type=bridge)).
    type: str
    default: default
  network_type:
    description: V(network) (libvirt network), V(bridge) (host bridge) or V(user) (QEMU user-mode networking).
    type: str
    choices: [network, bridge, user]
    default: network
  kernel:
    description: Kernel for direct kernel boot (no bootloader in the image), on the hypervisor.
    type: path
  initrd:
    description: Initramfs for direct kernel boot.
    type: path
  kernel_args:
    description: Kernel command line for direct kernel boot.
    type: str
  disk_cache:
    description:
      - Cache mode of the overlay disk. V(none) uses native AIO; use V(writeback) on filesystems without O_DIRECT.
    type: str
    choices: [none, writeback, writethrough, directsync, unsafe, default]
    default: none
  run_id:
    description: Identifier recorded in the domain metadata and the state file (defaults to O(name)).
    type: str
  host_root:
    description:
      - The root of the host's filesystem, under which C(/proc), C(/sys) and C(/dev) are read (KVM, CPU pinning,
        huge pages, processes holding VFIO groups). V(/) on a real host. O(base_image), the images and the tools
        are the hypervisor's own, whatever this is.
    type: path
    default: /
    aliases: [sysfs_root]
  inventory:
    description:
      - How the controller reaches the VM; the module returns it as RV(inventory_host), the arguments of
        M(ansible.builtin.add_host). The VM is reached at its address as O(ssh_user) (with C(become) unless it is
        root), host keys neither checked nor kept.
    type: dict
    default: {}
    suboptions:
      node:
        description: The inventory name of the hypervisor; the VM's host variable C(madengine_vm_node).
        type: str
      jump_host:
        description:
          - The hypervisor as the controller reaches it (its C(ansible_host)); the VM is reached through it with an
            SSH C(ProxyJump), unless O(inventory.node_connection) is local (the controller is the hypervisor).
        type: str
      jump_user:
        description: The user of the C(ProxyJump) (the hypervisor's C(ansible_user)).
        type: str
      jump_port:
        description: The SSH port of the C(ProxyJump) (the hypervisor's C(ansible_port)).
        type: int
      node_connection:
        description: How the controller reaches the hypervisor (its C(ansible_connection)).
        type: str
      private_key_file:
        description: The private key on the controller for the VM (C(ansible_ssh_private_key_file)).
        type: str
      docker_host:
        description: The VM's Docker engine (C(madengine_docker_host)).
        type: str
        default: unix:///var/run/docker.sock
      groups:
        description: Inventory groups of the VM.
        type: list
        elements: str
        default: [madengine_vms]
      vars:
        description: More host variables, over the ones above.
        type: dict
        default: {}
  sweep:
    description:
      - With O(state=absent), remove orphans instead of one VM. A candidate is a domain carrying the module's
        metadata, a domain whose name starts with O(sweep.name_prefix), or a state file in O(state_dir).
      - Only candidates older than O(sweep.older_than) are removed (age from the metadata, the state file or
        the disk files). For a domain matched only by its name, its disks in O(image_dir) whose file names
        start with the domain name are removed as well.
    type: dict
    suboptions:
      older_than:
        description: Minimum age, e.g. V(30m), V(6h), V(2d); V(0) removes every candidate.
        type: str
        required: true
      name_prefix:
        description: Name prefix of domains to consider without metadata.
        type: str
        default: madengine-vm-
requirements:
  - libvirt-python and Jinja2 on the hypervisor.
  - qemu-img, and genisoimage, mkisofs or xorriso on the hypervisor.
notes:
  - The module handles SIGTERM, SIGINT and SIGHUP by tearing down what it was creating. After a SIGKILL, the state
    file lets O(state=absent) (or a sweep) remove what is left.
  - Run O(state=absent) in an C(always) section, before restoring devices with M(rocm.madengine.gpu_passthrough),
    because devices can only be rebound once QEMU has exited.
seealso:
  - module: rocm.madengine.gpu_passthrough
  - module: rocm.madengine.madengine_run
"""

EXAMPLES = r"""
---
- name: Benchmark inside an ephemeral VM, removed whatever happens
  block:
    - name: Start the VM with the GPUs bound by gpu_passthrough
      rocm.madengine.madengine_vm:
        name: "madengine-vm-{{ run_id }}"
        base_image: /var/lib/libvirt/images/ubuntu-22.04-rocm.qcow2
        vcpus: 32
        memory: 128G
        disk_size: 200G
        passthrough: "{{ passthrough }}"
        ssh_user: madengine
        ssh_pubkey: "{{ lookup('ansible.builtin.file', '~/.ssh/id_ed25519.pub') }}"
        wait_for: ssh
        inventory:
          node: "{{ inventory_hostname }}"
          jump_host: "{{ ansible_host | default(inventory_hostname) }}"
      register: vm

    - name: Reach the VM through the hypervisor (ProxyJump)
      ansible.builtin.add_host: "{{ vm.inventory_host }}"
  always:
    - name: Remove the VM, its disks and its state; fail if anything is left
      rocm.madengine.madengine_vm:
        name: "madengine-vm-{{ run_id }}"
        state: absent

- name: Nightly janitor for VMs whose play was killed
  rocm.madengine.madengine_vm:
    state: absent
    sweep:
      older_than: 6h
"""

RETURN = r"""
uuid:
  description: Domain UUID (stable for a given name).
  returned: when O(name) is given
  type: str
  sample: 0b0bd4e5-7d8e-5a3e-9d0c-2b4c4f1d33aa
ip:
  description: Guest IPv4 address, when O(wait_for) is not V(none) and the VM runs.
  returned: always
  type: str
  sample: 192.168.122.45
mac:
  description: MAC address of the guest's interface (derived from the UUID).
  returned: when O(name) is given
  type: str
  sample: 52:54:00:1d:33:aa
overlay:
  description: Path of the qcow2 overlay.
  returned: when O(name) is given
  type: str
  sample: /var/lib/libvirt/images/madengine-vm-42.qcow2
seed:
  description: Path of the cloud-init seed ISO.
  returned: when O(name) is given
  type: str
nvram:
  description: Path of the UEFI variable store, when the domain has one.
  returned: when O(name) is given
  type: str
console_log:
  description: Path of the guest's serial console log.
  returned: when O(name) is given
  type: str
state_file:
  description: Path of the VM's state file.
  returned: when O(name) is given
  type: str
domain_type:
  description: Domain type used (V(kvm) or V(qemu)).
  returned: when O(state) is V(running) or V(stopped)
  type: str
domain_type_reasons:
  description: Why O(domain_type=auto) chose software emulation.
  returned: when O(state) is V(running) or V(stopped)
  type: list
  elements: str
attempts:
  description: Creation attempts made (0 when nothing had to be created or started).
  returned: when O(state) is V(running) or V(stopped)
  type: int
clean:
  description: Result of the leftover check after removal.
  returned: when O(state=absent)
  type: dict
  contains:
    ok:
      description: Nothing is left.
      type: bool
    problems:
      description: One sentence per leftover.
      type: list
      elements: str
removed:
  description: What was removed (C(domain) and file paths).
  returned: when O(state=absent)
  type: list
  elements: str
swept:
  description: Orphans removed (or, in check mode, that would be) by O(sweep).
  returned: when O(sweep) is given
  type: list
  elements: dict
  contains:
    name:
      description: Domain name.
      type: str
    age:
      description: Age in seconds.
      type: float
    source:
      description: How it was found (V(metadata), V(name prefix) or V(state file)).
      type: str
skipped:
  description: Sweep candidates kept because they are younger than O(sweep.older_than) or their age is unknown.
  returned: when O(sweep) is given
  type: list
  elements: dict
actions:
  description: What the module did, one line per step.
  returned: always
  type: list
  elements: str
timings:
  description: Seconds spent per phase (overlay, seed, define, start, wait, destroy, undefine, cleanup).
  returned: always
  type: dict
inventory_host:
  description:
    - The VM as an inventory host, the arguments of M(ansible.builtin.add_host) (see O(inventory)) - C(name),
      C(groups), C(ansible_host) (RV(ip)), C(ansible_user), C(ansible_become), C(ansible_ssh_common_args),
      C(ansible_pipelining) (true - one SSH round trip per task), C(madengine_docker_host), C(madengine_vm_uuid), and
      C(madengine_vm_node), C(ansible_ssh_private_key_file) and O(inventory.vars) when given.
  returned: when O(state) is V(running) or V(stopped)
  type: dict
  sample:
    name: madengine-vm-node1
    groups: [madengine_vms]
    ansible_host: 192.168.122.45
    ansible_user: madengine
    ansible_become: true
    ansible_ssh_common_args: -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ProxyJump=admin@node1
    ansible_pipelining: true
    madengine_docker_host: unix:///var/run/docker.sock
    madengine_vm_uuid: 0b0bd4e5-7d8e-5a3e-9d0c-2b4c4f1d33aa
    madengine_vm_node: node1
ssh_command:
  description:
    - The C(ssh) command line that reaches the VM from the controller the way its inventory host does (key, port,
      C(ProxyJump), user and address); empty when RV(inventory_host) uses another connection or has no address.
  returned: when O(state) is V(running) or V(stopped)
  type: str
  sample: >-
    ssh -i ~/.ssh/madengine_vm -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ProxyJump=admin@node1
    madengine@192.168.122.45
leftovers:
  description:
    - What is left of the VM after O(state=absent), one sentence each (RV(clean.problems), or why it could not
      be removed); empty when nothing is.
  returned: when O(state=absent) without O(sweep)
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rocm.madengine.plugins.module_utils.vm.madengine_vm_task import run


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str"),
            state=dict(type="str", default="running", choices=["running", "stopped", "absent"]),
            uri=dict(type="str", default="qemu:///system"),
            base_image=dict(type="path"),
            vcpus=dict(type="int", default=2),
            memory=dict(type="str", default="4G"),
            disk_size=dict(type="str"),
            hostdevs=dict(type="list", elements="raw", default=[]),
            passthrough=dict(type="dict", default={}, no_log=False),
            managed=dict(type="bool", default=False),
            mdevs=dict(type="list", elements="str", default=[]),
            ssh_user=dict(type="str", default="root"),
            ssh_pubkey=dict(type="str", no_log=False),
            seed_device=dict(type="str", default="virtio", choices=["virtio", "cdrom"]),
            user_data=dict(type="dict", no_log=True),
            wait_for=dict(type="str", default="ip", choices=["none", "ip", "ssh"]),
            ip_sources=dict(type="list", elements="str", default=["lease", "agent", "arp", "console"],
                            choices=["lease", "agent", "arp", "console"]),
            ssh_port=dict(type="int", default=22),
            boot_timeout=dict(type="int", default=300),
            retries=dict(type="int", default=3),
            retry_delay=dict(type="float", default=5.0),
            recreate=dict(type="bool", default=False),
            stop_timeout=dict(type="int", default=60),
            verify_clean=dict(type="bool", default=True),
            keep_logs=dict(type="bool", default=False),
            image_dir=dict(type="path", default="/var/lib/libvirt/images"),
            state_dir=dict(type="path", default="/var/lib/madengine/vm"),
            log_dir=dict(type="path", default="/var/log/libvirt/qemu"),
            domain_type=dict(type="str", default="auto", choices=["auto", "kvm", "qemu"]),
            firmware=dict(type="str", default="efi", choices=["efi", "bios"]),
            machine=dict(type="str", default="q35"),
            cpu_pinning=dict(type="str", default="auto"),
            hugepages=dict(type="bool", default=False),
            hugepage_size=dict(type="str", default="1G"),
            maxphysaddr=dict(type="str", default="passthrough"),
            network=dict(type="str", default="default"),
            network_type=dict(type="str", default="network", choices=["network", "bridge", "user"]),
            kernel=dict(type="path"),
            initrd=dict(type="path"),
            kernel_args=dict(type="str"),
            disk_cache=dict(type="str", default="none",
                            choices=["none", "writeback", "writethrough", "directsync", "unsafe", "default"]),
            run_id=dict(type="str"),
            host_root=dict(type="path", default="/", aliases=["sysfs_root"]),
            inventory=dict(type="dict", default={}, options=dict(
                node=dict(type="str"),
                jump_host=dict(type="str"),
                jump_user=dict(type="str"),
                jump_port=dict(type="int"),
                node_connection=dict(type="str"),
                private_key_file=dict(type="str", no_log=False),
                docker_host=dict(type="str", default="unix:///var/run/docker.sock"),
                groups=dict(type="list", elements="str", default=["madengine_vms"]),
                vars=dict(type="dict", default={}),
            )),
            sweep=dict(type="dict", options=dict(
                older_than=dict(type="str", required=True),
                name_prefix=dict(type="str", default="madengine-vm-"),
            )),
        ),
        required_one_of=[("name", "sweep")],
        required_if=[("state", "running", ("name", "base_image")), ("state", "stopped", ("name", "base_image"))],
        supports_check_mode=True,
    )
    run(module)


if __name__ == "__main__":
    main()
