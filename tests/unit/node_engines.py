"""Simulated GPU nodes for tests and benchmarks: one extra dockerd per node.

Each engine has its own data root, exec root, pid file and socket under a base directory of its own,
and a bridge of its own (the main engine owns docker0), so every node keeps its own image store and
really pulls from the registry.  Containers use the host network (as madengine runs them), and the
daemons sit in the host's network namespace, so ``localhost:5000`` is the registry for all of them.
The main engine, its socket and docker0 are never touched: a daemon started with ``--bridge=none``
in this namespace would delete docker0 under the main engine, so each gets a pre-created bridge,
removed with the engine.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import time

import docker


class NodeEngine(object):
    def __init__(self, base):
        self.base = base
        self.host = "unix://%s/docker.sock" % base
        # an interface name (at most 15 characters) unique to the base directory
        self.bridge = "mdn" + hashlib.sha256(base.encode()).hexdigest()[:11]
        self.proc = None
        self._log = None

    def launch(self):
        """Start dockerd without waiting for it (see wait)."""
        os.makedirs(self.base, exist_ok=True)
        if subprocess.run(["ip", "link", "show", self.bridge], capture_output=True, check=False).returncode != 0:
            subprocess.run(["ip", "link", "add", self.bridge, "type", "bridge"], capture_output=True, check=True)
        self._log = open(os.path.join(self.base, "dockerd.log"), "ab")
        self.proc = subprocess.Popen(
            ["dockerd", "--data-root", self.base + "/data", "--exec-root", self.base + "/exec",
             "--pidfile", self.base + "/docker.pid", "-H", self.host, "--bridge=" + self.bridge,
             "--iptables=false", "--ip-masq=false", "--ip-forward=false"],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("dockerd of %s exited: %s" % (self.base, self.log_tail()))
            try:
                with self.api() as api:
                    api.version()
                return self
            except (docker.errors.DockerException, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError("dockerd of %s did not answer within %d s: %s"
                                       % (self.base, timeout, self.log_tail()))
                time.sleep(0.2)

    def start(self, timeout=60):
        self.launch()
        return self.wait(timeout)

    def api(self):
        return docker.APIClient(base_url=self.host, version="auto", timeout=60)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def images(self):
        """Ids of the images this engine holds."""
        with self.api() as api:
            return sorted(image["Id"] for image in api.images())

    def remove_images(self):
        with self.api() as api:
            for image in api.images():
                api.remove_image(image["Id"], force=True)

    def containers(self):
        with self.api() as api:
            return api.containers(all=True)

    def stop(self):
        """Stop the daemon; its data root stays (start() brings the same node back)."""
        if not self.running():
            return
        try:
            with self.api() as api:
                for container in api.containers(all=True):
                    api.remove_container(container["Id"], force=True)
        except (docker.errors.DockerException, OSError):
            pass
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    def destroy(self):
        """Stop the daemon and remove everything under its base directory."""
        self.stop()
        with open("/proc/self/mounts") as mounts:
            targets = [line.split()[1] for line in mounts
                       if line.split()[1] == self.base or line.split()[1].startswith(self.base + "/")]
        for target in sorted(targets, reverse=True):
            subprocess.run(["umount", "-l", target], check=False)
        shutil.rmtree(self.base, ignore_errors=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)

    def log_tail(self, lines=20):
        try:
            with open(os.path.join(self.base, "dockerd.log"), errors="replace") as handle:
                return "".join(handle.readlines()[-lines:])
        except OSError:
            return "(no log)"


def start_engines(prefix, count):
    """``count`` engines under ``<prefix>1`` ... ``<prefix>N``, started in parallel."""
    engines = [NodeEngine("%s%d" % (prefix, index + 1)) for index in range(count)]
    try:
        for engine in engines:
            engine.launch()
        for engine in engines:
            engine.wait()
    except Exception:
        for engine in engines:
            engine.destroy()
        raise
    return engines


@contextlib.contextmanager
def node_engines(prefix, names):
    """{name: engine} for the duration of a fixture, one engine per name; every engine destroyed afterwards."""
    started = start_engines(prefix, len(names))
    try:
        yield dict(zip(names, started))
    finally:
        for engine in started:
            engine.destroy()
