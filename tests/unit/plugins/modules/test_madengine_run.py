"""madengine_run through the AnsibleModule harness, in the cases that need no Docker engine.

``docker_host`` points at a socket that does not exist: any Docker call would fail the task, so a
passing test here shows the module made none.  GPUs come from a fake sysfs tree and fake vendor tools
on PATH.
"""

from __future__ import annotations

import csv
import json
import os
import uuid

import pytest
from fake_gpu_sysfs import FakeGpuSysfs, fake_amd_smi, fake_devices, fake_nvidia_smi, fake_rocm
from manifest_builder import manifest, simple

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.rows import COLUMNS, MADENGINE_COLUMNS
from ansible_collections.rocm.madengine.plugins.modules import madengine_run

NO_ENGINE = "unix:///nonexistent/madci-docker.sock"


@pytest.fixture
def node(tmp_path, monkeypatch):
    """An empty fake node: sysfs tree, tools directory first on PATH, results directory."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", "%s:%s" % (bin_dir, os.environ["PATH"]))
    monkeypatch.delenv("ROCM_PATH", raising=False)
    return {"fs": FakeGpuSysfs(tmp_path / "sys"), "bin": bin_dir, "results": tmp_path / "results",
            "rocm": fake_rocm(tmp_path / "rocm"), "tmp": tmp_path}


def write_manifest(tmp_path, document):
    path = tmp_path / "build_manifest.json"
    path.write_text(json.dumps(document))
    return str(path)


def args(node, manifest_path, **extra):
    base = {"docker_host": NO_ENGINE, "sysfs_root": node["fs"].root,
            "results_dir": str(node["results"]), "run_id": "unit-run", "node_name": "node-a",
            "additional_context": {"MAD_ROCM_PATH": node["rocm"]}}
    if manifest_path is not None:
        base["manifest_path"] = manifest_path
    base.update(extra)
    return base


def sample_manifest():
    return manifest(simple("dummy", tags=["smoke"]), simple("sample_gpu", key="ci-sample_gpu_sample.ubuntu.amd",
                                                            vendor="AMD", n_gpus="-1", skip_gpu_arch="gfx908",
                                                            args="--batch-size 8", cred="HF"))


def test_check_mode_plans_amd_containers_without_docker(node, module_runner):
    node["fs"].add_amd_gpu("gfx942").add_amd_gpu("gfx942")
    fake_amd_smi(node["bin"], ["AMD Instinct MI300X", "AMD Instinct MI300X"])
    creds = node["tmp"] / "credential.json"
    creds.write_text(json.dumps({"HF": {"username": "hf-user", "password": "Hf-Secret-7781"}}))
    path = write_manifest(node["tmp"], sample_manifest())
    result = module_runner(madengine_run, args(node, path, credential_file=str(creds), dev_root="/dev"),
                           check_mode=True)
    assert not result.failed, result.get("msg")
    assert result["changed"] is True and result["results"] == [] and result["ansible_facts"]["madengine_results"] == []
    assert result["gpu"]["vendor"] == "AMD" and result["gpu"]["count"] == 2
    assert result["gpu"]["notes"] == ["Device nodes /dev/kfd, /dev/dri/renderD128, /dev/dri/renderD136 do not exist "
                                      "on this node."]
    dummy, gpu = result["runs"]
    assert dummy["action"] == "run" and dummy["gpu_ids"] == [0]
    container = gpu["container"]
    assert container["image"] == "localhost:5000/ci-sample_gpu_sample.ubuntu.amd"
    assert container["command"] == ["bash", "run.sh", "--batch-size", "8"]
    assert container["devices"] == ["/dev/kfd:/dev/kfd:rwm", "/dev/dri/renderD128:/dev/dri/renderD128:rwm",
                                    "/dev/dri/renderD136:/dev/dri/renderD136:rwm"]
    assert container["environment"]["HF_PASSWORD"] == "********"
    assert container["environment"]["MAD_SYSTEM_GPU_ARCHITECTURE"] == "gfx942"
    assert "--device=/dev/kfd:/dev/kfd:rwm" in container["docker_run"]
    assert "Hf-Secret-7781" not in json.dumps(result)
    assert not node["results"].exists(), "check mode writes nothing"


def test_check_mode_plans_nvidia_device_requests(node, module_runner):
    node["fs"].add_nvidia_gpu().add_nvidia_gpu()
    fake_nvidia_smi(node["bin"], [("NVIDIA H100 80GB HBM3", "00000000:18:00.0"),
                                  ("NVIDIA H100 80GB HBM3", "00000000:28:00.0")])
    document = manifest(simple("dummy", n_gpus="2"), simple("amd_only", vendor="AMD"))
    result = module_runner(madengine_run, args(node, write_manifest(node["tmp"], document), gpu_vendor="NVIDIA"),
                           check_mode=True)
    assert not result.failed, result.get("msg")
    assert result["gpu"]["cuda_version"] == "12.4"
    dummy, amd_only = result["runs"]
    assert dummy["container"]["device_requests"] == [{"driver": "nvidia", "device_ids": ["0", "1"],
                                                      "capabilities": [["gpu"]]}]
    assert dummy["container"]["environment"]["MAD_SYSTEM_GPU_PRODUCT_NAME"] == "NVIDIA H100 80GB HBM3"
    assert amd_only["action"] == "skip" and amd_only["container"] is None


def test_skipped_models_need_no_engine_and_are_rows(node, module_runner):
    """gfx908 node: sample_gpu is SKIPPED by skip_gpu_arch, read from the (fake) sysfs."""
    node["fs"].add_amd_gpu("gfx908", product="AMD Instinct MI100")
    fake_devices(node["tmp"] / "dev", [128])
    path = write_manifest(node["tmp"], sample_manifest())
    result = module_runner(madengine_run, args(node, path, tags=["sample_gpu"], dev_root=str(node["tmp"] / "dev")))
    assert not result.failed, result.get("msg")
    (row,) = result["results"]
    assert row["status"] == "SKIPPED" and row["model"] == "sample_gpu"
    assert row["error"] == "skip_gpu_arch of model 'sample_gpu' lists gfx908, this node's GPU architecture"
    assert row["gpu_architecture"] == "gfx908" and row["gpu_product"] == "AMD Instinct MI100"
    assert row["host"] == "node-a" and row["run_id"] == "unit-run" and row["log_path"] == ""
    assert result["ansible_facts"]["madengine_results"] == result["results"]
    assert result["summary"]["counts"] == {"SUCCESS": 0, "FAILURE": 0, "TIMEOUT": 0, "SKIPPED": 1}
    with open(result["perf_csv"], newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        assert header == list(COLUMNS) and header[:29] == list(MADENGINE_COLUMNS)
        assert [r[0] for r in reader] == ["sample_gpu"]


def test_rows_append_and_replace(node, module_runner):
    node["fs"].add_amd_gpu("gfx908")
    fake_devices(node["tmp"] / "dev", [128])
    path = write_manifest(node["tmp"], sample_manifest())
    common = args(node, path, tags=["sample_gpu"], dev_root=str(node["tmp"] / "dev"))
    first = module_runner(madengine_run, common)
    second = module_runner(madengine_run, dict(common, run_id="unit-run-2"))
    with open(second["perf_csv"]) as handle:
        rows = [(r["model"], r["run_id"]) for r in csv.DictReader(handle)]
    assert rows == [("sample_gpu", "unit-run"), ("sample_gpu", "unit-run-2")]
    module_runner(madengine_run, dict(common, run_id="unit-run-3", append=False))
    with open(first["perf_csv"]) as handle:
        assert [r["run_id"] for r in csv.DictReader(handle)] == ["unit-run-3"]


def test_the_result_and_its_warnings_are_handed_over_in_result_file(node, module_runner, tmp_path):
    """What the action plugin reads instead of asking the async job: the result as returned, the warnings, 0600;
    a run that fails hands its message over too."""
    node["fs"].add_amd_gpu("gfx908")
    fake_devices(node["tmp"] / "dev", [128])
    document = sample_manifest()
    document["context"] = dict(document.get("context") or {}, docker_gpus="0,1")  # the build host's: a warning
    path = write_manifest(node["tmp"], document)
    handed = tmp_path / "async" / "madengine-result-1.json"
    handed.parent.mkdir()
    result = module_runner(madengine_run, args(node, path, tags=["sample_gpu"], dev_root=str(node["tmp"] / "dev"),
                                               result_file=str(handed)))
    assert not result.failed, result.get("msg")
    document = json.loads(handed.read_text())
    assert document["result"]["results"] == result["results"] and document["result"]["summary"] == result["summary"]
    assert len(document["warnings"]) == 1 and "'docker_gpus' (0,1)" in document["warnings"][0], document["warnings"]
    assert (handed.stat().st_mode & 0o777) == 0o600
    # a secret of the credentials, wherever it shows (here in a warning), is masked as exit_json masks it
    document = sample_manifest()
    document["context"] = {"docker_gpus": "tok-s3cret-42"}
    masked = module_runner(madengine_run, args(node, write_manifest(node["tmp"], document), tags=["sample_gpu"],
                                               dev_root=str(node["tmp"] / "dev"), result_file=str(handed),
                                               credentials={"localhost:5000": {"username": "ci",
                                                                               "password": "tok-s3cret-42"}}))
    assert not masked.failed, masked.get("msg")
    assert "tok-s3cret-42" not in handed.read_text() and "********" in json.loads(handed.read_text())["warnings"][0]
    failed = module_runner(madengine_run, args(node, str(tmp_path / "nope.json"), result_file=str(handed)))
    assert failed.failed and json.loads(handed.read_text()) == {
        "result": {"failed": True, "msg": "manifest %s does not exist." % (tmp_path / "nope.json")}, "warnings": []}


# ---- errors ----------------------------------------------------------------------------------------

def test_missing_and_corrupt_manifests_are_named(node, module_runner, tmp_path):
    missing = module_runner(madengine_run, args(node, str(tmp_path / "nope.json")))
    assert missing.failed and missing["msg"] == "manifest %s does not exist." % (tmp_path / "nope.json")
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"built_images": {')
    result = module_runner(madengine_run, args(node, str(corrupt)))
    assert result.failed
    assert result["msg"].startswith("manifest %s is not valid JSON: Expecting property name" % corrupt)
    other = tmp_path / "other.json"
    other.write_text('{"models": []}')
    result = module_runner(madengine_run, args(node, str(other)))
    assert result["msg"] == ("Manifest %s has no 'built_images' object; is it a madengine build manifest?" % other)
    empty = module_runner(madengine_run, args(node, write_manifest(tmp_path, manifest())))
    assert empty["msg"] == "Manifest %s holds no image to run." % (tmp_path / "build_manifest.json")
    inline = module_runner(madengine_run, args(node, None, manifest={"built_images": {}}))
    assert inline["msg"] == "The manifest option has no 'built_models' object; is it a madengine build manifest?"


def test_manifest_options_exclusive_and_required(node, module_runner):
    both = module_runner(madengine_run, args(node, "/x.json", manifest=sample_manifest()))
    assert both["msg"] == "parameters are mutually exclusive: manifest_path|manifest"
    neither = module_runner(madengine_run, args(node, None))
    assert neither["msg"] == "one of the following is required: manifest_path, manifest"


def test_bad_options(node, module_runner):
    path = write_manifest(node["tmp"], sample_manifest())
    vendor = module_runner(madengine_run, args(node, path, gpu_vendor="INTEL"))
    assert vendor.failed and vendor["msg"] == ("value of gpu_vendor must be one of: auto, AMD, NVIDIA, NONE, "
                                               "got: INTEL")
    timeout = module_runner(madengine_run, args(node, path, timeout=-5))
    assert timeout["msg"] == "timeout must be 0 (no limit) or a number of seconds, not -5."
    run_id = module_runner(madengine_run, args(node, path, run_id="a b"))
    assert run_id["msg"] == "run_id 'a b' must be 1-64 letters, digits, '.', '_' or '-'."
    tag = module_runner(madengine_run, args(node, path, tags=["nope"]))
    assert tag["msg"] == ("Tag 'nope' selects no model of manifest %s (models: dummy, sample_gpu)." % path)
    ctx = module_runner(madengine_run, args(node, path, additional_context={"docker_env_vars": []}))
    assert ctx["msg"] == ("Context key 'docker_env_vars' (from the context of manifest %s and additional_context) "
                          "must be an object, not an array." % path)


def test_forced_vendor_on_a_node_without_such_gpus(node, module_runner):
    path = write_manifest(node["tmp"], sample_manifest())
    amd = module_runner(madengine_run, args(node, path, gpu_vendor="AMD"), check_mode=True)
    assert amd.failed and amd["msg"] == ("gpu_vendor is AMD, but this node has no AMD GPU: %s/devices/virtual/kfd/kfd/"
                                         "topology/nodes lists no GPU node." % node["fs"].root)
    nvidia = module_runner(madengine_run, args(node, path, gpu_vendor="NVIDIA"))
    assert nvidia.failed and nvidia["msg"].startswith("gpu_vendor is NVIDIA, but this node has no NVIDIA GPU: ")


def test_missing_device_nodes_fail_before_anything_runs(node, module_runner):
    node["fs"].add_amd_gpu("gfx942")
    dev = node["tmp"] / "dev"
    dev.mkdir()
    path = write_manifest(node["tmp"], sample_manifest())
    result = module_runner(madengine_run, args(node, path, dev_root=str(dev)))
    assert result.failed
    assert result["msg"] == ("This node's AMD GPUs are listed in %s, but device nodes %s/kfd, %s/dri/renderD128 do "
                             "not exist; is the amdgpu driver loaded (dev_root is %s)?"
                             % (node["fs"].root, dev, dev, dev))
    assert not node["results"].exists()


def test_unwritable_results_dir(node, module_runner):
    blocker = node["tmp"] / "a-file"
    blocker.write_text("")
    path = write_manifest(node["tmp"], sample_manifest())
    result = module_runner(madengine_run, args(node, path, results_dir=str(blocker / "results")))
    assert result.failed
    assert result["msg"] == "results_dir %s cannot be created: Not a directory." % (blocker / "results")
    output = module_runner(madengine_run, args(node, path, output=str(node["tmp"])))
    assert output["msg"] == "output %s cannot be written: it is a directory." % node["tmp"]


def test_unreachable_engine_is_a_clear_error(node, module_runner):
    path = write_manifest(node["tmp"], sample_manifest())
    result = module_runner(madengine_run, args(node, path, tags=["dummy"]))
    assert result.failed and result["msg"].startswith("The Docker engine at %s is unreachable: " % NO_ENGINE)


def test_node_keys_of_the_manifest_context_are_not_applied(node, module_runner):
    """madengine records the build host's docker_gpus in the manifest: it must not pick this node's GPUs."""
    node["fs"].add_amd_gpu("gfx942").add_amd_gpu("gfx942")
    document = sample_manifest()
    document["context"].update(docker_gpus="0-7", docker_cpus="0-63")
    path = write_manifest(node["tmp"], document)
    result = module_runner(madengine_run, args(node, path, tags=["dummy"]), check_mode=True)
    assert not result.failed, result.get("msg")
    assert result["warnings"] == [
        "The context key 'docker_gpus' (0-7) of manifest %s describes the build host and is ignored; give it in "
        "additional_context to set it for this node." % path,
        "The context key 'docker_cpus' (0-63) of manifest %s describes the build host and is ignored; give it in "
        "additional_context to set it for this node." % path]
    assert result["runs"][0]["container"]["cpuset_cpus"] is None and result["runs"][0]["gpu_ids"] == [0]
    chosen = module_runner(madengine_run, args(node, path, tags=["dummy"], additional_context={
        "MAD_ROCM_PATH": node["rocm"], "docker_gpus": "1"}), check_mode=True)
    assert chosen["runs"][0]["gpu_ids"] == [1] and "warnings" in chosen and len(chosen["warnings"]) == 1


def test_pull_only_check_mode_lists_the_images_to_pull_and_sets_no_facts(node, module_runner):
    """A CPU node: the AMD-only image is left out, the vendor-neutral one is listed; no Docker call, no file."""
    path = write_manifest(node["tmp"], sample_manifest())
    result = module_runner(madengine_run, args(node, path, pull_only=True), check_mode=True)
    assert not result.failed, result.get("msg")
    assert result["images"] == [{"model": "dummy", "image": "ci-dummy_cpu.ubuntu",
                                 "ref": "localhost:5000/ci-dummy_cpu.ubuntu@sha256:" + "2" * 64,
                                 "pulled": False, "image_digest": "", "error": ""}]
    assert result["results"] == [] and "ansible_facts" not in result and result["changed"] is False
    assert [r["action"] for r in result["runs"]] == ["run", "skip"]
    assert not node["results"].exists()


def test_pull_only_needs_no_engine_when_nothing_runs(node, module_runner):
    path = write_manifest(node["tmp"], sample_manifest())
    result = module_runner(madengine_run, args(node, path, pull_only=True, tags=["sample_gpu"]))
    assert not result.failed, result.get("msg")
    assert result["images"] == [] and result["changed"] is False and not node["results"].exists()


def test_pull_only_with_an_unreachable_engine_is_a_clear_error(node, module_runner):
    path = write_manifest(node["tmp"], sample_manifest())
    result = module_runner(madengine_run, args(node, path, pull_only=True))
    assert result.failed and result["msg"].startswith("The Docker engine at %s is unreachable: " % NO_ENGINE)


def test_data_providers_given_as_data_are_planned_like_a_data_json(node, module_runner):
    data = node["tmp"] / "dataset"
    data.mkdir()
    document = manifest(simple("dummy", data="d"))
    path = write_manifest(node["tmp"], document)
    result = module_runner(madengine_run, args(node, path, gpu_vendor="NONE",
                                               data_providers={"d": {"local": {"path": str(data)}}}), check_mode=True)
    assert not result.failed, result.get("msg")
    assert result["runs"][0]["data"] == [{"name": "d", "provider": "local", "host_path": str(data),
                                          "home": "/data_dlm_0", "read_only": True, "note": "", "download": None,
                                          "mirror": None, "size": "", "duration": None}]
    assert "%s:/data_dlm_0:ro" % data in result["runs"][0]["container"]["binds"]
    missing = module_runner(madengine_run, args(node, path, gpu_vendor="NONE", data_providers={}), check_mode=True)
    assert missing["runs"][0]["action"] == "fail"
    assert "the data_providers option" in missing["runs"][0]["reason"]
    both = module_runner(madengine_run, args(node, path, data_providers={}, data_config=str(node["tmp"] / "x.json")))
    assert both.failed and both["msg"] == "parameters are mutually exclusive: data_config|data_providers"


# ---- credentials given as data, paths, results directory, timeout --------------------------------------

def test_credentials_option_serves_the_model_and_stays_out_of_the_result(node, module_runner):
    node["fs"].add_amd_gpu("gfx942")
    mad = node["tmp"] / "mad"
    mad.mkdir()
    # the catalogue's own credential.json is not read when the credentials option is given
    (mad / "credential.json").write_text(json.dumps({"HF": {"token": "File-token-1234"}}))
    secret, user = "Hf-opt-%s" % uuid.uuid4().hex, "hf-opt-user-%s" % uuid.uuid4().hex[:6]
    path = write_manifest(node["tmp"], sample_manifest())
    result = module_runner(madengine_run, args(node, path, tags=["sample_gpu"], mad_root=str(mad),
                                               credentials={"HF": {"username": user, "password": secret}},
                                               _ansible_inject_invocation=True), check_mode=True)
    assert not result.failed, result.get("msg")
    environment = result["runs"][0]["container"]["environment"]
    assert environment["HF_PASSWORD"] == "********" and environment["HF_USERNAME"] == "********"
    assert "HF_TOKEN" not in environment
    assert result["invocation"]["module_args"]["credentials"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    text = json.dumps(result)
    assert secret not in text and user not in text


def test_credentials_and_credential_file_are_exclusive(node, module_runner):
    path = write_manifest(node["tmp"], sample_manifest())
    result = module_runner(madengine_run, args(node, path, credential_file=str(node["tmp"] / "c.json"),
                                               credentials={"HF": {"password": "Pw-5926"}}))
    assert result.failed and result["msg"] == "parameters are mutually exclusive: credential_file|credentials"


def test_a_malformed_credentials_entry_fails_its_model_with_the_reason(node, module_runner):
    node["fs"].add_amd_gpu("gfx942")
    path = write_manifest(node["tmp"], sample_manifest())
    result = module_runner(madengine_run, args(node, path, tags=["sample_gpu"], credentials={"HF": ["list"]}),
                           check_mode=True)
    assert not result.failed, result.get("msg")
    assert result["runs"][0]["action"] == "fail"
    assert result["runs"][0]["reason"] == ("Credential 'HF' of model 'sample_gpu' in the credentials option must be "
                                           "a JSON object.")


def test_relative_paths_are_taken_from_the_working_directory(node, module_runner, monkeypatch):
    node["fs"].add_amd_gpu("gfx908")
    fake_devices(node["tmp"] / "dev", [128])
    write_manifest(node["tmp"], sample_manifest())
    monkeypatch.chdir(node["tmp"])
    result = module_runner(madengine_run, args(node, "build_manifest.json", tags=["sample_gpu"], dev_root="dev",
                                               results_dir="out/results", output="csv/perf.csv"))
    assert not result.failed, result.get("msg")
    assert result["perf_csv"] == str(node["tmp"] / "csv" / "perf.csv")
    assert result["runs"][0]["log_path"].startswith(str(node["tmp"] / "out" / "results") + os.sep)
    assert (node["tmp"] / "out" / "results").is_dir() and (node["tmp"] / "csv" / "perf.csv").is_file()


def test_results_dir_and_output_directory_are_made(node, module_runner):
    node["fs"].add_amd_gpu("gfx908")
    fake_devices(node["tmp"] / "dev", [128])
    path = write_manifest(node["tmp"], sample_manifest())
    results = node["tmp"] / "deep" / "results"
    planned = module_runner(madengine_run, args(node, path, tags=["sample_gpu"], dev_root=str(node["tmp"] / "dev"),
                                                results_dir=str(results)), check_mode=True)
    assert not planned.failed and not (node["tmp"] / "deep").exists()
    result = module_runner(madengine_run, args(node, path, tags=["sample_gpu"], dev_root=str(node["tmp"] / "dev"),
                                               results_dir=str(results)))
    assert not result.failed, result.get("msg")
    assert result["perf_csv"] == str(results / "perf.csv") and (results / "perf.csv").is_file()


@pytest.mark.parametrize("timeout, expected", [(None, 900), (0, 0), (60, 60)])
def test_timeout_null_means_the_model_s_own(node, module_runner, timeout, expected):
    node["fs"].add_amd_gpu("gfx942")
    path = write_manifest(node["tmp"], manifest(simple("dummy", timeout=900), simple("plain")))
    result = module_runner(madengine_run, args(node, path, timeout=timeout), check_mode=True)
    assert not result.failed, result.get("msg")
    assert [r["timeout"] for r in result["runs"]] == [expected, 7200 if timeout is None else expected]
