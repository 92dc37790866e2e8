#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: madengine_build
short_description: Build the images of MAD models once, push them and write a madengine build manifest
version_added: 0.1.0
description:
  - Builds one Docker image per selected model and matching Dockerfile (and per target architecture),
    pushes it to O(registry) when given, and writes a madengine-compatible C(build_manifest.json) that
    M(rocm.madengine.madengine_run) reads on the GPU nodes.
  - Dockerfiles are chosen as madengine does, from C(<dockerfile>.*) files whose C(# CONTEXT {...}) header
    (first 5 lines) agrees with the context; a model with no matching Dockerfile is a failed model with
    the reason.
  - Each image also holds the model's scripts directory at C(/madengine/scripts), so a node needs no MAD
    checkout; the manifest says how to start the script.
  - Images carry a content key (label C(org.rocm.madengine.content-key)) computed from the Dockerfile,
    the build-context files it copies, the scripts, the build arguments and the base image digests.
    An image whose local copy, and registry tag when O(registry) is set, already carry the key is neither
    built nor pushed, and the task reports no change.
  - A model that fails does not stop the others; the task fails at the end listing every failure unless
    O(fail_on_error=false).
  - With O(nodes) (the profiles M(rocm.madengine.gpu_info) returns for the nodes of a run) the build is for that
    fleet - one image per model and (GPU vendor, architecture) the nodes have, Dockerfiles chosen for each vendor
    instead of the context's C(gpu_vendor) - and RV(assignments) says which models each node runs
    (O(matrix)).
  - Check mode and the real run decide build, reuse and push for each image in the same way; check mode only
    takes what exists from the previous manifest instead of the engine and the registry.
  - Relative paths in options are taken relative to the working directory of the module (where the play
    runs, for a local task).
author:
  - ROCm madengine maintainers (@rocm)
extends_documentation_fragment:
  - rocm.madengine.attributes
  - rocm.madengine.attributes.ON_CONTROLLER
  - rocm.madengine.attributes.ACTION_GROUP
  - rocm.madengine.docker
attributes:
  action_group:
    membership:
      - rocm.madengine.docker
      - rocm.madengine.catalogue
      - rocm.madengine.madengine
  check_mode:
    support: full
    details:
      - Check mode makes no Docker call. It plans build or reuse from the existing manifest at
        O(manifest_path), so an image deleted from the engine, a base image updated in its registry since
        then, or a base image looked up otherwise because O(pull) changed, is not noticed.
      - When the manifest's directory does not exist yet, every image is planned as a build, with a warning;
        nothing is created.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - A second run with unchanged inputs builds and pushes nothing and leaves the manifest file untouched.
      - With O(rebuild=always) every image is rebuilt without the build cache, so the task always changes.
options:
  mad_root:
    description:
      - Root of the MAD catalogue (the directory holding C(models.json)); Dockerfiles, build contexts and
        scripts are relative to it.
    type: path
    required: true
  tags:
    description:
      - Tags selecting the models, with madengine's grammar (see M(rocm.madengine.madengine_discover)).
      - Use C(all) to build every model.
    type: list
    elements: str
  models:
    description:
      - Models as returned by M(rocm.madengine.madengine_discover)
        (its RV(rocm.madengine.madengine_discover#module:models)).
    type: list
    elements: dict
  additional_context:
    description:
      - The madengine additional context, as a dict, or as a string holding a JSON object or a Python dict literal.
      - Its keys override those of O(additional_context_file).
      - C(gpu_vendor) (C(AMD), C(NVIDIA) or C(NONE) for CPU-only nodes; default C(AMD)) and C(guest_os)
        (C(UBUNTU) or C(CENTOS); default C(UBUNTU)) select Dockerfiles; C(docker_build_arg) gives build arguments.
    type: raw
  additional_context_file:
    description:
      - JSON file holding an additional context object; read first, O(additional_context) overrides its keys.
    type: path
  registry:
    description:
      - Registry to push to, as C(host[:port]) optionally followed by C(/namespace); C(docker.io) or
        C(dockerhub) for Docker Hub.
      - Images are pushed as C(<registry>/<image>), or C(<registry>/<repository>:<image>) when the
        credential entry of the registry has a C(repository).
      - Empty (as C(madengine_registry) is by default) is the same as not given - no registry, nothing pushed.
    type: str
  credential_file:
    description:
      - madengine C(credential.json). The entry keyed by O(registry) (C(dockerhub) for Docker Hub) gives
        C(username) and C(password) to push; the entry named by a model's C(cred) becomes build arguments
        C(<CRED>_<KEY>).
      - Its values never appear in results, the manifest or the build logs.
      - Default C(<mad_root>/credential.json) when that file exists (as madengine reads it), unless O(credentials)
        is given.
      - Mutually exclusive with O(credentials).
    type: path
  credentials:
    description:
      - The content of a madengine C(credential.json) (credential name to entry), used as O(credential_file)
        is, so a playbook can hand over credentials it holds in a vault without writing them to a file.
      - Nothing is written to disk for them; their secret values never appear in results, the manifest or the
        build logs.
      - Mutually exclusive with O(credential_file).
    type: dict
  registry_username:
    description:
      - User name for O(registry); overrides O(credential_file). Requires O(registry_password).
    type: str
  registry_password:
    description:
      - Password or token for O(registry_username).
    type: str
  manifest_path:
    description:
      - Where the build manifest is written (atomically). Default C(<mad_root>/build_manifest.json).
      - Its directory is created when missing (not in check mode).
      - The file is left untouched when its content would not change.
    type: path
  run_id:
    description:
      - Identifier of the benchmark this build belongs to, returned as RV(run_id) for the
        M(rocm.madengine.madengine_run) calls of the same benchmark; 1-64 letters, digits, C(.), C(_) or C(-),
        starting with a letter or digit.
      - Empty makes a new one, C(<UTC time YYYYmmddTHHMMSSZ>-<6 hex digits>), also in check mode.
      - The manifest does not record it, so a rebuild with another run id changes nothing.
    type: str
    default: ""
  data_config:
    description:
      - madengine C(data.json) (data name to providers) that the nodes need; it is read, checked and returned as
        RV(data_providers) so that a playbook can hand it to M(rocm.madengine.madengine_run) as its
        C(data_providers).
      - Default C(<mad_root>/data.json) when that file exists.
    type: path
  summary_output:
    description:
      - Also write the build summary in madengine's C(--summary-output) shape to this JSON file (not in check mode),
        that is the manifest's C(summary) with C(successful_builds), C(failed_builds), C(total_build_time),
        C(successful_pushes) and C(failed_pushes).
    type: path
  log_dir:
    description:
      - Directory of the build logs C(<model>_<dockerfile stem>.build.live.log).
      - Default the directory of O(manifest_path).
    type: path
  rebuild:
    description:
      - V(never) builds an image only when its content key changed or the engine lacks it.
      - V(always) rebuilds every image without the build cache (C(--no-cache)).
    type: str
    choices: [never, always]
    default: never
  target_archs:
    description:
      - GPU architectures (for example C(gfx942), C(gfx90a)). Each Dockerfile is built once per
        architecture with build argument C(MAD_SYSTEM_GPU_ARCHITECTURE) and the image name suffixed C(_<arch>).
      - With O(nodes), AMD architectures to build for besides the nodes' (to fill a registry for other nodes).
      - Ignored when the context sets C(docker_build_arg.MAD_SYSTEM_GPU_ARCHITECTURE).
    type: list
    elements: str
    default: []
  nodes:
    description:
      - The nodes the images are for, each with its GPU profile as M(rocm.madengine.gpu_info) returns it
        (C(gpu_vendor) V(AMD), V(NVIDIA) or V(NONE), C(gpu_architecture), C(gpu_product)).
      - For each vendor among them, every model's Dockerfiles whose CONTEXT fits that vendor (and the rest of the
        context) are built; a Dockerfile that declares C(ARG MAD_SYSTEM_GPU_ARCHITECTURE) is built once per
        architecture of that vendor (C(_<arch>) image names, C(H100) for NVIDIA), any other once, for every
        architecture. A model with no Dockerfile for a vendor (but some for another) is no failure - it is listed in
        RV(skipped_builds) and the manifest's C(skipped_builds), and the nodes of that vendor skip it with the reason.
      - The context's C(gpu_vendor) is then not used to choose Dockerfiles (a warning says so when it is set).
      - Empty builds for the context's C(gpu_vendor) and O(target_archs), as madengine does.
    type: dict
    default: {}
  matrix:
    description:
      - Which models each node of O(nodes) runs, returned in RV(assignments).
      - V(all) - every model on every node (to compare the nodes).
      - V(shard) - every model once per group of equivalent nodes (same vendor, architecture and product), the
        longest expected runs first, each to the node with the least expected work so far, so that the nodes of a
        group finish at about the same time. Expected run times come from O(durations); without them every model
        counts the same. A group of one node fails the task before anything is built, naming the node.
    type: str
    choices: [all, shard]
    default: all
  durations:
    description:
      - Expected seconds of each model's run, for O(matrix=shard) - for example the
        RV(rocm.madengine.madengine_report#module:durations) of an earlier run's CSV. Keys are the models' names or
        their rows' (C(<model>_<row>) of a C(multiple_results) model, the longest counts); a model without a value
        takes the median of the others.
    type: dict
    default: {}
  reuse_manifest:
    description:
      - A build manifest written earlier (by this module) to use instead of building - nothing is built, pushed or
        written, and O(mad_root) need not exist. The models are the manifest's, filtered by O(tags); a node kind
        (vendor, architecture) the manifest has no image for is a warning.
    type: path
  pull:
    description:
      - Always look for a newer base image in its registry (C(docker build --pull)), as madengine does.
      - With V(false) a base image already in the engine is used as it is.
    type: bool
    default: true
  image_prefix:
    description:
      - Prefix of the image names; madengine uses C(ci-).
    type: str
    default: ci-
  labels:
    description:
      - Extra labels for every image.
    type: dict
    default: {}
  build_network:
    description:
      - Network mode of the build containers (madengine uses C(host)).
    type: str
    default: host
  build_timeout:
    description:
      - Seconds one image build may take; C(0) means no limit. A build that takes longer fails its model.
    type: int
    default: 0
  build_parallel:
    description:
      - At most this many images are built and pushed at the same time, by the engine of the build host.
      - V(1) builds them one after another, as madengine does. A value below 1 counts as 1.
      - The results, the manifest and the logs are the same either way; the outcomes keep the order of the plan.
    type: int
    default: 4
  fail_on_error:
    description:
      - Fail the task at the end when any model failed to build or push.
      - With V(false) the task succeeds and the failures are only listed in RV(failures).
    type: bool
    default: true
notes:
  - Images are built by the engine's builder through the Engine API; Dockerfile features that need
    BuildKit (named build contexts, C(RUN --mount), heredocs) are not available.
  - Build arguments are recorded in the image history by the builder. Values of C(cred) build
    arguments therefore reach the image (and the registry when pushed), as with madengine; they never
    reach results, manifest or logs.
seealso:
  - module: rocm.madengine.madengine_discover
  - module: rocm.madengine.madengine_run
"""

EXAMPLES = r"""
---
- name: Build the smoke models for CPU-only nodes and push them to the local registry
  rocm.madengine.madengine_build:
    mad_root: /srv/MAD
    tags: [smoke]
    additional_context:
      gpu_vendor: NONE
      guest_os: UBUNTU
    registry: localhost:5000
    manifest_path: /srv/results/build_manifest.json
  register: build

- name: Show what was built and what was reused
  ansible.builtin.debug:
    msg: "built {{ build.built }}, reused {{ build.reused }}"

- name: Build models selected earlier, one image per MI300X and MI200 architecture
  rocm.madengine.madengine_build:
    mad_root: /srv/MAD
    models: "{{ discovered.models }}"
    additional_context_file: /srv/MAD/ctx_amd.json
    target_archs: [gfx942, gfx90a]
    registry: registry.example.com:5000/mad
    credential_file: /srv/secrets/credential.json

- name: Build for a benchmark run with credentials from a vault (nothing is written to disk for them)
  rocm.madengine.madengine_build:
    mad_root: /srv/MAD
    tags: [pyt]
    registry: registry.example.com:5000
    credentials: "{{ vault_madengine_credentials }}"
    run_id: nightly-2026-11-22
  register: build

- name: Show the models the nodes run and the data providers they need
  ansible.builtin.debug:
    msg: "run {{ build.run_id }}: {{ build.models }} with {{ build.data_providers }}"

- name: Rebuild everything from scratch and keep going past failures
  rocm.madengine.madengine_build:
    mad_root: /srv/MAD
    tags: [all]
    rebuild: always
    fail_on_error: false
  register: rebuilt
"""

RETURN = r"""
run_id:
  description: The run id, O(run_id) or the one made for this run.
  returned: success
  type: str
  sample: 20261122T101500Z-1a2b3c
selected:
  description:
    - The selected models as M(rocm.madengine.madengine_discover) returns them, in selection order (O(models)
      as given, or what O(tags) select).
  returned: success
  type: list
  elements: dict
  sample:
    - name: dummy
      dockerfile: docker/cpu
      scripts: scripts/sample
      tags: [smoke]
      args: ""
models:
  description:
    - Names of the selected models that have an image in the manifest, a recorded build failure or a vendor without
      a Dockerfile, in selection order; the models a node runs (a failed build becomes a C(FAILURE) row).
  returned: success
  type: list
  elements: str
  sample: [dummy, dummy2/model1]
assignments:
  description:
    - With O(nodes), the models each node runs (in selection order) - every model with O(matrix=all), its share with
      O(matrix=shard). Empty without O(nodes).
  returned: success
  type: dict
  sample: {mi300x-01: [dummy, sample_gpu], mi300x-02: [dummy_multi]}
groups:
  description:
    - With O(nodes), the groups of equivalent nodes - C(group) (a description), C(gpu_vendor), C(gpu_architecture),
      C(gpu_product), C(nodes), and with O(matrix=shard) C(expected_seconds) per node and C(basis)
      (C(test_duration) or C(count)).
  returned: success
  type: list
  elements: dict
targets:
  description: With O(nodes), the (C(gpu_vendor), C(gpu_architecture)) pairs images were built for.
  returned: success
  type: list
  elements: dict
  sample: [{gpu_vendor: AMD, gpu_architecture: gfx942}, {gpu_vendor: NONE, gpu_architecture: ""}]
skipped_builds:
  description:
    - With O(nodes), one item per model and vendor it has no Dockerfile for - C(model), C(gpu_vendor), C(reason).
  returned: success
  type: list
  elements: dict
catalogue_files:
  description:
    - The files of the catalogue the runs need beside the images, for M(rocm.madengine.madengine_run)'s
      C(catalogue_files) - C(scripts/common) whole when the context names C(tools), C(pre_scripts) or
      C(post_scripts), those scripts, and the C(custom) data provider scripts of the selected models' data - as
      relative path to C(content) (base64) and C(mode); null when the runs need none.
  returned: success
  type: dict
  sample:
    scripts/data/fetch.sh:
      content: IyEvYmluL2Jhc2gKZWNobyBoaQo=
      mode: 493
data_providers:
  description: The content of the data.json of O(data_config), or null when there is none.
  returned: success
  type: dict
  sample:
    dummy_data:
      local:
        path: /srv/data/dummy
manifest:
  description:
    - The build manifest, as written to RV(manifest_path) (predicted in check mode).
    - madengine's keys C(built_images), C(built_models), C(context), C(credentials_required), C(registry),
      C(summary), C(deployment_config), C(push_failures), plus C(generator), and with O(nodes) C(targets) and
      C(skipped_builds) (as RV(targets) and RV(skipped_builds)).
    - Each C(built_images) entry has madengine's C(model), C(docker_image), C(dockerfile), C(base_docker),
      C(docker_sha), C(build_duration), C(build_command), C(log_file), C(gpu_vendor), C(gpu_architecture),
      C(registry), C(registry_image), C(push_error), and C(image_id), C(content_key), C(inputs_digest),
      C(base_images), C(registry_digest), C(build_context), C(scripts).
  returned: always
  type: dict
  sample:
    built_images:
      ci-dummy_cpu.ubuntu:
        model: dummy
        docker_image: ci-dummy_cpu.ubuntu
        dockerfile: docker/cpu.ubuntu.Dockerfile
        base_docker: localhost:5000/mad-base:busybox
        docker_sha: "sha256:cb2023567bef1ae50beb60a6ed258516a866303ad491ded0268441c627bfb962"
        build_duration: 0.41
        build_command: docker build --network=host -t ci-dummy_cpu.ubuntu --pull -f docker/cpu.ubuntu.Dockerfile docker
        log_file: /srv/results/dummy_cpu.ubuntu.build.live.log
        gpu_vendor: ""
        registry: localhost:5000
        registry_image: localhost:5000/ci-dummy_cpu.ubuntu
        image_id: "sha256:5f0c8a4c0f41c7d3d5e2b1d8a3e6f3a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3"
        content_key: "sha256:1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d"
        inputs_digest: "sha256:9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b"
        base_images:
          localhost:5000/mad-base:busybox: "sha256:cb2023567bef1ae50beb60a6ed258516a866303ad491ded0268441c627bfb962"
        registry_digest: >-
          localhost:5000/ci-dummy_cpu.ubuntu@sha256:0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c
        build_context: docker
        scripts:
          source_dir: scripts/sample
          image_dir: /madengine/scripts
          entry: run.sh
          runner: bash
          command: bash run.sh
    summary:
      successful_builds: []
      failed_builds: []
      total_build_time: 0.41
      successful_pushes: []
      failed_pushes: []
manifest_path:
  description: Absolute path of the manifest.
  returned: always
  type: str
  sample: /srv/results/build_manifest.json
manifest_changed:
  description: Whether the manifest file was (or in check mode would be) rewritten.
  returned: always
  type: bool
  sample: false
built:
  description: Images built by this run (in check mode, the images that would be built).
  returned: always
  type: list
  elements: str
  sample: [ci-dummy_cpu.ubuntu]
reused:
  description: Images whose existing copy already carried their content key (in check mode, predicted).
  returned: always
  type: list
  elements: str
  sample: [ci-dummy2_model1_cpu.ubuntu]
pushed:
  description: Registry images pushed by this run (in check mode, the pushes planned).
  returned: always
  type: list
  elements: str
  sample: [localhost:5000/ci-dummy_cpu.ubuntu]
failures:
  description:
    - One item per failure (Ansible's own C(failed) is the task status).
    - C(stage) is C(plan) (no Dockerfile, missing credential, bad path ...), C(build) or C(push);
      C(error) is a sentence naming the model.
  returned: always
  type: list
  elements: dict
  sample:
    - model: dummy_broken
      image: ci-dummy_broken_broken.ubuntu
      dockerfile: docker/broken.ubuntu.Dockerfile
      stage: build
      error: >-
        Model 'dummy_broken': building ci-dummy_broken_broken.ubuntu from docker/broken.ubuntu.Dockerfile failed:
        The command '/bin/sh -c exit 3' returned a non-zero code: 3.
      log_file: /srv/results/dummy_broken_broken.ubuntu.build.live.log
images:
  description:
    - One item per planned image with C(action) (C(built), C(reused), C(failed); in check mode C(build) or
      C(reuse)), C(reason), C(content_key), C(image_id), C(build_duration) and, with a registry,
      C(registry_image), C(push) (a push was needed or is planned), C(pushed) and C(registry_digest).
  returned: always
  type: list
  elements: dict
  sample:
    - model: dummy
      image: ci-dummy_cpu.ubuntu
      dockerfile: docker/cpu.ubuntu.Dockerfile
      action: reused
      reason: the local image carries the content key
      content_key: "sha256:1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d"
      image_id: "sha256:5f0c8a4c0f41c7d3d5e2b1d8a3e6f3a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3"
      build_duration: 0.0
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.madengine_build_task import (
    ARGUMENT_SPEC,
    CONSTRAINTS,
    run,
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True, **CONSTRAINTS)
    run(module)


if __name__ == "__main__":
    main()
