# -*- coding: utf-8 -*-
# Copyright: rocm.madengine contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils file is PRIVATE to the rocm.madengine collection; its API may change at any time.

"""A model run with steps around it, in madengine's workspace layout, as one shell script in the container.

When a model needs more than its script (a ``url`` to clone, pre/post-scripts or tools, data to download,
the system environment details, its model directory kept, its container kept running), the container's
command is ``sh /madengine/run/steps.sh``: in ``/myworkspace`` (madengine's workspace) it clones the
repository or makes ``run_directory``, runs the pre-scripts there, copies the model's scripts in,
prepares the data, runs the model, runs the post-scripts and copies madengine's output files
(``*_profiler_output.csv``, ``*_output.csv``, ``*_trace.csv``, ``library_trace.csv``) to ``/myworkspace``.
Each step prints a marker line (``##madengine## ...``); :class:`StepLog` reads them from the output as it
streams, so the node times each step with its own clock and knows which step failed and why.
After the run madengine_run copies the files the steps left in ``/myworkspace`` to the node.
"""

from __future__ import annotations

import io
import math
import os
import re
import shlex
import tarfile
import threading

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.sysenv import SCRIPT as SYSENV_SCRIPT
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError

MARK = "##madengine##"
WORKSPACE = "/myworkspace"
RUN_DIR = "/madengine/run"
DRIVER = RUN_DIR + "/steps.sh"
SSH_KEY = RUN_DIR + "/ssh_key"
NAS_PASSWORD = RUN_DIR + "/nas_password"
ASKPASS = RUN_DIR + "/askpass"
SYSENV = RUN_DIR + "/sys_env_details.sh"
DEFAULT_MODEL_DIR = "run_directory"
OUTPUT_PATTERNS = ("*_profiler_output.csv", "*_output.csv", "*_trace.csv", "library_trace.csv")
_DIR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@")


def clone_dir(url):
    """The directory a url is cloned into: its last path segment (trailing ``/`` and ``.git`` dropped)."""
    name = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    if name.endswith(".git"):
        name = name[:-4]
    if not _DIR_NAME.match(name or ""):
        raise MadengineError("url %s does not end in a usable directory name (got %r)." % (public_url(url), name))
    return name


def public_url(url):
    """``url`` without any user:password part."""
    return _USERINFO.sub(r"\1", url or "")


def _q(value):
    return shlex.quote(str(value))


class Clone(object):
    """The repository of a model's ``url`` and how to authenticate (``https`` user/password, ``ssh`` key)."""

    def __init__(self, url, cred=None, username_var=None, password_var=None, ssh_user=None, ssh_key=None):
        self.url = url
        self.directory = clone_dir(url)
        self.cred = cred
        self.username_var = username_var
        self.password_var = password_var
        self.ssh_user = ssh_user
        self.ssh_key = ssh_key   # bytes of the private key, put in the container and removed after the clone

    @property
    def is_ssh(self):
        return self.url.startswith("ssh://") or bool(re.match(r"^[^/:@]+@[^/:]+:", self.url))

    def commands(self):
        target = "%s/%s" % (WORKSPACE, self.directory)
        words = ["GIT_TERMINAL_PROMPT=0", "git"]
        if self.is_ssh:
            ssh = ["ssh", "-o", "IdentitiesOnly=yes", "-o", "UserKnownHostsFile=/dev/null",
                   "-o", "StrictHostKeyChecking=no", "-o", "BatchMode=yes"]
            if self.ssh_key is not None:
                ssh += ["-i", SSH_KEY]
            if self.ssh_user:
                ssh += ["-l", self.ssh_user]
            words += ["-c", "core.sshCommand=" + " ".join(ssh)]
        elif self.username_var and self.password_var:
            helper = '!f() { echo "username=${%s}"; echo "password=${%s}"; }; f' % (self.username_var,
                                                                                    self.password_var)
            words += ["-c", "credential.helper=", "-c", "credential.helper=" + helper]
        quoted = " ".join(w if w.startswith("GIT_") else _q(w) for w in words)
        lines = ["git config --global --add safe.directory '*' 2>/dev/null",
                 "rm -rf %s" % _q(target),
                 "%s clone %s %s || fail $? clone" % (quoted, _q(self.url), _q(target))]
        if self.ssh_key is not None:
            lines.append("rm -f %s" % SSH_KEY)
        lines += ['mark git-commit "$(git -C %s rev-parse HEAD)"' % _q(target),
                  "git -C %s submodule update --init --recursive || fail $? submodules" % _q(target)]
        return lines


