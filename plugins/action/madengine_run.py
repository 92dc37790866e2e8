# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""madengine_run, watched: the node's whole run as one async job, its progress shown as it happens.

The module stays the worker. This plugin starts it on the node as an async job (one module process runs
all the node's models) with a progress journal beside the job's result file, then asks the node for news
with one short shell command (no Python, no module) that waits on the node: it checks every 0.1 s during the
job's first 30 s (short models end within a check of it), every 0.5 s after, for up to 5 s, and returns as
soon as the journal has new lines or the job has ended. Each new line is shown
with Display on the controller (default verbosity: in a terminal, and in AWX as the job's output; on
stderr when the stdout callback writes a JSON document), within about a second of being written; a node
costs one round trip per news and one per 5 s of a quiet model. No connection stays open and idle while
a model runs. When the node cannot be reached, it tries again for ``unreachable_timeout`` seconds (the
job goes on; its rows are in the node's CSV), then fails the task with ``unreachable_since``, the time
it was first lost. At the end the module's result is read with one shell command from the result_file it
handed it over in (its warnings are shown here); when the module wrote none (a crash, a kill), what
async_wrapper recorded is read by ansible-core's own async_status module, so Ansible decodes it as it decodes
any module's result. The job's files are then removed.

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
    describe,
    job_running,
    parse_lines,
    split_watch_output,
    watch_command,
    watch_stamp,
)
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.run_logs import keep_tails

display = Display()

# each request for news waits on the node for up to WAIT_SECONDS, checking every FIRST_STEP_SECONDS during the
# job's first FIRST_STEPS_FOR seconds and every STEP_SECONDS after (a long model loses nothing to a coarser
# check, the node spares the processes); news waits SETTLE_SECONDS more for the lines written with it
WAIT_SECONDS = 5.0
FIRST_STEP_SECONDS = 0.1
FIRST_STEPS_FOR = 30.0
STEP_SECONDS = 0.5
SETTLE_SECONDS = 0.1
# a node that could not be reached is tried again after this long
RETRY_SECONDS = 2.0
# how long a node lost during the run is tried again, unless the task's unreachable_timeout says otherwise
UNREACHABLE_SECONDS = 600.0
# async_wrapper kills a job after this long; a model's own timeout bounds the run
JOB_LIMIT_SECONDS = 30 * 24 * 3600
# stdout callbacks whose output is a document: progress lines go to stderr then, not into it
DOCUMENT_CALLBACKS = ("json", "jsonl")
LOCAL_CONNECTIONS = ("local", "ansible.builtin.local")


def show(line):
    callback = str(C.DEFAULT_STDOUT_CALLBACK or "").rsplit(".", 1)[-1]
    display.display(line, stderr=callback in DOCUMENT_CALLBACKS)


class ActionModule(ActionBase):

    _supports_async = True
    _supports_check_mode = True
    module_dir = None  # the remote directory of the async job's module, once started

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        node = (task_vars or {}).get("inventory_hostname", "node")
        if self._task.check_mode or self._task.async_val or self._task.args.get("pull_only"):
            wrap_async = bool(self._task.async_val) and not self._connection.has_native_async
            result.update(self._execute_module(task_vars=task_vars, wrap_async=wrap_async))
            if not wrap_async:
                self._remove_tmp_path(self._connection._shell.tmpdir)
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
        """Start the module as an async job: its launch result (ansible_job_id, results_file, ...)."""
        self._task.async_val = JOB_LIMIT_SECONDS
        # the directory the job's module goes to (its arguments, credentials among them, inside), made here to
        # know it: Ansible forgets it once the job is launched
        if not self._connection._shell.tmpdir:
            self._make_tmp_path()
        self.module_dir = self._connection._shell.tmpdir
        try:
            return self._execute_module(module_args=module_args, task_vars=task_vars, wrap_async=True)
        finally:
            self._task.async_val = 0

    def shell(self, command):
        """The command's stdout; a connection with a terminal (ssh's -tt) ends its lines with CR LF: back to LF."""
        return self._low_level_execute_command(command, sudoable=True).get("stdout", "").replace("\r\n", "\n")

    def job_result(self, job_file, task_vars):
        """The module's result, read from the job's result file by ansible-core's async_status module, as the
        async_status action reads it: Ansible decodes it as any module's result (a dict whatever the version;
        its own parser's return type and arguments differ from one ansible-core release to the next)."""
        async_dir, _sep, job_id = job_file.rpartition("/")
        result = self._execute_module(module_name="ansible.legacy.async_status",
                                      module_args={"jid": job_id, "_async_dir": async_dir}, task_vars=task_vars)
        self._remove_tmp_path(self._connection._shell.tmpdir)
        # what async_status adds to the module's result
        for key in ("ansible_job_id", "started", "finished", "results_file"):
            result.pop(key, None)
        return result


class Watch(object):
    """One node's run: start, poll the journal and the job's state, show new lines, read the result."""

    def __init__(self, action, node, task_vars):
        self.action, self.node, self.task_vars = action, node, task_vars
        self.offset = 0  # bytes of the journal shown so far
        self.polls = 0  # requests for news (round trips) while the job ran
        grace = action._task.args.get("unreachable_timeout")
        self.grace = UNREACHABLE_SECONDS if grace is None else float(grace)

    def run(self):
        args = dict(self.action._task.args)
        async_dir = self.action.get_shell_option("async_dir", default="~/.ansible_async")
        own_journal = not args.get("progress_file")
        token = secrets.token_hex(6)
        if own_journal:
            args["progress_file"] = "%s/madengine-progress-%s.jsonl" % (async_dir.rstrip("/"), token)
        args["result_file"] = "%s/madengine-result-%s.json" % (async_dir.rstrip("/"), token)
        launch = time.monotonic()
        started = self.action.start_job(args, self.task_vars)
        module_dir = self.action.module_dir
        took = time.monotonic() - launch
        display.vv("%s: madengine_run started as async job %s in %.2f s"
                   % (self.node, started.get("ansible_job_id"), took))
        if started.get("failed") or "results_file" not in started:
            return started
        job_file = started["results_file"]
        job_dir = job_file.rsplit("/", 1)[0]  # the async directory, as the node expanded it
        journal = args["progress_file"]
        if own_journal:
            journal = job_dir + "/" + journal.rsplit("/", 1)[1]
        result_file = job_dir + "/" + args["result_file"].rsplit("/", 1)[1]
        result = self.follow(job_file, journal, result_file)
        cleanup = [job_file, watch_stamp(job_file), result_file] + ([journal] if own_journal else [])
        # async_wrapper removes the module's directory only at its next watch, seconds after the job ended: the
        # module arguments (credentials among them) go now, with the result read
        if module_dir and "-tmp-" in module_dir and not C.DEFAULT_KEEP_REMOTE_FILES:
            cleanup.append(module_dir)
        try:
            self.action.shell("rm -rf %s" % " ".join(shlex.quote(p) for p in cleanup))
        except AnsibleConnectionFailure:
            pass
        return result

    def follow(self, job_file, journal, result_file=None):
        """Ask the node for news until the job is done; the module's result (or why it could not be had)."""
        lost_since = lost_at = None
        started = time.monotonic()
        while True:
            self.polls += 1
            step = FIRST_STEP_SECONDS if time.monotonic() - started < FIRST_STEPS_FOR else STEP_SECONDS
            try:
                out = self.action.shell(watch_command(journal, job_file, self.offset, WAIT_SECONDS, step,
                                                      SETTLE_SECONDS))
            except AnsibleConnectionFailure as exc:
                now = time.monotonic()
                if lost_since is None:
                    lost_since = now
                    lost_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                    display.warning("%s: unreachable while its models run; trying again for %d s (the run goes on "
                                    "on the node): %s" % (self.node, self.grace, exc))
                if now - lost_since >= self.grace:
                    return {"failed": True, "unreachable_during_run": True, "unreachable_since": lost_at,
                            "msg": "%s was unreachable for %d s while its models ran (its async job %s may still "
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
                return {"failed": True, "msg": "The async job of madengine_run on %s is gone (%s does not exist)."
                                               % (self.node, job_file)}
            if not job_running(state):
                display.vv("%s: the async job ended; %d requests for news" % (self.node, self.polls))
                return self.ended(job_file, result_file)

    def ended(self, job_file, result_file):
        """The module's result from its result_file (one shell command); when the module could not write it (a crash,
        a kill), what async_wrapper recorded of the job, read as Ansible reads it."""
        if not result_file:
            return self.action.job_result(job_file, self.task_vars)
        try:
            handed = json.loads(self.action.shell("cat %s 2>/dev/null || :" % shlex.quote(result_file)))
            result, warnings = handed["result"], handed["warnings"]
        except (ValueError, KeyError, TypeError, AnsibleConnectionFailure):
            return self.action.job_result(job_file, self.task_vars)
        for message in warnings:
            display.warning(message)
        return result

    def show(self, text):
        """Show the complete lines of ``text`` (the journal from the offset), move the offset past them; any?"""
        complete = text[:text.rfind("\n") + 1]
        self.offset += len(complete.encode("utf-8"))
        for event in parse_lines(complete):
            line = describe(self.node, event)
            if line:
                show(line)
        return bool(complete)
