# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""madengine_build, run in the task's process when the build host is the controller itself, with its Python.

A build host that is the controller (localhost, the default build host) builds through the Docker SDK from this
process, with the module's argument spec and code (plugin_utils/on_controller.py says when and how): the secrets of
the credentials are masked in the result as the module masks them. Any other build host, or interpreter, runs the
module.
"""

from __future__ import annotations

from ansible_collections.rocm.madengine.plugins.plugin_utils.on_controller import ControllerAction


class ActionModule(ControllerAction):

    TASK_MODULE = "madengine_build_task"
