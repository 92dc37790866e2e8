"""madengine_run on the real Docker engine and registry (marked ``docker``).

Images come from madengine_build (the sample catalogue plus a few probe models added to a private
copy), pushed to the local registry under a prefix unique to this test session.  GPUs come from fake
sysfs trees; for AMD runs the device nodes are character devices made with mknod (copies of
/dev/null's numbers), so the engine really maps them into the container.  A second Docker engine
with its own image store stands in for a GPU node that has never seen the images.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid

import docker
import pytest
from conftest import REGISTRY, SAMPLE_MAD, run_module, run_playbook
from docker_helpers import delete_repositories, remove_labelled_images
from fake_gpu_sysfs import FakeGpuSysfs, fake_amd_smi, fake_devices, fake_nvidia_smi
from node_engines import node_engines
from secret_scan import files_holding, files_since

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.rows import COLUMNS, MADENGINE_COLUMNS
from ansible_collections.rocm.madengine.plugins.modules import madengine_build, madengine_run

pytestmark = pytest.mark.docker

SESSION = uuid.uuid4().hex[:8]
PREFIX = "r%s-" % SESSION
TEST_LABEL = "madci.test.session"
DOCKER_HOST = "unix:///var/run/docker.sock"
RUN_LABEL = "org.rocm.madengine.run-id"
PLAYBOOK = os.path.join(os.path.dirname(__file__), "playbooks", "run.yml")
PROBE_USER, PROBE_SECRET = "probe-user-%s" % SESSION, "Probe-%s-secret" % uuid.uuid4().hex

PROBE_SH = """#!/bin/bash
echo "vendor=$MAD_GPU_VENDOR arch=$MAD_SYSTEM_GPU_ARCHITECTURE ngpus=$MAD_RUNTIME_NGPUS model=$MAD_MODEL_NAME"
echo "user=$PROBE_USERNAME secret=$PROBE_PASSWORD"
echo "datahome=$MAD_DATAHOME dataname=$MAD_DATANAME"
if [ -n "$MAD_DATAHOME" ]; then
  cat "$MAD_DATAHOME/input.txt"
  if touch "$MAD_DATAHOME/written" 2>/dev/null; then echo "data=rw"; else echo "data=ro"; fi
fi
ls /dev/kfd /dev/dri 2>/dev/null
echo "performance: 7.5 samples_per_second"
"""
PROBE_MODELS = [
    {"name": "probe", "dockerfile": "docker/cpu", "scripts": "scripts/probe/run.sh", "n_gpus": "1",
     "cred": "PROBE", "data": "probe_data", "tags": ["probe"], "args": ""},
    {"name": "py_model", "dockerfile": "docker/cpu", "scripts": "scripts/probe/main.py", "n_gpus": "1",
     "tags": ["broken"], "args": ""},
    {"name": "multi_missing", "dockerfile": "docker/cpu", "scripts": "scripts/probe/quiet.sh", "n_gpus": "1",
     "multiple_results": "never_written.csv", "tags": ["broken"], "args": ""},
    {"name": "pattern_fail", "dockerfile": "docker/cpu", "scripts": "scripts/probe/pattern.sh", "n_gpus": "1",
     "tags": ["broken"], "args": ""},
]


def write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(str(path), "w") as handle:
        handle.write(text)
    os.chmod(str(path), mode)


def session_containers(api):
    """Containers of this session's runs, running or not."""
    return [c for c in api.containers(all=True, filters={"label": RUN_LABEL})
            if (c.get("Labels") or {}).get(RUN_LABEL, "").startswith(PREFIX)]


@pytest.fixture(scope="module")
def api():
    client = docker.APIClient(base_url=DOCKER_HOST, version="auto", timeout=120)
    yield client
    for container in session_containers(client):
        client.remove_container(container["Id"], force=True)
    remove_labelled_images(client, "%s=%s" % (TEST_LABEL, SESSION))
    delete_repositories(REGISTRY, PREFIX)
    client.close()


