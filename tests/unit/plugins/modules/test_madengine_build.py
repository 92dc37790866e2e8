"""madengine_build through the AnsibleModule harness, in the cases that need no Docker engine.

``docker_host`` points at a socket that does not exist: any Docker call would fail the task, so
a passing check-mode test shows the module made none.
"""

from __future__ import annotations

import json

import pytest
from build_tree import ctx_tree
from catalogue_builder import model

from ansible_collections.rocm.madengine.plugins.modules import madengine_build

NO_ENGINE = "unix:///nonexistent/madci-docker.sock"


@pytest.fixture
def tree(tmp_path):
    return ctx_tree(tmp_path / "mad", extra_models=[model("needs_cred", ["cred"], dockerfile="docker/cpu",
                                                          cred="HF_TOKEN")])


def args(tree, **extra):
    base = {"mad_root": str(tree), "docker_host": NO_ENGINE, "image_prefix": "unit-"}
    base.update(extra)
    return base


def test_check_mode_plans_without_docker(tree, module_runner):
    result = module_runner(madengine_build, args(tree, tags=["dummy", "dummy_cpu"], registry="localhost:5000"),
                           check_mode=True)
    assert not result.failed, result.get("msg")
    assert result["changed"] is True
    assert result["built"] == ["unit-dummy_dummy.ubuntu.amd", "unit-dummy_cpu_cpu.ubuntu"]
    assert result["reused"] == []
    assert result["pushed"] == ["localhost:5000/unit-dummy_dummy.ubuntu.amd",
                                "localhost:5000/unit-dummy_cpu_cpu.ubuntu"]
    assert [i["reason"] for i in result["images"]] == ["the manifest has no record of this image"] * 2
    assert set(result["manifest"]["built_images"]) == set(result["built"])
    assert not (tree / "build_manifest.json").exists(), "check mode writes nothing"
    assert not list(tree.glob("*.build.live.log"))


def test_check_mode_before_the_manifest_directory_exists_plans_builds(tree, module_runner, tmp_path):
    manifest = tmp_path / "out" / "results" / "build_manifest.json"
    result = module_runner(madengine_build, args(tree, tags=["dummy_cpu"], manifest_path=str(manifest)),
                           check_mode=True)
    assert not result.failed, result.get("msg")
    assert result["built"] == ["unit-dummy_cpu_cpu.ubuntu"] and result["manifest_changed"] is True
    assert result["warnings"] == [
        "manifest_path %s: directory %s does not exist yet, so there is no earlier manifest and every image is "
        "planned as a build (a real run needs the directory)." % (manifest, manifest.parent)]
    assert not (tmp_path / "out").exists(), "check mode creates nothing"
    real = module_runner(madengine_build, args(tree, tags=["dummy_cpu"], manifest_path=str(manifest)))
    assert real.failed and real["msg"] == ("manifest_path %s cannot be written: directory %s does not exist."
                                           % (manifest, manifest.parent))


def test_unreachable_engine_is_a_clear_error(tree, module_runner):
    result = module_runner(madengine_build, args(tree, tags=["dummy_cpu"]))
    assert result.failed
    assert result["msg"].startswith("The Docker engine at %s is unreachable: " % NO_ENGINE)
    assert not (tree / "build_manifest.json").exists()


def test_options_are_exclusive_and_one_is_required(tree, module_runner):
    both = module_runner(madengine_build, args(tree, tags=["dummy"], models=[model("dummy")]))
    assert both.failed and both["msg"] == "parameters are mutually exclusive: tags|models"
    neither = module_runner(madengine_build, args(tree))
    assert neither.failed and neither["msg"] == "one of the following is required: tags, models"
    empty = module_runner(madengine_build, args(tree, tags=[]))
    assert empty.failed and empty["msg"] == "Give tags (for example 'all') or models to build; both are empty."


def test_malformed_context_string(tree, module_runner):
    result = module_runner(madengine_build, args(tree, tags=["dummy"], additional_context="{'gpu_vendor': 'AMD'"))
    assert result.failed
    assert result["msg"] == ("additional_context is neither valid JSON (Expecting property name enclosed in double "
                             "quotes at line 1 column 2) nor a Python dict literal.")


