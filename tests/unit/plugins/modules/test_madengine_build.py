"""madengine_build through the AnsibleModule harness, in the cases that need no Docker engine.

``docker_host`` points at a socket that does not exist: any Docker call would fail the task, so
a passing check-mode test shows the module made none.
"""

from __future__ import annotations

import json
import re
import uuid

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
        "planned as a build." % (manifest, manifest.parent)]
    assert not (tmp_path / "out").exists(), "check mode creates nothing"


def test_the_real_run_makes_the_manifest_directory(tree, module_runner, tmp_path):
    # every model fails its plan, so no engine is needed and the manifest records the failure
    manifest = tmp_path / "out" / "results" / "build_manifest.json"
    real = module_runner(madengine_build, args(tree, tags=["dummy"], manifest_path=str(manifest), fail_on_error=False,
                                               additional_context={"gpu_vendor": "NONE"}))
    assert not real.failed, real.get("msg")
    assert real["built"] == [] and [f["model"] for f in real["failures"]] == ["dummy"]
    assert json.loads(manifest.read_text()) == real["manifest"]
    assert real["manifest"]["summary"]["failed_builds"][0]["model"] == "dummy"


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


# ---- run id, data providers, selected models ------------------------------------------------------

RUN_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$")


def test_a_new_run_id_is_made_in_check_mode_too(tree, module_runner):
    planned = module_runner(madengine_build, args(tree, tags=["dummy_cpu"]), check_mode=True)
    again = module_runner(madengine_build, args(tree, tags=["dummy_cpu"], run_id=""), check_mode=True)
    assert RUN_ID.match(planned["run_id"]) and RUN_ID.match(again["run_id"])
    assert planned["run_id"] != again["run_id"]


def test_a_given_run_id_is_returned(tree, module_runner):
    result = module_runner(madengine_build, args(tree, tags=["dummy_cpu"], run_id="nightly_2026.11-22"),
                           check_mode=True)
    assert not result.failed and result["run_id"] == "nightly_2026.11-22"


@pytest.mark.parametrize("run_id", ["a b", "-leading-dash", "x" * 65, "semi;colon", "../up"])
def test_a_bad_run_id_is_refused(tree, module_runner, run_id):
    result = module_runner(madengine_build, args(tree, tags=["dummy_cpu"], run_id=run_id), check_mode=True)
    assert result.failed
    assert result["msg"] == "run_id %r must be 1-64 letters, digits, '.', '_' or '-'." % run_id


def test_data_json_of_the_catalogue_is_returned(tree, module_runner):
    providers = {"dummy_data": {"local": {"path": "/srv/data/dummy"}}}
    (tree / "data.json").write_text(json.dumps(providers))
    result = module_runner(madengine_build, args(tree, tags=["dummy_cpu"]), check_mode=True)
    assert not result.failed, result.get("msg")
    assert result["data_providers"] == providers


def test_no_data_json_gives_null(tree, module_runner):
    result = module_runner(madengine_build, args(tree, tags=["dummy_cpu"]), check_mode=True)
    assert not result.failed and result["data_providers"] is None


def test_data_config_option_wins_over_the_catalogue(tree, module_runner, tmp_path):
    (tree / "data.json").write_text(json.dumps({"catalogue": {}}))
    other = tmp_path / "other-data.json"
    other.write_text(json.dumps({"elsewhere": {"nas": {"mirrorlocal": "/mnt"}}}))
    result = module_runner(madengine_build, args(tree, tags=["dummy_cpu"], data_config=str(other)), check_mode=True)
    assert result["data_providers"] == {"elsewhere": {"nas": {"mirrorlocal": "/mnt"}}}


@pytest.mark.parametrize("content, message", [
    ('{"dummy_data": {"local": {}}', "data_config %s is not valid JSON: Expecting ',' delimiter at line 1 column 29."),
    ('["dummy_data"]', "data_config %s must hold a JSON object keyed by data name."),
    (None, "data_config %s does not exist."),
])
def test_bad_data_config_is_named(tree, module_runner, tmp_path, content, message):
    path = tmp_path / "data.json"
    if content is not None:
        path.write_text(content)
    result = module_runner(madengine_build, args(tree, tags=["dummy_cpu"], data_config=str(path)), check_mode=True)
    assert result.failed and result["msg"] == message % path


