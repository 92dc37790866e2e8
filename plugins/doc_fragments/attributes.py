# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment(object):
    """Attribute text shared by the collection's modules.

    ansible-core merges a fragment's attributes into a module's one level deep: a module that lists
    ``check_mode: {support: full, details: [...]}`` keeps the fragment's ``description`` and sets its own
    ``support`` and ``details`` (the module's keys win; lists are replaced, not joined).  So modules give
    only ``support`` and ``details``; every description lives here.
    """

    # What each attribute means; every module extends this one and sets the support levels itself.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Whether C(--check) is honoured, predicting C(changed) without touching the host.
  diff_mode:
    description: Whether C(--diff) shows what changed or would change.
  idempotent:
    description: Whether a second run with the same arguments reports no change.
  platform:
    description: The systems the module runs on.
    support: full
    platforms: posix
"""

    # Modules in action groups of meta/runtime.yml; each module lists its groups under membership.
    ACTION_GROUP = r"""
options: {}
attributes:
  action_group:
    description:
      - In C(module_defaults), C(group/<group>) of a group listed under C(membership) sets the options that
        group's modules share, for all of them at once (the collection's C(docs/module-defaults.md) names them).
    support: full
"""

    # Modules whose action plugin of the same name runs them on the host (the module does the work).
    ACTION_WORKER = r"""
options: {}
attributes:
  action:
    description: Whether the task runs an action plugin on the controller.
  async:
    description: Whether the task can run with C(async).
"""

    # Modules whose action plugin runs their code in the task's process when the module would run on the controller.
    ON_CONTROLLER = r"""
options: {}
attributes:
  action:
    description: Whether the task runs an action plugin on the controller.
    support: full
    details:
      - On the controller with the controller's own Python (a local connection, the same interpreter, no C(become),
        C(async) or task C(environment)), the action plugin of the same name runs the module's code in the task's
        process instead of starting a module process; the arguments are checked and the result masked as the module
        does. Any other host or interpreter runs the module.
  async:
    description: Whether the task can run with C(async).
    support: full
"""

    # Modules that only read.
    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    support: full
    details:
      - This module never changes anything, so check mode runs it unchanged.
  diff_mode:
    support: N/A
    details:
      - This module never changes anything.
  idempotent:
    support: full
"""

    # Actions that run on the controller only (their module file is documentation).
    ACTION_PLUGIN = r"""
options: {}
attributes:
  action:
    description: Whether the task runs an action plugin on the controller.
    support: full
  async:
    description: Whether the task can run with C(async).
    support: none
  bypass_host_loop:
    description: Whether the task runs once for the whole play instead of once per host.
    support: none
"""
