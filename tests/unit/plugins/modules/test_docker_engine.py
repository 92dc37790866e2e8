"""docker_engine through the AnsibleModule harness, in its systemd mode.

The background mode runs against real engines in tests/integration/test_docker_setup_role.py. This machine has
no systemd, so here the edge is faked: a stand-in ``systemctl`` on PATH records its calls and, on start, reload
and restart, makes a small HTTP server on a unix socket (the "engine") answer and take the daemon.json of that
moment, the way dockerd does.
"""

from __future__ import annotations

import http.server
import json
import os
import socketserver
import stat
import threading

import pytest

from ansible_collections.rocm.madengine.plugins.module_utils.host import docker_engine_task
from ansible_collections.rocm.madengine.plugins.modules import docker_engine

SYSTEMCTL = """#!/bin/sh
echo "$*" >> "{state}/calls"
case "$1" in
  is-enabled) test -e "{state}/enabled" ;;
  enable) touch "{state}/enabled" ;;
  start|reload|restart)
    test -e "{state}/broken" && exit 0
    touch "{state}/up"; cp "{config}" "{state}/applied.json" 2>/dev/null || echo {{}} > "{state}/applied.json" ;;
  *) exit 1 ;;
esac
"""


class _Handler(http.server.BaseHTTPRequestHandler):
    state = None

    def do_GET(self):
        if not os.path.exists(os.path.join(self.state, "up")):
            self.send_response(503)
            self.end_headers()
            return
        if self.path == "/_ping":
            body = b"OK"
        elif self._busy():
            self.send_response(500)
            self.end_headers()
            return
        else:
            with open(os.path.join(self.state, "applied.json")) as handle:
                applied = json.load(handle)
            body = json.dumps({
                "ServerVersion": "99.0-fake",
                "RegistryConfig": {"IndexConfigs": dict((name, {"Secure": False})
                                                        for name in applied.get("insecure-registries", [])),
                                   # dockerd lists the mirrors with a final slash
                                   "Mirrors": [url.rstrip("/") + "/" for url in applied.get("registry-mirrors", [])]},
                "Runtimes": dict((name, {}) for name in ["runc"] + list(applied.get("runtimes", {})))}).encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

    def _busy(self):
        """An engine that answers _ping but not yet info: as often as busy_info in the state says (one less each)."""
        path = os.path.join(self.state, "busy_info")
        if not os.path.exists(path):
            return False
        with open(path) as handle:
            left = int(handle.read())
        if left == 0:
            return False
        with open(path, "w") as handle:
            handle.write(str(left - 1))
        return True


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        request, _address = socketserver.UnixStreamServer.get_request(self)
        return request, ("fake-engine", 0)


@pytest.fixture
def node(tmp_path, monkeypatch):
    """A fake engine on a unix socket and a stand-in systemctl; yields the module arguments."""
    state = tmp_path / "state"
    state.mkdir()
    config = tmp_path / "etc" / "daemon.json"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "systemctl"
    script.write_text(SYSTEMCTL.format(state=state, config=config))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", "%s:%s" % (bindir, os.environ["PATH"]))
    monkeypatch.setattr(docker_engine_task, "VERIFY_DELAY", 0.01)
    sock = str(tmp_path / "docker.sock")
    handler = type("Handler", (_Handler,), {"state": str(state)})
    server = _Server(sock, handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"state": state, "config": config,
           "args": {"docker_host": "unix://" + sock, "daemon_json": str(config), "service_mode": "systemd",
                    "wait_timeout": 5}}
    server.shutdown()
    server.server_close()


def calls(node):
    path = node["state"] / "calls"
    return path.read_text().splitlines() if path.exists() else []


def run(module_runner, node, check_mode=False, diff=False, **extra):
    return module_runner(docker_engine, dict(node["args"], **extra), check_mode=check_mode, diff=diff)