@pytest.fixture(scope="module")
def built(api, tmp_path_factory):
    """The sample catalogue plus probe models, built and pushed once for the module."""
    root = tmp_path_factory.mktemp("run")
    mad = root / "mad"
    shutil.copytree(SAMPLE_MAD, mad)
    models = json.loads((mad / "models.json").read_text()) + PROBE_MODELS
    (mad / "models.json").write_text(json.dumps(models, indent=1))
    write(mad / "scripts" / "probe" / "run.sh", PROBE_SH, 0o755)
    write(mad / "scripts" / "probe" / "main.py", "print('performance: 1.0 samples_per_second')\n")
    write(mad / "scripts" / "probe" / "quiet.sh", "#!/bin/bash\necho 'no results file today'\n", 0o755)
    write(mad / "scripts" / "probe" / "pattern.sh", "#!/bin/bash\necho 'performance: 3.0 samples_per_second'\n"
          "echo 'Traceback (most recent call last):'\necho '  File \"x.py\", line 1'\nexit 0\n", 0o755)
    data = root / "data"
    write(data / "input.txt", "probe input %s\n" % SESSION)
    write(mad / "data.json", json.dumps({"probe_data": {"local": {"path": str(data)}}}))
    creds = root / "credential.json"
    creds.write_text(json.dumps({"PROBE": {"username": PROBE_USER, "password": PROBE_SECRET}}))
    manifest = root / "build_manifest.json"
    result = run_module(madengine_build, {
        "mad_root": str(mad), "tags": ["dummy", "dummy_multi", "dummy_fail", "dummy_slow", "sample_gpu",
                                       "dummy2/model1", "dummy2/model2", "probe", "broken"],
        "registry": REGISTRY, "credential_file": str(creds), "manifest_path": str(manifest),
        "image_prefix": PREFIX, "labels": {TEST_LABEL: SESSION}, "docker_host": DOCKER_HOST})
    assert not result.failed, result.get("msg")
    return {"root": root, "mad": mad, "manifest": str(manifest), "document": result["manifest"],
            "creds": str(creds), "data": data}


def cpu_node(tmp_path):
    return FakeGpuSysfs(tmp_path / "sys-cpu").root


def run(built, tmp_path, check_mode=False, **options):
    args = {"manifest_path": built["manifest"], "results_dir": str(tmp_path / "results"), "docker_host": DOCKER_HOST,
            "sysfs_root": cpu_node(tmp_path), "run_id": PREFIX + uuid.uuid4().hex[:6], "node_name": "node-1"}
    args.update(options)
    return run_module(madengine_run, dict((k, v) for k, v in args.items() if v is not None), check_mode=check_mode)


def by_model(result):
    return dict((row["model"], row) for row in result["results"])


# ---- the sample models on a CPU node -----------------------------------------------------------------

