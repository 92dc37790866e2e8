"""Small wrappers around the host: commands, processes found by their paths, mounts, a Docker API ping.

Standard library only: ci/simulated-fleet.sh runs with whatever python3 the machine has.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time


class FleetError(RuntimeError):
    """A failure the command line reports as one sentence (exit status 1)."""


def say(message):
    sys.stderr.write("[simulated-fleet] %s\n" % message)
    sys.stderr.flush()


def run(argv, check=True, input_text=None, env=None, timeout=300):
    """Run a command; its stdout.  A failure raises FleetError naming the command and its error output."""
    proc = subprocess.run(argv, input=input_text, capture_output=True, text=True, env=env, timeout=timeout,
                          check=False)
    if check and proc.returncode != 0:
        raise FleetError("%s failed (exit %d): %s" % (" ".join(argv), proc.returncode,
                                                      (proc.stderr or proc.stdout).strip()[-2000:]))
    return proc.stdout if check else proc


def ok(argv):
    """True when the command exits 0 (its output is dropped)."""
    return subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False).returncode == 0


def processes_using(*paths):
    """PIDs whose command line mentions a path below one of ``paths`` (runs of this script excepted)."""
    wanted = [p.rstrip("/") for p in paths if p]
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as handle:
                args = handle.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any("simulated-fleet" in arg or "simfleet" in arg for arg in args):
            continue  # another run of this script, not a process it started
        if any(p + "/" in arg for arg in args for p in wanted):
            found.append(int(entry))
    return found


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is as good as gone
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop_pids(pids, grace=30.0):
    """SIGTERM, then SIGKILL after ``grace`` seconds, each of ``pids``; waits until they are gone."""
    pids = [p for p in pids if alive(p)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        if alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 10
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def read_pid(path):
    try:
        with open(path) as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def mounts_under(*paths):
    """Mount points at or below ``paths``, deepest first."""
    wanted = [os.path.realpath(p).rstrip("/") for p in paths if p]
    with open("/proc/self/mounts") as handle:
        points = [line.split()[1].replace("\\040", " ") for line in handle]
    return sorted((m for m in points if any(m == p or m.startswith(p + "/") for p in wanted)), reverse=True)


def unmount_under(*paths):
    for point in mounts_under(*paths):
        subprocess.run(["umount", "-l", point], check=False, stderr=subprocess.DEVNULL)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        http.client.HTTPConnection.__init__(self, "localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


def engine_request(docker_host, method, path, timeout=30.0):
    """(status, body) of one Docker API request to the engine at ``unix://...``."""
    connection = _UnixConnection(docker_host[len("unix://"):], timeout)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def engine_answers(docker_host, timeout=3.0):
    """True when the Docker engine at ``unix://...`` answers its /_ping."""
    path = docker_host[len("unix://"):] if docker_host.startswith("unix://") else docker_host
    connection = _UnixConnection(path, timeout)
    try:
        connection.request("GET", "/_ping")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def http_answers(url, timeout=3.0):
    """True when ``http://host:port/path`` answers 200."""
    rest = url.split("://", 1)[1]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    connection = http.client.HTTPConnection(host, int(port or 80), timeout=timeout)
    try:
        connection.request("GET", "/" + path)
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def wait_for(check, timeout, what, failure_detail=lambda: ""):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise FleetError("%s did not answer within %d s%s" % (what, timeout, failure_detail()))
        time.sleep(0.2)


def tail(path, lines=20):
    try:
        with open(path, errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return "(no log at %s)" % path
