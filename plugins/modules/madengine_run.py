#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: madengine_run
short_description: Run the images of a madengine build manifest on a GPU node and return madengine-compatible rows
version_added: 0.1.0
description:
  - Reads a build manifest written by M(rocm.madengine.madengine_build) (or madengine), detects the node's GPUs,
    takes each image from the engine or its registry as O(pull) says, runs one container per model and returns
    one result row per result, in madengine's C(perf.csv) columns followed by provenance columns.
  - The model's script runs as the container's command, from the scripts baked into the image at
    C(/madengine/scripts) (C(.sh) with bash, C(.py) with python3, a directory's C(run.sh)), with its C(args).
    The node needs no MAD checkout.
  - A model that needs more runs as madengine runs it, in its workspace C(/myworkspace) of the container, through a
    shell script of steps (C(sh /madengine/run/steps.sh)) - when it has a C(url) (cloned into
    C(/myworkspace/<repository>) with its C(cred), user and password over HTTPS or a key over SSH, the commit in
    C(git_commit)), when the context names C(tools), C(pre_scripts) or C(post_scripts) (a tool's pre-scripts, the
    context's pre-scripts, the model, the context's post-scripts, the tool's post-scripts, in the model directory,
    with the tools' environment and their commands in front of the model's), when its data is downloaded (C(custom)
    scripts, C(nas)), with O(sys_env_details), O(keep_model_dir) or O(keep_alive).  The files the steps leave in
    C(/myworkspace) (madengine's C(*_output.csv), C(*_trace.csv), C(library_trace.csv), tool output directories)
    are copied to the node beside the run log, into C(<log name>.outputs/), and named in the row's
    C(output_files); the C(<model>_env.csv) of O(sys_env_details) goes to O(results_dir).
  - GPUs are detected from sysfs (AMD KFD topology and PCI devices) and from C(amd-smi), C(rocm-smi) or
    C(nvidia-smi) when installed. AMD containers get C(/dev/kfd) and the render nodes of their GPUs, the
    node's C(video) and C(render) groups, C(seccomp=unconfined), C(SYS_PTRACE) and the host IPC namespace;
    NVIDIA containers get a device request for their GPUs. Which GPUs a model gets follows its C(n_gpus)
    (C(-1) is all) and the context's C(docker_gpus).
  - Each model runs the images of the manifest that fit the node - built for its GPU vendor (or vendor-neutral)
    and its architecture (or for any), the image built for the node's architecture before a vendor-neutral one of
    the same Dockerfile. A model with none is C(SKIPPED) with the reason - the manifest's C(skipped_builds) when the
    model has no Dockerfile for the node's vendor - or a C(FAILURE) when its build for the node failed. An NVIDIA
    container that the engine cannot start because it has no NVIDIA runtime is a C(FAILURE) row saying so.
  - The run is judged as madengine does, from the first C(performance:<value> <metric>) line of the log or the
    rows of the model's C(multiple_results) CSV; a non-zero exit code or a log line with an error pattern is
    a C(FAILURE); a run past its timeout is killed and is a C(TIMEOUT); C(skip_gpu_arch) gives C(SKIPPED).
  - A model that fails is a row with status C(FAILURE) and the reason in C(error), never a failed task. The task
    fails only for problems of the whole node or of the input (manifest, options, GPUs, results directory).
  - Rows are appended to O(output) after every model, atomically and with a stable header.
  - Relative paths in options are taken relative to the working directory of the module (where the play
    runs, for a local task).
author:
  - ROCm madengine maintainers (@rocm)
extends_documentation_fragment:
  - rocm.madengine.attributes
  - rocm.madengine.attributes.ACTION_GROUP
  - rocm.madengine.attributes.ACTION_WORKER
  - rocm.madengine.docker
attributes:
  action:
    support: full
    details:
      - The action plugin starts the node's run in the background (see O(job_file)) and shows its progress journal
        (see O(progress_file)) until the run ends, then reads its result; a node unreachable during the run is
        retried for
        O(unreachable_timeout) seconds (the job goes on meanwhile, its rows are kept in O(output)) before the task
        fails.
  async:
    support: full
    details:
      - With C(async) on the task the run is the usual async job; nothing is shown while it runs.
  action_group:
    membership:
      - rocm.madengine.docker
      - rocm.madengine.catalogue
      - rocm.madengine.host
      - rocm.madengine.madengine
  check_mode:
    support: full
    details:
      - Check mode detects the GPUs, plans every container (image, command, devices, environment with secrets
        masked, mounts) and returns the plan in RV(runs). It makes no Docker call and writes nothing.
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - Every run benchmarks again and appends rows, so it always reports a change when it runs a model.
      - With O(pull_only) it changes only when it pulled an image, so a second call reports no change.
options:
  manifest_path:
    description:
      - The build manifest (C(build_manifest.json)) to run.
    type: path
  manifest:
    description:
      - The build manifest itself, for example RV(rocm.madengine.madengine_build#module:manifest) of a registered
        build task.
    type: dict
  mad_root:
    description:
      - A MAD catalogue on the node. Optional; when given, C(<mad_root>/data.json) and C(<mad_root>/credential.json)
        are the defaults of O(data_config) and O(credential_file), and the scripts of images built without them
        (by madengine) are copied into the container from here.
    type: path
  tags:
    description:
      - Run only the manifest's models these tags select, with madengine's tag grammar (model name, tag, C(all),
        C(dir/tag), C(selector:key=value) to append C( --key value) to the model's args).
      - A tag that selects no model of the manifest fails the task. Empty runs every model.
    type: list
    elements: str
    default: []
  additional_context:
    description:
      - madengine additional context for the run, as a dict or a string holding a JSON object or Python dict
        literal. Its keys override the manifest's C(context) (shallow merge).
      - Run-time keys are C(docker_env_vars), C(docker_mounts), C(docker_gpus) (a list such as C(0-3,6), or
        C(all)), C(docker_cpus), C(gpus_per_node) (also C(n_gpus), C(gpu_count), C(num_gpus), C(ngpus)), C(model_args),
        C(encapsulate_script), C(tools), C(pre_scripts), C(post_scripts), C(timeout), C(timeout_multiplier) (the
        timeout is multiplied by it), C(gen_sys_env_details), C(rocenv_mode), C(data), C(guest_os),
        C(MAD_ROCM_PATH), C(log_error_pattern_scan), C(log_error_patterns), C(log_error_benign_patterns).
      - C(docker_gpus) and C(docker_cpus) describe one machine, so the manifest's values (the build host's) are
        ignored with a warning; give them here.
    type: raw
  additional_context_file:
    description:
      - JSON file with an additional context object, applied before O(additional_context).
    type: path
  gpu_vendor:
    description:
      - V(auto) uses the one GPU vendor the node has, or CPU mode when it has no GPU.
      - V(AMD) or V(NVIDIA) insists on that vendor; the task fails when the node has no such GPU.
      - V(NONE) is CPU mode; containers get no GPU.
      - The context's C(gpu_vendor) chooses Dockerfiles at build time and is not used here.
    type: str
    choices: [auto, AMD, NVIDIA, NONE]
    default: auto
  timeout:
    description:
      - Seconds a model may run; C(0) means no limit.
      - When not set or null, the context's C(timeout), else the model's own C(timeout) when positive, else
        C(7200).
    type: int
  results_dir:
    description:
      - Directory of the run logs (C(<model>_<dockerfile stem>.<run id>.run.live.log)) and of the default O(output);
        created when missing (not in check mode).
      - Default the directory of O(manifest_path), else the current directory.
    type: path
  output:
    description:
      - The node's results CSV. Default C(<results_dir>/perf.csv). Its directory is created when missing.
    type: path
  append:
    description:
      - Keep the rows already in O(output) and add the new ones (as madengine does). With V(false) the file is
        replaced by this run's rows.
    type: bool
    default: true
  pull:
    description:
      - V(missing) uses the image when the engine already has it (by the manifest's registry digest, or by its
        local name when its id is the one built) and pulls it from the registry otherwise.
      - V(always) pulls the registry digest (else the registry tag) before each run.
      - V(never) only uses images the engine has; a missing image fails its model.
    type: str
    choices: [always, missing, never]
    default: missing
  keep_alive:
    description:
      - Leave each model's container running after its run, with its workspace and model directory, to enter it
        with C(docker exec -it <name> bash); the task warns with that command and RV(runs) gives it as C(enter).
        Remove the containers yourself afterwards (C(docker rm -f <name>)).
    type: bool
    default: false
  keep_model_dir:
    description:
      - Copy each model's directory in the container (C(run_directory), or the clone of its C(url)) to the node
        after the run, into C(<log name>.outputs/), as madengine leaves it in its working directory.
        The container is removed as usual.
    type: bool
    default: false
  sys_env_details:
    description:
      - Write the system environment details of each model's container (OS, CPU, memory, and the GPU, ROCm and CUDA
        parts when their tools are in the image) to C(<results_dir>/<model>_env.csv), in madengine's format.
      - When not set, the context's C(gen_sys_env_details) decides (C(rocenv_mode) C(full) adds hardware sections);
        off when neither is set.
    type: bool
  tools_config:
    description:
      - madengine's C(tools.json) on the node (its C(--tools-config)). Default the catalogue's
        C(scripts/common/tools.json) (from O(mad_root) or O(catalogue_files)), else the collection's own.
    type: path
  catalogue_files:
    description:
      - Files of the catalogue the runs need beside the images (C(scripts/common), pre/post-scripts, C(custom)
        data scripts), as RV(rocm.madengine.madengine_build#module:catalogue_files) returns them, so that the node
        needs no MAD checkout. O(mad_root) wins for a file it has.
    type: dict
  summary_output:
    description:
      - Also write the run summary in madengine's C(--summary-output) shape (C(successful_runs), C(failed_runs),
        C(total_runs), C(session_start_row), C(session_row_count)) to this JSON file.
    type: path
  progress_file:
    description:
      - Append the run's progress to this file as it goes, one JSON object a line - C(plan) (the models to run),
        then C(start) and C(end) of each model (C(model), C(status), C(elapsed), C(rows), C(done) of C(total), the
        path of its C(log)) - so that it can be followed while the models run (C(tail -f)).
      - When the task runs without async and not in check mode, the action plugin runs the module in the background
        on the node (O(job_file)) with a journal of its own in the node's async directory and shows each of its
        lines on the controller (in a terminal and in AWX job output, at default verbosity) within about a second
        of its writing. Each request for news waits on the node (a check every 0.1 s during the job's first 30 s,
        every 0.5 s after, for up to 5 s) and returns as soon as there are new lines or the job has ended, so a
        node costs one round trip per news and one per 5 s of a quiet model, and no connection stays open while a
        model runs; it sets this option then, unless it is given.
    type: path
  logs_dest:
    description:
      - A directory on the controller (made when missing; relative to the directory C(ansible-playbook) runs in)
        where the action plugin keeps a copy of each run log of the rows once the node's models have run, named as
        on the node; RV(logs) lists them. A log longer than O(logs_max_size) bytes keeps its last
        O(logs_max_size) bytes, after a first line saying how much was cut and where the whole log is on the node.
        C(madengine_report) then names the controller's copy in C(log_path) and the node's file in
        C(node_log_path).
      - The module reads the tails on the node at the end of its run and they travel gzip-compressed in its result
        to the action plugin, which writes them and keeps no log content in the task's result (no further task,
        module or round trip). On a host with a local connection a log already at its destination is left as it is.
      - Not used with O(pull_only), in check mode or with C(async) on the task (no result reaches the controller
        then).
    type: path
  logs_max_size:
    description:
      - The most bytes of each run log that O(logs_dest) keeps (its tail).
    type: int
    default: 4194304
  result_file:
    description:
      - Also write the module's result, with the warnings it gave, to this file (JSON, mode 0600) when it ends.
      - When the task runs without async and not in check mode, the action plugin sets it in the node's async
        directory, reads the result there with one shell command once the job has ended (no module call; when the
        file is missing, O(job_file) says why - the run's error, or that its process is gone) and removes it.
    type: path
  job_file:
    description:
      - Run the models in the background - the module returns at once with C(job_file) and the C(pid) of a process
        of its own that runs them, detached from the connection (a session of its own, standard
        streams on /dev/null) - and keep this file as the job's state (JSON, mode 0600) - C(started) with the
        C(pid) while it runs, C(finished) once it ended (with C(failed) and C(msg) when the run itself raised).
        The result is handed over in O(result_file), which it needs.
      - When the task runs without async and not in check mode, the action plugin sets it in the node's async
        directory and follows the job with O(progress_file) (one module process per node), then removes the job's
        files. A job whose process vanished (killed, or the node restarted) fails the task naming the node.
    type: path
  unreachable_timeout:
    description:
      - Seconds the action plugin keeps trying a node that became unreachable while its models run (the run goes on
        on the node meanwhile) before it fails the task with RV(unreachable_since), the time the node was
        first lost. Not used with C(async) on the task, in check mode or with O(pull_only).
    type: float
    default: 600
  skip_model_run:
    description:
      - Take every image as O(pull) says and plan its container, but run nothing; every model gets a C(SKIPPED) row.
    type: bool
    default: false
  pull_only:
    description:
      - Only make sure every image this node would run is on its engine, as O(pull) says, and return them in
        RV(images); run no container, write no file, return no row and set no fact.
      - An image that cannot be pulled is an C(error) of its RV(images) item and a warning, not a failed task
        (the model's run then fails with the reason in its row).
      - Playbooks use it to pull before the runs with a C(throttle), so that a large fleet does not pull from the
        registry all at once.
    type: bool
    default: false
  disable_skip_gpu_arch:
    description:
      - Run models even when their C(skip_gpu_arch) lists the node's GPU architecture.
    type: bool
    default: false
  host_root:
    description:
      - The root of the node's filesystem. GPU detection reads C(sys/devices/virtual/kfd), C(sys/bus/pci/devices)
        and C(sys/module) under it, the ROCm version under C(<host_root>/opt/rocm) (or the context's
        C(MAD_ROCM_PATH)), and looks for C(amd-smi), C(rocm-smi) and C(nvidia-smi) in C(<host_root>/usr/bin) and
        C(<host_root>/opt/rocm/bin) before C(PATH) when it is not V(/). The device nodes given to containers
        (C(kfd), C(dri/renderD*)) are those under C(<host_root>/dev); containers always see them under C(/dev).
    type: path
    default: /
  sysfs_root:
    description:
      - Deprecated, use O(host_root). Where sysfs is mounted (it meant C(/sys)); wins over C(<host_root>/sys).
    type: path
  dev_root:
    description:
      - Deprecated, use O(host_root). Where the node's device nodes are (it meant C(/dev)); wins over
        C(<host_root>/dev).
    type: path
  credential_file:
    description:
      - madengine C(credential.json). The entry named by a model's C(cred) becomes environment variables
        C(<CRED>_<KEY>) of its container; the entry keyed by the manifest's registry logs in for pulls.
      - Its values never appear in results, logs or rows.
      - Default C(<mad_root>/credential.json) when that file exists. Mutually exclusive with O(credentials).
    type: path
  credentials:
    description:
      - The content of a madengine C(credential.json) (credential name to entry), used as O(credential_file) is,
        so a playbook can send the build host's credentials to the nodes without writing them to a file.
      - Nothing is written to disk for them; their secret values never appear in results, logs or rows.
      - Mutually exclusive with O(credential_file).
    type: dict
  data_config:
    description:
      - madengine C(data.json) with the data providers of the models' C(data) names.
      - C(local) providers are mounted (read-only unless C(readwrite)); C(custom) scripts run in the container before
        the model; C(nas) data is copied with rsync over SSH in the container (the image needs C(rsync) and C(ssh));
        C(minio) and C(aws) are served from a mirror only. A mirror (C(<mirrorlocal>/<data name>)) is mounted
        read-write, filled by the download and reused by the next run.
    type: path
  data_providers:
    description:
      - The content of a madengine C(data.json) (data name to providers), instead of the file O(data_config), so a
        playbook can send the build host's file to the nodes as data. Served as O(data_config) says.
    type: dict
  force_mirror_local:
    description:
      - Directory used as C(mirrorlocal) of every non-local data provider (madengine's C(--force-mirror-local)).
    type: path
  registry:
    description:
      - The C(host:port) by which this node reaches the registry the build pushed to, when that is another address
        than the build's (a mirror of it, or the same registry under a name the node can reach).
      - The images the manifest records under the build's registry are pulled as C(<registry>/<repository>) by
        the manifest's digests, so the node runs exactly what was built; the rows keep the manifest's references.
      - The credentials entry of this address logs in for the pulls, else the build registry's entry.
      - Playbooks set it to the node's C(madengine_registry). Empty or the build's registry uses the manifest's
        references as they are.
    type: str
  node_name:
    description:
      - The C(host) column of the rows. Playbooks set it to C({{ inventory_hostname }}).
      - Default the node's host name.
    type: str
  deployment_type:
    description:
      - The C(deployment_type) column; when not given, E(MAD_DEPLOYMENT_TYPE), else C(local).
    type: str
  vm_id:
    description:
      - The C(vm_id) column, when the node is an ephemeral VM.
    type: str
  run_id:
    description:
      - Identifier of this run in rows, container names, labels and log names. Give the same value to every
        call of one benchmark (for example one call per model). Default a new time-based id.
    type: str
notes:
  - Progress is not streamed by a module. Calling the module once per model (a loop over the model names with
    O(tags) set to the item, one O(run_id) and one O(output)) shows one line per model as the play runs;
    RV(runs) gives each model's timings.
  - Downloads from MinIO and S3 are not done; such data must be in a mirror.
  - Unlike madengine, a manifest is never rewritten, FAILURE rows carry the reason in C(error), failed builds
    recorded in the manifest become FAILURE rows, and an image that cannot be pulled fails its model instead
    of silently running a stale local copy.
seealso:
  - module: rocm.madengine.madengine_build
  - module: rocm.madengine.madengine_discover
"""

EXAMPLES = r"""
---
- name: Run every model of the manifest on this node
  rocm.madengine.madengine_run:
    manifest_path: /srv/results/build_manifest.json
    results_dir: /srv/results
    node_name: "{{ inventory_hostname }}"
  register: run

- name: Show the summary
  ansible.builtin.debug:
    var: run.summary

- name: One call per model of a registered build, so the play shows progress model by model
  rocm.madengine.madengine_run:
    manifest: "{{ build.manifest }}"
    tags: ["{{ item }}"]
    run_id: "{{ build.run_id }}"
    results_dir: /srv/results
    node_name: "{{ inventory_hostname }}"
    gpu_vendor: AMD
    timeout: 3600
  loop: "{{ build.models }}"
  register: per_model

- name: Credentials from a vault, so the node needs no credential file
  rocm.madengine.madengine_run:
    manifest: "{{ build.manifest }}"
    credentials: "{{ vault_madengine_credentials }}"
    data_providers: "{{ build.data_providers }}"
    results_dir: /srv/results

- name: Pull the images first, at most 8 nodes at a time
  rocm.madengine.madengine_run:
    manifest: "{{ build.manifest }}"
    pull_only: true
  throttle: 8

- name: Profile the models with rocprofv3 and keep their model directories; tool outputs land beside the logs
  rocm.madengine.madengine_run:
    manifest: "{{ build.manifest }}"
    catalogue_files: "{{ build.catalogue_files }}"
    additional_context:
      tools:
        - name: rocprofv3
      gen_sys_env_details: true
    keep_model_dir: true
    results_dir: /srv/results

- name: Plan the containers without running them
  rocm.madengine.madengine_run:
    manifest_path: /srv/results/build_manifest.json
    additional_context:
      docker_gpus: "0-3"
      docker_env_vars:
        HSA_ENABLE_SDMA: "0"
  check_mode: true
  register: plan
"""

RETURN = r"""
job_file:
  description:
    - The job's state file, as the node expanded its path (with O(job_file) only - the module returns at once and
      the rest of the result is handed over in O(result_file) when the models have run).
  returned: when O(job_file) is given
  type: str
  sample: /root/.ansible_async/madengine-job-3f2a9c1b7d0e.json
pid:
  description: The process on the node that runs the models (with O(job_file) only).
  returned: when O(job_file) is given
  type: int
  sample: 48213
results:
  description:
    - One row per result (a model with C(multiple_results) gives one row per CSV row, named C(<model>_<row model>)).
    - madengine's 29 C(perf.csv) columns first (C(model), C(n_gpus), C(nnodes), C(gpus_per_node),
      C(training_precision), C(pipeline), C(args), C(tags), C(docker_file), C(base_docker), C(docker_sha),
      C(docker_image), C(git_commit), C(machine_name), C(deployment_type), C(launcher), C(gpu_architecture),
      C(performance), C(metric), C(relative_change), C(status), C(build_duration), C(test_duration), C(dataname),
      C(data_provider_type), C(data_size), C(data_download_duration), C(build_number),
      C(additional_docker_run_options)), then C(host), C(image_digest), C(gpu_product), C(gpu_ids),
      C(driver_version), C(rocm_version), C(cuda_version), C(start_time), C(end_time), C(exit_code), C(run_id),
      C(log_path), C(output_files), C(vm_id), C(error), then the extra columns of multiple_results CSVs. Every value
      is a string.
    - C(status) is C(SUCCESS), C(FAILURE), C(TIMEOUT) or C(SKIPPED); C(error) says why for the last three.
    - Empty in check mode.
  returned: always
  type: list
  elements: dict
  sample:
    - model: dummy
      n_gpus: "1"
      gpu_architecture: gfx942
      performance: "2000.5"
      metric: samples_per_second
      status: SUCCESS
      test_duration: "0.412"
      host: gpu-node-1
      image_digest: >-
        localhost:5000/ci-dummy_cpu.ubuntu@sha256:0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c
      gpu_ids: "0"
      exit_code: "0"
      run_id: 20261122T101500Z-1a2b3c
      log_path: /srv/results/dummy_cpu.ubuntu.20261122T101500Z-1a2b3c.run.live.log
      error: ""
perf_csv:
  description: Absolute path of the node's results CSV (in check mode, the file that would be written).
  returned: always
  type: str
  sample: /srv/results/perf.csv
summary:
  description:
    - C(run_id), C(node), C(perf_csv), C(models) (model runs), C(rows), C(counts) (rows per status),
      C(failed) (C(model), C(status), C(error) of every FAILURE and TIMEOUT row), C(skipped) (C(model), C(reason))
      and C(duration) (seconds).
  returned: always
  type: dict
  sample:
    run_id: 20261122T101500Z-1a2b3c
    node: gpu-node-1
    perf_csv: /srv/results/perf.csv
    models: 2
    rows: 2
    counts: {SUCCESS: 1, FAILURE: 1, TIMEOUT: 0, SKIPPED: 0}
    failed:
      - model: dummy_fail
        status: FAILURE
        error: "the script exited with code 3; log: RuntimeError: simulated failure after warm-up"
    skipped: []
    duration: 1.9
runs:
  description:
    - One item per model run (image) in order, with C(model), C(image) (manifest key), C(action) (C(run), C(skip)
      or C(fail), as planned) and C(reason), C(planned) (the plan in a few words - C(run) and the image, or C(skip) or
      C(fail) and the reason), C(timeout), C(gpu_ids), C(log_path), C(data) (mounts) and C(container),
      the planned container (C(name), C(image), C(image_id), C(command), C(working_dir), C(user), C(environment)
      with secret values masked, C(devices), C(device_requests), C(group_add), C(binds), C(cap_add),
      C(security_opt), C(ipc_mode), C(network_mode), C(labels), ... and C(docker_run), the equivalent command
      line), or null when none is planned.
    - After a run also C(status), C(image_digest), C(pulled), C(exit_code), C(start_time), C(end_time), C(rows),
      C(kept), C(enter) (the command to enter a container kept running), C(output_files) and C(timings) (seconds
      C(image), C(run), C(total)); C(steps) (C(clone), C(pre_scripts), C(post_scripts), C(model_dir), C(command))
      for a model run through steps.
  returned: always
  type: list
  elements: dict
gpu:
  description:
    - What GPU detection found, C(vendor) (C(AMD), C(NVIDIA) or C(NONE)), C(count), C(architecture), C(product),
      C(driver_version), C(rocm_version), C(cuda_version), C(gpus) (C(index), C(arch), C(render_minor),
      C(pci_bdf), C(product), C(node_id), C(uuid)) and C(notes).
  returned: always
  type: dict
  sample:
    vendor: AMD
    count: 8
    architecture: gfx942
    product: AMD Instinct MI300X
    driver_version: 6.8.5
    rocm_version: 6.4.1
    cuda_version: ""
    gpus: []
    notes: []
summary_output:
  description: The file the madengine-shaped run summary was written to.
  returned: when O(summary_output) is set and models ran
  type: str
  sample: /srv/results/run_summary.json
run_id:
  description: The run's identifier.
  returned: always
  type: str
  sample: 20261122T101500Z-1a2b3c
filtered:
  description:
    - Images of the manifest left out because another image of the same model fits the node (vendor or
      architecture), with C(model), C(image) and C(reason).
  returned: always
  type: list
  elements: dict
images:
  description:
    - With O(pull_only), one item per image the node would run, with C(model), C(image) (manifest key), C(ref)
      (the registry digest, else the tag a pull asks for), C(pulled), C(image_digest) and C(error) (empty when
      the image is there). In check mode only the plan (C(pulled) false, no digest).
  returned: when O(pull_only) is set
  type: list
  elements: dict
  sample:
    - model: dummy
      image: ci-dummy_cpu.ubuntu
      ref: localhost:5000/ci-dummy_cpu.ubuntu@sha256:0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c
      pulled: true
      image_digest: >-
        localhost:5000/ci-dummy_cpu.ubuntu@sha256:0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c
      error: ""
logs:
  description:
    - The controller's copies of the run logs, one item per log of the rows (O(logs_dest)).
    - When a copy cannot be written, the task warns and this list is empty; the rows are kept.
  returned: when O(logs_dest) is set and the models ran
  type: list
  elements: dict
  contains:
    node_path:
      description: The log on the node.
      type: str
    path:
      description: The controller's copy (absolute); empty when the log is missing on the node.
      type: str
    size:
      description: The log's size on the node, in bytes.
      type: int
    truncated:
      description: Only its last O(logs_max_size) bytes were kept.
      type: bool
    changed:
      description: The controller's copy was written.
      type: bool
unreachable_since:
  description:
    - When the node was lost while its models ran and stayed unreachable for O(unreachable_timeout) seconds (the task
      fails then), the UTC time it was first found unreachable.
  returned: when the node was lost during the run
  type: str
  sample: "2026-12-04T18:20:05Z"
ansible_facts:
  description: Facts set on the node (not with O(pull_only)).
  returned: unless O(pull_only) is set
  type: dict
  contains:
    madengine_results:
      description: The same rows as RV(results).
      type: list
      elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.madengine_run_task import (
    ARGUMENT_SPEC,
    CONSTRAINTS,
    run,
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True, **CONSTRAINTS)
    run(module)


if __name__ == "__main__":
    main()
