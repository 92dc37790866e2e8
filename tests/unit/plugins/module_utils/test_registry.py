"""A registry on a node: its listen address, the URL it is asked at, its config.yml, its directories."""

from __future__ import annotations

import os
import pwd

import pytest
import yaml

from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError
from ansible_collections.rocm.madengine.plugins.module_utils.host.docker_registry_task import (
    alive,
    directory_changes,
    make_directory,
    user_id,
)
from ansible_collections.rocm.madengine.plugins.module_utils.host.registry import api_url, parse_listen, render_config


@pytest.mark.parametrize("listen, url", [
    ("127.0.0.1:5000", "http://127.0.0.1:5000/v2/"),
    ("build01.example.com:5001", "http://build01.example.com:5001/v2/"),
    (":5000", "http://127.0.0.1:5000/v2/"),
    ("0.0.0.0:5000", "http://127.0.0.1:5000/v2/"),
    ("[::]:5000", "http://127.0.0.1:5000/v2/"),
    ("[::1]:5000", "http://[::1]:5000/v2/"),
])
def test_a_wildcard_listen_address_is_asked_on_loopback(listen, url):
    assert api_url(listen) == url


@pytest.mark.parametrize("listen", ["5000", "host", "host:0", "host:65536", "host:port", "a:b:5000",
                                    "http://host:5000", "host :5000", "", None])
def test_a_listen_address_that_is_not_host_port_is_named(listen):
    with pytest.raises(MadengineError) as error:
        parse_listen(listen, "registry_listen")
    assert str(error.value) == ("registry_listen must be host:port with a port from 1 to 65535 (for example "
                                "127.0.0.1:5000), not %r." % (listen,))


def test_the_config_stores_on_the_filesystem_and_listens_where_asked():
    text = render_config("0.0.0.0:5000", "/srv/registry: images")
    assert text.startswith("# Written by rocm.madengine.docker_registry")
    assert yaml.safe_load(text) == {
        "version": 0.1, "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": "/srv/registry: images"}, "delete": {"enabled": True}},
        "http": {"addr": "0.0.0.0:5000"}}


def test_directory_changes_are_what_differs(tmp_path):
    path = str(tmp_path / "storage")
    assert directory_changes(path, 0o750) == ["create"]
    make_directory(path, 0o750)
    assert os.stat(path).st_mode & 0o777 == 0o750
    assert directory_changes(path, 0o750) == []
    assert directory_changes(path, 0o755) == ["mode"]
    me = pwd.getpwuid(os.getuid()).pw_name
    assert directory_changes(path, 0o750, me) == []
    # a user that does not exist yet (the package makes it) is a change; making the directory for it is refused
    assert directory_changes(path, 0o750, "madengine-no-such-user") == ["owner"]
    with pytest.raises(MadengineError) as error:
        make_directory(path, 0o750, "madengine-no-such-user")
    assert str(error.value) == ("storage_owner madengine-no-such-user is no user on this node (the registry package "
                                "makes it).")
    assert user_id(me) == os.getuid()


def test_a_file_in_the_way_of_a_directory_is_named(tmp_path):
    (tmp_path / "storage").write_text("")
    with pytest.raises(MadengineError) as error:
        directory_changes(str(tmp_path / "storage"), 0o755)
    assert str(error.value) == "%s exists and is not a directory." % (tmp_path / "storage")


def test_alive_knows_running_and_gone_processes():
    assert alive(os.getpid()) is True
    assert alive(2 ** 22 + 1) is False  # above the largest pid Linux gives
