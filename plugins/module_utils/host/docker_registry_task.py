# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""The docker_registry module: a Docker registry running on the node and answering at its address.

:class:`Plan` reads the node (whether the registry answers, its configuration file, its storage directory, the
service or the container) and decides every step before anything changes; :func:`run` returns the steps in check
mode, or carries them out and waits until the registry answers. The three ways a registry runs:

- ``package`` under systemd: the storage directory (owned by ``storage_owner``, 0750), ``config.yml``, the unit
  enabled and started - restarted when its configuration changed while it ran;
- ``package`` without systemd: a registry that answers is reused as it is; otherwise the directories (0755),
  ``config.yml``, and the binary started in a session of its own, appending to ``log``, its pid in ``pidfile``;
- ``container``: the storage directory (0755) and a container of the engine at ``docker_host`` (restart policy
  always, host network, the listen address, the storage as a volume), created when missing and started when
  stopped; one that exists is otherwise left as it is.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import stat
import time

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError, atomic_write_bytes, log_tail
from ansible_collections.rocm.madengine.plugins.module_utils.host.registry import answers, api_url, render_config

SYSTEMD_DIR = "/run/systemd/system"
WAIT_DELAY = 1.0
_NO_CONTAINER = re.compile(r"no such (container|object)", re.I)


def directory_changes(path, mode, owner=None):
    """What making ``path`` a directory of ``mode`` (and ``owner``, a user name) changes: ``[]`` when nothing."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return ["create"]
    except OSError as exc:
        raise MadengineError("Cannot look at %s: %s." % (path, exc.strerror or exc))
    if not stat.S_ISDIR(found.st_mode):
        raise MadengineError("%s exists and is not a directory." % path)
    changes = ["mode"] if stat.S_IMODE(found.st_mode) != mode else []
    if owner is not None and found.st_uid != user_id(owner, found.st_uid + 1):
        changes.append("owner")
    return changes


def user_id(name, unknown=None):
    """The uid of user ``name``; ``unknown`` when there is no such user (None: fail naming it)."""
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        if unknown is not None:
            return unknown
        raise MadengineError("storage_owner %s is no user on this node (the registry package makes it)." % name)


def alive(pid):
    """Whether process ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def make_directory(path, mode, owner=None):
    if not os.path.isdir(path):
        os.makedirs(path, 0o755)
    os.chmod(path, mode)
    if owner is not None:
        os.chown(path, user_id(owner), -1)


class Plan(object):
    """What the module does, decided from the node before anything changes."""

    def __init__(self, module, systemd_dir=SYSTEMD_DIR):
        p = self.params = module.params
        if p["wait_timeout"] <= 0:
            raise MadengineError("wait_timeout must be a number of seconds above 0, not %d." % p["wait_timeout"])
        self.url = api_url(p["listen"])
        self.answering, self.reason = answers(p["listen"])
        mode = p["service_mode"]
        self.systemd = p["method"] == "package" and (
            mode == "systemd" or (mode == "auto" and os.path.isdir(systemd_dir)))
        self.directories = []  # (path, mode, owner)
        self.config_before = self.config_after = None
        self.container = None  # for the container method: "absent", "stopped" or "running"
        self.steps = []
        if p["method"] == "container":
            self._container(module)
        elif self.systemd:
            self._service(module)
        elif not self.answering:
            self._background()

    def _need_directory(self, path, mode, owner=None):
        if directory_changes(path, mode, owner):
            self.directories.append((path, mode, owner))

    def _need_config(self):
        path = self.params["config"]
        self.config_after = render_config(self.params["listen"], self.params["storage"])
        try:
            with open(path) as handle:
                self.config_before = handle.read()
        except FileNotFoundError:
            self.config_before = ""
        except OSError as exc:
            raise MadengineError("Cannot read %s: %s." % (path, exc.strerror or exc))
        return self.config_before != self.config_after

    def _service(self, module):
        self._need_directory(self.params["storage"], 0o750, self.params["storage_owner"])
        config = self._need_config()
        self.steps = (["directories"] if self.directories else []) + (["config"] if config else [])
        name = self.params["service_name"]
        if module.run_command(["systemctl", "is-enabled", name])[0] != 0:
            self.steps.append("enable")
        if module.run_command(["systemctl", "is-active", name])[0] != 0:
            self.steps.append("start")
        elif config:
            self.steps.append("restart")

    def _background(self):
        self._need_directory(self.params["storage"], 0o755)
        self._need_directory(os.path.dirname(os.path.abspath(self.params["config"])), 0o755)
        config = self._need_config()
        self.steps = (["directories"] if self.directories else []) + (["config"] if config else []) + ["start"]

    def _container(self, module):
        if not module.get_bin_path("docker"):
            raise MadengineError("The docker command is not on this node's PATH; the container method runs the "
                                 "registry with it.")
        rc, out, err = module.run_command(self.docker("container", "inspect", self.params["container"]))
        if rc == 0:
            try:
                running = json.loads(out)[0]["State"]["Running"]
            except (ValueError, LookupError, TypeError):
                raise MadengineError("docker container inspect %s printed no container state."
                                     % self.params["container"])
            self.container = "running" if running else "stopped"
        elif _NO_CONTAINER.search(err or out):
            self.container = "absent"
        else:
            raise MadengineError("Cannot look for the registry container %s at %s: %s"
                                 % (self.params["container"], self.params["docker_host"], (err or out).strip()))
        self._need_directory(self.params["storage"], 0o755)
        self.steps = ["directories"] if self.directories else []
        self.steps += {"absent": ["create"], "stopped": ["start"]}.get(self.container, [])

    def docker(self, *args):
        return ["docker", "-H", self.params["docker_host"]] + list(args)

    def run_argv(self):
        p = self.params
        return self.docker("run", "--detach", "--name", p["container"], "--restart", "always", "--network", "host",
                           "--env", "REGISTRY_HTTP_ADDR=" + p["listen"],
                           "--volume", p["storage"] + ":/var/lib/registry", p["image"])


