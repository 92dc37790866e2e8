# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""The madengine_discover module's task: a MAD catalogue and tags in, the selected models out."""

from __future__ import annotations

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.discovery import discover, select
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError, absolute_paths


def run(module):
    """The whole module after AnsibleModule: exit_json or fail_json.  Never changes anything."""
    absolute_paths(module)
    try:
        catalogue = discover(module.params["mad_root"])
        models, notes = select(catalogue, module.params["tags"])
    except MadengineError as exc:
        module.fail_json(msg=str(exc))
    for note in notes:
        module.warn(note)
    module.exit_json(changed=False, models=models, available=len(catalogue.entries),
                     ansible_facts=dict(madengine_models=models))
