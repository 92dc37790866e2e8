# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""The docker_engine module: daemon.json as wanted, the engine running and using it.

:func:`plan` decides everything from what is on the node (the file, whether the engine answers, the
service manager) before anything changes; :func:`run` carries the plan out (or, in check mode, returns
it) and then checks that the engine took the settings. An engine that answers is never restarted unless
a daemon.json key needs it and ``allow_restart`` says so; otherwise it is reloaded, which running
containers survive.
"""

from __future__ import annotations

import os
import shlex
import signal
import time

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError, atomic_write_bytes, log_tail
from ansible_collections.rocm.madengine.plugins.module_utils.host.docker_daemon import (
    Endpoint,
    EngineAPI,
    changed_keys,
    listed_mirrors,
    parse_config,
    registry_mirrors,
    render,
    restart_keys,
    trusted_registries,
    untrusted,
    wanted_config,
)

SYSTEMD_DIR = "/run/systemd/system"
VERIFY_ATTEMPTS = 10
VERIFY_DELAY = 1.0


class Plan(object):
    """What the module does, decided before anything changes."""

    def __init__(self, params, systemd_dir=SYSTEMD_DIR):
        self.params = params
        self.endpoint = Endpoint(params["docker_host"])
        if params["wait_timeout"] <= 0:
            raise MadengineError("wait_timeout must be a number of seconds above 0, not %d." % params["wait_timeout"])
        self.path = params["daemon_json"]
        self.registries = trusted_registries(params["insecure_registries"] or [])
        self.mirrors = registry_mirrors(params.get("registry_mirrors") or [])
        self.runtimes = dict((name, spec if isinstance(spec, dict) else {"path": spec, "runtimeArgs": []})
                             for name, spec in (params["runtimes"] or {}).items())
        mode = params["service_mode"]
        self.systemd = mode == "systemd" or (mode == "auto" and os.path.isdir(systemd_dir))
        self.exists = os.path.exists(self.path)
        text = None
        if self.exists:
            try:
                with open(self.path) as handle:
                    text = handle.read()
            except OSError as exc:
                raise MadengineError("Cannot read %s: %s." % (self.path, exc.strerror or exc))
        self.current = parse_config(text, self.path)
        self.wanted = wanted_config(self.current, self.registries, self.runtimes, params["default_runtime"],
                                    params["daemon_options"], self.mirrors)
        self.changed_keys = changed_keys(self.current, self.wanted)
        self.restart_keys = restart_keys(self.changed_keys)

    def actions(self, answering, enabled=True):
        """The steps, in order: write, start, reload, restart, enable."""
        steps = ["write"] if self.changed_keys else []
        if not answering:
            steps.append("start")
        elif self.changed_keys:
            steps.append("restart" if self.restart_keys else "reload")
        if self.systemd and not enabled:
            steps.append("enable")
        return steps


class Engine(object):
    """Starts, reloads and restarts the engine, through systemctl or as a background dockerd."""

    def __init__(self, module, plan, api):
        self.module = module
        self.plan = plan
        self.api = api
        self.params = plan.params

    def systemctl(self, *args):
        rc, out, err = self.module.run_command(["systemctl"] + list(args))
        return rc, (err or out).strip()

    def enabled(self):
        return self.systemctl("is-enabled", self.params["service_name"])[0] == 0

    def service(self, verb):
        rc, text = self.systemctl(verb, self.params["service_name"])
        if rc != 0:
            raise MadengineError("systemctl %s %s failed: %s" % (verb, self.params["service_name"], text))

    def pid(self):
        """The pid in the pid file when that process runs, else None."""
        try:
            with open(self.params["pidfile"]) as handle:
                pid = int(handle.read().strip())
        except (OSError, ValueError):
            return None
        return pid if os.path.exists("/proc/%d" % pid) else None

    def start_background(self):
        if not self.plan.endpoint.socket:
            raise MadengineError(
                "The Docker engine at %s does not answer, and only engines that listen on a unix:// socket are "
                "started here; start it, or point docker_host at a running one." % self.plan.endpoint)
        running = self.pid()
        if running is not None:
            # a dockerd of this pid file that is still coming up
            return self.wait("dockerd %d of %s" % (running, self.params["pidfile"]), running)
        if os.path.exists(self.params["pidfile"]):
            os.remove(self.params["pidfile"])  # stale: dockerd refuses to start with it
        argv = [self.params["dockerd"], "-H", str(self.plan.endpoint), "--pidfile", self.params["pidfile"]]
        if os.path.exists(self.plan.path):
            argv += ["--config-file", self.plan.path]
        argv += [str(arg) for arg in self.params["dockerd_args"]]
        log = self.params["dockerd_log"]
        # detached from the module (its own session, output to the log), so that it outlives the task
        command = "setsid %s < /dev/null >> %s 2>&1 & echo $!" % (" ".join(shlex.quote(a) for a in argv),
                                                                  shlex.quote(log))
        rc, out, err = self.module.run_command(command, use_unsafe_shell=True)
        if rc != 0 or not out.strip().isdigit():
            raise MadengineError("Cannot start %s: %s" % (self.params["dockerd"], (err or out).strip()))
        self.wait("the dockerd started here", int(out.strip()))

    def wait(self, what, pid=None):
        deadline = time.monotonic() + self.params["wait_timeout"]
        reason = ""
        while time.monotonic() < deadline:
            answering, reason = self.api.ping()
            if answering:
                return
            if pid is not None and not os.path.exists("/proc/%d" % pid):
                raise MadengineError("dockerd (pid %d) exited before the engine answered at %s; %s ends: %s"
                                     % (pid, self.plan.endpoint, self.params["dockerd_log"], self.log_tail()))
            time.sleep(0.5)
        raise MadengineError("The Docker engine at %s did not answer within %d s (%s; %s); %s ends: %s"
                             % (self.plan.endpoint, self.params["wait_timeout"], what, reason,
                                self.params["dockerd_log"], self.log_tail()))

    def log_tail(self):
        return log_tail(self.params["dockerd_log"])

    def running_pid(self, verb):
        pid = self.pid()
        if pid is None:
            raise MadengineError("The Docker engine at %s answers, but pid file %s names no running dockerd, so it "
                                 "cannot be %s here; %s it yourself, or set pidfile."
                                 % (self.plan.endpoint, self.params["pidfile"], verb + "ed", verb))
        return pid

    def reload(self):
        if self.plan.systemd:
            return self.service("reload")
        os.kill(self.running_pid("reload"), signal.SIGHUP)

    def restart(self):
        if self.plan.systemd:
            self.service("restart")
            return self.wait("after systemctl restart %s" % self.params["service_name"])
        pid = self.running_pid("restart")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.params["wait_timeout"]
        while os.path.exists("/proc/%d" % pid):
            if time.monotonic() > deadline:
                raise MadengineError("dockerd %d did not stop within %d s." % (pid, self.params["wait_timeout"]))
            time.sleep(0.2)
        self.start_background()

    def start(self):
        if self.plan.systemd:
            self.service("start")
            return self.wait("after systemctl start %s" % self.params["service_name"])
        self.start_background()


def write_config(module, plan):
    directory = os.path.dirname(os.path.abspath(plan.path))
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    if plan.exists:
        module.backup_local(plan.path)
    atomic_write_bytes(plan.path, render(plan.wanted).encode("utf-8"), mode=0o644)


def verify(api, plan, wait_timeout):
    """Fails unless the engine lists the registries as insecure, uses the mirrors and knows the runtimes (a reload
    is asynchronous). An engine that answers ``_ping`` but not yet ``info`` in time (a loaded or emulated machine)
    is asked again until ``wait_timeout``."""
    deadline = time.monotonic() + wait_timeout
    attempt = 0
    while True:
        try:
            info = api.info()
        except MadengineError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(VERIFY_DELAY)
            continue
        missing = untrusted(info, plan.registries)
        mirrors = [url for url in plan.mirrors if url not in listed_mirrors(info)]
        runtimes = sorted(set(plan.runtimes) - set(info.get("Runtimes") or {}))
        if not missing and not runtimes and not mirrors:
            return info
        attempt += 1
        if attempt >= VERIFY_ATTEMPTS:
            break
        time.sleep(VERIFY_DELAY)
    raise MadengineError(
        "The Docker engine at %s has not taken %s (untrusted: %s%s%s); it may run with another --config-file: "
        "restart it with this one." % (plan.endpoint, plan.path, ", ".join(missing) or "none",
                                       "".join(", no mirror %s" % url for url in mirrors),
                                       "".join(", no %s runtime" % name for name in runtimes)))


def run(module, systemd_dir=SYSTEMD_DIR):
    """The module's work; fails the module with one sentence on a MadengineError."""
    try:
        module.exit_json(**_run(module, systemd_dir))
    except MadengineError as exc:
        module.fail_json(msg=str(exc))


