"""Simulated GPU nodes for tests and benchmarks: one extra dockerd per node.

Each engine has its own data root, exec root, pid file, socket and bridge under a base directory of its
own (ci/simfleet/engine.py, which ci/simulated-fleet.sh uses too): never docker0, never ``--bridge=none``
(which deletes the main engine's docker0), so the host's Docker is left as it was.  Every node keeps its
own image store and really pulls from the registry.  Containers use the host network (as madengine runs
them), and the daemons sit in the host's network namespace, so ``localhost:5000`` is the registry for all
of them.  The main engine and its socket are never touched.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys

import docker

_CI = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "ci")
if _CI not in sys.path:
    sys.path.insert(0, _CI)

from simfleet.engine import Engine
from simfleet.system import tail


class NodeEngine(object):
    def __init__(self, base):
        self.base = base
        self.engine = Engine(base, base, "mfe" + hashlib.sha1(base.encode()).hexdigest()[:9])
        self.host = self.engine.host
        self.proc = None

    @property
    def bridge(self):
        return self.engine.bridge

    def launch(self):
        """Start dockerd without waiting for it (see wait)."""
        self.proc = self.engine.launch(detach=True)

    def wait(self, timeout=60):
        self.engine.wait(timeout, self.proc)
        return self

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
        """Stop the daemon and delete its bridge; its data root stays (start() brings the same node back)."""
        self.engine.stop()
        if self.proc is not None:
            self.proc.wait()

    def destroy(self):
        """Stop the daemon and remove everything under its base directory."""
        self.engine.destroy()
        if self.proc is not None:
            self.proc.wait()

    def log_tail(self, lines=20):
        return tail(self.engine.log, lines)


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