class Registry(object):
    """Carries a plan out on the node."""

    def __init__(self, module, plan):
        self.module = module
        self.plan = plan
        self.params = plan.params
        self.pid = None

    def command(self, argv, what):
        rc, out, err = self.module.run_command(argv)
        if rc != 0:
            raise MadengineError("%s failed: %s" % (what, (err or out).strip() or "rc %d" % rc))
        return out

    def directories(self):
        for path, mode, owner in self.plan.directories:
            try:
                make_directory(path, mode, owner)
            except OSError as exc:
                raise MadengineError("Cannot make the directory %s: %s." % (path, exc.strerror or exc))

    def config(self):
        path = self.params["config"]
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        atomic_write_bytes(path, self.plan.config_after.encode("utf-8"), mode=0o644)

    def service(self, verb):
        name = self.params["service_name"]
        self.command(["systemctl", verb, name], "systemctl %s %s" % (verb, name))

    def start(self):
        p = self.params
        if self.plan.container:
            return self.command(self.plan.docker("start", p["container"]), "Starting the container %s" % p["container"])
        if self.plan.systemd:
            return self.service("start")
        argv = [p["binary"], "serve", p["config"]]
        # detached from the module (a session of its own, output to the log), so that it outlives the task
        line = "setsid %s < /dev/null >> %s 2>&1 & echo $!" % (" ".join(shlex.quote(a) for a in argv),
                                                               shlex.quote(p["log"]))
        rc, out, err = self.module.run_command(line, use_unsafe_shell=True)
        if rc != 0 or not out.strip().isdigit():
            raise MadengineError("Cannot start %s: %s" % (p["binary"], (err or out).strip()))
        self.pid = int(out.strip())
        atomic_write_bytes(p["pidfile"], b"%d\n" % self.pid, mode=0o644)

    def enable(self):
        self.service("enable")

    def restart(self):
        self.service("restart")

    def create(self):
        self.command(self.plan.run_argv(), "Creating the registry container %s" % self.params["container"])

    def wait(self):
        """Until the registry answers, for wait_timeout seconds; a registry started here that exits fails at once."""
        deadline = time.monotonic() + self.params["wait_timeout"]
        while True:
            answering, reason = answers(self.params["listen"])
            if answering:
                return
            if self.pid is not None and not alive(self.pid):
                raise MadengineError("%s (pid %d) exited before the registry answered at %s; %s ends: %s"
                                     % (self.params["binary"], self.pid, self.plan.url, self.params["log"],
                                        self.log_tail()))
            if time.monotonic() >= deadline:
                break
            time.sleep(WAIT_DELAY)
        raise MadengineError("The registry at %s did not answer within %d s (%s)%s."
                             % (self.plan.url, self.params["wait_timeout"], reason,
                                "; %s ends: %s" % (self.params["log"], self.log_tail()) if self.pid else ""))

    def log_tail(self):
        return log_tail(self.params["log"])


def run(module, systemd_dir=SYSTEMD_DIR):
    """The module's work; fails the module with one sentence on a MadengineError."""
    try:
        module.exit_json(**_run(module, systemd_dir))
    except MadengineError as exc:
        module.fail_json(msg=str(exc))


def _run(module, systemd_dir):
    plan = Plan(module, systemd_dir)
    result = {"changed": bool(plan.steps), "actions": plan.steps, "url": plan.url, "answering": plan.answering,
              "method": plan.params["method"], "container_state": plan.container or ""}
    if plan.params["method"] == "package":
        result["service_mode"] = "systemd" if plan.systemd else "background"
    if module._diff and "config" in plan.steps:
        result["diff"] = {"before": plan.config_before, "after": plan.config_after,
                          "before_header": plan.params["config"], "after_header": plan.params["config"]}
    if module.check_mode:
        return result
    registry = Registry(module, plan)
    for step in plan.steps:
        getattr(registry, step)()
    registry.wait()
    result["answering"] = True
    if registry.pid is not None:
        result["pid"] = registry.pid
    return result
