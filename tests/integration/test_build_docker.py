"""madengine_build on the real Docker engine and registries (marked ``docker``).

Every image name starts with a prefix unique to this test session and carries the label
``madci.test.session=<session>``; the module-scoped ``api`` fixture removes those images and the
registry manifests pushed under the prefix at the end.  A registry that requires authentication is
started for these tests only (``docker-registry serve`` with an htpasswd file on a free loopback port).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid

import docker
import pytest
from build_tree import ctx_tree, dockerfile, write
from catalogue_builder import model
from conftest import REGISTRY, SAMPLE_MAD, run_module, run_playbook
from docker_helpers import delete_repositories, free_port, registry_image, registry_request, remove_labelled_images
from secret_scan import files_holding, files_since

from ansible_collections.rocm.madengine.plugins.modules import madengine_build

pytestmark = pytest.mark.docker

SESSION = uuid.uuid4().hex[:8]
TEST_LABEL = "madci.test.session"
DOCKER_HOST = "unix:///var/run/docker.sock"
PLAYBOOK = os.path.join(os.path.dirname(__file__), "playbooks", "build.yml")


def prefix(name):
    return "b%s-%s-" % (SESSION, name)


# ---- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def api():
    client = docker.APIClient(base_url=DOCKER_HOST, version="auto", timeout=120)
    yield client
    remove_labelled_images(client, "%s=%s" % (TEST_LABEL, SESSION))
    delete_repositories(REGISTRY, "b%s-" % SESSION)
    client.close()


class AuthRegistry(object):
    def __init__(self, host, user, password, root):
        self.host = host
        self.user = user
        self.password = password
        self.root = root


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory):
    """A throwaway registry with htpasswd (bcrypt) authentication on a free loopback port."""
    if not shutil.which("htpasswd") or not shutil.which("docker-registry"):
        pytest.fail("htpasswd (apache2-utils) and docker-registry must be installed: run ci/setup-host.sh")
    root = tmp_path_factory.mktemp("auth-registry")
    user, password = "madci", "Reg-%s-pw" % uuid.uuid4().hex
    entry = subprocess.run(["htpasswd", "-nbB", user, password], capture_output=True, text=True, check=True).stdout
    (root / "htpasswd").write_text(entry)
    port = free_port()
    (root / "config.yml").write_text(
        "version: 0.1\nlog: {level: warn}\nstorage:\n  filesystem: {rootdirectory: %s}\n  delete: {enabled: true}\n"
        "http: {addr: 127.0.0.1:%d}\nauth:\n  htpasswd: {realm: madci, path: %s}\n"
        % (root / "data", port, root / "htpasswd"))
    with open(root / "registry.log", "wb") as log:
        proc = subprocess.Popen(["docker-registry", "serve", str(root / "config.yml")], stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        for _attempt in range(100):
            try:
                registry_request("127.0.0.1:%d" % port, "/v2/")
            except urllib.error.HTTPError as exc:
                if exc.code == 401:
                    break
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        else:
            pytest.fail("the test registry did not start: %s" % (root / "registry.log").read_text())
        yield AuthRegistry("localhost:%d" % port, user, password, str(root))
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def build(module_runner, mad_root, name, check_mode=False, **options):
    args = {"mad_root": str(mad_root), "image_prefix": prefix(name), "labels": {TEST_LABEL: SESSION},
            "docker_host": DOCKER_HOST}
    args.update(options)
    return module_runner(madengine_build, args, check_mode=check_mode)


def prefix_events(api, since, until, name):
    """Image events (tag, push, untag ...) of images whose name carries ``prefix(name)``."""
    while time.time() < until + 1.1:
        time.sleep(0.1)
    events = api.events(since=int(since), until=int(until) + 1, decode=True, filters={"type": "image"})
    return [(e["Action"], e["Actor"].get("Attributes", {}).get("name") or e["Actor"].get("ID"))
            for e in events
            if since * 1e9 <= e.get("timeNano", 0) <= until * 1e9 and prefix(name) in json.dumps(e.get("Actor"))]


def copy_sample(tmp_path):
    dest = tmp_path / "mad"
    shutil.copytree(SAMPLE_MAD, dest)
    return dest


# ---- build, push, manifest, second run ---------------------------------------------------------

@pytest.fixture(scope="module")
def first_build(api, tmp_path_factory):
    mad = copy_sample(tmp_path_factory.mktemp("flow"))
    out = mad.parent / "out"
    out.mkdir()
    options = dict(tags=["dummy", "dummy2/model1", "dummy3/model4"], registry=REGISTRY,
                   manifest_path=str(out / "build_manifest.json"))
    started = time.time()
    result = build(run_module, mad, "flow", **options)
    finished = time.time()
    return {"mad": mad, "out": out, "options": options, "result": result,
            "events": prefix_events(api, started, finished, "flow")}


FLOW_IMAGES = ["dummy_cpu.ubuntu", "dummy2_model1_cpu.ubuntu", "dummy3_model4_dummy3.ubuntu"]


def test_first_build_builds_pushes_and_writes_the_manifest(first_build):
    result = first_build["result"]
    names = [prefix("flow") + n for n in FLOW_IMAGES]
    assert not result.failed, result.get("msg")
    assert result["changed"] is True
    assert result["built"] == names and result["reused"] == []
    assert result["pushed"] == ["%s/%s" % (REGISTRY, n) for n in names]
    on_disk = json.loads((first_build["out"] / "build_manifest.json").read_text())
    assert on_disk == result["manifest"]
    assert list(on_disk) == ["built_images", "built_models", "context", "credentials_required", "registry", "summary",
                             "deployment_config", "generator"]
    entry = on_disk["built_images"][names[0]]
    assert list(entry) == ["model", "docker_image", "dockerfile", "base_docker", "docker_sha", "build_duration",
                           "build_command", "log_file", "gpu_vendor", "registry", "registry_image", "image_id",
                           "content_key", "inputs_digest", "base_images", "registry_digest", "build_context", "scripts"]
    assert entry["model"] == "dummy" and entry["dockerfile"] == "docker/cpu.ubuntu.Dockerfile"
    assert entry["base_docker"] == REGISTRY + "/mad-base:busybox" and entry["docker_sha"].startswith("sha256:")
    assert entry["base_images"] == {REGISTRY + "/mad-base:busybox": entry["docker_sha"]}
    assert entry["build_duration"] > 0 and entry["gpu_vendor"] == ""
    assert entry["scripts"] == {"source_dir": "scripts/sample", "image_dir": "/madengine/scripts", "entry": "run.sh",
                                "runner": "bash", "command": "bash run.sh"}
    assert "Successfully tagged %s:latest" % names[0] in open(entry["log_file"]).read()
    assert on_disk["built_models"][names[0]]["env_vars"] == {"DOCKER_IMAGE_NAME": entry["registry_image"]}
    assert on_disk["built_models"][names[2]]["name"] == "dummy3/model4"
    summary = on_disk["summary"]
    assert [e["docker_image"] for e in summary["successful_builds"]] == names
    assert summary["failed_builds"] == [] and summary["failed_pushes"] == []
    assert [p["registry_image"] for p in summary["successful_pushes"]] == result["pushed"]
    assert summary["total_build_time"] == round(sum(e["build_duration"] for e in summary["successful_builds"]), 3)
    assert on_disk["context"]["gpu_vendor"] == "AMD" and on_disk["registry"] == REGISTRY
    # the engine saw the builds and pushes (this is the positive control of the second-run test)
    actions = set(a for a, _n in first_build["events"])
    assert {"tag", "push"} <= actions


def test_push_is_verified_through_the_registry_http_api(first_build, api):
    for entry in first_build["result"]["manifest"]["built_images"].values():
        manifest_digest, config_digest, config = registry_image(REGISTRY, entry["registry_image"])
        assert config_digest == entry["image_id"] == api.inspect_image(entry["docker_image"])["Id"]
        assert entry["registry_digest"] == "%s@%s" % (entry["registry_image"], manifest_digest)
        assert config["config"]["Labels"]["org.rocm.madengine.content-key"] == entry["content_key"]
        assert config["config"]["Labels"]["org.rocm.madengine.model"] == entry["model"]


def test_the_image_alone_runs_its_model(first_build, api):
    entry = first_build["result"]["manifest"]["built_images"][prefix("flow") + "dummy3_model4_dummy3.ubuntu"]
    model_args = first_build["result"]["manifest"]["built_models"][entry["docker_image"]]["args"]
    scripts = entry["scripts"]
    container = api.create_container(entry["registry_image"], ["sh", "-c", "cd %s && %s %s" % (
        scripts["image_dir"], scripts["command"], model_args)], host_config=api.create_host_config(network_mode="none"))
    try:
        api.start(container)
        assert api.wait(container, timeout=60)["StatusCode"] == 0
        output = api.logs(container).decode()
    finally:
        api.remove_container(container, force=True)
    assert "performance: 250.5 samples_per_second" in output  # model4's args say --batch-size 2


def test_second_run_changes_nothing(first_build, api, module_runner):
    manifest = first_build["out"] / "build_manifest.json"
    before = os.stat(manifest).st_mtime_ns, os.stat(manifest).st_ino
    ids = dict((n, api.inspect_image(n)["Id"]) for n in first_build["result"]["built"])
    started = time.time()
    result = build(module_runner, first_build["mad"], "flow", **first_build["options"])
    finished = time.time()
    assert not result.failed, result.get("msg")
    assert result["changed"] is False and result["manifest_changed"] is False
    assert result["built"] == [] and result["pushed"] == []
    assert result["reused"] == first_build["result"]["built"]
    assert all(i["reason"] == "the local image carries the content key; registry tag %s holds the same image"
               % i["registry_image"] for i in result["images"])
    assert prefix_events(api, started, finished, "flow") == []
    assert (os.stat(manifest).st_mtime_ns, os.stat(manifest).st_ino) == before
    assert dict((n, api.inspect_image(n)["Id"]) for n in ids) == ids
    assert result["manifest"] == first_build["result"]["manifest"]


# ---- what triggers a rebuild -------------------------------------------------------------------

def two_model_tree(root):
    tree = ctx_tree(root, extra_models=[
        model("alpha", ["pair"], dockerfile="docker/cpu", scripts="scripts/alpha/run.sh"),
        model("beta", ["pair"], dockerfile="docker/cpu", scripts="scripts/beta/run.sh"),
    ])
    write(tree, "scripts/alpha/run.sh", "#!/bin/bash\necho 'performance: 1.0 samples_per_second'\n", 0o755)
    write(tree, "scripts/beta/run.sh", "#!/bin/bash\necho 'performance: 2.0 samples_per_second'\n", 0o755)
    write(tree, "docker/unrelated.txt", "not copied by any Dockerfile\n")
    return tree


def test_only_changed_inputs_rebuild(api, module_runner, tmp_path):
    tree = two_model_tree(tmp_path / "mad")
    first = build(module_runner, tree, "inputs", tags=["pair"])
    assert first["built"] == [prefix("inputs") + "alpha_cpu.ubuntu", prefix("inputs") + "beta_cpu.ubuntu"]
    write(tree, "docker/unrelated.txt", "edited\n")
    same = build(module_runner, tree, "inputs", tags=["pair"])
    assert same["changed"] is False and same["built"] == []
    write(tree, "scripts/beta/run.sh", "#!/bin/bash\necho 'performance: 3.0 samples_per_second'\n", 0o755)
    started = time.time()
    changed = build(module_runner, tree, "inputs", tags=["pair"])
    finished = time.time()
    assert changed["built"] == [prefix("inputs") + "beta_cpu.ubuntu"]
    assert changed["reused"] == [prefix("inputs") + "alpha_cpu.ubuntu"]
    assert changed["images"][1]["reason"] == ("the Dockerfile, build context, scripts, build arguments or base image "
                                              "changed")
    events = prefix_events(api, started, finished, "inputs")
    assert ("tag", prefix("inputs") + "beta_cpu.ubuntu:latest") in events
    assert not [name for _action, name in events if "alpha" in name]
    args = build(module_runner, tree, "inputs", tags=["alpha"], additional_context={"docker_build_arg": {"X": "1"}})
    assert args["built"] == [prefix("inputs") + "alpha_cpu.ubuntu"]


def test_rebuild_always_builds_without_cache(api, module_runner, tmp_path):
    tree = two_model_tree(tmp_path / "mad")
    first = build(module_runner, tree, "always", tags=["alpha"])
    name = first["built"][0]
    old_id = api.inspect_image(name)["Id"]
    cached = build(module_runner, tree, "always", tags=["alpha"], pull=False,
                   additional_context={"docker_build_arg": {"X": "1"}})
    assert "Using cache" in open(cached["manifest"]["built_images"][name]["log_file"]).read()
    again = build(module_runner, tree, "always", tags=["alpha"], rebuild="always", pull=False,
                  additional_context={"docker_build_arg": {"X": "1"}})
    assert again["changed"] is True and again["built"] == [name] and again["reused"] == []
    assert again["images"][0]["reason"] == "rebuild is always"
    entry = again["manifest"]["built_images"][name]
    assert "Using cache" not in open(entry["log_file"]).read()
    assert entry["build_command"].startswith("docker build --no-cache --network=host -t %s -f " % name)
    assert api.inspect_image(name)["Id"] not in (old_id, cached["manifest"]["built_images"][name]["image_id"])


def test_registry_tag_that_changed_is_pushed_again(api, module_runner, tmp_path):
    tree = two_model_tree(tmp_path / "mad")
    first = build(module_runner, tree, "retag", tags=["alpha"], registry=REGISTRY)
    ref = first["pushed"][0]
    api.tag(REGISTRY + "/mad-base:busybox", ref)
    for _line in api.push(ref, stream=True, decode=True):
        pass
    assert registry_image(REGISTRY, ref)[1] != first["images"][0]["image_id"]
    again = build(module_runner, tree, "retag", tags=["alpha"], registry=REGISTRY)
    assert again["changed"] is True and again["built"] == [] and again["pushed"] == [ref]
    assert again["images"][0]["reason"].endswith("; registry tag %s holds another image" % ref)
    assert registry_image(REGISTRY, ref)[1] == first["images"][0]["image_id"]


# ---- Dockerfile choice, failures, check mode, architectures ------------------------------------

def test_context_variants_choose_dockerfiles(api, module_runner, tmp_path):
    tree = ctx_tree(tmp_path / "mad")
    (tree / "ctx_test").write_text("2\n")
    amd = build(module_runner, tree, "ctx", tags=["dummies"])
    p = prefix("ctx")
    assert amd["built"] == [p + "dummy_dummy.ubuntu.amd", p + "dummy_ctxtest_dummy_ctxtest.ctx2a.ubuntu.amd",
                            p + "dummy_ctxtest_dummy_ctxtest.ctx2b.ubuntu.amd", p + "dummy_cpu_cpu.ubuntu"]
    assert "FLAVOUR=amd" in api.inspect_image(p + "dummy_dummy.ubuntu.amd")["Config"]["Env"]
    assert amd["manifest"]["built_images"][p + "dummy_dummy.ubuntu.amd"]["gpu_vendor"] == "AMD"
    nvidia = build(module_runner, tree, "ctx", tags=["dummy"], additional_context='{"gpu_vendor": "NVIDIA"}')
    assert nvidia["built"] == [p + "dummy_dummy.ubuntu.nvidia"]
    assert "FLAVOUR=nvidia" in api.inspect_image(p + "dummy_dummy.ubuntu.nvidia")["Config"]["Env"]
    cpu = build(module_runner, tree, "ctx", tags=["dummies"], additional_context={"gpu_vendor": "NONE"},
                fail_on_error=False)
    assert not cpu.failed
    assert cpu["reused"] == [p + "dummy_cpu_cpu.ubuntu"] and cpu["built"] == []
    assert [f["model"] for f in cpu["failures"]] == ["dummy", "dummy_ctxtest"]
    assert cpu["failures"][1]["error"].startswith("Model 'dummy_ctxtest' has no Dockerfile for gpu_vendor=NONE")
    assert list(cpu["manifest"]["built_images"]) == [p + "dummy_cpu_cpu.ubuntu"]


def test_sample_catalogue_on_a_cpu_node(api, module_runner, tmp_path):
    mad = copy_sample(tmp_path)
    result = build(module_runner, mad, "cpu", tags=["smoke", "sample_gpu"], additional_context={"gpu_vendor": "NONE"},
                   fail_on_error=False)
    assert result["built"] == [prefix("cpu") + "dummy_cpu.ubuntu", prefix("cpu") + "dummy_multi_cpu.ubuntu"]
    assert result["failures"][0]["error"] == (
        "Model 'sample_gpu' has no Dockerfile for gpu_vendor=NONE guest_os=UBUNTU: docker/sample.ubuntu.amd.Dockerfile "
        "its CONTEXT wants gpu_vendor='AMD', the context has 'NONE'; docker/sample.ubuntu.nvidia.Dockerfile its "
        "CONTEXT wants gpu_vendor='NVIDIA', the context has 'NONE'.")


def test_a_failing_dockerfile_fails_only_its_model(api, module_runner, tmp_path):
    tree = ctx_tree(tmp_path / "mad", extra_models=[model("broken", ["mixed"], dockerfile="docker/broken")],
                    dockerfiles={"docker/broken.ubuntu.Dockerfile":
                                 dockerfile({}, "RUN echo boom-from-build && exit 3")})
    manifest = tmp_path / "m.json"
    result = build(module_runner, tree, "fail", tags=["mixed", "dummy_cpu"], manifest_path=str(manifest))
    p = prefix("fail")
    assert result.failed
    assert result["msg"] == ("1 failure(s): Model 'broken': building %sbroken_broken.ubuntu from "
                             "docker/broken.ubuntu.Dockerfile failed: The command '/bin/sh -c echo boom-from-build && "
                             "exit 3' returned a non-zero code: 3." % p)
    assert result["built"] == [p + "dummy_cpu_cpu.ubuntu"]
    failure = result["failures"][0]
    assert failure["stage"] == "build" and failure["image"] == p + "broken_broken.ubuntu"
    assert "boom-from-build" in open(failure["log_file"]).read()
    on_disk = json.loads(manifest.read_text())
    assert list(on_disk["built_images"]) == [p + "dummy_cpu_cpu.ubuntu"]
    assert on_disk["summary"]["failed_builds"] == [{"model": "broken", "error": failure["error"],
                                                    "dockerfile": "docker/broken.ubuntu.Dockerfile",
                                                    "image": p + "broken_broken.ubuntu"}]
    assert api.inspect_image(p + "dummy_cpu_cpu.ubuntu")
    kept = build(module_runner, tree, "fail", tags=["mixed", "dummy_cpu"], manifest_path=str(manifest),
                 fail_on_error=False)
    assert not kept.failed and kept["reused"] == [p + "dummy_cpu_cpu.ubuntu"]
    assert [f["model"] for f in kept["failures"]] == ["broken"]


def test_check_mode_predicts_and_touches_nothing(api, module_runner, tmp_path):
    tree = two_model_tree(tmp_path / "mad")
    first = build(module_runner, tree, "check", tags=["pair"], registry=REGISTRY)
    assert not first.failed, first.get("msg")
    write(tree, "scripts/alpha/run.sh", "#!/bin/bash\necho 'performance: 9.0 samples_per_second'\n", 0o755)
    ids = dict((n, api.inspect_image(prefix("check") + n)["Id"]) for n in ("alpha_cpu.ubuntu", "beta_cpu.ubuntu"))
    manifest_bytes = (tree / "build_manifest.json").read_bytes()
    # no engine at all: the prediction comes from the manifest alone
    planned = build(module_runner, tree, "check", check_mode=True, tags=["pair"], registry=REGISTRY,
                    docker_host="unix:///nonexistent/docker.sock")
    assert not planned.failed, planned.get("msg")
    assert planned["changed"] is True
    assert planned["built"] == [prefix("check") + "alpha_cpu.ubuntu"]
    assert planned["reused"] == [prefix("check") + "beta_cpu.ubuntu"]
    assert planned["pushed"] == ["%s/%salpha_cpu.ubuntu" % (REGISTRY, prefix("check"))]
    assert (tree / "build_manifest.json").read_bytes() == manifest_bytes
    assert dict((n, api.inspect_image(prefix("check") + n)["Id"]) for n in ids) == ids
    real = build(module_runner, tree, "check", tags=["pair"], registry=REGISTRY)
    assert (real["built"], real["reused"], real["pushed"]) == (planned["built"], planned["reused"], planned["pushed"])
    after = build(module_runner, tree, "check", check_mode=True, tags=["pair"], registry=REGISTRY,
                  docker_host="unix:///nonexistent/docker.sock")
    assert after["changed"] is False and after["built"] == [] and after["pushed"] == []


def summary_of(result, planned):
    """What a build did (or, ``planned``, would do): comparable between check mode and the real run."""
    done = {"build": "built", "reuse": "reused"} if planned else {}
    return {"built": result["built"], "reused": result["reused"], "pushed": result["pushed"],
            "failed": [(f["model"], f["stage"]) for f in result["failures"]],
            "actions": [(i["image"], done.get(i["action"], i["action"]), i.get("push")) for i in result["images"]],
            "manifest_images": sorted(result["manifest"]["built_images"]),
            "models": result["models"]}


ALPHA_EDITED = "#!/bin/bash\necho 'performance: 5.0 samples_per_second'\n"


def test_check_mode_predicts_what_the_real_run_then_does(api, module_runner, tmp_path):
    """Before each real run, check mode (without any engine) predicts its builds, reuses, pushes and failures."""
    tree = two_model_tree(tmp_path / "mad")
    extra = [model("needy", ["pair"], dockerfile="docker/cpu", scripts="scripts/alpha/run.sh", cred="NEEDED")]
    with open(tree / "models.json") as handle:
        models = json.load(handle) + extra
    (tree / "models.json").write_text(json.dumps(models))
    steps = [
        ("first build", {}, None),
        ("nothing changed", {}, None),
        ("a script changed", {}, lambda: write(tree, "scripts/alpha/run.sh", ALPHA_EDITED, 0o755)),
        ("a build argument for every image", {"additional_context": {"docker_build_arg": {"X": "2"}}}, None),
        ("the same build argument again", {"additional_context": {"docker_build_arg": {"X": "2"}}}, None),
        ("rebuild always", {"rebuild": "always", "pull": False,
                            "additional_context": {"docker_build_arg": {"X": "2"}}}, None),
        ("back to the first context", {}, None),
    ]
    seen = set()
    for name, options, change in steps:
        if change:
            change()
        step = dict(options, tags=["pair"], registry=REGISTRY, fail_on_error=False)
        planned = build(module_runner, tree, "predict", check_mode=True, docker_host="unix:///nonexistent/docker.sock",
                        **step)
        assert not planned.failed, (name, planned.get("msg"))
        real = build(module_runner, tree, "predict", **step)
        assert not real.failed, (name, real.get("msg"))
        assert summary_of(planned, True) == summary_of(real, False), name
        assert planned["changed"] == real["changed"], name
        assert real["failures"][0]["error"].startswith("Model 'needy' needs credential 'NEEDED'"), name
        seen.add((bool(real["built"]), bool(real["reused"]), bool(real["pushed"])))
    # the steps covered builds with pushes, reuses without, and mixtures
    assert {(True, False, True), (False, True, False), (True, True, True)} <= seen


def test_credentials_option_pushes_and_reaches_no_output_or_file(api, module_runner, tmp_path, auth_registry):
    """The content of credential.json given as data: registry login and a model's cred work, and none of the
    values reaches the result, the manifest, the logs or any file the build writes."""
    model_user, model_token = "cred-user-%s" % uuid.uuid4().hex[:6], "Tok-%s-secret" % uuid.uuid4().hex
    tree = ctx_tree(tmp_path / "mad", extra_models=[model("withcred", ["secret"], dockerfile="docker/cred",
                                                          cred="MADCI_TOKEN")],
                    dockerfiles={"docker/cred.ubuntu.Dockerfile": dockerfile({}, (
                        "ARG MADCI_TOKEN_USERNAME\nARG MADCI_TOKEN_PASSWORD\n"
                        'RUN echo "user=$MADCI_TOKEN_USERNAME token=$MADCI_TOKEN_PASSWORD"'))})
    credentials = {
        auth_registry.host: {"username": auth_registry.user, "password": auth_registry.password},
        "MADCI_TOKEN": {"username": model_user, "password": model_token},
    }
    out = tmp_path / "out"
    started = time.time() - 1
    result = build(module_runner, tree, "credopt", tags=["secret"], registry=auth_registry.host,
                   credentials=credentials, manifest_path=str(out / "build_manifest.json"),
                   _ansible_inject_invocation=True)
    assert not result.failed, result.get("msg")
    ref = "%s/%swithcred_cred.ubuntu" % (auth_registry.host, prefix("credopt"))
    assert result["pushed"] == [ref]
    entry = result["manifest"]["built_images"][prefix("credopt") + "withcred_cred.ubuntu"]
    _digest, config_digest, _config = registry_image(auth_registry.host, ref,
                                                     auth=(auth_registry.user, auth_registry.password))
    assert config_digest == entry["image_id"]
    assert "user=******** token=********" in open(entry["log_file"]).read()  # reached the build, masked
    assert result["invocation"]["module_args"]["credentials"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    # the registry's storage holds the image, whose history records the build arguments (documented)
    written = [path for root in (str(tmp_path), tempfile.gettempdir()) for path in files_since(root, started)
               if not path.startswith(auth_registry.root + os.sep)]
    assert str(out / "build_manifest.json") in written and entry["log_file"] in written
    secrets = (auth_registry.password, model_user, model_token)
    assert [secret for secret in secrets if secret in json.dumps(result)] == []
    assert files_holding(secrets, written) == []


def test_target_archs(api, module_runner, tmp_path):
    mad = copy_sample(tmp_path)
    result = build(module_runner, mad, "arch", tags=["sample_gpu"], target_archs=["gfx942", "gfx90a"])
    p = prefix("arch")
    assert result["built"] == [p + "sample_gpu_sample.ubuntu.amd_gfx942", p + "sample_gpu_sample.ubuntu.amd_gfx90a"]
    for arch in ("gfx942", "gfx90a"):
        name = p + "sample_gpu_sample.ubuntu.amd_" + arch
        entry = result["manifest"]["built_images"][name]
        assert entry["gpu_architecture"] == arch and entry["gpu_vendor"] == "AMD"
        assert "--build-arg MAD_SYSTEM_GPU_ARCHITECTURE=%s" % arch in entry["build_command"]
        config = api.inspect_image(name)["Config"]
        assert "PYTORCH_ROCM_ARCH=%s" % arch in config["Env"]
        assert config["Labels"]["org.rocm.madengine.gpu-architecture"] == arch


def test_the_nodes_targets_are_built_for_real_and_reused_the_second_time(api, module_runner, tmp_path):
    """The nodes of a mixed fleet decide the images: AMD of two architectures, NVIDIA and CPU nodes."""
    mad = copy_sample(tmp_path)
    nodes = {"mi300x-01": {"gpu_vendor": "AMD", "gpu_architecture": "gfx942", "gpu_product": "AMD Instinct MI300X"},
             "mi250-01": {"gpu_vendor": "AMD", "gpu_architecture": "gfx90a", "gpu_product": "AMD Instinct MI250X"},
             "h100-01": {"gpu_vendor": "NVIDIA", "gpu_architecture": "H100", "gpu_product": "NVIDIA H100 80GB HBM3"},
             "cpu-01": {"gpu_vendor": "NONE", "gpu_architecture": "", "gpu_product": ""}}
    manifest = tmp_path / "out" / "build_manifest.json"
    result = build(module_runner, mad, "fleet", tags=["sample_gpu", "dummy"], nodes=nodes,
                   manifest_path=str(manifest))
    assert not result.failed, result.get("msg")
    p = prefix("fleet")
    assert result["built"] == [p + "sample_gpu_sample.ubuntu.amd_gfx90a", p + "sample_gpu_sample.ubuntu.amd_gfx942",
                               p + "sample_gpu_sample.ubuntu.nvidia", p + "dummy_cpu.ubuntu"]
    for arch in ("gfx90a", "gfx942"):
        name = p + "sample_gpu_sample.ubuntu.amd_" + arch
        assert result["manifest"]["built_images"][name]["gpu_architecture"] == arch
        config = api.inspect_image(name)["Config"]
        assert "PYTORCH_ROCM_ARCH=%s" % arch in config["Env"] and "MAD_SAMPLE_FLAVOUR=rocm" in config["Env"]
    assert "MAD_SAMPLE_FLAVOUR=cuda" in api.inspect_image(p + "sample_gpu_sample.ubuntu.nvidia")["Config"]["Env"]
    assert result["skipped_builds"][0]["model"] == "sample_gpu" and result["skipped_builds"][0]["gpu_vendor"] == "NONE"
    assert json.loads(manifest.read_text())["skipped_builds"] == result["skipped_builds"]
    assert result["assignments"] == dict((n, ["sample_gpu", "dummy"]) for n in nodes)
    again = build(module_runner, mad, "fleet", tags=["sample_gpu", "dummy"], nodes=nodes,
                  manifest_path=str(manifest))
    assert again["changed"] is False and again["built"] == [] and sorted(again["reused"]) == sorted(result["built"])


def test_build_timeout_fails_the_model_quickly(api, module_runner, tmp_path):
    tree = ctx_tree(tmp_path / "mad", extra_models=[model("sleepy", ["slow"], dockerfile="docker/sleepy")],
                    dockerfiles={"docker/sleepy.ubuntu.Dockerfile": dockerfile({}, "RUN sleep 60")})
    started = time.monotonic()
    result = build(module_runner, tree, "timeout", tags=["slow"], build_timeout=3, fail_on_error=False)
    assert time.monotonic() - started < 30
    assert result["failures"][0]["error"].endswith("failed: the build timed out after 3 s.")
    assert api.images(name=prefix("timeout") + "sleepy_sleepy.ubuntu") == []


def test_images_build_at_the_same_time_up_to_build_parallel(api, module_runner, tmp_path):
    """Three images whose build takes a second: with build_parallel 3 the builds overlap (the task takes less than
    their durations added up), with 1 they follow each other; both give the same images in the plan's order."""
    names = ["slow%d" % n for n in range(3)]
    tree = ctx_tree(tmp_path / "mad", extra_models=[model(name, ["slow"], dockerfile="docker/slow") for name in names],
                    dockerfiles={"docker/slow.ubuntu.Dockerfile": dockerfile({}, "RUN sleep 1")})
    found = {}
    for parallel in (3, 1):
        started = time.monotonic()
        result = build(module_runner, tree, "par%d" % parallel, tags=["slow"], rebuild="always",
                       build_parallel=parallel, manifest_path=str(tmp_path / ("manifest-%d.json" % parallel)))
        took = time.monotonic() - started
        assert not result.failed, result.get("msg")
        found[parallel] = (took, sum(image["build_duration"] for image in result["images"]), result)
    for parallel, (_took, _added, result) in found.items():
        assert [image["model"] for image in result["images"]] == names
        assert result["built"] == [prefix("par%d" % parallel) + "%s_slow.ubuntu" % name for name in names]
    took, added, _result = found[3]
    assert added >= 3.0 and took < added - 0.8, (took, added)
    took, added, _result = found[1]
    assert took >= added, (took, added)


