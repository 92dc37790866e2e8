# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""Sizes as users write them (``32G``, ``8192M``, ``128GiB``, a bare number in a given unit), in binary units."""

from __future__ import annotations

import re

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError

GIB = 1 << 30
MIB = 1 << 20
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)
_FACTORS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_size(value, what, default_unit="m"):
    """Bytes from ``8G``, ``512M``, ``128GiB`` or a bare number in ``default_unit`` (``m`` MiB, ``g`` GiB)."""
    if isinstance(value, bool):
        raise MadengineError("%s must be a size such as 8G or 8192M, not %r." % (what, value))
    if isinstance(value, (int, float)):
        text = "%s%s" % (value, default_unit)
    else:
        text = str(value)
        if re.match(r"^\s*\d+(\.\d+)?\s*$", text):
            text += default_unit
    match = _SIZE_RE.match(text)
    if not match:
        raise MadengineError("%s must be a size such as 8G or 8192M, not %r." % (what, value))
    size = int(float(match.group(1)) * _FACTORS[match.group(2).lower()])
    if size <= 0:
        raise MadengineError("%s must be larger than zero, not %r." % (what, value))
    return size


def gib(size):
    """A byte count as GiB for messages: ``20 GiB``, ``1.5 GiB``."""
    text = "%.1f" % (size / GIB)
    return (text[:-2] if text.endswith(".0") else text) + " GiB"
