# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Run the fetch_run_logs module on the node, then write what it read on the controller (one task per node)."""

from __future__ import annotations

import os

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.run_logs import same_file, write_home
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError

LOCAL_CONNECTIONS = ("local", "ansible.builtin.local")


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("paths", "dest", "max_size"))

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self._task.args
        dest = args.get("dest")
        if not isinstance(dest, str) or not dest:
            raise AnsibleActionFail("fetch_run_logs needs dest, the directory on the controller")
        module_args = dict(args)
        fetched = self._execute_module(module_name="rocm.madengine.fetch_run_logs", module_args=module_args,
                                       task_vars=task_vars)
        if fetched.get("failed"):
            fetched.pop("logs", None)
            return dict(result, **fetched)
        local = self._connection.transport in LOCAL_CONNECTIONS
        node = task_vars.get("inventory_hostname", "the node")
        max_size = int(args.get("max_size") or 4 * 1024 * 1024)
        try:
            if self._task.check_mode:
                logs = [dict(node_path=i["path"], path="" if i["missing"] else os.path.abspath(
                    os.path.join(dest, os.path.basename(i["path"]))), size=i["size"], truncated=i["truncated"],
                    changed=not i["missing"]) for i in fetched["logs"]]
            else:
                logs = write_home(fetched["logs"], dest, node, max_size, same_file=same_file if local else None)
        except (MadengineError, OSError, ValueError) as exc:
            raise AnsibleActionFail("Cannot keep the run logs of %s in %s: %s" % (node, dest, exc))
        result.update(changed=any(i["changed"] for i in logs), logs=logs)
        return result
