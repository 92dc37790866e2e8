"""Which Docker SDK for Python the modules accept: docker>=7.1.0, or an older one with the HTTP libraries it was
made for (Debian 12's and Ubuntu 22.04's python3-docker with their requests and urllib3)."""

from __future__ import annotations

import pytest

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark import docker_client
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.docker_client import sdk_problem, version_tuple


@pytest.mark.parametrize("text, expected", [
    ("7.1.0", (7, 1, 0)), ("5.0.3", (5, 0, 3)), ("2.28.1", (2, 28, 1)), ("2.0", (2, 0, 0)), ("7", (7, 0, 0)),
    ("1.26.12", (1, 26, 12)), ("6.1.0rc1", (6, 1, 0)), ("5.0.3-2", (5, 0, 3)),
])
def test_versions_are_read_as_numbers(text, expected):
    assert version_tuple(text) == expected


@pytest.mark.parametrize("sdk, requests, urllib3", [
    ("7.1.0", "2.32.3", "2.2.3"),    # PyPI today
    ("7.1.0", "2.28.1", "1.26.12"),  # pip into Debian 12's Python
    ("5.0.3", "2.28.1", "1.26.12"),  # Debian 12's python3-docker, python3-requests, python3-urllib3
    ("5.0.3", "2.25.1", "1.26.5"),   # Ubuntu 22.04's
    ("6.1.3", "2.31.0", "2.0.7"),    # 6.1 made chunked uploads and urllib3 2 work
    ("5.0.0", "2.28.2", "1.26.18"),
])
def test_an_sdk_with_the_http_libraries_it_was_made_for_is_accepted(sdk, requests, urllib3):
    assert sdk_problem(sdk, requests, urllib3) is None


@pytest.mark.parametrize("sdk, requests, urllib3, message", [
    ("4.4.4", "2.28.1", "1.26.12", "the Docker SDK for Python 4.4.4 is too old; docker>=7.1.0 is required"),
    ("7.0.0", "2.32.0", "2.2.1",
     "the Docker SDK for Python 7.0.0 does not work with requests 2.32.0 (2.32 or later) beside it; "
     "docker>=7.1.0 does"),
    ("5.0.3", "2.31.0", "2.0.7",  # Ubuntu 24.04's set
     "the Docker SDK for Python 5.0.3 does not work with requests 2.31.0 (2.29 or later) and urllib3 2.0.7 "
     "(2.0 or later) beside it; docker>=7.1.0 does"),
    ("6.0.1", "2.28.1", "2.1.0",
     "the Docker SDK for Python 6.0.1 does not work with urllib3 2.1.0 (2.0 or later) beside it; docker>=7.1.0 does"),
    ("6.1.3", "2.32.3", "2.2.3",
     "the Docker SDK for Python 6.1.3 does not work with requests 2.32.3 (2.32 or later) beside it; docker>=7.1.0 "
     "does"),
])
def test_an_sdk_that_cannot_drive_the_engine_is_named_with_the_library_it_clashes_with(
        sdk, requests, urllib3, message):
    assert sdk_problem(sdk, requests, urllib3) == message


def test_the_installed_sdk_is_judged_with_the_libraries_this_python_imports(monkeypatch):
    import requests
    import urllib3

    assert docker_client.installed_sdk_problem() is None  # the test venv's SDK and libraries
    monkeypatch.setattr(docker_client.docker, "__version__", "5.0.3")
    monkeypatch.setattr(requests, "__version__", "2.28.1")
    monkeypatch.setattr(urllib3, "__version__", "1.26.12")
    assert docker_client.installed_sdk_problem() is None
    monkeypatch.setattr(requests, "__version__", "2.32.3")
    assert docker_client.installed_sdk_problem() == (
        "the Docker SDK for Python 5.0.3 does not work with requests 2.32.3 (2.32 or later) beside it; docker>=7.1.0 "
        "does")
