# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""madengine_run, watched: the node's whole run as one background job, its progress shown as it happens.

The module stays the worker. This plugin starts it on the node with a job file (its option job_file): the module
answers at once and runs all the node's models in a process of its own, detached from the connection (one module
process, no async_wrapper), with a progress journal beside the job file; then the plugin asks the node for news
with one short shell command (no Python, no module) that waits on the node: during the job's first 30 s it checks
every 0.1 s for the first second of a wait (short models end within a check of it), then at pauses doubling up to
0.5 s, and every 0.5 s after the first 30 s, for up to 5 s, and returns as
soon as the journal has new lines or the job has ended. Each new line is shown
with Display on the controller (default verbosity: in a terminal, and in AWX as the job's output; on
stderr when the stdout callback writes a JSON document), within about a second of being written; a node
costs one round trip per news and one per 5 s of a quiet model. No connection stays open and idle while
a model runs. When the node cannot be reached, it tries again for ``unreachable_timeout`` seconds (the
job goes on; its rows are in the node's CSV), then fails the task with ``unreachable_since``, the time
it was first lost. At the end the module's result is read with one shell command from the result_file it
handed it over in (its warnings are shown here); when it wrote none, the job file says why (the run raised) or
that its process vanished (killed). The job's files are then removed.

Check mode, pull_only and a task with its own ``async`` run the module as usual.
"""

from __future__ import annotations

import json
import secrets
import shlex
import time
from datetime import datetime, timezone

from ansible import constants as C
from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.progress import (
    WATCH_MARK,
    describe,
    job_running,
    parse_lines,
    split_watch_output,
    watch_command,
    watch_stamp,
)
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.run_logs import keep_tails
from ansible_collections.rocm.madengine.plugins.plugin_utils.on_controller import module_result, run_here, runs_here

display = Display()

# each request for news waits on the node for up to WAIT_SECONDS, checking every FIRST_STEP_SECONDS during the
# job's first FIRST_STEPS_FOR seconds (for the first second of each wait, then at pauses doubling up to
# STEP_SECONDS) and every STEP_SECONDS after (a long model loses nothing to a coarser check, the node spares the
# processes); news waits SETTLE_SECONDS more for the lines written with it
WAIT_SECONDS = 5.0
FIRST_STEP_SECONDS = 0.1
FIRST_STEPS_FOR = 30.0
STEP_SECONDS = 0.5
SETTLE_SECONDS = 0.1
# a node that could not be reached is tried again after this long
RETRY_SECONDS = 2.0
# how long a node lost during the run is tried again, unless the task's unreachable_timeout says otherwise
UNREACHABLE_SECONDS = 600.0
# stdout callbacks whose output is a document: progress lines go to stderr then, not into it
DOCUMENT_CALLBACKS = ("json", "jsonl")
LOCAL_CONNECTIONS = ("local", "ansible.builtin.local")


def show(line):
    callback = str(C.DEFAULT_STDOUT_CALLBACK or "").rsplit(".", 1)[-1]
    display.display(line, stderr=callback in DOCUMENT_CALLBACKS)


class ActionModule(ActionBase):

    _supports_async = True
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        node = (task_vars or {}).get("inventory_hostname", "node")
        if self._task.async_val:
            wrap_async = not self._connection.has_native_async
            result.update(self._execute_module(task_vars=task_vars, wrap_async=wrap_async))
            if not wrap_async:
                self._remove_tmp_path(self._connection._shell.tmpdir)
        elif self._task.check_mode or self._task.args.get("pull_only"):
            result.update(module_result(self, task_vars, "madengine_run_task"))
        else:
            result.update(Watch(self, node, task_vars).run())
        return self.keep_logs(result, node)

    def keep_logs(self, result, node):
        """The run logs the module read on the node (logs_dest), written on the controller; none stay in the result."""
        args = self._task.args
        problem = keep_tails(result, args.get("logs_dest"), node, int(args.get("logs_max_size") or 4194304),
                             self._connection.transport in LOCAL_CONNECTIONS)
        if problem:
            display.warning(problem)
        return result

    def start_job(self, module_args, task_vars):
        """Start the module with its job_file: it answers at once (started, job_file, pid) and runs on by itself. The
        module's files (its arguments, credentials among them) go as soon as it answered. On the controller with its
        own Python the job starts from this process instead (plugin_utils/on_controller.py)."""
        if runs_here(self, task_vars):
            from ansible_collections.rocm.madengine.plugins.module_utils.benchmark import madengine_run_task as task

            started = run_here(self, task.ARGUMENT_SPEC, task.run, task.CONSTRAINTS, args=module_args,
                               task_vars=task_vars)
            if started is not None:
                return started
        try:
            return self._execute_module(module_args=module_args, task_vars=task_vars)
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)

    def shell(self, command):
        """The command's stdout; a connection with a terminal (ssh's -tt) ends its lines with CR LF: back to LF."""
        return self._low_level_execute_command(command, sudoable=True).get("stdout", "").replace("\r\n", "\n")


class Watch(object):
    """One node's run: start, poll the journal and the job's state, show new lines, read the result."""

    def __init__(self, action, node, task_vars):
        self.action, self.node, self.task_vars = action, node, task_vars
        self.offset = 0  # bytes of the journal shown so far
        self.polls = 0  # requests for news (round trips) while the job ran
        grace = action._task.args.get("unreachable_timeout")
        self.grace = UNREACHABLE_SECONDS if grace is None else float(grace)
        self.cleaned = False  # the job's files are gone (removed with the reading of its result)

    def run(self):
        args = dict(self.action._task.args)
        async_dir = self.action.get_shell_option("async_dir", default="~/.ansible_async").rstrip("/")
        own_journal = not args.get("progress_file")
        token = secrets.token_hex(6)
        if own_journal:
            args["progress_file"] = "%s/madengine-progress-%s.jsonl" % (async_dir, token)
        args["result_file"] = "%s/madengine-result-%s.json" % (async_dir, token)
        args["job_file"] = "%s/madengine-job-%s.json" % (async_dir, token)
        launch = time.monotonic()
        started = self.action.start_job(args, self.task_vars)
        display.vv("%s: madengine_run started in the background (process %s) in %.2f s"
                   % (self.node, started.get("pid"), time.monotonic() - launch))
        if started.get("failed") or "job_file" not in started:
            return started
        job_file = started["job_file"]  # as the node expanded it
        job_dir = job_file.rsplit("/", 1)[0]
        journal = job_dir + "/" + args["progress_file"].rsplit("/", 1)[1] if own_journal else args["progress_file"]
        result_file = job_dir + "/" + args["result_file"].rsplit("/", 1)[1]
        cleanup = "rm -f %s" % " ".join(shlex.quote(p) for p in [job_file, watch_stamp(job_file), result_file]
                                        + ([journal] if own_journal else []))
        result = self.follow(job_file, journal, result_file, cleanup)
        if self.cleaned:
            return result
        try:
            self.action.shell(cleanup)
        except AnsibleConnectionFailure:
            pass
        return result

    def follow(self, job_file, journal, result_file, cleanup=None):
        """Ask the node for news until the job is done; the module's result (or why it could not be had). ``cleanup``,
        a command removing the job's files, goes with the reading of the result."""
        lost_since = lost_at = None
        started = time.monotonic()
        while True:
            self.polls += 1
            step = FIRST_STEP_SECONDS if time.monotonic() - started < FIRST_STEPS_FOR else STEP_SECONDS
            try:
                out = self.action.shell(watch_command(journal, job_file, self.offset, WAIT_SECONDS, step,
                                                      SETTLE_SECONDS, STEP_SECONDS))
            except AnsibleConnectionFailure as exc:
                now = time.monotonic()
                if lost_since is None:
                    lost_since = now
                    lost_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                    display.warning("%s: unreachable while its models run; trying again for %d s (the run goes on "
                                    "on the node): %s" % (self.node, self.grace, exc))
                if now - lost_since >= self.grace:
                    return {"failed": True, "unreachable_during_run": True, "unreachable_since": lost_at,
                            "msg": "%s was unreachable for %d s while its models ran (its job %s may still "
                                   "run there and write its rows to the node's CSV): %s"
                                   % (self.node, now - lost_since, job_file, exc)}
                time.sleep(min(RETRY_SECONDS, max(self.grace - (now - lost_since), 0.1)))
                continue
            if lost_since is not None:
                show("%s: reachable again" % self.node)
                lost_since = None
            head, state = split_watch_output(out)
            self.show(head)
            if not state.strip():
                return {"failed": True, "msg": "The job of madengine_run on %s is gone (%s does not exist)."
                                               % (self.node, job_file)}
            if not job_running(state):
                display.vv("%s: the job ended; %d requests for news" % (self.node, self.polls))
                return self.ended(job_file, result_file, cleanup)

    def ended(self, job_file, result_file, cleanup=None):
        """The module's result from its result_file; when there is none, why, from the job file. One shell command
        reads both (and runs ``cleanup``)."""
        try:
            out = self.action.shell("cat %s 2>/dev/null; printf '\\n%s\\n'; cat %s 2>/dev/null%s"
                                    % (shlex.quote(result_file), WATCH_MARK, shlex.quote(job_file),
                                       "; " + cleanup if cleanup else ""))
        except AnsibleConnectionFailure:
            out = ""
        else:
            self.cleaned = bool(cleanup)
        handed, state = split_watch_output(out)
        try:
            handed = json.loads(handed)
            result, warnings = handed["result"], handed["warnings"]
        except (ValueError, KeyError, TypeError):
            return self.without_result(state, result_file)
        for message in warnings:
            display.warning(message)
        return result

    def without_result(self, state, result_file):
        """A failed result saying why the job handed no result over: what its job file (``state``, its text) says,
        or that its process vanished (killed, or the node restarted); the rows of the models it finished are in the
        node's CSV."""
        try:
            state = json.loads(state)
        except ValueError:
            state = None
        state = state if isinstance(state, dict) else {}
        if state.get("failed") and state.get("msg"):
            return {"failed": True, "msg": "madengine_run on %s: %s" % (self.node, state["msg"])}
        if state.get("finished"):
            why = "its result file %s could not be read" % result_file
        else:
            why = "its process%s is gone (killed, or the node restarted)" % (
                " %s" % state["pid"] if state.get("pid") else "")
        return {"failed": True, "msg": "madengine_run on %s ended without a result: %s; the rows of the models it "
                                       "finished are in the node's CSV." % (self.node, why)}

    def show(self, text):
        """Show the complete lines of ``text`` (the journal from the offset), move the offset past them; any?"""
        complete = text[:text.rfind("\n") + 1]
        self.offset += len(complete.encode("utf-8"))
        for event in parse_lines(complete):
            line = describe(self.node, event)
            if line:
                show(line)
        return bool(complete)
