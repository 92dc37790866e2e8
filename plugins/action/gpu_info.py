# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""gpu_info, answered on the controller when the node has nothing to tell.

A node whose inventory declares it (``gpu_vendor: NONE``, a CPU node, or ``detect: false`` with the vendor and
architecture) has its profile made from the task's arguments alone: the same code as the module's, run here,
with no connection to the node and no module process there. Any other call (GPUs to detect, or no node_name, so
the node's host name is needed) runs the module on the node as usual.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.gpu_info_task import (
    ARGUMENT_SPEC,
    gpu_info,
    needs_the_node,
)
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError

display = Display()


class ActionModule(ActionBase):

    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        _checked, params = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        if needs_the_node(params):
            result.update(self._execute_module(task_vars=task_vars))
            self._remove_tmp_path(self._connection._shell.tmpdir)
            return result
        try:
            found = gpu_info(params, runner=None)
        except MadengineError as exc:
            result.update(failed=True, msg=str(exc))
            return result
        for warning in found.pop("warnings"):
            display.warning(warning)
        result.update(found)
        return result
