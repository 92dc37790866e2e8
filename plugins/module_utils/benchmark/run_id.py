# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""The run id one benchmark shares: made by madengine_build, given to every madengine_run of the run."""

from __future__ import annotations

import datetime
import re
import uuid

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def new_run_id():
    """``20261122T101500Z-1a2b3c``: UTC time, sortable, plus 6 random hex digits (unique enough for one fleet)."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return "%s-%s" % (now, uuid.uuid4().hex[:6])


def resolve_run_id(value):
    """``value`` checked (it names containers, labels and log files), or a new id when it is empty."""
    if value is None or value == "":
        return new_run_id()
    if not isinstance(value, str) or not RUN_ID_PATTERN.match(value):
        raise MadengineError("run_id %r must be 1-64 letters, digits, '.', '_' or '-'." % (value,))
    return value