def test_a_bad_data_json_in_the_catalogue_is_named(tree, module_runner):
    (tree / "data.json").write_text("not json")
    result = module_runner(madengine_build, args(tree, tags=["dummy_cpu"]), check_mode=True)
    assert result.failed
    assert result["msg"] == "data_config %s is not valid JSON: Expecting value at line 1 column 1." % (
        tree / "data.json")


def test_selected_and_models_in_selection_order(tree, module_runner):
    result = module_runner(madengine_build, args(tree, tags=["dummy_cpu", "cred", "dummy"], fail_on_error=False,
                                                 additional_context={"gpu_vendor": "NVIDIA"}), check_mode=True)
    assert not result.failed, result.get("msg")
    assert [m["name"] for m in result["selected"]] == ["dummy_cpu", "needs_cred", "dummy"]
    assert result["selected"][1] == model("needs_cred", ["cred"], dockerfile="docker/cpu", cred="HF_TOKEN")
    # needs_cred failed its plan (no credentials): a recorded build failure, so the nodes run it as a FAILURE row
    assert [f["model"] for f in result["failures"]] == ["needs_cred"]
    assert result["models"] == ["dummy_cpu", "needs_cred", "dummy"]
    assert result["built"] == ["unit-dummy_cpu_cpu.ubuntu", "unit-dummy_dummy.ubuntu.nvidia"]


def test_models_option_is_selected_as_given(tree, module_runner):
    given = [model("dummy", dockerfile="docker/dummy"), model("dummy_cpu", dockerfile="docker/cpu")]
    result = module_runner(madengine_build, args(tree, models=given, fail_on_error=False,
                                                 additional_context={"gpu_vendor": "NONE"}), check_mode=True)
    assert result["selected"] == given
    assert result["models"] == ["dummy", "dummy_cpu"]
    assert [f["model"] for f in result["failures"]] == ["dummy"]


def test_a_model_with_no_image_and_no_failure_is_not_in_models(tree, module_runner):
    # the two models share one image name; the second is skipped with a warning and has no image of its own
    twin = model("Dummy_CPU", dockerfile="docker/cpu")
    result = module_runner(madengine_build, args(tree, models=[model("dummy_cpu", dockerfile="docker/cpu"), twin]),
                           check_mode=True)
    assert not result.failed, result.get("msg")
    assert [m["name"] for m in result["selected"]] == ["dummy_cpu", "Dummy_CPU"]
    assert result["models"] == ["dummy_cpu"]


# ---- relative paths -------------------------------------------------------------------------------