@pytest.fixture(scope="module")
def sample_run(built, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sample-run")
    started = time.monotonic()
    result = run(built, tmp, tags=["dummy", "dummy_multi", "dummy_fail", "dummy_slow", "dummy2/model2:batch-size=32"])
    return {"result": result, "seconds": time.monotonic() - started, "tmp": tmp}


def test_sample_models_give_madengine_rows(sample_run, built):
    result = sample_run["result"]
    assert not result.failed, result.get("msg")
    assert result["changed"] is True and result["gpu"]["vendor"] == "NONE"
    rows = result["results"]
    assert [r["model"] for r in rows] == ["dummy", "dummy_multi_1", "dummy_multi_2", "dummy_multi_3", "dummy_multi_4",
                                          "dummy_fail", "dummy_slow", "dummy2/model2"]
    dummy = rows[0]
    entry = built["document"]["built_images"][PREFIX + "dummy_cpu.ubuntu"]
    assert (dummy["status"], dummy["performance"], dummy["metric"]) == ("SUCCESS", "2000.5", "samples_per_second")
    assert dummy["image_digest"] == entry["registry_digest"] and dummy["docker_image"] == PREFIX + "dummy_cpu.ubuntu"
    assert dummy["docker_file"] == "docker/cpu.ubuntu.Dockerfile" and dummy["docker_sha"] == entry["docker_sha"]
    assert dummy["tags"] == "dummies,cpu,smoke,dummy_test_group_1" and dummy["training_precision"] == "fp32"
    assert dummy["host"] == "node-1" and dummy["exit_code"] == "0" and dummy["launcher"] == "docker"
    assert dummy["deployment_type"] == "local" and dummy["run_id"] == result["run_id"] and dummy["error"] == ""
    assert float(dummy["test_duration"]) > 0 and dummy["start_time"] <= dummy["end_time"]
    assert "performance: 2000.5 samples_per_second" in open(dummy["log_path"]).read()
    model2 = rows[-1]
    assert model2["args"] == " --batch-size 32" and model2["performance"] == "4000.5"


def test_multiple_results_rows_carry_their_extra_column(sample_run):
    rows = [r for r in sample_run["result"]["results"] if r["model"].startswith("dummy_multi_")]
    assert [(r["performance"], r["temperature"], r["status"]) for r in rows] == [
        ("1001.5", "20", "SUCCESS"), ("1002.5", "40", "SUCCESS"), ("1003.5", "60", "SUCCESS"),
        ("1004.5", "80", "SUCCESS")]
    assert all(r["training_precision"] == "fp16" and r["metric"] == "samples_per_second" for r in rows)


def test_a_script_that_prints_performance_then_exits_non_zero_fails(sample_run):
    row = by_model(sample_run["result"])["dummy_fail"]
    assert row["status"] == "FAILURE" and row["performance"] == "" and row["exit_code"] == "3"
    assert row["error"] == "the script exited with code 3; log: RuntimeError: simulated failure after warm-up"
    assert "performance: 99.0" in open(row["log_path"]).read()


def test_timeout_kills_within_seconds_and_leaves_no_container(sample_run, api):
    result = sample_run["result"]
    row = by_model(result)["dummy_slow"]
    assert row["status"] == "TIMEOUT" and row["exit_code"] == ""
    assert row["error"] == "the run exceeded its timeout of 5 s; the container was killed"
    timings = next(r for r in result["runs"] if r["model"] == "dummy_slow")["timings"]
    assert 5 <= timings["run"] < 8, timings
    assert "timed out after 5 s" in open(row["log_path"]).read()
    assert [c for c in session_containers(api) if c["Labels"][RUN_LABEL] == result["run_id"]] == []


def test_facts_summary_and_csv(sample_run):
    result = sample_run["result"]
    assert result["ansible_facts"]["madengine_results"] == result["results"]
    summary = result["summary"]
    assert summary["counts"] == {"SUCCESS": 6, "FAILURE": 1, "TIMEOUT": 1, "SKIPPED": 0}
    assert [f["model"] for f in summary["failed"]] == ["dummy_fail", "dummy_slow"] and summary["models"] == 5
    with open(result["perf_csv"], newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        body = list(reader)
    assert header[:29] == list(MADENGINE_COLUMNS) and header == list(COLUMNS) + ["temperature"]
    on_disk = [dict(zip(header, r)) for r in body]
    assert len(on_disk) == len(result["results"])
    for written, row in zip(on_disk, result["results"]):
        # a row holds its own columns; the CSV gives every row every column (empty when absent)
        assert dict((k, v) for k, v in written.items() if k in row) == row
        assert all(v == "" for k, v in written.items() if k not in row)


# ---- GPUs from fake sysfs ----------------------------------------------------------------------------

def test_skip_gpu_arch_comes_from_the_detected_architecture(built, tmp_path, api):
    fs = FakeGpuSysfs(tmp_path / "sys").add_amd_gpu("gfx908", product="AMD Instinct MI100")
    fake_devices(tmp_path / "dev", [128])
    result = run(built, tmp_path, tags=["sample_gpu", "dummy"], sysfs_root=fs.root, dev_root=str(tmp_path / "dev"))
    assert not result.failed, result.get("msg")
    rows = by_model(result)
    assert rows["sample_gpu"]["status"] == "SKIPPED"
    assert rows["sample_gpu"]["error"] == ("skip_gpu_arch of model 'sample_gpu' lists gfx908, this node's GPU "
                                           "architecture")
    assert rows["dummy"]["status"] == "SUCCESS" and rows["dummy"]["gpu_architecture"] == "gfx908"
    assert rows["dummy"]["gpu_ids"] == "0"


def test_amd_container_gets_its_devices_groups_and_environment(built, tmp_path, api, monkeypatch):
    fs = FakeGpuSysfs(tmp_path / "sys").add_amd_gpu("gfx942").add_amd_gpu("gfx942")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_amd_smi(bin_dir, ["AMD Instinct MI300X", "AMD Instinct MI300X"], driver="6.10.5", rocm="6.4.1")
    monkeypatch.setenv("PATH", "%s:%s" % (bin_dir, os.environ["PATH"]))
    dev = tmp_path / "dev"
    fake_devices(dev, [128, 136])
    result = run(built, tmp_path, tags=["sample_gpu", "probe"], sysfs_root=fs.root, dev_root=str(dev), keep_alive=True,
                 credential_file=built["creds"], data_config=str(built["mad"] / "data.json"),
                 additional_context={"docker_gpus": "1"})
    assert not result.failed, result.get("msg")
    rows = by_model(result)
    gpu_row = rows["sample_gpu"]
    assert gpu_row["status"] == "SUCCESS" and gpu_row["performance"] == "1000.5", gpu_row["error"]
    assert (gpu_row["gpu_ids"], gpu_row["n_gpus"], gpu_row["gpu_architecture"]) == ("1", "1", "gfx942")
    assert (gpu_row["gpu_product"], gpu_row["driver_version"]) == ("AMD Instinct MI300X", "6.10.5")
    assert "model sample_gpu on AMD, batch size 8" in open(gpu_row["log_path"]).read()
    probe_log = open(rows["probe"]["log_path"]).read()
    assert "vendor=AMD arch=gfx942 ngpus=1 model=probe" in probe_log
    assert "/dev/kfd" in probe_log and "renderD136" in probe_log and "renderD128" not in probe_log
    kept = next(r for r in result["runs"] if r["model"] == "sample_gpu")
    assert kept["kept"] is True
    inspect = api.inspect_container(kept["container"]["name"])
    try:
        devices = [(d["PathOnHost"], d["PathInContainer"]) for d in inspect["HostConfig"]["Devices"]]
        assert devices == [(str(dev / "kfd"), "/dev/kfd"), (str(dev / "dri" / "renderD136"), "/dev/dri/renderD136")]
        assert "seccomp=unconfined" in inspect["HostConfig"]["SecurityOpt"]
        assert inspect["HostConfig"]["IpcMode"] == "host" and inspect["HostConfig"]["NetworkMode"] == "host"
        assert inspect["HostConfig"]["GroupAdd"] == kept["container"]["group_add"]
        env = dict(e.split("=", 1) for e in inspect["Config"]["Env"])
        assert env["MAD_SYSTEM_GPU_ARCHITECTURE"] == "gfx942" and env["MAD_SYSTEM_NGPUS"] == "2"
        assert env["MAD_RUNTIME_NGPUS"] == "1" and env["ROCM_PATH"] == "/opt/rocm"
        assert env["MAD_SYSTEM_HIP_VERSION"] == "6.4" and env["MAD_GPU_VENDOR"] == "AMD"
    finally:
        for item in result["runs"]:
            api.remove_container(item["container"]["name"], force=True)


def test_nvidia_device_request_reaches_the_engine(built, tmp_path, api, monkeypatch):
    """No NVIDIA runtime here: the engine refuses the device request, and the row says so."""
    fs = FakeGpuSysfs(tmp_path / "sys").add_nvidia_gpu()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_nvidia_smi(bin_dir, [("NVIDIA H100 80GB HBM3", "00000000:18:00.0")])
    monkeypatch.setenv("PATH", "%s:%s" % (bin_dir, os.environ["PATH"]))
    result = run(built, tmp_path, tags=["dummy"], sysfs_root=fs.root, gpu_vendor="NVIDIA")
    assert not result.failed, result.get("msg")
    (row,) = result["results"]
    assert row["status"] == "FAILURE" and row["gpu_product"] == "NVIDIA H100 80GB HBM3"
    assert row["cuda_version"] == "12.4" and row["gpu_ids"] == "0"
    assert row["error"].startswith("the Docker engine of %s has no NVIDIA runtime, although the node has 1 NVIDIA "
                                   "GPU: install the NVIDIA container toolkit" % row["host"]), row["error"]
    assert 'could not select device driver "nvidia"' in row["error"]
    assert [c for c in session_containers(api) if c["Labels"][RUN_LABEL] == result["run_id"]] == []


# ---- failures that are rows ----------------------------------------------------------------------

def test_broken_models_fail_with_their_reason(built, tmp_path, api):
    result = run(built, tmp_path, tags=["broken", "dummy"])
    rows = by_model(result)
    assert rows["dummy"]["status"] == "SUCCESS"
    assert rows["py_model"]["status"] == "FAILURE"
    assert rows["py_model"]["error"].startswith("Starting container ")
    assert "python3" in rows["py_model"]["error"]
    assert rows["multi_missing"]["error"] == ("the model wrote no multiple_results file "
                                              "/madengine/scripts/never_written.csv")
    assert rows["pattern_fail"]["error"] == ("a log line matches error pattern 'Traceback (most recent call last)': "
                                             "Traceback (most recent call last):")
    assert rows["pattern_fail"]["exit_code"] == "0"
    quiet = run(built, tmp_path, tags=["pattern_fail"], additional_context={"log_error_pattern_scan": False})
    assert quiet["results"][0]["status"] == "SUCCESS" and quiet["results"][0]["performance"] == "3.0"
    assert session_containers(api) == []


def test_unpullable_image_fails_its_row_and_the_others_run(built, tmp_path):
    document = json.loads(open(built["manifest"]).read())
    entry = document["built_images"][PREFIX + "dummy2_model1_cpu.ubuntu"]
    missing = "%s/%smissing" % (REGISTRY, PREFIX)
    entry.update(docker_image=PREFIX + "missing", registry_image=missing, image_id="sha256:" + "0" * 64,
                 registry_digest="%s@sha256:%s" % (missing, "0" * 64))
    result = run(built, tmp_path, manifest_path=None, manifest=document, tags=["dummy2/model1", "dummy"],
                 results_dir=str(tmp_path / "r"))
    assert not result.failed, result.get("msg")
    rows = by_model(result)
    assert rows["dummy"]["status"] == "SUCCESS"
    assert rows["dummy2/model1"]["status"] == "FAILURE" and rows["dummy2/model1"]["image_digest"] == ""
    assert rows["dummy2/model1"]["error"].startswith("Pulling %s@sha256:%s failed: " % (missing, "0" * 64))


def test_pulls_with_the_local_image_removed(built, tmp_path, api):
    key = PREFIX + "dummy2_model1_cpu.ubuntu"
    entry = built["document"]["built_images"][key]

    def remove_local():
        for ref in (key, entry["registry_image"]):
            try:
                api.remove_image(ref, force=True)
            except docker.errors.NotFound:
                pass
        with pytest.raises(docker.errors.NotFound):
            api.inspect_image(entry["image_id"])

    remove_local()
    never = run(built, tmp_path, tags=["dummy2/model1"], pull="never")
    assert never["results"][0]["status"] == "FAILURE"
    assert never["results"][0]["error"] == (
        "Image %s of model 'dummy2/model1' is not on this node (looked for %s, %s, %s) and pull is never."
        % (key, entry["registry_digest"], key, entry["registry_image"]))
    missing = run(built, tmp_path, tags=["dummy2/model1"], pull="missing")
    (row,) = missing["results"]
    assert row["status"] == "SUCCESS" and missing["runs"][0]["pulled"] is True
    assert row["image_digest"] == entry["registry_digest"]
    assert api.inspect_image(entry["registry_digest"])["Id"] == entry["image_id"]
    again = run(built, tmp_path, tags=["dummy2/model1"], pull="missing")
    assert again["runs"][0]["pulled"] is False and again["results"][0]["image_digest"] == entry["registry_digest"]
    always = run(built, tmp_path, tags=["dummy2/model1"], pull="always")
    assert always["runs"][0]["pulled"] is True and always["results"][0]["status"] == "SUCCESS"


def test_scripts_shipped_from_mad_root_for_images_without_them(built, tmp_path):
    document = json.loads(open(built["manifest"]).read())
    key = PREFIX + "dummy_multi_cpu.ubuntu"
    document["built_images"][key]["scripts"] = None
    without = run(built, tmp_path, manifest_path=None, manifest=document, tags=["dummy_multi"])
    assert without["results"][0]["status"] == "FAILURE" and "has no scripts baked in" in without["results"][0]["error"]
    shipped = run(built, tmp_path, manifest_path=None, manifest=document, tags=["dummy_multi"],
                  mad_root=str(built["mad"]))
    assert [r["status"] for r in shipped["results"]] == ["SUCCESS"] * 4


def test_skip_model_run_and_check_mode_run_nothing(built, tmp_path, api):
    skipped = run(built, tmp_path, tags=["dummy"], skip_model_run=True)
    (row,) = skipped["results"]
    assert row["status"] == "SKIPPED" and row["error"] == "skip_model_run is set"
    assert row["image_digest"].startswith(REGISTRY + "/" + PREFIX + "dummy_cpu.ubuntu@sha256:")
    planned = run(built, tmp_path, check_mode=True, tags=["dummy"], results_dir=str(tmp_path / "check"))
    assert planned["runs"][0]["container"]["command"] == ["bash", "run.sh"]
    assert planned["results"] == [] and not (tmp_path / "check").exists()
    assert session_containers(api) == []


# ---- a node with its own engine -------------------------------------------------------------------

def link_exists(name):
    return subprocess.run(["ip", "link", "show", name], capture_output=True, check=False).returncode == 0


@pytest.fixture(scope="module")
def node_engine():
    """A second dockerd with its own image store and bridge, like a GPU node that never saw the images."""
    assert link_exists("docker0"), "the main engine's docker0 is missing before the test"
    with node_engines("/tmp/mn-%s-" % SESSION, ["node"]) as started:
        engine = started["node"]
        with engine.api() as client:
            yield {"host": engine.host, "api": client, "bridge": engine.bridge}
    assert link_exists("docker0"), "the node engine removed the main engine's docker0"
    assert not link_exists(engine.bridge), "the node engine's bridge %s was left behind" % engine.bridge


def test_a_node_engine_pulls_from_the_registry(built, tmp_path, node_engine):
    api = node_engine["api"]
    # the node's engine has a bridge of its own; the main engine keeps docker0 (and its default network works)
    assert link_exists("docker0") and link_exists(node_engine["bridge"])
    main = docker.APIClient(base_url=DOCKER_HOST, version="auto", timeout=60)
    probe = main.create_container(REGISTRY + "/mad-base:busybox", ["true"])
    try:
        main.start(probe)
        assert main.wait(probe, timeout=60)["StatusCode"] == 0
    finally:
        main.remove_container(probe, force=True)
        main.close()
    assert api.images() == []
    entry = built["document"]["built_images"][PREFIX + "dummy_cpu.ubuntu"]
    first = run(built, tmp_path, tags=["dummy", "dummy_multi"], docker_host=node_engine["host"])
    assert not first.failed, first.get("msg")
    assert [r["pulled"] for r in first["runs"]] == [True, True]
    assert [r["status"] for r in first["results"]] == ["SUCCESS"] * 5
    assert first["results"][0]["image_digest"] == entry["registry_digest"]
    images = built["document"]["built_images"]
    keys = (PREFIX + "dummy_cpu.ubuntu", PREFIX + "dummy_multi_cpu.ubuntu")
    assert sorted(i["Id"] for i in api.images()) == sorted(images[k]["image_id"] for k in keys)
    second = run(built, tmp_path, tags=["dummy"], docker_host=node_engine["host"])
    assert second["runs"][0]["pulled"] is False and second["results"][0]["status"] == "SUCCESS"
    assert api.containers(all=True) == []


def test_pull_only_takes_the_images_a_node_runs_and_runs_nothing(built, tmp_path, node_engine):
    api = node_engine["api"]
    key = PREFIX + "dummy2_model2_cpu.ubuntu"
    entry = built["document"]["built_images"][key]
    before = set(i["Id"] for i in api.images())
    assert entry["image_id"] not in before
    first = run(built, tmp_path, pull_only=True, tags=["dummy2/model2"], docker_host=node_engine["host"])
    assert not first.failed, first.get("msg")
    assert first["changed"] is True and first["images"] == [
        {"model": "dummy2/model2", "image": key, "ref": entry["registry_digest"], "pulled": True,
         "image_digest": entry["registry_digest"], "error": ""}]
    assert set(i["Id"] for i in api.images()) - before == {entry["image_id"]}
    assert first["results"] == [] and "ansible_facts" not in first and not (tmp_path / "results").exists()
    second = run(built, tmp_path, pull_only=True, tags=["dummy2/model2"], docker_host=node_engine["host"])
    assert second["changed"] is False and second["images"][0]["pulled"] is False
    assert api.containers(all=True) == []


# ---- a playbook, one task item per model, and secrets ------------------------------------------------

def test_playbook_per_model_with_credentials_and_data_keeps_secrets_out(built, tmp_path, api):
    results_dir = tmp_path / "fleet"
    extra_vars = {"manifest_path": built["manifest"], "run_id": PREFIX + "pb", "results_dir": str(results_dir),
                  "credential_file": built["creds"], "data_config": str(built["mad"] / "data.json"),
                  "sysfs_root": cpu_node(tmp_path), "models": ["probe", "dummy", "dummy_multi"]}
    rc, _parsed, log = run_playbook(PLAYBOOK, args=("-vvv",), env={"ANSIBLE_STDOUT_CALLBACK": "default"},
                                    extra_vars=extra_vars)
    assert rc == 0, log
    with open(results_dir / "perf.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        header = reader.fieldnames
    assert header == list(COLUMNS) + ["temperature"]
    assert [r["model"] for r in rows] == ["probe", "dummy", "dummy_multi_1", "dummy_multi_2", "dummy_multi_3",
                                          "dummy_multi_4"]
    assert set(r["run_id"] for r in rows) == {PREFIX + "pb"} and set(r["host"] for r in rows) == {"localhost"}
    probe = rows[0]
    assert probe["status"] == "SUCCESS" and probe["dataname"] == "probe_data" and probe["data_provider_type"] == "local"
    probe_log = open(probe["log_path"]).read()
    assert "user=******** secret=********" in probe_log  # the credential reached the container, masked here
    assert "probe input %s" % SESSION in probe_log and "data=ro" in probe_log
    assert "datahome=/data_dlm_0 dataname=probe_data" in probe_log
    assert not (built["data"] / "written").exists()
    assert "PROBE_PASSWORD=********" in log  # -vvv shows the planned container, masked
    written = [log] + [p.read_text() for p in results_dir.iterdir()]
    for secret in (PROBE_SECRET, PROBE_USER):
        for text in written:
            assert secret not in text
    assert session_containers(api) == []


def test_credentials_option_reaches_the_container_and_no_output_or_file(built, tmp_path, api):
    """credential.json's content as data (no file on the node): the model's cred reaches its container, and
    neither the -vvv output nor any file written meanwhile holds a value (pipelining keeps Ansible's own copy
    of the module arguments off the disk)."""
    results_dir = tmp_path / "creds-option"
    extra_vars = {"manifest_path": built["manifest"], "run_id": PREFIX + "cred", "results_dir": str(results_dir),
                  "credentials": {"PROBE": {"username": PROBE_USER, "password": PROBE_SECRET}},
                  "data_config": str(built["mad"] / "data.json"), "sysfs_root": cpu_node(tmp_path),
                  "models": ["probe"]}
    started = time.time()
    rc, _parsed, log = run_playbook(PLAYBOOK, args=("-vvv",), extra_vars=extra_vars,
                                    env={"ANSIBLE_STDOUT_CALLBACK": "default", "ANSIBLE_PIPELINING": "1",
                                         "ANSIBLE_INJECT_INVOCATION": "1"})
    assert rc == 0, log
    with open(results_dir / "perf.csv", newline="") as handle:
        (probe,) = list(csv.DictReader(handle))
    assert probe["model"] == "probe" and probe["status"] == "SUCCESS"
    assert "user=******** secret=********" in open(probe["log_path"]).read()  # reached the container, masked
    assert "PROBE_PASSWORD=********" in log
    written = [p for root in (str(tmp_path), tempfile.gettempdir(), os.path.expanduser("~/.ansible"))
               for p in files_since(root, started) if p != built["creds"]]
    assert probe["log_path"] in written and str(results_dir / "perf.csv") in written
    assert PROBE_SECRET not in log and PROBE_USER not in log
    assert files_holding((PROBE_SECRET, PROBE_USER), written) == []
    assert session_containers(api) == []