def _run(module, systemd_dir):
    plan = Plan(module.params, systemd_dir)
    if plan.restart_keys and not module.params["allow_restart"]:
        raise MadengineError(
            "Applying %s in %s needs a restart of the Docker engine, which stops running containers; set "
            "allow_restart (docker_setup_allow_restart) to allow it." % (", ".join(plan.restart_keys), plan.path))
    api = EngineAPI(plan.endpoint)
    answering, reason = api.ping()
    engine = Engine(module, plan, api)
    steps = plan.actions(answering, engine.enabled() if plan.systemd else True)
    result = {"changed": bool(steps), "actions": steps, "changed_keys": plan.changed_keys,
              "restart_keys": plan.restart_keys, "daemon_json": plan.wanted,
              "service_mode": "systemd" if plan.systemd else "background", "answering": answering}
    if module._diff and plan.changed_keys:
        result["diff"] = {"before": render(plan.current) if plan.exists else "", "after": render(plan.wanted),
                          "before_header": plan.path, "after_header": plan.path}
    if module.check_mode:
        if answering and not plan.changed_keys:
            verify(api, plan, module.params["wait_timeout"])
        return result
    for step in steps:
        if step == "write":
            write_config(module, plan)
        elif step == "enable":
            engine.service("enable")
        else:
            getattr(engine, step)()
    info = verify(api, plan, module.params["wait_timeout"])
    result.update(answering=True, server_version=info.get("ServerVersion", ""))
    if not answering:
        result["was"] = reason
    return result