class Steps(object):
    """Everything the driver script does for one model run; :meth:`script` writes it, :meth:`archive` ships it."""

    def __init__(self, model_name):
        self.model_name = model_name
        self.clone = None
        self.pre_scripts = []
        self.post_scripts = []
        self.env_details = None          # (csv name, mode) or None
        self.data = []                   # DataMounts whose download runs here
        self.command = ""                # the model's command line (shell text), run in the model directory
        self.scripts_dir = None          # where the model's scripts are in the image
        self.multiple_results = ""
        self.keep_alive = False
        self.keep_model_dir = False
        self.files = {}                  # path in the container -> (bytes, mode)

    @property
    def model_dir(self):
        return "%s/%s" % (WORKSPACE, self.clone.directory if self.clone else DEFAULT_MODEL_DIR)

    def _scripts(self, kind, items):
        lines = []
        for number, item in enumerate(items, 1):
            path, name = item["path"], os.path.basename(item["path"])
            lines += ["mark step %s %d %s" % (kind, number, _q(path)),
                      'cp -RL %s "$M/" && (cd "$M" && bash %s %s) || fail $? %s %d'
                      % (_q("%s/%s" % (WORKSPACE, path)), _q(name), item.get("args") or "", kind, number)]
        return lines

    def _data(self):
        lines = []
        for mount in self.data:
            download = mount.download
            home = _q(mount.home)
            lines += ["mark step data %s" % _q(mount.name), "mkdir -p %s || fail $? data %s" % (home, _q(mount.name))]
            if download["kind"] == "custom":
                lines.append("(cd %s && bash %s %s) || fail $? data %s"
                             % (home, _q("%s/%s" % (WORKSPACE, download["path"])), download.get("args") or "",
                                _q(mount.name)))
            elif download["kind"] == "nas":
                ssh = "ssh -p %s -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o " \
                      "NumberOfPasswordPrompts=1" % int(download["port"])
                source = "%s@%s:%s/" % (download["user"], download["host"], download["path"].rstrip("/"))
                lines += ["for tool in rsync ssh; do command -v $tool >/dev/null 2>&1 || "
                          "{ echo \"the image has no $tool, which NAS data needs\"; fail 127 data %s; }; done"
                          % _q(mount.name),
                          "SSH_ASKPASS=%s SSH_ASKPASS_REQUIRE=force DISPLAY=madengine rsync -a -e %s %s %s/ "
                          "</dev/null || fail $? data %s"
                          % (ASKPASS, _q(ssh), _q(source), home, _q(mount.name)),
                          "rm -f %s" % NAS_PASSWORD]
            lines += ['mark data-size %s "$(du -sh %s | cut -f1)"' % (_q(mount.name), home),
                      "mark step-done data %s" % _q(mount.name)]
        return lines

    def script(self):
        lines = ["#!/bin/sh", "# madengine_run: the steps of model %s" % self.model_name.replace("\n", " "),
                 "W=%s" % WORKSPACE, "M=%s" % _q(self.model_dir),
                 # the container's clock (nanoseconds where date has them): output may arrive in bursts
                 "mark() { echo \"%s $(date +%%s.%%N 2>/dev/null) $*\"; }" % MARK,
                 "finish() {"]
        if self.keep_alive:
            lines += ["  trap 'exit 0' TERM INT", "  while :; do sleep 3600 & wait $!; done"]
        lines += ['  exit "$1"', "}",
                  'fail() { rc=$1; shift; [ "$rc" -eq 0 ] && rc=1; rm -f %s %s; mark fail "$rc" "$@"; '
                  'mark end "$rc"; finish "$rc"; }' % (SSH_KEY, NAS_PASSWORD),
                  "mkdir -p \"$W\" && cd \"$W\" || fail $? workspace"]
        if self.clone is not None:
            lines += ["mark step clone"] + self.clone.commands()
        else:
            lines += ['rm -rf "$M" && mkdir -p "$M" || fail $? workspace']
        lines += self._scripts("pre_script", self.pre_scripts)
        if self.env_details:
            name, mode = self.env_details
            lines += ["mark step env_details",
                      '(cd "$M" && sh %s %s %s) || mark note the system environment details failed'
                      % (SYSENV, _q("%s/%s" % (WORKSPACE, name)), _q(mode))]
        if self.scripts_dir:
            lines += ["mark step copy_scripts", 'cp -RL %s/. "$M/" || fail $? copy_scripts' % _q(self.scripts_dir)]
        lines += self._data()
        lines += ['chmod -R a+rw "$M" 2>/dev/null', "mark model-start",
                  '(cd "$M" && %s)' % self.command, "rc=$?", 'mark model-end "$rc"']
        lines += self._scripts("post_script", self.post_scripts)
        copies = " ".join('"$M"/%s' % p for p in OUTPUT_PATTERNS)
        if self.multiple_results and "/" not in self.multiple_results:
            copies += ' "$M"/%s' % _q(self.multiple_results)
        lines += ["mark step outputs", "for f in %s; do [ -f \"$f\" ] && cp \"$f\" \"$W/\"; done" % copies]
        if not (self.keep_model_dir or self.keep_alive):
            lines.append('rm -rf "$M"')
        lines += ['mark end "$rc"', 'finish "$rc"']
        return "\n".join(lines) + "\n"

    def archive(self):
        """The tar put at ``/`` of the container: the driver, its helpers and the files the steps need."""
        files = dict(self.files)
        files[DRIVER] = (self.script().encode("utf-8"), 0o755)
        if self.env_details:
            files[SYSENV] = (SYSENV_SCRIPT.encode("utf-8"), 0o755)
        if self.clone is not None and self.clone.ssh_key is not None:
            files[SSH_KEY] = (self.clone.ssh_key, 0o600)
        for mount in self.data:
            if mount.download.get("kind") == "nas":
                files[NAS_PASSWORD] = (str(mount.download.get("password") or "").encode("utf-8"), 0o600)
                files[ASKPASS] = (("#!/bin/sh\ncat %s\n" % NAS_PASSWORD).encode("utf-8"), 0o700)
        return tar_of(files)