# ---- registries: unreachable, authentication, secrets ------------------------------------------

def test_unreachable_registry_is_named_and_nothing_is_built(api, module_runner, tmp_path):
    tree = two_model_tree(tmp_path / "mad")
    registry = "localhost:%d" % free_port()
    result = build(module_runner, tree, "unreach", tags=["alpha"], registry=registry)
    assert result.failed
    assert result["msg"].startswith("Registry %s is unreachable from the Docker engine at %s: "
                                    % (registry, DOCKER_HOST))
    assert "connection refused" in result["msg"]
    assert api.images(name=prefix("unreach") + "alpha_cpu.ubuntu") == []
    assert not (tree / "build_manifest.json").exists()


def test_registry_requiring_auth_without_credentials(api, module_runner, tmp_path, auth_registry):
    tree = two_model_tree(tmp_path / "mad")
    result = build(module_runner, tree, "noauth", tags=["alpha"], registry=auth_registry.host)
    assert result.failed
    assert result["msg"].startswith("Registry %s refused access to %s/%salpha_cpu.ubuntu: "
                                    % (auth_registry.host, auth_registry.host, prefix("noauth")))
    assert result["msg"].endswith("Give credentials for registry %s in credential_file (entry '%s') or with "
                                  "registry_username/registry_password." % (auth_registry.host, auth_registry.host))


