# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""The progress journal of a node's run: one JSON object a line, written as the models start and end.

The madengine_run action plugin reads it while the run goes on (the module runs as a background job) and
shows each line on the controller; anyone can follow it on the node (``tail -f``).  The plugin reads it with
``watch_command``: one shell command that waits on the node for news (a new line, or the job's end) and
returns as soon as there is some, so a node costs one round trip per news and one every few seconds of a
silent model, not one every poll interval.  Events: ``plan``
(``total``, ``models``), ``start`` (``model``, ``index``, ``total``, ``log``: the run log the model's
output streams into) and ``end`` (``model``, ``status``, ``elapsed``, ``rows``, ``done``, ``total``,
``log``).  No error text: it may hold secrets.
"""

from __future__ import annotations

import json
import os
import shlex
import time

# separates the journal's new lines from the job's state in what watch_command prints
WATCH_MARK = "--madengine-job-state--"
# the start of a job's state file while the job runs ({"started": 1, "finished": 0, "pid": N}, detached.job_state)
RUNNING_STATE = '{"started"'
# what watch_command prints for the state of a job whose file says it runs while its process is gone (killed)
LOST_STATE = '{"lost": 1}'
# a wait checks at its first step for this long (a short model's end is seen at once), then at growing pauses
QUICK_CHECKS_FOR = 1.0


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


def wait_steps(wait_seconds, step_seconds, longest_step_seconds=None):
    """The pauses between the checks of one wait: ``step_seconds`` for its first second, then each twice the one
    before, up to ``longest_step_seconds`` (default: the same step throughout), ``wait_seconds`` in all."""
    longest = max(float(longest_step_seconds or step_seconds), float(step_seconds))
    steps, waited, step = [], 0.0, float(step_seconds)
    while waited + 1e-9 < float(wait_seconds):
        steps.append(step)
        waited += step
        if waited + 1e-9 >= QUICK_CHECKS_FOR:
            step = min(step * 2, longest)
    return steps


def watch_command(journal, job_file, offset, wait_seconds, step_seconds, settle_seconds, longest_step_seconds=None):
    """A POSIX shell command (no Python, no module) that waits on the node for news of a background job.

    Unless the job has ended or the journal has grown past ``offset`` bytes already, it waits up to
    ``wait_seconds`` for either, checking every ``step_seconds`` (after the first second, at pauses that double up to
    ``longest_step_seconds``: ``wait_steps``) whether the journal or the job's state file is
    newer than a stamp it wrote first (``<job_file>.watch``: a check is a shell builtin, the only process a
    step starts is ``sleep``), and prints the journal from ``offset`` on, ``WATCH_MARK`` and the start of the
    job's state file (enough to tell a running job from an ended one; the result, which may be large, is read
    once, at the end).  News waits ``settle_seconds`` more, so that lines written together (a model's end and the
    next one's start) come in one answer; a job seen ended needs no such wait.  The state is read before the
    journal: a job seen ended has written all its lines.  A state file that says the job runs (with the
    ``pid`` of its process) while /proc has no such process, or only its zombie, is printed as ``LOST_STATE``: the
    job was killed before it could say it ended.  ``split_watch_output`` takes the answer apart;
    ``watch_stamp`` names the stamp, for the cleanup.
    """
    steps = " ".join("%g" % step for step in wait_steps(wait_seconds, step_seconds, longest_step_seconds))
    return ("j=%(journal)s; f=%(job)s; t=%(stamp)s; n=0; echo >\"$t\" 2>/dev/null; "
            "s=$(head -c 64 \"$f\" 2>/dev/null); z=$(wc -c 2>/dev/null <\"$j\"); "
            "if case $s in %(running)s*) true ;; *) false ;; esac && [ $((${z:-0} + 0)) -le %(offset)d ]; then "
            "for d in %(steps)s; do if [ \"$j\" -nt \"$t\" ] || [ \"$f\" -nt \"$t\" ]; then n=1; break; fi; "
            "sleep \"$d\" 2>/dev/null || sleep 1; done; "
            "s=$(head -c 64 \"$f\" 2>/dev/null); "
            "if [ \"$n\" -gt 0 ] && case $s in %(running)s*) true ;; *) false ;; esac; then "
            "sleep %(settle)s 2>/dev/null; s=$(head -c 64 \"$f\" 2>/dev/null); fi; fi; "
            "case $s in %(running)s*) p=${s##*pid\\\":}; p=${p# }; p=${p%%%%[!0-9]*}; "
            "if [ -n \"$p\" ] && [ -d /proc/self ]; then q=; { read -r q <\"/proc/$p/stat\"; } 2>/dev/null; "
            "case ${q##*) } in ''|Z*|X*) s=$(head -c 64 \"$f\" 2>/dev/null); "
            "case $s in %(running)s*) s=%(lost)s ;; esac ;; esac; fi ;; esac; "
            "tail -c +%(start)d \"$j\" 2>/dev/null; printf '\\n%(mark)s\\n'; printf '%%s' \"$s\""
            % {"journal": shlex.quote(journal), "job": shlex.quote(job_file),
               "stamp": shlex.quote(watch_stamp(job_file)), "steps": steps, "running": shlex.quote(RUNNING_STATE),
               "lost": shlex.quote(LOST_STATE),
               "offset": int(offset), "start": int(offset) + 1, "settle": "%g" % settle_seconds,
               "mark": WATCH_MARK})


def watch_stamp(job_file):
    """The file watch_command touches beside the job's state file to tell what changed since it asked."""
    return job_file + ".watch"


def split_watch_output(text):
    """(the journal's new text, the job's state) of what watch_command printed; a terminal's CR LF read as LF."""
    head, _mark, state = text.replace("\r\n", "\n").rpartition("\n%s\n" % WATCH_MARK)
    return head, state


def job_running(state):
    """Whether a job's state file (as watch_command printed it) says the job still runs."""
    return state.startswith(RUNNING_STATE)