def tar_of(files):
    """An uncompressed tar of ``{absolute path: (bytes, mode)}``, parent directories included, owned by root."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        made = set()
        for path in sorted(files):
            parts = path.strip("/").split("/")
            for depth in range(1, len(parts)):
                directory = "/".join(parts[:depth])
                if directory not in made:
                    made.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            data, mode = files[path]
            info = tarfile.TarInfo(path.strip("/"))
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class StepLog(object):
    """The markers of a run's steps, read from its output as it streams (``feed`` returns True for a marker)."""

    def __init__(self, clock):
        self.clock = clock
        self.current = None          # (kind, args) of the running step
        self.started = {}            # step key -> time
        self.durations = {}          # step key -> seconds
        self.last_output = {}        # step key -> last non-empty output line
        self.failure = None          # (rc, step words)
        self.model_start = self.model_end = None
        self.model_rc = None
        self.end_rc = None
        self.git_commit = ""
        self.data_size = {}
        self.notes = []
        self.ended = threading.Event()

    @property
    def in_model(self):
        return self.model_start is not None and self.model_end is None

    def _close(self, now):
        if self.current is not None:
            key = self.current
            self.durations[key] = round(now - self.started[key], 3)
            self.current = None

    def feed(self, line):
        text = line.strip()
        if not text.startswith(MARK + " "):
            if text and self.current is not None:
                self.last_output[self.current] = text[:300]
            return False
        words = text[len(MARK) + 1:].split()
        now = None
        if words and words[0][:1].isdigit():   # the container's clock, when its date has nanoseconds
            now = _float(words[0])
            words = words[1:]
        if now is None:
            now = self.clock()
        if not words:
            return True
        event, args = words[0], words[1:]
        if event == "step":
            self._close(now)
            self.current = " ".join(args[:2]) if args and args[0] in ("data", "pre_script", "post_script") else args[0]
            self.started[self.current] = now
        elif event == "step-done":
            self._close(now)
        elif event == "model-start":
            self._close(now)
            self.model_start = now
        elif event == "model-end":
            self.model_end = now
            self.model_rc = _int(args[0] if args else None)
        elif event == "git-commit":
            self.git_commit = (args[0] if args else "")[:64]
        elif event == "data-size":
            self.data_size[args[0] if args else ""] = " ".join(args[1:])
        elif event == "note":
            self.notes.append(" ".join(args))
        elif event == "fail":
            self.failure = (_int(args[0] if args else None), args[1:])
        elif event == "end":
            self._close(now)
            self.end_rc = _int(args[0] if args else None)
            self.ended.set()
        return True

    def step_key(self, words):
        return " ".join(words[:2]) if words and words[0] in ("data", "pre_script", "post_script") else words[0]

    @property
    def model_seconds(self):
        if self.model_start is None or self.model_end is None:
            return None
        return round(self.model_end - self.model_start, 3)


def _float(value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def safe_members(tar, skip):
    """The regular files and directories of a workspace tar worth keeping: no links, no escapes, not ``skip``."""
    for member in tar.getmembers():
        name = member.name
        parts = name.split("/")
        if name.startswith("/") or ".." in parts or not (member.isreg() or member.isdir()):
            continue
        inner = "/".join(parts[1:])   # the tar of /myworkspace holds myworkspace/...
        if not inner or any(inner == s or inner.startswith(s + "/") for s in skip):
            continue
        yield member, inner
