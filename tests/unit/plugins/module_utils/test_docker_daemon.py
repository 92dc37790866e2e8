"""docker_setup's view of a Docker engine: its address, what daemon.json must become, what the engine took."""

from __future__ import annotations

import pytest

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError
from ansible_collections.rocm.madengine.plugins.module_utils.host.docker_daemon import (
    Endpoint,
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


def test_endpoints_are_unix_sockets_or_tcp_addresses():
    unix = Endpoint("unix:///run/docker-x/docker.sock")
    assert unix.socket == "/run/docker-x/docker.sock" and unix.address is None
    assert Endpoint("tcp://10.0.0.5:2376").address == ("10.0.0.5", 2376)
    assert Endpoint("tcp://node1").address == ("node1", 2375)


@pytest.mark.parametrize("url", ["/var/run/docker.sock", "http://node1:2375", "unix://", "tcp://", "", None])
def test_other_addresses_are_named(url):
    with pytest.raises(MadengineError) as error:
        Endpoint(url)
    assert str(error.value) == "docker_host must be a unix:// or tcp:// URL, not %r." % (url,)


def test_loopback_registries_need_no_trust_and_bad_names_are_refused():
    assert trusted_registries(["reg.example.com:5000", "localhost:5000", "localhost", "127.0.0.1:5000",
                               "127.10.0.3", "[::1]:5000", "10.0.0.1:5000", "[fd00::1]:5000"]) == [
        "reg.example.com:5000", "10.0.0.1:5000", "[fd00::1]:5000"]
    with pytest.raises(MadengineError) as error:
        trusted_registries(["ok:5000", "http://bad:5000", "bad name"])
    assert str(error.value) == "insecure_registries must be host[:port] names, not 'http://bad:5000', 'bad name'."


@pytest.mark.parametrize("text, expected", [(None, {}), ("", {}), ("  \n", {}), ('{"debug": true}', {"debug": True})])
def test_a_missing_or_empty_daemon_json_is_an_empty_object(text, expected):
    assert parse_config(text, "/etc/docker/daemon.json") == expected


@pytest.mark.parametrize("text, message", [
    ("{oops", "/x/daemon.json is not valid JSON; fix or remove it before running docker_setup."),
    ("[1, 2]", "/x/daemon.json must hold a JSON object, not list."),
])
def test_a_bad_daemon_json_is_named(text, message):
    with pytest.raises(MadengineError) as error:
        parse_config(text, "/x/daemon.json")
    assert str(error.value) == message


def test_the_wanted_config_adds_what_is_missing_and_keeps_everything_else():
    current = {"insecure-registries": ["b:5000", "a:5000"], "runtimes": {"nvidia": {"path": "/opt/own"}},
               "log-driver": "journald"}
    wanted = wanted_config(current, ["a:5000", "c:5000"], {"nvidia": {"path": "x", "runtimeArgs": []},
                                                           "crun": {"path": "/usr/bin/crun"}},
                           "nvidia", {"debug": True})
    assert wanted == {"insecure-registries": ["b:5000", "a:5000", "c:5000"],
                      "runtimes": {"nvidia": {"path": "/opt/own"}, "crun": {"path": "/usr/bin/crun"}},
                      "log-driver": "journald", "default-runtime": "nvidia", "debug": True}
    assert current["insecure-registries"] == ["b:5000", "a:5000"]  # not modified
    assert changed_keys(current, wanted) == ["debug", "default-runtime", "insecure-registries", "runtimes"]
    assert changed_keys(wanted, wanted) == []
    # settings win over everything, also over the registries
    assert wanted_config({}, ["a:5000"], settings={"insecure-registries": []}) == {"insecure-registries": []}


def test_registry_mirrors_are_added_in_order_and_checked():
    assert registry_mirrors(["http://10.0.0.1:5000/", "https://mirror.example.com"]) == [
        "http://10.0.0.1:5000", "https://mirror.example.com"]
    current = {"registry-mirrors": ["https://mirror.example.com/"]}
    wanted = wanted_config(current, mirrors=["http://10.0.0.1:5000", "https://mirror.example.com"])
    assert wanted == {"registry-mirrors": ["https://mirror.example.com/", "http://10.0.0.1:5000"]}
    assert changed_keys(current, wanted) == ["registry-mirrors"]
    assert wanted_config(wanted, mirrors=["http://10.0.0.1:5000"]) == wanted  # nothing more to add
    assert restart_keys(["registry-mirrors"]) == []  # a reload applies them
    # the engine lists them with a final slash
    assert listed_mirrors({"RegistryConfig": {"Mirrors": ["http://10.0.0.1:5000/"]}}) == ["http://10.0.0.1:5000"]
    assert listed_mirrors({}) == []
    with pytest.raises(MadengineError) as error:
        registry_mirrors(["10.0.0.1:5000", "http://host:5000/v2/library", "ftp://x"])
    assert str(error.value) == ("registry_mirrors must be http:// or https:// URLs of a registry (host[:port], no "
                                "path), not '10.0.0.1:5000', 'http://host:5000/v2/library', 'ftp://x'.")


def test_keys_a_reload_does_not_apply_need_a_restart():
    assert restart_keys(["insecure-registries", "runtimes", "storage-driver", "data-root", "debug"]) == [
        "data-root", "storage-driver"]


def test_untrusted_registries_are_those_the_engine_does_not_list_as_insecure():
    info = {"RegistryConfig": {"IndexConfigs": {"a:5000": {"Secure": False}, "docker.io": {"Secure": True}}}}
    assert untrusted(info, ["a:5000", "b:5000", "docker.io"]) == ["b:5000", "docker.io"]
    assert untrusted({}, ["a:5000"]) == ["a:5000"]


def test_render_is_stable_json_with_a_final_newline():
    assert render({"b": 1, "a": [1]}) == '{\n  "b": 1,\n  "a": [\n    1\n  ]\n}\n'
