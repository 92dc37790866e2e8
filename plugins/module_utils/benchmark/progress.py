# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""The progress journal of a node's run: one JSON object a line, written as the models start and end.

The madengine_run action plugin reads it while the run goes on (the module runs as an async job) and
shows each line on the controller; anyone can follow it on the node (``tail -f``).  Events: ``plan``
(``total``, ``models``), ``start`` (``model``, ``index``, ``total``, ``log``: the run log the model's
output streams into) and ``end`` (``model``, ``status``, ``elapsed``, ``rows``, ``done``, ``total``,
``log``).  No error text: it may hold secrets.
"""

from __future__ import annotations

import json
import os
import time


class ProgressJournal(object):
    """Appends events to ``path`` (nothing when path is empty); each line is flushed as it is written."""

    def __init__(self, path):
        self.path = path
        if path:
            directory = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(directory):
                os.makedirs(directory)

    def write(self, event, **fields):
        if not self.path:
            return
        fields.update(event=event, time=round(time.time(), 3))
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(fields, sort_keys=True) + "\n")


def describe(node, event):
    """One line for the operator, or None for an event it does not show."""
    kind = event.get("event")
    if kind == "plan":
        return "%s: %d model(s) to run: %s" % (node, event.get("total", 0), ", ".join(event.get("models") or []))
    if kind == "start":
        return "%s: [%d/%d] %s started%s" % (node, event.get("index", 0), event.get("total", 0), event.get("model"),
                                             ", log %s" % event["log"] if event.get("log") else "")
    if kind == "end":
        return "%s: [%d/%d done] %s %s in %.1f s (%d row%s)" % (
            node, event.get("done", 0), event.get("total", 0), event.get("model"), event.get("status"),
            event.get("elapsed") or 0.0, event.get("rows", 0), "" if event.get("rows", 0) == 1 else "s")
    return None


def parse_lines(text):
    """The events of complete journal lines in ``text`` (a line cut short or not JSON is left out)."""
    events = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events
