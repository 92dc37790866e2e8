# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""A module's work in a process of its own, detached from the connection that started it.

The module answers at once (the job file, the worker's pid) while its worker, already holding every
import it needs, goes on without the connection: a session of its own (no SIGHUP when an SSH terminal closes),
standard streams on /dev/null.  This costs no second Python start (an async job costs two: async_wrapper and the
module).  The job file says ``{"started": 1, "finished": 0, "pid": N}`` while the worker runs and ``{"finished": 1}``
when it has ended (with ``failed`` and ``msg`` when its work raised), so that ``progress.watch_command`` tells a
running job from an ended one, and a vanished one by its pid.  The worker keeps the module's payload (the
AnsiballZ archive its imports come from) until it ends, then removes it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys

from ansible.module_utils.common.parameters import remove_values

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError, atomic_write_text

# the descriptors a worker closes (a higher one is not left open by anything that starts a module)
MAX_FD = 65536


def job_state(pid):
    """The job file's text while the worker ``pid`` runs (its start is ``progress.RUNNING_STATE``)."""
    return json.dumps({"started": 1, "finished": 0, "pid": int(pid)})


def payload_dir():
    """The directory of the AnsiballZ archive this code was imported from, or None (not run as a module)."""
    archive, found, _inside = __file__.partition("_payload.zip" + os.sep)
    if not found:
        return None
    directory = os.path.dirname(archive)
    return directory if "_payload_" in os.path.basename(directory) else None


def run_detached(module, work):
    """Start ``work`` (a callable handing its result over by itself) in a detached worker and exit the module with
    the job's description.  Never returns."""
    job_file = module.params["job_file"]
    directory = os.path.dirname(job_file)
    try:
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o700)
    except OSError as exc:
        module.fail_json(msg="Cannot make the directory of job_file %s: %s" % (job_file, exc))
    payload = payload_dir()
    reader, writer = os.pipe()
    first = os.fork()
    if first == 0:
        os.close(reader)
        os.setsid()
        if os.fork():
            os._exit(0)
        _worker(module, work, job_file, writer, payload)
    os.close(writer)
    os.waitpid(first, 0)
    pid = os.read(reader, 32).decode("ascii", "replace")
    os.close(reader)
    if not pid.isdigit():
        module.fail_json(msg="The run could not start in the background: cannot write job_file %s." % job_file)
    try:
        module.exit_json(changed=True, job_file=job_file, pid=int(pid))
    except SystemExit:
        if payload is None:
            raise
        # as a module: the worker owns the payload now; AnsiballZ would remove it on the way out
        sys.stdout.flush()
        os._exit(0)


def _raise_failure(msg, **_details):
    raise MadengineError(msg)


def _worker(module, work, job_file, writer, payload):
    code, final = 1, {"finished": 1, "failed": True, "msg": "The run ended without a result."}
    try:
        devnull = os.open(os.devnull, os.O_RDWR)
        for stream in (0, 1, 2):
            os.dup2(devnull, stream)
        # nothing of the process that started it stays open here (a connection's pipes, a controller's queues), and
        # a signal does what it does to a module's process (a controller's worker passes SIGTERM on to its group)
        os.closerange(3, writer)
        os.closerange(writer + 1, MAX_FD)
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        atomic_write_text(job_file, job_state(os.getpid()), mode=0o600)
        os.write(writer, str(os.getpid()).encode("ascii"))
        os.close(writer)
        # its output goes nowhere now: a failure must reach the work's hand-over as an error instead
        module.fail_json = _raise_failure
        work()
        code, final = 0, {"finished": 1}
    except BaseException as exc:  # whatever ends the work, the job file must say that it ended, and why
        final["msg"] = remove_values("The run failed on the node: %s: %s" % (type(exc).__name__, exc),
                                     module.no_log_values)
    finally:
        try:
            atomic_write_text(job_file, json.dumps(final), mode=0o600)
        except OSError:
            pass
        if payload:
            shutil.rmtree(payload, ignore_errors=True)
        os._exit(code)
