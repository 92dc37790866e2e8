"""Context merge/validation and the Dockerfile CONTEXT filter (_context module_utils)."""

from __future__ import annotations

import json

import pytest
from build_tree import ctx_tree, dockerfile, write
from catalogue_builder import model

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.context import (
    detect_build_context,
    filter_context,
    load_context,
    normalise_context,
    read_dockerfile_context,
    select_dockerfiles,
)
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError


def test_file_first_then_dict_user_keys_win(tmp_path):
    path = tmp_path / "ctx.json"
    path.write_text(json.dumps({"gpu_vendor": "NVIDIA", "docker_build_arg": {"A": "1"}, "guest_os": "CENTOS"}))
    ctx, source = load_context({"gpu_vendor": "amd", "docker_env_vars": {"X": "y"}}, str(path))
    assert ctx == {"gpu_vendor": "amd", "docker_build_arg": {"A": "1"}, "guest_os": "CENTOS",
                   "docker_env_vars": {"X": "y"}}
    assert source == "additional_context_file %s and additional_context" % path


@pytest.mark.parametrize("text, expected", [
    ('{"gpu_vendor": "AMD", "debug": true}', {"gpu_vendor": "AMD", "debug": True}),
    ("{'gpu_vendor': 'NVIDIA', 'debug': True}", {"gpu_vendor": "NVIDIA", "debug": True}),
    ("  ", {}),
])
def test_string_context_json_then_python_literal(text, expected):
    assert load_context(text)[0] == expected


@pytest.mark.parametrize("text, message", [
    ('{"gpu_vendor": "AMD"', "additional_context is neither valid JSON (Expecting ',' delimiter at line 1 "
                             "column 21) nor a Python dict literal."),
    ("[1, 2]", "additional_context must be a JSON object, not an array."),
    ('"AMD"', "additional_context must be a JSON object, not a string."),
])
def test_malformed_context_string(text, message):
    with pytest.raises(MadengineError) as err:
        load_context(text)
    assert str(err.value) == message


def test_malformed_context_file_names_file_line_and_column(tmp_path):
    path = tmp_path / "ctx.json"
    path.write_text('{\n  "gpu_vendor": "AMD"\n  "guest_os": "UBUNTU"\n}\n')
    with pytest.raises(MadengineError) as err:
        load_context(None, str(path))
    assert str(err.value) == ("additional_context_file %s is not valid JSON: Expecting ',' delimiter at line 3 "
                              "column 3." % path)


def test_context_file_must_be_an_object(tmp_path):
    path = tmp_path / "ctx.json"
    path.write_text("[]")
    with pytest.raises(MadengineError, match="must hold a JSON object, not an array"):
        load_context(None, str(path))


def test_missing_context_file(tmp_path):
    with pytest.raises(MadengineError) as err:
        load_context(None, str(tmp_path / "nope.json"))
    assert str(err.value) == "additional_context_file %s does not exist." % (tmp_path / "nope.json")


def test_defaults_and_upper_case():
    assert normalise_context({}) == {"gpu_vendor": "AMD", "guest_os": "UBUNTU"}
    ctx = normalise_context({"gpu_vendor": " nvidia", "guest_os": "centos", "docker_build_arg": {"N": 3, "B": True}})
    assert ctx["gpu_vendor"] == "NVIDIA" and ctx["guest_os"] == "CENTOS"
    assert ctx["docker_build_arg"] == {"N": "3", "B": "True"}


def test_none_vendor_is_accepted():
    assert normalise_context({"gpu_vendor": "none"})["gpu_vendor"] == "NONE"


@pytest.mark.parametrize("ctx, message", [
    ({"gpu_vendor": "INTEL"}, "Context key 'gpu_vendor' (from t) is 'INTEL'; use one of AMD, NVIDIA, NONE."),
    ({"guest_os": "SLES"}, "Context key 'guest_os' (from t) is 'SLES'; use one of UBUNTU, CENTOS."),
    ({"gpu_vendor": 1}, "Context key 'gpu_vendor' (from t) must be a string, not a number."),
    ({"docker_build_arg": ["A=1"]}, "Context key 'docker_build_arg' (from t) must be an object of build arguments, "
                                    "not an array."),
    ({"docker_build_arg": {"A": {"x": 1}}}, "Build argument 'A' in docker_build_arg (from t) must be a string, a "
                                            "number or a boolean, not an object."),
    ({"docker_build_arg": {"A-B": "1"}}, "Context key 'docker_build_arg' (from t) has an invalid build argument "
                                         "name 'A-B'."),
    ({"docker_env_vars": {"1X": "y"}}, "Context key 'docker_env_vars' (from t) has an invalid variable name '1X'."),
    ({"docker_env_vars": "X=1"}, "Context key 'docker_env_vars' (from t) must be an object, not a string."),
    ({"docker_mounts": {"/data": 5}}, "Mount '/data' in docker_mounts (from t) must map to a host path string, "
                                      "not a number."),
    ({"tools": {"name": "rpd"}}, "Context key 'tools' (from t) must be an array, not an object."),
    ({"docker_gpus": [0, 1]}, "Context key 'docker_gpus' (from t) must be a string, not an array."),
    ({"timeout": "10"}, "Context key 'timeout' (from t) must be a number or null, not a string."),
    ({"debug": "yes"}, "Context key 'debug' (from t) must be a boolean or null, not a string."),
    ({"log_error_patterns": []}, "Context key 'log_error_patterns' (from t) must be a non-empty array of strings, "
                                 "not an array."),
    ({"MAD_ROCM_PATH": 5}, "Context key 'MAD_ROCM_PATH' (from t) must be a string or null, not a number."),
])
def test_wrong_types_are_clear_errors(ctx, message):
    with pytest.raises(MadengineError) as err:
        normalise_context(ctx, "t")
    assert str(err.value) == message


