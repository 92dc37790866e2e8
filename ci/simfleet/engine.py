"""One extra Docker engine on this machine: its own data root, exec root, socket, pid file and bridge.

The simulated nodes of ci/simulated-fleet.sh (local mode) and the tests' node engines are this.  The
bridge is made before the daemon starts and deleted after it stopped; docker0 and the main engine are
never touched.  State (data root, log, daemon.json) and run-time files (exec root, socket, pid file) live
in two directories: unix socket paths are limited to 107 bytes, so the run directory is kept short.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from . import network
from .system import (
    FleetError,
    engine_answers,
    engine_request,
    processes_using,
    read_pid,
    stop_pids,
    tail,
    unmount_under,
    wait_for,
)


class Engine(object):
    def __init__(self, state_dir, run_dir, bridge, extra_path=None):
        self.state_dir = os.path.abspath(state_dir)
        self.run_dir = os.path.abspath(run_dir)
        self.bridge = bridge
        self.extra_path = extra_path
        self.data_root = os.path.join(self.state_dir, "data")
        self.exec_root = os.path.join(self.run_dir, "exec")
        self.socket = os.path.join(self.run_dir, "docker.sock")
        self.host = "unix://" + self.socket
        self.pidfile = os.path.join(self.run_dir, "docker.pid")
        self.log = os.path.join(self.state_dir, "dockerd.log")
        self.config = os.path.join(self.state_dir, "daemon.json")
        self.launcher = os.path.join(self.state_dir, "dockerd")
        if len(os.path.join(self.exec_root, "containerd", "containerd-debug.sock")) > 100:
            raise FleetError("run directory %s is too long for unix sockets" % self.run_dir)

    def args(self):
        """dockerd arguments besides -H, --pidfile and --config-file (what docker_setup_dockerd_args repeats)."""
        return ["--data-root", self.data_root, "--exec-root", self.exec_root, "--bridge=%s" % self.bridge,
                "--iptables=false", "--ip-masq=false", "--ip-forward=false"]

    def command(self):
        return [self.launcher, "-H", self.host, "--pidfile", self.pidfile, "--config-file", self.config] + self.args()

    def prepare(self):
        """Directories, the launcher (dockerd with extra_path first on PATH), daemon.json, the bridge."""
        for directory in (self.state_dir, self.run_dir):
            os.makedirs(directory, exist_ok=True)
        path = "%s:" % self.extra_path if self.extra_path else ""
        launcher = '#!/bin/sh\n# dockerd of this node%s\nPATH=%s"$PATH" exec dockerd "$@"\n' % (
            " (the stand-in NVIDIA hook first on its PATH)" if self.extra_path else "", path)
        with open(self.launcher, "w") as handle:
            handle.write(launcher)
        os.chmod(self.launcher, 0o755)
        if not os.path.exists(self.config):
            with open(self.config, "w") as handle:
                handle.write("{}\n")
        network.ensure_bridge(self.bridge, prefixlen=29, seed=self.run_dir)

    def launch(self, detach=True):
        """Start dockerd without waiting for it (see wait); the Popen object."""
        self.prepare()
        pid = read_pid(self.pidfile)
        if pid and not os.path.exists("/proc/%d" % pid):
            os.unlink(self.pidfile)  # a killed daemon's pid file makes dockerd refuse to start
        log = open(self.log, "ab")
        try:
            return subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=detach, close_fds=True)
        finally:
            log.close()

    def answers(self):
        return engine_answers(self.host)

    def wait(self, timeout=90, proc=None):
        def check():
            if proc is not None and proc.poll() is not None:
                raise FleetError("dockerd of %s exited: %s" % (self.state_dir, tail(self.log)))
            return self.answers()

        wait_for(check, timeout, "dockerd of %s" % self.state_dir, lambda: ": " + tail(self.log))
        return self

    def remove_containers(self):
        if not self.answers():
            return
        status, body = engine_request(self.host, "GET", "/containers/json?all=1")
        if status != 200:
            return
        for container in json.loads(body):
            engine_request(self.host, "DELETE", "/containers/%s?force=1&v=1" % container["Id"])

    def stop(self, grace=30):
        """Stop the daemon (its containers first) and whatever it left running; delete the bridge."""
        stop_engines([self], grace)

    def destroy(self):
        """Stop, unmount and remove both directories."""
        destroy_engines([self])


def stop_engines(engines, grace=30):
    """Stop several engines at once: containers removed, every daemon signalled, then waited for."""
    for engine in engines:
        try:
            engine.remove_containers()
        except OSError:
            pass
    running = processes_using(*[e.run_dir for e in engines])
    pids = [read_pid(e.pidfile) for e in engines]
    stop_pids([pid for pid in pids if pid and pid in running], grace)
    # containerd and shims of a daemon that was killed; processes started from a node's tools
    stop_pids(processes_using(*[p for e in engines for p in (e.run_dir, e.data_root)]), 10)
    for engine in engines:
        network.delete_link(engine.bridge)


def destroy_engines(engines):
    stop_engines(engines)
    unmount_under(*[p for e in engines for p in (e.state_dir, e.run_dir)])
    for engine in engines:
        for directory in (engine.state_dir, engine.run_dir):
            shutil.rmtree(directory, ignore_errors=True)