def test_a_stopped_engine_gets_its_daemon_json_and_is_started_and_enabled(module_runner, node):
    planned = run(module_runner, node, check_mode=True, diff=True, insecure_registries=["reg.example:5000"])
    assert not planned.failed, planned
    assert planned["changed"] is True and planned["actions"] == ["write", "start", "enable"]
    assert planned["answering"] is False and planned["service_mode"] == "systemd"
    assert planned["diff"]["before"] == "" and json.loads(planned["diff"]["after"]) == {
        "insecure-registries": ["reg.example:5000"]}
    assert calls(node) == ["is-enabled docker"] and not node["config"].exists()

    done = run(module_runner, node, insecure_registries=["reg.example:5000", "localhost:5000"])
    assert not done.failed, done
    assert done["actions"] == ["write", "start", "enable"] and done["server_version"] == "99.0-fake"
    assert calls(node)[1:] == ["is-enabled docker", "start docker", "enable docker"]
    assert json.loads(node["config"].read_text()) == {"insecure-registries": ["reg.example:5000"]}
    assert oct(node["config"].stat().st_mode & 0o777) == "0o644"

    again = run(module_runner, node, insecure_registries=["reg.example:5000"])
    assert again["changed"] is False and again["actions"] == [] and calls(node)[4:] == ["is-enabled docker"]


def test_a_running_engine_is_reloaded_and_a_restart_needs_allow_restart(module_runner, node):
    node["config"].parent.mkdir()
    node["config"].write_text('{"log-driver": "journald", "runtimes": {"nvidia": {"path": "/opt/own"}}}')
    (node["state"] / "enabled").touch()
    assert run(module_runner, node)["actions"] == ["start"]

    reloaded = run(module_runner, node, insecure_registries=["reg.example:5000"],
                   runtimes={"nvidia": "nvidia-container-runtime", "crun": "/usr/bin/crun"}, default_runtime="crun")
    assert reloaded["actions"] == ["write", "reload"], reloaded
    assert reloaded["changed_keys"] == ["default-runtime", "insecure-registries", "runtimes"]
    assert json.loads(node["config"].read_text()) == {
        "log-driver": "journald", "insecure-registries": ["reg.example:5000"], "default-runtime": "crun",
        "runtimes": {"nvidia": {"path": "/opt/own"}, "crun": {"path": "/usr/bin/crun", "runtimeArgs": []}}}
    assert [name for name in os.listdir(node["config"].parent) if name.startswith("daemon.json.")] != []  # backup

    written = node["config"].read_text()
    refused = run(module_runner, node, daemon_options={"storage-driver": "overlay2", "debug": True})
    assert refused.failed and refused["msg"] == (
        "Applying storage-driver in %s needs a restart of the Docker engine, which stops running containers; set "
        "allow_restart (docker_setup_allow_restart) to allow it." % node["config"])
    assert node["config"].read_text() == written and calls(node)[-1] == "reload docker"

    restarted = run(module_runner, node, daemon_options={"storage-driver": "overlay2"}, allow_restart=True)
    assert restarted["actions"] == ["write", "restart"] and restarted["restart_keys"] == ["storage-driver"]
    assert calls(node)[-1] == "restart docker"


def test_an_engine_that_does_not_take_the_file_is_named(module_runner, node):
    (node["state"] / "enabled").touch()
    assert run(module_runner, node)["actions"] == ["start"]
    (node["state"] / "broken").touch()  # reloads no longer reach the engine (another --config-file)
    failed = run(module_runner, node, insecure_registries=["a.example:5000", "b.example:5000"],
                 runtimes={"nvidia": "nvidia-container-runtime"})
    assert failed.failed
    assert failed["msg"] == (
        "The Docker engine at %s has not taken %s (untrusted: a.example:5000, b.example:5000, no nvidia runtime); "
        "it may run with another --config-file: restart it with this one." % (node["args"]["docker_host"],
                                                                              node["config"]))


