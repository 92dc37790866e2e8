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

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.credentials import document_secrets
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.detached import run_detached
from ansible_collections.rocm.madengine.plugins.module_utils.common import absolute_paths, mask_only


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