def test_dockerfile_context_only_in_first_five_lines(tmp_path):
    early = write(tmp_path, "a.Dockerfile", "#\n#\n#\n#\n# CONTEXT {'gpu_vendor': 'AMD'}\nFROM x\n")
    late = write(tmp_path, "b.Dockerfile", "#\n#\n#\n#\n#\n# CONTEXT {'gpu_vendor': 'AMD'}\nFROM x\n")
    bad = write(tmp_path, "c.Dockerfile", "# CONTEXT {'gpu_vendor': AMD}\nFROM x\n")
    assert read_dockerfile_context(early) == ({"gpu_vendor": "AMD"}, None)
    assert read_dockerfile_context(late) == (None, "has no '# CONTEXT {...}' line in its first 5 lines")
    assert read_dockerfile_context(bad) == (None, "has a CONTEXT line that is not a Python dict literal: "
                                                  "{'gpu_vendor': AMD}")


def _select(root, name, ctx):
    models = {"dummy": model("dummy", dockerfile="docker/dummy"),
              "dummy_ctxtest": model("dummy_ctxtest", dockerfile="docker/dummy_ctxtest"),
              "dummy_cpu": model("dummy_cpu", dockerfile="docker/cpu")}
    selected, rejected = select_dockerfiles(str(root), models[name], filter_context(
        normalise_context(ctx), detect_build_context(str(root))))
    return selected, dict(rejected)


@pytest.mark.parametrize("ctx, name, expected", [
    ({}, "dummy", ["docker/dummy.ubuntu.amd.Dockerfile"]),
    ({"gpu_vendor": "NVIDIA"}, "dummy", ["docker/dummy.ubuntu.nvidia.Dockerfile"]),
    ({"gpu_vendor": "NONE"}, "dummy", []),
    ({"gpu_vendor": "NONE"}, "dummy_cpu", ["docker/cpu.ubuntu.Dockerfile"]),
    ({"gpu_vendor": "NVIDIA"}, "dummy_cpu", ["docker/cpu.ubuntu.Dockerfile"]),
    ({"guest_os": "CENTOS"}, "dummy_cpu", []),
    ({}, "dummy_ctxtest", ["docker/dummy_ctxtest.noctx.ubuntu.amd.Dockerfile"]),
    ({"ctx_test": "1"}, "dummy_ctxtest", ["docker/dummy_ctxtest.ctx1.ubuntu.amd.Dockerfile"]),
    ({"ctx_test": "2"}, "dummy_ctxtest", ["docker/dummy_ctxtest.ctx2a.ubuntu.amd.Dockerfile",
                                          "docker/dummy_ctxtest.ctx2b.ubuntu.amd.Dockerfile"]),
    ({"ctx_test": 2}, "dummy_ctxtest", []),  # '2' != 2, as in madengine
])
def test_dockerfile_selection(tmp_path, ctx, name, expected):
    root = ctx_tree(tmp_path / "mad")
    selected, rejected = _select(root, name, ctx)
    assert selected == expected
    assert "docker/dummy_ctxtest.noctx.ubuntu.amd.Dockerfile" not in rejected or name == "dummy_ctxtest"


def test_rejections_say_why(tmp_path):
    root = ctx_tree(tmp_path / "mad")
    _chosen, rejected = _select(root, "dummy", {"gpu_vendor": "NONE"})
    assert rejected == {
        "docker/dummy.ubuntu.amd.Dockerfile": "its CONTEXT wants gpu_vendor='AMD', the context has 'NONE'",
        "docker/dummy.ubuntu.nvidia.Dockerfile": "its CONTEXT wants gpu_vendor='NVIDIA', the context has 'NONE'",
    }


def test_ctx_test_file_is_detected(tmp_path):
    root = ctx_tree(tmp_path / "mad")
    (root / "ctx_test").write_text("2\n")
    assert detect_build_context(str(root))["ctx_test"] == "2"
    selected, _rejected = _select(root, "dummy_ctxtest", {})
    assert [s.split(".")[1] for s in selected] == ["ctx2a", "ctx2b"]
    # a user value wins over detection
    selected, _rejected = _select(root, "dummy_ctxtest", {"ctx_test": "1"})
    assert [s.split(".")[1] for s in selected] == ["ctx1"]


def test_file_without_context_line_is_rejected(tmp_path):
    root = ctx_tree(tmp_path / "mad", dockerfiles={
        "docker/dummy.ubuntu.amd.Dockerfile": dockerfile({"gpu_vendor": "AMD"}, header=False)})
    selected, rejected = _select(root, "dummy", {})
    assert selected == []
    assert rejected["docker/dummy.ubuntu.amd.Dockerfile"] == "has no '# CONTEXT {...}' line in its first 5 lines"
