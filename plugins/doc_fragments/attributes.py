# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment(object):

    # Attributes every module of the collection shares.
    DOCUMENTATION = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/rocm.madengine.madengine) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - rocm.madengine.madengine
"""

    # For modules that only read.
    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    description: Whether C(--check) is honoured, predicting C(changed) without touching the host.
    support: full
    details:
      - This module never changes anything, so check mode runs it unchanged.
  diff_mode:
    description: Whether C(--diff) shows what changed or would change.
    support: N/A
    details:
      - This module never changes anything.
  idempotent:
    description: Whether a second run with the same arguments reports no change.
    support: full
"""