def test_registry_mirrors_are_written_reloaded_and_checked(module_runner, node):
    (node["state"] / "enabled").touch()
    mirrors = ["http://mirror.rack1.example:5000", "https://mirror.example.com/"]
    done = run(module_runner, node, registry_mirrors=mirrors)
    assert not done.failed, done
    assert json.loads(node["config"].read_text()) == {"registry-mirrors": ["http://mirror.rack1.example:5000",
                                                                           "https://mirror.example.com"]}
    assert run(module_runner, node, registry_mirrors=mirrors)["changed"] is False
    more = run(module_runner, node, registry_mirrors=mirrors + ["http://10.1.2.3:5000"])
    assert more["actions"] == ["write", "reload"] and more["changed_keys"] == ["registry-mirrors"]
    (node["state"] / "broken").touch()  # reloads no longer reach the engine
    failed = run(module_runner, node, registry_mirrors=["http://10.9.9.9:5000"])
    assert failed.failed and "(untrusted: none, no mirror http://10.9.9.9:5000)" in failed["msg"]
    bad = run(module_runner, node, registry_mirrors=["10.9.9.9:5000"])
    assert bad.failed and bad["msg"].startswith("registry_mirrors must be http:// or https:// URLs")


def test_an_engine_that_does_not_come_up_is_named(module_runner, node):
    (node["state"] / "broken").touch()  # systemctl start succeeds, the engine never answers
    failed = run(module_runner, node, wait_timeout=1)
    assert failed.failed and failed["msg"].startswith(
        "The Docker engine at %s did not answer within 1 s (after systemctl start docker; HTTP 503" %
        node["args"]["docker_host"])


@pytest.mark.parametrize("extra, message", [
    ({"docker_host": "/var/run/docker.sock"},
     "docker_host must be a unix:// or tcp:// URL, not '/var/run/docker.sock'."),
    ({"insecure_registries": ["http://reg:5000"]},
     "insecure_registries must be host[:port] names, not 'http://reg:5000'."),
    ({"wait_timeout": 0}, "wait_timeout must be a number of seconds above 0, not 0."),
])
def test_bad_settings_are_named_before_anything_changes(module_runner, node, extra, message):
    failed = run(module_runner, node, **extra)
    assert failed.failed and failed["msg"] == message
    assert calls(node) == [] and not node["config"].exists()


def test_a_bad_daemon_json_is_named_and_left_alone(module_runner, node):
    node["config"].parent.mkdir()
    node["config"].write_text("[]")
    failed = run(module_runner, node, insecure_registries=["reg.example:5000"])
    assert failed.failed and failed["msg"] == "%s must hold a JSON object, not list." % node["config"]
    assert node["config"].read_text() == "[]" and calls(node) == []


def test_a_tcp_engine_that_does_not_answer_is_not_started_in_the_background(module_runner, node):
    failed = run(module_runner, node, docker_host="tcp://127.0.0.1:9", service_mode="background", wait_timeout=1)
    assert failed.failed and failed["msg"] == (
        "The Docker engine at tcp://127.0.0.1:9 does not answer, and only engines that listen on a unix:// socket are "
        "started here; start it, or point docker_host at a running one.")


def test_an_engine_slow_to_answer_info_is_asked_again_until_wait_timeout(module_runner, node):
    (node["state"] / "up").touch()
    (node["state"] / "applied.json").write_text("{}")
    (node["state"] / "busy_info").write_text("3")
    done = run(module_runner, node)
    assert not done.failed, done
    assert done["server_version"] == "99.0-fake" and (node["state"] / "busy_info").read_text() == "0"

    (node["state"] / "busy_info").write_text("100000")
    failed = run(module_runner, node, wait_timeout=1)
    assert failed.failed and failed["msg"] == "The Docker engine at unix://%s answers info with HTTP 500." % (
        node["args"]["docker_host"][len("unix://"):])
