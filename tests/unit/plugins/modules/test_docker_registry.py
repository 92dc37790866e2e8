"""docker_registry through the AnsibleModule harness, with this machine's real docker-registry binary.

The background mode starts the real registry on a free port in a tmp dir. This machine has no systemd, so for the
systemd mode a stand-in ``systemctl`` on PATH records its calls and starts, stops and restarts the real registry
the way the unit would. The container method is asked of the shared engine (read only: a container that does not
exist is only planned); tests/integration/test_docker_setup_role.py creates and starts a real one. Every registry a
test starts is stopped by its pid.
"""

from __future__ import annotations

import os
import signal
import socket
import time
import urllib.request

import pytest
from conftest import MAIN_ENGINE

from ansible_collections.rocm.madengine.plugins.module_utils.host import docker_registry_task
from ansible_collections.rocm.madengine.plugins.modules import docker_registry

SYSTEMCTL = """#!/bin/sh
echo "$*" >> "{state}/calls"
running() {{ test -e "{state}/pid" && kill -0 "$(cat "{state}/pid")" 2>/dev/null; }}
case "$1" in
  is-enabled) test -e "{state}/enabled" ;;
  enable) touch "{state}/enabled" ;;
  is-active) running ;;
  start|restart)
    if running; then
      pid=$(cat "{state}/pid"); kill "$pid"
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    setsid docker-registry serve "{config}" < /dev/null >> "{state}/log" 2>&1 &
    echo $! > "{state}/pid" ;;
  *) exit 1 ;;
esac
"""


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(pidfile):
    try:
        with open(pidfile) as handle:
            pid = int(handle.read().strip())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return
    for _attempt in range(100):
        if not docker_registry_task.alive(pid):
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def answers(port):
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
            "http://127.0.0.1:%d/v2/" % port, timeout=5) as response:
        return response.status


@pytest.fixture
def site(tmp_path):
    port = free_port()
    args = {"listen": "127.0.0.1:%d" % port, "storage": str(tmp_path / "data" / "registry"),
            "config": str(tmp_path / "etc" / "registry" / "config.yml"), "log": str(tmp_path / "registry.log"),
            "pidfile": str(tmp_path / "registry.pid"), "wait_timeout": 30}
    yield {"root": tmp_path, "port": port, "args": args}
    stop(args["pidfile"])


def run(module_runner, site, check_mode=False, diff=False, **extra):
    return module_runner(docker_registry, dict(site["args"], **extra), check_mode=check_mode, diff=diff)


def test_background_registry_is_planned_started_and_then_reused(module_runner, site):
    planned = run(module_runner, site, check_mode=True, diff=True, service_mode="background")
    assert not planned.failed, planned
    assert planned["changed"] is True and planned["actions"] == ["directories", "config", "start"]
    assert planned["answering"] is False and planned["service_mode"] == "background"
    assert planned["diff"]["before"] == "" and "addr: \"%s\"" % site["args"]["listen"] in planned["diff"]["after"]
    assert sorted(os.listdir(site["root"])) == []

    started = run(module_runner, site, service_mode="background")
    assert not started.failed, started
    assert started["actions"] == ["directories", "config", "start"] and started["answering"] is True
    with open(site["args"]["pidfile"]) as handle:
        assert int(handle.read()) == started["pid"]
    assert docker_registry_task.alive(started["pid"]) and answers(site["port"]) == 200
    assert os.stat(site["args"]["storage"]).st_mode & 0o777 == 0o755
    with open(site["args"]["config"]) as handle:
        assert handle.read() == planned["diff"]["after"]

    again = run(module_runner, site, service_mode="background")
    assert not again.failed and again["changed"] is False and again["actions"] == [], again
    assert "pid" not in again and docker_registry_task.alive(started["pid"])


def test_a_registry_that_exits_at_once_is_named_with_its_log(module_runner, site):
    (site["root"] / "registry.log").write_text("an earlier line\n")
    result = run(module_runner, site, service_mode="background", binary="false")
    assert result.failed
    assert result["msg"].startswith("false (pid ")
    assert result["msg"].endswith(") exited before the registry answered at http://127.0.0.1:%d/v2/; %s ends: "
                                  "an earlier line" % (site["port"], site["args"]["log"]))


def test_the_systemd_unit_is_enabled_started_and_restarted_after_a_change(module_runner, site, monkeypatch):
    state = site["root"] / "state"
    bindir = site["root"] / "bin"
    state.mkdir()
    bindir.mkdir()
    (bindir / "systemctl").write_text(SYSTEMCTL.format(state=state, config=site["args"]["config"]))
    (bindir / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (bindir, os.environ["PATH"]))
    site["args"].update(service_mode="systemd", service_name="registry-test", storage_owner="root",
                        pidfile=str(state / "pid"))
    planned = run(module_runner, site, check_mode=True)
    assert planned["actions"] == ["directories", "config", "enable", "start"] and not os.path.exists(
        site["args"]["storage"]), planned
    result = run(module_runner, site)
    assert not result.failed, result
    assert result["actions"] == ["directories", "config", "enable", "start"] and answers(site["port"]) == 200
    assert os.stat(site["args"]["storage"]).st_mode & 0o777 == 0o750
    assert run(module_runner, site)["changed"] is False

    # a new address: the configuration changes and the running unit is restarted with it
    port = free_port()
    moved = run(module_runner, site, listen="127.0.0.1:%d" % port)
    assert not moved.failed, moved
    assert moved["actions"] == ["config", "restart"] and answers(port) == 200
    calls = (state / "calls").read_text().splitlines()
    assert [c for c in calls if not c.startswith("is-")] == [
        "enable registry-test", "start registry-test", "restart registry-test"]


def test_a_missing_container_is_planned_for_creation(module_runner, site):
    result = run(module_runner, site, check_mode=True, method="container", docker_host=MAIN_ENGINE,
                 container="madengine-no-such-registry")
    assert not result.failed, result
    assert (result["actions"], result["container_state"]) == (["directories", "create"], "absent")
    assert "service_mode" not in result and not os.path.exists(site["args"]["storage"])


def test_an_engine_that_does_not_answer_is_named(module_runner, site):
    result = run(module_runner, site, method="container", docker_host="unix:///nonexistent/docker.sock")
    assert result.failed
    assert result["msg"].startswith("Cannot look for the registry container madengine-registry at "
                                    "unix:///nonexistent/docker.sock: "), result["msg"]
    assert "Cannot connect to the Docker daemon" in result["msg"]


def test_no_docker_command_is_named(module_runner, site, monkeypatch):
    monkeypatch.setenv("PATH", str(site["root"]))
    result = run(module_runner, site, check_mode=True, method="container")
    assert result.failed and result["msg"] == (
        "The docker command is not on this node's PATH; the container method runs the registry with it.")


@pytest.mark.parametrize("extra, message", [
    ({"listen": "registry:port"}, "listen must be host:port with a port from 1 to 65535 (for example "
                                  "127.0.0.1:5000), not 'registry:port'."),
    ({"wait_timeout": 0}, "wait_timeout must be a number of seconds above 0, not 0."),
])
def test_bad_settings_are_named_before_anything_changes(module_runner, site, extra, message):
    result = run(module_runner, site, **extra)
    assert result.failed and result["msg"] == message
    assert os.listdir(site["root"]) == []