def test_malformed_context_file(tree, module_runner, tmp_path):
    path = tmp_path / "ctx.json"
    path.write_text('{"gpu_vendor": "AMD"\n "guest_os": "UBUNTU"}')
    result = module_runner(madengine_build, args(tree, tags=["dummy"], additional_context_file=str(path)))
    assert result.failed
    assert result["msg"] == ("additional_context_file %s is not valid JSON: Expecting ',' delimiter at line 2 "
                             "column 2." % path)


def test_bad_context_value(tree, module_runner):
    result = module_runner(madengine_build, args(tree, tags=["dummy"], additional_context={"gpu_vendor": "intel"}))
    assert result.failed
    assert result["msg"] == ("Context key 'gpu_vendor' (from additional_context) is 'intel'; use one of AMD, NVIDIA, "
                             "NONE.")


def test_unwritable_manifest_path(tree, module_runner, tmp_path):
    blocker = tmp_path / "plain-file"
    blocker.write_text("x")
    target = blocker / "build_manifest.json"
    result = module_runner(madengine_build, args(tree, tags=["dummy"], manifest_path=str(target)))
    assert result.failed
    assert result["msg"] == "manifest_path %s cannot be written: %s is not a directory." % (target, blocker)


def test_registry_must_not_be_a_url(tree, module_runner):
    result = module_runner(madengine_build, args(tree, tags=["dummy"], registry="http://localhost:5000"),
                           check_mode=True)
    assert result.failed
    assert result["msg"] == ("registry 'http://localhost:5000' must be a registry host[:port] (optionally /namespace), "
                             "not a URL.")


def test_missing_model_credential_fails_that_model(tree, module_runner, tmp_path):
    creds = tmp_path / "credential.json"
    creds.write_text(json.dumps({"OTHER": {"username": "someone", "password": "Other-secret-77"}}))
    result = module_runner(madengine_build, args(tree, tags=["cred", "dummy_cpu"], credential_file=str(creds)),
                           check_mode=True)
    assert result.failed
    assert result["msg"] == ("1 failure(s): Model 'needs_cred' needs credential 'HF_TOKEN', which credential_file %s "
                             "does not define." % creds)
    assert result["built"] == ["unit-dummy_cpu_cpu.ubuntu"]
    assert [f["model"] for f in result["failures"]] == ["needs_cred"]
    assert result["manifest"]["summary"]["failed_builds"] == [
        {"model": "needs_cred", "error": result["failures"][0]["error"]}]
    kept = module_runner(madengine_build, args(tree, tags=["cred", "dummy_cpu"], credential_file=str(creds),
                                               fail_on_error=False), check_mode=True)
    assert not kept.failed and [f["model"] for f in kept["failures"]] == ["needs_cred"]


def test_model_without_matching_dockerfile_is_a_failure_with_the_reason(tree, module_runner):
    result = module_runner(madengine_build, args(tree, tags=["dummy"], additional_context={"gpu_vendor": "NONE"},
                                                 fail_on_error=False), check_mode=True)
    assert not result.failed
    assert result["built"] == []
    assert result["failures"] == [{
        "model": "dummy", "stage": "plan",
        "error": "Model 'dummy' has no Dockerfile for gpu_vendor=NONE guest_os=UBUNTU: "
                 "docker/dummy.ubuntu.amd.Dockerfile its CONTEXT wants gpu_vendor='AMD', the context has 'NONE'; "
                 "docker/dummy.ubuntu.nvidia.Dockerfile its CONTEXT wants gpu_vendor='NVIDIA', the context has "
                 "'NONE'."}]


def test_models_option_is_validated(tree, module_runner):
    result = module_runner(madengine_build, args(tree, models=[{"name": "x", "dockerfile": 5}]), check_mode=True)
    assert result.failed
    assert result["msg"] == "models option: model 'x' field 'dockerfile' must be a string, not int."


def test_models_from_discover_are_accepted(tree, module_runner):
    result = module_runner(madengine_build, args(tree, models=[model("dummy_cpu", dockerfile="docker/cpu")]),
                           check_mode=True)
    assert not result.failed and result["built"] == ["unit-dummy_cpu_cpu.ubuntu"]


def test_registry_password_is_not_returned(tree, module_runner):
    result = module_runner(madengine_build, args(tree, tags=["dummy_cpu"], registry="localhost:5000",
                                                 registry_username="u", registry_password="Pw-unit-0451"),
                           check_mode=True)
    assert not result.failed
    assert "Pw-unit-0451" not in json.dumps(result)
