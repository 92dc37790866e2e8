"""docker_node_info through the AnsibleModule harness, on this machine (Debian, dpkg-query, the shared registry)."""

from __future__ import annotations

import socket
import sys

import pytest
from conftest import REGISTRY

from ansible_collections.rocm.madengine.plugins.modules import docker_node_info

MISSING = "madengine-no-such-package"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def devices(tmp_path):
    return {"kfd": str(tmp_path / "kfd"), "dri": str(tmp_path / "dri"), "nvidia": str(tmp_path / "nvidiactl")}


def test_the_module_reports_this_machine(module_runner, devices):
    open(devices["kfd"], "w").close()
    result = module_runner(docker_node_info, {
        "gpu_vendor": "auto", "amd_devices": [devices["kfd"], devices["dri"]], "nvidia_device": devices["nvidia"],
        "engine_packages": ["dpkg", MISSING], "packages": ["coreutils"]}, check_mode=True)
    assert not result.failed, result
    assert result["changed"] is False
    assert (result["os_family"], result["distribution"], result["pkg_mgr"]) == ("Debian", "Debian", "apt")
    assert result["python"]["executable"] == sys.executable
    assert result["python"]["version"] == "%d.%d.%d" % sys.version_info[:3]
    assert (result["gpu_vendor"], result["amd_devices_missing"]) == ("AMD", [devices["dri"]])
    assert result["engine_packages"] == ["dpkg", MISSING] and result["package_query"] == "dpkg-query"
    assert result["engine_missing"] == [MISSING] and result["missing_packages"] == [MISSING]
    assert (result["registry_url"], result["registry_answering"]) == ("", False)


def test_the_module_asks_the_registry_address(module_runner):
    host, port = REGISTRY.replace("localhost", "127.0.0.1").split(":")
    shared = module_runner(docker_node_info, {"gpu_vendor": "NONE", "install_engine": False,
                                              "registry_listen": ":" + port})
    assert (shared["registry_url"], shared["registry_answering"]) == ("http://127.0.0.1:%s/v2/" % port, True)
    nobody = module_runner(docker_node_info, {"gpu_vendor": "NONE", "install_engine": False,
                                              "registry_listen": "%s:%d" % (host, free_port())})
    assert nobody["registry_answering"] is False


@pytest.mark.parametrize("listen", ["5000", "registry.example.com", "host:99999", "http://host:5000"])
def test_a_bad_registry_address_is_named(module_runner, listen):
    result = module_runner(docker_node_info, {"registry_listen": listen})
    assert result.failed
    assert result["msg"] == ("registry_listen must be host:port with a port from 1 to 65535 (for example "
                             "127.0.0.1:5000), not %r." % listen)
