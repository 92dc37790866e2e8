# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""madengine_report, run in the task's process when it would run on the controller with the controller's Python.

The merge and the report are controller work (the playbooks delegate them to localhost): there the module's task
runs here, with the module's argument spec and code (plugin_utils/on_controller.py says when and how). Any other
host or interpreter runs the module.
"""

from __future__ import annotations

from ansible_collections.rocm.madengine.plugins.plugin_utils.on_controller import ControllerAction


class ActionModule(ControllerAction):

    TASK_MODULE = "madengine_report_task"
