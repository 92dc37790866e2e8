"""data.json providers (_data module_utils): what a model's data mounts are, or why it has none."""

from __future__ import annotations

import json

import pytest

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.data import data_env, load_data_config, resolve
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError


def model(data):
    return {"name": "m", "data": data}


def test_local_provider_read_only_unless_readwrite(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    providers = {"a": {"local": {"path": str(tmp_path / "a")}},
                 "b": {"local": {"path": str(tmp_path / "b"), "home": "/data", "readwrite": "true"}}}
    mounts = resolve(model("a, b"), providers, "data.json")
    assert [m.bind() for m in mounts] == ["%s:/data_dlm_0:ro" % (tmp_path / "a"), "%s:/data_1:rw" % (tmp_path / "b")]
    assert [m.provider for m in mounts] == ["local", "local"]
    assert data_env(mounts) == {"MAD_DATAHOME": "/data_dlm_0,/data_1", "MAD_DATANAME": "a,b"}
    assert data_env([]) == {}


def test_mirrors_serve_other_providers(tmp_path):
    (tmp_path / "mirror" / "ds").mkdir(parents=True)
    (tmp_path / "forced" / "ds").mkdir(parents=True)
    providers = {"ds": {"nas": {"path": "/nas/ds", "mirrorlocal": str(tmp_path / "mirror")}}}
    (mount,) = resolve(model("ds"), providers, "data.json")
    assert (mount.provider, mount.host_path, mount.read_only) == ("nas", str(tmp_path / "mirror" / "ds"), False)
    (forced,) = resolve(model("ds"), {"ds": {"aws": {"path": "s3://b/ds"}}}, "data.json",
                        force_mirror_local=str(tmp_path / "forced"))
    assert forced.host_path == str(tmp_path / "forced" / "ds") and forced.provider == "aws"


def test_custom_before_local_in_madengine_order_but_only_when_servable(tmp_path):
    (tmp_path / "d").mkdir()
    providers = {"d": {"local": {"path": str(tmp_path / "d")}, "custom": {"path": "scripts/get.sh"}}}
    (mount,) = resolve(model("d"), providers, "data.json")
    assert mount.provider == "local"


@pytest.mark.parametrize("providers, message", [
    ({}, r"^Model 'm' needs data 'd', which data.json does not define\.$"),
    ({"d": {"local": {"path": "/nonexistent/madci"}}},
     r"^Model 'm': data 'd' is not available: local path /nonexistent/madci does not exist on this node\.$"),
    ({"d": {"local": {"path": "/tmp", "mirrorlocal": "/tmp"}}},
     r"^Model 'm': data 'd' is not available: the local provider cannot have mirrorlocal\.$"),
    ({"d": {"minio": {"path": "s3://b"}}},
     r"^Model 'm': data 'd' is not available: provider minio needs a download from S3, which madengine_run does "
     r"not do; pre-stage the data in a mirror \(mirrorlocal or force_mirror_local\)\.$"),
    ({"d": {"nas": {"path": "/n", "mirrorlocal": "/nonexistent/m"}}},
     r"^Model 'm': data 'd' is not available: provider nas: mirrorlocal /nonexistent/m does not exist on this "
     r"node\.$"),
    ({"d": {"nas": {"path": "/n"}}},
     r"^Model 'm': data 'd' is not available: provider nas: no NAS_NODES are configured\.$"),
    ({"d": {"custom": {"path": "scripts/get.sh"}}},
     r"^Model 'm': data 'd' is not available: provider custom: script scripts/get.sh is not in the catalogue "
     r"\(no mad_root\)\.$"),
    ({"d": {"ftp": {"path": "x"}}}, r"^Model 'm': data 'd' is not available: unknown provider type ftp\.$"),
    ({"d": "local"}, r"^Data 'd' in data.json must be an object of providers\.$"),
])
def test_unavailable_data_names_model_and_reason(providers, message):
    with pytest.raises(MadengineError, match=message):
        resolve(model("d"), providers, "data.json")


def test_no_data_config_at_all():
    with pytest.raises(MadengineError, match=r"^Model 'm' needs data 'd', but no data_config was given\.$"):
        resolve(model("d"), {}, None)


def test_context_data_overlays_the_file(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps({"d": {"local": {"path": "/a"}, "nas": {"path": "/n"}}, "e": {"local": {"path": "/e"}}}))
    merged = load_data_config(str(path), {"d": {"local": {"path": "/b"}}, "f": {"local": {"path": "/f"}}})
    assert merged == {"d": {"local": {"path": "/b"}, "nas": {"path": "/n"}}, "e": {"local": {"path": "/e"}},
                      "f": {"local": {"path": "/f"}}}
    path.write_text("[1]")
    with pytest.raises(MadengineError, match=r"must hold a JSON object keyed by data name"):
        load_data_config(str(path))


def test_data_given_as_a_document_is_overlaid_by_the_context():
    document = {"d": {"local": {"path": "/a"}}}
    assert load_data_config(None, {"d": {"local": {"path": "/b"}}}, document=document) == {
        "d": {"local": {"path": "/b"}}}
    assert document == {"d": {"local": {"path": "/a"}}}, "the given document is not changed"
    with pytest.raises(MadengineError, match=r"^data_providers must be an object keyed by data name, as in data"):
        load_data_config(None, document=["d"])


def test_custom_script_is_a_download_into_the_mirror_and_a_finished_mirror_is_reused(tmp_path):
    from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.tools import CatalogueFiles

    (tmp_path / "mad" / "scripts").mkdir(parents=True)
    (tmp_path / "mad" / "scripts" / "get.sh").write_text("echo hi > file\n")
    (tmp_path / "mirror").mkdir()
    providers = {"d": {"custom": {"path": "scripts/get.sh", "args": "--x 1", "mirrorlocal": str(tmp_path / "mirror")}}}
    files = CatalogueFiles(str(tmp_path / "mad"))
    (mount,) = resolve(model("d"), providers, "data.json", files=files)
    assert mount.download == {"kind": "custom", "path": "scripts/get.sh", "args": "--x 1"}
    assert mount.host_path == str(tmp_path / "mirror" / "d") and mount.home == "/data_dlm_0"
    mount.start_download()
    assert (tmp_path / "mirror" / ".d.madengine-partial").exists()
    (again,) = resolve(model("d"), providers, "data.json", files=files)
    assert again.download is not None, "an unfinished mirror is downloaded again"
    mount.size, mount.duration = "4.0K", 0.5
    mount.finish_download(True, "run-1")
    assert not (tmp_path / "mirror" / ".d.madengine-partial").exists()
    assert json.loads((tmp_path / "mirror" / ".d.madengine-mirror").read_text())["provider"] == "custom"
    (reused,) = resolve(model("d"), providers, "data.json", files=files)
    assert reused.download is None and reused.note == "mirror reused"


def test_nas_takes_the_first_node_that_answers(tmp_path):
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead = closed.getsockname()[1]
    closed.close()
    nodes = [{"NAME": "down", "HOST": "127.0.0.1", "PORT": dead, "USERNAME": "u", "PASSWORD": "p"},
             {"NAME": "up", "HOST": "127.0.0.1", "PORT": str(port), "USERNAME": "u", "PASSWORD": "p"}]
    try:
        (mount,) = resolve(model("d"), {"d": {"nas": {"path": "/srv/d"}}}, "data.json", nas_nodes=nodes)
    finally:
        server.close()
    assert mount.download["name"] == "up" and mount.download["port"] == port and mount.host_path is None
    assert "password" not in mount.as_dict()["download"]
    with pytest.raises(MadengineError, match=r"no NAS node answers on its SSH port \(tried down \(127.0.0.1:%d\)\)"
                       % dead):
        resolve(model("d"), {"d": {"nas": {"path": "/srv/d"}}}, "data.json", nas_nodes=nodes[:1])