def test_relative_paths_are_taken_from_the_working_directory(tree, module_runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert tree == tmp_path / "mad"
    (tmp_path / "ctx.json").write_text(json.dumps({"gpu_vendor": "NONE"}))
    (tmp_path / "d.json").write_text(json.dumps({"x": {}}))
    # dummy has no Dockerfile for gpu_vendor NONE: a plan failure, so the real run needs no engine
    options = dict(mad_root="mad", tags=["dummy"], manifest_path="out/m.json", additional_context_file="ctx.json",
                   data_config="d.json", log_dir="logs", fail_on_error=False)
    planned = module_runner(madengine_build, args(tree, **options), check_mode=True)
    assert not planned.failed, planned.get("msg")
    assert planned["manifest_path"] == str(tmp_path / "out" / "m.json")
    assert planned["manifest"]["context"]["gpu_vendor"] == "NONE" and planned["data_providers"] == {"x": {}}
    assert not (tmp_path / "out").exists()
    real = module_runner(madengine_build, args(tree, **options))
    assert not real.failed, real.get("msg")
    assert real["manifest_path"] == str(tmp_path / "out" / "m.json")
    assert json.loads((tmp_path / "out" / "m.json").read_text()) == real["manifest"]
    assert (tmp_path / "logs").is_dir()


# ---- credentials given as data ------------------------------------------------------------------

def secret_credentials():
    return {
        "localhost:5000": {"username": "unit", "password": "Reg-pw-%s" % uuid.uuid4().hex, "repository": "mad"},
        "HF_TOKEN": {"username": "hf-%s" % uuid.uuid4().hex[:8], "token": "Hf-tok-%s" % uuid.uuid4().hex},
    }


def test_credentials_and_credential_file_are_exclusive(tree, module_runner, tmp_path):
    creds = tmp_path / "credential.json"
    creds.write_text("{}")
    result = module_runner(madengine_build, args(tree, tags=["dummy_cpu"], credential_file=str(creds),
                                                 credentials={"HF_TOKEN": {"token": "Tok-3141"}}), check_mode=True)
    assert result.failed and result["msg"] == "parameters are mutually exclusive: credential_file|credentials"


def test_credentials_serve_a_model_cred_and_the_registry(tree, module_runner):
    creds = secret_credentials()
    result = module_runner(madengine_build, args(tree, tags=["cred", "dummy_cpu"], registry="localhost:5000",
                                                 credentials=creds, _ansible_inject_invocation=True),
                           check_mode=True)
    assert not result.failed, result.get("msg")
    assert result["failures"] == []
    assert result["built"] == ["unit-needs_cred_cpu.ubuntu", "unit-dummy_cpu_cpu.ubuntu"]
    # the registry entry's repository names the pushed images: a user name or repository that is a common
    # word must not be masked all over the result
    assert result["pushed"] == ["localhost:5000/mad:unit-needs_cred_cpu.ubuntu",
                                "localhost:5000/mad:unit-dummy_cpu_cpu.ubuntu"]
    command = result["manifest"]["built_images"]["unit-needs_cred_cpu.ubuntu"]["build_command"]
    assert "--build-arg HF_TOKEN_USERNAME=******** --build-arg HF_TOKEN_TOKEN=********" in command
    assert result["invocation"]["module_args"]["credentials"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    text = json.dumps(result)
    for secret in (creds["localhost:5000"]["password"], creds["HF_TOKEN"]["username"], creds["HF_TOKEN"]["token"]):
        assert secret not in text


def test_a_malformed_credentials_entry_is_named(tree, module_runner):
    result = module_runner(madengine_build, args(tree, tags=["cred"], credentials={"HF_TOKEN": "not-an-object"}),
                           check_mode=True)
    assert result.failed
    assert result["msg"] == ("1 failure(s): Credential 'HF_TOKEN' of model 'needs_cred' in the credentials option "
                             "must be a JSON object.")


def test_a_cred_missing_from_the_credentials_option_is_named(tree, module_runner):
    result = module_runner(madengine_build, args(tree, tags=["cred"], credentials={"OTHER": {"token": "Tok-2718"}}),
                           check_mode=True)
    assert result.failed
    assert result["msg"] == ("1 failure(s): Model 'needs_cred' needs credential 'HF_TOKEN', which the credentials "
                             "option does not define.")


# ---- a build for the nodes of a run (check mode: no engine) --------------------------------------

def node(vendor, arch="", product=""):
    return {"gpu_vendor": vendor, "gpu_architecture": arch, "gpu_product": product, "source": "detected"}


MI300X = node("AMD", "gfx942", "AMD Instinct MI300X")
H100 = node("NVIDIA", "H100", "NVIDIA H100 80GB HBM3")
MIXED = {"mi300x-01": MI300X, "mi300x-02": MI300X, "h100-01": H100, "h100-02": H100,
         "cpu-01": node("NONE"), "cpu-02": node("NONE")}


def test_the_nodes_decide_the_images_and_every_node_runs_every_model(tree, module_runner):
    result = module_runner(madengine_build, args(tree, tags=["dummy", "dummy_cpu"], nodes=MIXED,
                                                 additional_context={"gpu_vendor": "AMD"}), check_mode=True)
    assert not result.failed, result.get("msg")
    assert result["built"] == ["unit-dummy_dummy.ubuntu.amd", "unit-dummy_dummy.ubuntu.nvidia",
                               "unit-dummy_cpu_cpu.ubuntu"]
    assert result["models"] == ["dummy", "dummy_cpu"]
    assert result["assignments"] == dict((n, ["dummy", "dummy_cpu"]) for n in MIXED)
    assert result["targets"] == [{"gpu_vendor": "AMD", "gpu_architecture": "gfx942"},
                                 {"gpu_vendor": "NVIDIA", "gpu_architecture": "H100"},
                                 {"gpu_vendor": "NONE", "gpu_architecture": ""}]
    assert [(s["model"], s["gpu_vendor"]) for s in result["skipped_builds"]] == [("dummy", "NONE")]
    assert result["manifest"]["skipped_builds"] == result["skipped_builds"]
    assert result["manifest"]["targets"] == result["targets"]
    assert result["warnings"] == ["The build context's gpu_vendor AMD is not used: Dockerfiles are chosen for the "
                                  "vendors of the nodes (AMD, NONE, NVIDIA)."]


def test_a_shard_gives_each_model_once_per_group_and_a_lonely_node_stops_the_build(tree, module_runner):
    result = module_runner(madengine_build, args(tree, tags=["dummy", "dummy_cpu", "dummy_ctxtest"], nodes=MIXED,
                                                 matrix="shard", durations={"dummy_cpu": 30, "dummy": 10,
                                                                            "dummy_ctxtest_1": 10}), check_mode=True)
    assert not result.failed, result.get("msg")
    for group in (["mi300x-01", "mi300x-02"], ["h100-01", "h100-02"], ["cpu-01", "cpu-02"]):
        models = [m for n in group for m in result["assignments"][n]]
        assert sorted(models) == ["dummy", "dummy_cpu", "dummy_ctxtest"], group
    assert result["assignments"]["mi300x-01"] == ["dummy_cpu"]  # the long one alone
    assert [g["basis"] for g in result["groups"]] == ["test_duration"] * 3
    lonely = dict(MIXED, **{"mi250-01": node("AMD", "gfx90a", "AMD Instinct MI250X")})
    failed = module_runner(madengine_build, args(tree, tags=["dummy"], nodes=lonely, matrix="shard"),
                           check_mode=True)
    assert failed.failed and "but mi250-01 (AMD gfx90a (AMD Instinct MI250X)) is alone in its group" in failed["msg"]
    assert not (tree / "build_manifest.json").exists()
    no_nodes = module_runner(madengine_build, args(tree, tags=["dummy"], matrix="shard"), check_mode=True)
    assert no_nodes["msg"] == "matrix shard needs the nodes option (the nodes and their GPU profiles)."


def test_a_manifest_is_reused_without_building(tree, module_runner, tmp_path):
    out = tmp_path / "out"
    amd_and_cpu = {"mi300x-01": MIXED["mi300x-01"], "cpu-01": node("NONE")}
    built = module_runner(madengine_build, args(tree, tags=["dummy", "dummy_cpu"], nodes=amd_and_cpu,
                                                manifest_path=str(out / "build_manifest.json")), check_mode=True)
    out.mkdir()
    (out / "build_manifest.json").write_text(json.dumps(built["manifest"]))
    before = sorted(p.name for p in out.iterdir())
    others = {"cpu-01": node("NONE"), "h100-01": MIXED["h100-01"]}
    result = module_runner(madengine_build, args(tree, tags=["dummy", "dummy_cpu"], nodes=others,
                                                 mad_root="/nonexistent",
                                                 reuse_manifest=str(out / "build_manifest.json")))
    assert not result.failed, result.get("msg")
    assert result["changed"] is False and result["built"] == [] and result["pushed"] == []
    assert result["reused"] == ["unit-dummy_cpu_cpu.ubuntu", "unit-dummy_dummy.ubuntu.amd"]
    assert result["models"] == ["dummy", "dummy_cpu"]
    assert result["manifest"] == built["manifest"]
    assert result["assignments"] == {"cpu-01": ["dummy", "dummy_cpu"], "h100-01": ["dummy", "dummy_cpu"]}
    assert result["data_providers"] is None and sorted(p.name for p in out.iterdir()) == before
    # dummy has an NVIDIA Dockerfile, but this manifest was built without NVIDIA nodes; its CPU gap is no warning
    assert result["warnings"] == ["manifest %s has no image of dummy for NVIDIA H100: the nodes of those kinds skip "
                                  "or fail those models." % (out / "build_manifest.json")]
    wrong = module_runner(madengine_build, args(tree, tags=["nope"], reuse_manifest=str(out / "build_manifest.json")))
    assert wrong["msg"] == "Tag 'nope' selects no model of manifest %s (models: dummy, dummy_cpu)." % (
        out / "build_manifest.json")


def test_the_catalogue_credential_json_is_used_when_no_file_is_named(tree, module_runner):
    needs = module_runner(madengine_build, args(tree, tags=["cred"]), check_mode=True)
    assert needs.failed and "needs credential 'HF_TOKEN', but no credential_file was given" in needs["msg"]
    (tree / "credential.json").write_text(json.dumps({"HF_TOKEN": {"token": "unit-secret-%s" % uuid.uuid4().hex}}))
    result = module_runner(madengine_build, args(tree, tags=["cred"]), check_mode=True)
    assert not result.failed, result.get("msg")
    assert result["built"] == ["unit-needs_cred_cpu.ubuntu"]
    assert "unit-secret" not in json.dumps(result)


def test_each_architecture_of_the_nodes_gets_its_image_where_the_dockerfile_takes_it(tree, module_runner):
    """Two AMD architectures: a Dockerfile taking MAD_SYSTEM_GPU_ARCHITECTURE is built once per architecture, one
    that does not is built once for the vendor; every node is assigned every model."""
    (tree / "docker" / "dummy.ubuntu.amd.Dockerfile").write_text(
        "# CONTEXT {'gpu_vendor': 'AMD', 'guest_os': 'UBUNTU'}\nFROM scratch\nARG MAD_SYSTEM_GPU_ARCHITECTURE=\n")
    nodes = {"mi300x-01": MI300X, "mi250-01": node("AMD", "gfx90a", "AMD Instinct MI250X"), "h100-01": H100,
             "cpu-01": node("NONE")}
    result = module_runner(madengine_build, args(tree, tags=["dummy", "dummy_cpu"], nodes=nodes), check_mode=True)
    assert not result.failed, result.get("msg")
    assert result["built"] == ["unit-dummy_dummy.ubuntu.amd_gfx90a", "unit-dummy_dummy.ubuntu.amd_gfx942",
                               "unit-dummy_dummy.ubuntu.nvidia", "unit-dummy_cpu_cpu.ubuntu"]
    images = dict((i["image"], i) for i in result["images"])
    for arch in ("gfx942", "gfx90a"):
        entry = result["manifest"]["built_images"]["unit-dummy_dummy.ubuntu.amd_" + arch]
        assert entry["gpu_vendor"] == "AMD" and entry["gpu_architecture"] == arch
        assert "--build-arg MAD_SYSTEM_GPU_ARCHITECTURE=%s" % arch in entry["build_command"]
        assert images["unit-dummy_dummy.ubuntu.amd_" + arch]["action"] == "build"
    assert result["manifest"]["built_images"]["unit-dummy_dummy.ubuntu.nvidia"]["gpu_vendor"] == "NVIDIA"
    assert [(t["gpu_vendor"], t["gpu_architecture"]) for t in result["targets"]] == [
        ("AMD", "gfx90a"), ("AMD", "gfx942"), ("NVIDIA", "H100"), ("NONE", "")]
    assert result["assignments"] == dict((n, ["dummy", "dummy_cpu"]) for n in nodes)
    assert [(s["model"], s["gpu_vendor"]) for s in result["skipped_builds"]] == [("dummy", "NONE")]
    assert not (tree / "build_manifest.json").exists()


def test_a_node_profile_that_is_not_one_is_named(tree, module_runner):
    result = module_runner(madengine_build, args(tree, tags=["dummy"], nodes={"gpu-07": {"gpu_vendor": "INTEL"}}),
                           check_mode=True)
    assert result.failed and "gpu-07" in result["msg"], result.get("msg")
    assert not (tree / "build_manifest.json").exists()