def test_rejected_credentials(api, module_runner, tmp_path, auth_registry):
    tree = two_model_tree(tmp_path / "mad")
    creds = tmp_path / "credential.json"
    creds.write_text(json.dumps({auth_registry.host: {"username": auth_registry.user, "password": "Wrong-pw-0017"}}))
    result = build(module_runner, tree, "badauth", tags=["alpha"], registry=auth_registry.host,
                   credential_file=str(creds))
    assert result.failed
    assert result["msg"].startswith("Registry %s rejected the credentials of user '%s': "
                                    % (auth_registry.host, auth_registry.user))
    assert result["msg"].endswith("(credentials from credential_file %s, entry '%s')." % (creds, auth_registry.host))
    assert "Wrong-pw-0017" not in json.dumps(result)
    assert api.images(name=prefix("badauth") + "alpha_cpu.ubuntu") == []


def test_push_with_credentials_and_secrets_stay_out_of_everything(api, tmp_path, auth_registry):
    """-vvv playbook run: registry password and a model's cred values appear nowhere we write."""
    model_user, model_token = "cred-user-%s" % uuid.uuid4().hex[:6], "Tok-%s-secret" % uuid.uuid4().hex
    tree = ctx_tree(tmp_path / "mad", extra_models=[model("withcred", ["secret"], dockerfile="docker/cred",
                                                          cred="MADCI_TOKEN")],
                    dockerfiles={"docker/cred.ubuntu.Dockerfile": dockerfile({}, (
                        "ARG MADCI_TOKEN_USERNAME\nARG MADCI_TOKEN_PASSWORD\n"
                        'RUN echo "user=$MADCI_TOKEN_USERNAME token=$MADCI_TOKEN_PASSWORD"'))})
    creds = tmp_path / "credential.json"
    creds.write_text(json.dumps({
        auth_registry.host: {"username": auth_registry.user, "password": auth_registry.password},
        "MADCI_TOKEN": {"username": model_user, "password": model_token},
    }))
    out = tmp_path / "out"
    out.mkdir()
    extra_vars = {"mad_root": str(tree), "tags": ["secret"], "registry": auth_registry.host,
                  "credential_file": str(creds), "manifest_path": str(out / "build_manifest.json"),
                  "image_prefix": prefix("secret"), "labels": {TEST_LABEL: SESSION}}
    rc, _parsed, log = run_playbook(PLAYBOOK, args=("-vvv",), env={"ANSIBLE_STDOUT_CALLBACK": "default"},
                                    extra_vars=extra_vars)
    assert rc == 0, log
    ref = "%s/%swithcred_cred.ubuntu" % (auth_registry.host, prefix("secret"))
    manifest = json.loads((out / "build_manifest.json").read_text())
    entry = manifest["built_images"][prefix("secret") + "withcred_cred.ubuntu"]
    assert entry["registry_image"] == ref and manifest["summary"]["failed_pushes"] == []
    _digest, config_digest, _config = registry_image(auth_registry.host, ref,
                                                     auth=(auth_registry.user, auth_registry.password))
    assert config_digest == entry["image_id"]
    # -vvv prints the module's whole result: a secret in it would be in the log
    assert entry["content_key"] in log and '"pushed": [\n' in log and ref in log
    assert "MADCI_TOKEN_PASSWORD=********" in entry["build_command"]
    build_log = open(entry["log_file"]).read()
    assert "user=******** token=********" in build_log  # the secret reached the build, and was masked
    written = [log] + [p.read_text() for p in out.iterdir()]
    for secret in (auth_registry.password, model_user, model_token):
        for text in written:
            assert secret not in text
