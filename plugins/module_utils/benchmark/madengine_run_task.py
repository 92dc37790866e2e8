# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""The madengine_run module's task: a manifest in, containers run on this node, rows out (node_run.py).

Task-level errors (bad options, a missing or corrupt manifest, a GPU vendor the node does not have,
missing device nodes, an unwritable results directory, an unreachable engine) fail the task with a
sentence; a model that fails is a row.  With job_file the run goes on in the background
(detached.py) and its code, the Docker SDK with it, is imported there: the module process the controller
waits for only parses its arguments and starts the worker.
"""

from __future__ import annotations

from ansible.module_utils.common.parameters import env_fallback

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.credentials import document_secrets
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.detached import run_detached
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.docker_args import DOCKER_COMMON_ARGS
from ansible_collections.rocm.madengine.plugins.module_utils.common import absolute_paths, mask_only

# the module's options; its action plugin checks a task's arguments against them when it starts the run itself
ARGUMENT_SPEC = dict(
    manifest_path=dict(type="path"),
    manifest=dict(type="dict"),
    mad_root=dict(type="path"),
    tags=dict(type="list", elements="str", default=[]),
    additional_context=dict(type="raw"),
    additional_context_file=dict(type="path"),
    gpu_vendor=dict(type="str", choices=["auto", "AMD", "NVIDIA", "NONE"], default="auto"),
    timeout=dict(type="int"),
    results_dir=dict(type="path"),
    output=dict(type="path"),
    append=dict(type="bool", default=True),
    pull=dict(type="str", choices=["always", "missing", "never"], default="missing"),
    keep_alive=dict(type="bool", default=False),
    keep_model_dir=dict(type="bool", default=False),
    sys_env_details=dict(type="bool"),
    tools_config=dict(type="path"),
    catalogue_files=dict(type="dict"),
    summary_output=dict(type="path"),
    progress_file=dict(type="path"),
    logs_dest=dict(type="path"),
    logs_max_size=dict(type="int", default=4194304),
    result_file=dict(type="path"),
    job_file=dict(type="path"),
    unreachable_timeout=dict(type="float", default=600),
    skip_model_run=dict(type="bool", default=False),
    pull_only=dict(type="bool", default=False),
    disable_skip_gpu_arch=dict(type="bool", default=False),
    host_root=dict(type="path", default="/"),
    sysfs_root=dict(type="path", removed_in_version="1.0.0", removed_from_collection="rocm.madengine"),
    dev_root=dict(type="path", removed_in_version="1.0.0", removed_from_collection="rocm.madengine"),
    credential_file=dict(type="path"),
    credentials=dict(type="dict", no_log=True),
    data_config=dict(type="path"),
    data_providers=dict(type="dict"),
    force_mirror_local=dict(type="path"),
    registry=dict(type="str"),
    node_name=dict(type="str"),
    deployment_type=dict(type="str", fallback=(env_fallback, ["MAD_DEPLOYMENT_TYPE"])),
    vm_id=dict(type="str"),
    run_id=dict(type="str"),
)
ARGUMENT_SPEC.update(DOCKER_COMMON_ARGS)
CONSTRAINTS = dict(
    mutually_exclusive=[("manifest_path", "manifest"), ("data_config", "data_providers"),
                        ("credential_file", "credentials")],
    required_one_of=[("manifest_path", "manifest")],
    required_by={"job_file": "result_file"},
)


def run(module):
    """The whole module after AnsibleModule: exit_json or fail_json (or, with job_file, the job's description)."""
    absolute_paths(module)
    credentials = module.params.get("credentials")
    mask_only(module, "credentials", document_secrets(credentials))
    if module.params.get("job_file"):
        run_detached(module, lambda: run_and_hand_over(module, credentials))
    result = run_and_hand_over(module, credentials)
    if result.get("failed"):
        module.fail_json(msg=result.get("msg", "The run failed."))
    module.exit_json(**result)


def run_and_hand_over(module, credentials):
    """The run's result, handed over in result_file too (node_run.run_and_hand_over, imported when it runs)."""
    from ansible_collections.rocm.madengine.plugins.module_utils.benchmark import node_run

    return node_run.run_and_hand_over(module, credentials)
