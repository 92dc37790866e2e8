"""Planning model runs (_run module_utils), without a Docker engine: selection, fitting, GPUs, containers."""

from __future__ import annotations

import pytest
from manifest_builder import image_entry, manifest, model_card, simple

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.credentials import Credentials
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.docker_client import (
    ContainerSpec,
    apply_run_options,
)
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.run_plan import (
    DEFAULT_TIMEOUT,
    Planner,
    RunSettings,
    effective_timeout,
    select_runs,
)
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError
from ansible_collections.rocm.madengine.plugins.module_utils.host.gpu import Gpu, GpuInventory

SOURCE = "manifest /m.json"


def amd(count=2, arch="gfx942", product="AMD Instinct MI300X"):
    gpus = [Gpu(i, "AMD", arch=arch, render_minor=128 + 8 * i, pci_bdf="0000:%02x:00.0" % (0x11 + i), product=product,
                node_id=i + 1) for i in range(count)]
    return GpuInventory("AMD", gpus, driver_version="6.8.5", rocm_version="6.4.1")


def nvidia(count=2, product="NVIDIA A100-SXM4-40GB"):
    gpus = [Gpu(i, "NVIDIA", arch="A100", product=product) for i in range(count)]
    return GpuInventory("NVIDIA", gpus, driver_version="550.54.15", cuda_version="12.4")


def cpu():
    return GpuInventory("NONE")


def planner(gpu, ctx=None, environ=None, credentials=None, data=None, **settings):
    values = dict(run_id="r1", results_dir="/res", environ=environ or {}, dev_root="/dev")
    values.update(settings)
    ctx = dict({"guest_os": "UBUNTU", "gpu_vendor": "AMD"}, **(ctx or {}))
    return Planner(ctx, gpu, RunSettings(**values), credentials or Credentials(environ={}), data or {},
                   "data.json", group_ids=["44", "109"])


def plan_all(p, document, tags=()):
    return [p.plan(r) for r in p.fit(select_runs(document, SOURCE, tags))]


# ---- selection ---------------------------------------------------------------------------------

def names(runs):
    return [r.name for r in runs]


def test_tags_filter_the_manifest_with_madengine_grammar():
    document = manifest(simple("dummy", tags=["smoke"]), simple("dummy_multi", tags=["smoke"]),
                        simple("dummy2/model2", tags=["group2"]), simple("other", tags=["x"]))
    assert names(select_runs(document, SOURCE)) == ["dummy", "dummy_multi", "dummy2/model2", "other"]
    assert names(select_runs(document, SOURCE, ["smoke"])) == ["dummy", "dummy_multi"]
    assert names(select_runs(document, SOURCE, ["dummy2/all", "dummy"])) == ["dummy2/model2", "dummy"]
    picked = select_runs(document, SOURCE, ["dummy2/model2:batch-size=32", "group2"])
    assert names(picked) == ["dummy2/model2"] and picked[0].args == " --batch-size 32"
    with pytest.raises(MadengineError, match=r"^Tag 'nope' selects no model of manifest /m\.json \(models: dummy, "
                                             r"dummy2/model2, dummy_multi, other\)\.$"):
        select_runs(document, SOURCE, ["nope"])


def test_inconsistent_manifests_become_failed_runs():
    key, entry, card = simple("ok")
    document = manifest((key, entry, card), ("ci-lonely", None, model_card("lonely")),
                        ("ci-orphan", image_entry("ci-orphan", "orphan"), None),
                        ("ci-noimage", dict(image_entry("ci-noimage", "noimage", registry=None), docker_image=""),
                         model_card("noimage")),
                        failed_builds=[{"model": "broken", "error": "Model 'broken': building failed: exit 3."}])
    runs = select_runs(document, SOURCE)
    assert [(r.name, r.action) for r in runs] == [("ok", "run"), ("orphan", "fail"), ("noimage", "fail"),
                                                  ("lonely", "fail"), ("broken", "fail")]
    assert runs[1].reason == ("manifest /m.json: image ci-orphan has no built_models entry, so its model (scripts, "
                              "args, multiple_results) is unknown.")
    assert runs[2].reason == ("manifest /m.json: model 'noimage' (key ci-noimage) has no image: its entry has no "
                              "docker_image or registry_image.")
    assert runs[3].reason == ("manifest /m.json lists model 'lonely' under built_models key ci-lonely, but "
                              "built_images has no image ci-lonely.")
    assert runs[4].reason == ("the build of model 'broken' failed, so manifest /m.json has no image for it: "
                              "Model 'broken': building failed: exit 3")


# ---- fitting images to the node ----------------------------------------------------------------

def test_vendor_and_arch_images_fit_or_skip():
    document = manifest(simple("gpu", key="ci-gpu_amd", vendor="AMD"),
                        simple("gpu", key="ci-gpu_nvidia", vendor="NVIDIA"),
                        simple("archy", key="ci-archy_942", vendor="AMD", arch="gfx942"),
                        simple("archy", key="ci-archy_90a", vendor="AMD", arch="gfx90a"),
                        simple("only90a", key="ci-only90a", vendor="AMD", arch="gfx90a"), simple("neutral"))
    p = planner(amd())
    runs = plan_all(p, document)
    assert [(r.key, r.action) for r in runs] == [("ci-gpu_amd", "run"), ("ci-archy_942", "run"),
                                                 ("ci-only90a", "skip"), ("ci-neutral_cpu.ubuntu", "run")]
    assert runs[2].reason == ("no image of model 'only90a' fits this node: image ci-only90a is built for gfx90a, and "
                              "this node's architecture is gfx942")
    assert [f["image"] for f in p.filtered] == ["ci-gpu_nvidia", "ci-archy_90a"]
    on_cpu = plan_all(planner(cpu()), document)
    assert [(r.name, r.action) for r in on_cpu] == [("gpu", "skip"), ("archy", "skip"), ("only90a", "skip"),
                                                    ("neutral", "run")]
    assert on_cpu[0].reason == ("no image of model 'gpu' fits this node: image ci-gpu_amd is built for AMD GPUs, and "
                                "this node's gpu_vendor is NONE")


def test_the_image_built_for_the_node_architecture_wins_over_a_vendor_neutral_one():
    key, entry, card = simple("both", key="ci-both_x", vendor="")
    document = manifest((key, entry, card), simple("both", key="ci-both_x_gfx942", arch="gfx942"),
                        simple("both", key="ci-both_x_gfx90a", arch="gfx90a"))
    for name in ("ci-both_x", "ci-both_x_gfx942", "ci-both_x_gfx90a"):
        document["built_images"][name]["dockerfile"] = "docker/x.ubuntu.Dockerfile"
    p = planner(amd())
    assert [(r.key, r.action) for r in plan_all(p, document)] == [("ci-both_x_gfx942", "run")]
    assert [(f["image"], f["reason"]) for f in p.filtered] == [
        ("ci-both_x", "an image built for gfx942 fits this node better"),
        ("ci-both_x_gfx90a", "image ci-both_x_gfx90a is built for gfx90a, and this node's architecture is gfx942")]
    # on a CPU node only the vendor-neutral image without an architecture fits
    assert [(r.key, r.action) for r in plan_all(planner(cpu()), document)] == [("ci-both_x", "run")]


def test_nvidia_images_are_matched_by_the_short_architecture_name():
    document = manifest(simple("big", key="ci-big_a100", vendor="NVIDIA", arch="A100"),
                        simple("big", key="ci-big_h100", vendor="NVIDIA", arch="H100"))
    p = planner(nvidia())
    (run,) = plan_all(p, document)
    assert (run.key, run.action, run.planned()) == ("ci-big_a100", "run", "run ci-big_a100")
    assert p.filtered[0]["reason"] == "image ci-big_h100 is built for H100, and this node's architecture is A100"


def test_a_vendor_without_a_dockerfile_skips_with_the_builds_reason():
    reason = "Model 'gpu' has no Dockerfile for gpu_vendor=NONE guest_os=UBUNTU: docker/gpu.* ..."
    document = manifest(simple("gpu", key="ci-gpu_amd_gfx942", vendor="AMD", arch="gfx942"), simple("plain"))
    document["skipped_builds"] = [{"model": "gpu", "gpu_vendor": "NONE", "reason": reason}]
    on_cpu = plan_all(planner(cpu()), document)
    assert [(r.name, r.key, r.action, r.reason) for r in on_cpu] == [
        ("gpu", "(no image)", "skip", reason), ("plain", "ci-plain_cpu.ubuntu", "run", "")]
    assert on_cpu[0].planned() == "skip: " + reason and on_cpu[0].as_result()["planned"] == "skip: " + reason
    assert [r.action for r in plan_all(planner(amd()), document)] == ["run", "run"]


def test_a_model_built_for_other_vendors_only_is_skipped_there_and_missing_elsewhere():
    document = manifest(simple("plain"))
    document["skipped_builds"] = [{"model": "amdonly", "gpu_vendor": "NONE", "reason": "no Dockerfile for NONE"}]
    on_cpu = plan_all(planner(cpu()), document)
    assert [(r.name, r.action, r.reason) for r in on_cpu] == [("plain", "run", ""),
                                                              ("amdonly", "skip", "no Dockerfile for NONE")]
    on_amd = plan_all(planner(amd()), document)
    assert [(r.name, r.action, r.reason) for r in on_amd] == [
        ("plain", "run", ""), ("amdonly", "fail", "the manifest has no image of model 'amdonly' for gpu_vendor AMD")]


def test_a_build_that_failed_for_the_node_architecture_is_a_failure_there():
    document = manifest(simple("archy", key="ci-archy_gfx942", vendor="AMD", arch="gfx942"),
                        failed_builds=[{"model": "archy", "architecture": "gfx90a", "error": "exit 3."}])
    (run,) = plan_all(planner(amd(arch="gfx90a")), document)
    assert (run.action, run.reason) == ("fail", "the build of model 'archy' for gfx90a failed: exit 3")
    (run,) = plan_all(planner(amd()), document)
    assert run.action == "run"


def test_skip_gpu_arch_uses_the_detected_architecture():
    document = manifest(simple("sample_gpu", vendor="AMD", skip_gpu_arch="gfx908, gfx90a"))
    (skipped,) = plan_all(planner(amd(arch="gfx90a")), document)
    assert skipped.action == "skip"
    assert skipped.reason == "skip_gpu_arch of model 'sample_gpu' lists gfx90a, this node's GPU architecture"
    (runs,) = plan_all(planner(amd(arch="gfx942")), document)
    assert runs.action == "run"
    (forced,) = plan_all(planner(amd(arch="gfx90a"), disable_skip_gpu_arch=True), document)
    assert forced.action == "run"
    on_a100 = manifest(simple("big", skip_gpu_arch="A100 H100"))
    assert plan_all(planner(nvidia()), on_a100)[0].reason.endswith("lists A100, this node's GPU architecture")


# ---- GPUs --------------------------------------------------------------------------------------

def test_gpu_assignment_follows_n_gpus_and_docker_gpus():
    document = manifest(simple("one"), simple("all", n_gpus="-1"), simple("two", n_gpus="2"),
                        simple("many", n_gpus="8"), simple("bad", n_gpus="lots"))
    runs = plan_all(planner(amd(4), ctx={"docker_gpus": "1-3"}), document)
    assert [r.gpu_ids for r in runs[:3]] == [[1], [1, 2, 3], [1, 2]]
    assert runs[3].reason == "Model 'many' needs 8 GPUs (n_gpus), but this node gives 3 (docker_gpus 1-3)."
    assert runs[4].reason == "Model 'bad': n_gpus 'lots' is not a number of GPUs."
    spec = runs[1].spec
    renders = ["/dev/dri/renderD%d:/dev/dri/renderD%d:rwm" % (m, m) for m in (136, 144, 152)]
    assert spec.devices == ["/dev/kfd:/dev/kfd:rwm"] + renders
    ctx_wins = plan_all(planner(amd(4), ctx={"gpus_per_node": "3"}), manifest(simple("one")))
    assert ctx_wins[0].gpu_ids == [0, 1, 2]
    with pytest.raises(MadengineError, match=r"^Context key 'docker_gpus' \(0-5\) names GPU 4,5, but this node's AMD "
                                             r"GPUs are 0,1,2,3\.$"):
        planner(amd(4), ctx={"docker_gpus": "0-5"})


def test_amd_container_options_and_environment():
    document = manifest(simple("m", vendor="AMD", multiple_results="perf_m.csv", args="--x 1"))
    (run,) = plan_all(planner(amd(2), environ={"BUILD_NUMBER": "77", "NCCL_DEBUG": "INFO", "UNRELATED": "no",
                                               "MAD_SECRETS_HF": "hf-secret"}, dev_root="/hostdev"), document)
    spec = run.spec
    assert spec.command == ["bash", "run.sh", "--x", "1"] and spec.working_dir == "/madengine/scripts"
    assert spec.image_ref == "localhost:5000/ci-m_cpu.ubuntu"
    assert (spec.user, spec.network_mode, spec.ipc_mode) == ("root", "host", "host")
    assert spec.devices == ["/hostdev/kfd:/dev/kfd:rwm", "/hostdev/dri/renderD128:/dev/dri/renderD128:rwm"]
    assert spec.group_add == ["44", "109"] and spec.cap_add == ["SYS_PTRACE"]
    assert spec.security_opt == ["seccomp=unconfined", "apparmor=unconfined"]
    assert spec.environment == {
        "MAD_GPU_VENDOR": "AMD", "MAD_SYSTEM_NGPUS": "2", "MAD_SYSTEM_GPU_ARCHITECTURE": "gfx942",
        "MAD_SYSTEM_HIP_VERSION": "6.4", "MAD_SYSTEM_GPU_PRODUCT_NAME": "AMD Instinct MI300X", "MAD_GUEST_OS": "UBUNTU",
        "MAD_RUNTIME_NGPUS": "1", "MAD_MULTI_NODE_RUNNER": "torchrun --standalone --nproc_per_node=1",
        "MAD_MODEL_NAME": "m", "MAD_OUTPUT_CSV": "perf_m.csv", "JENKINS_BUILD_NUMBER": "77", "NCCL_DEBUG": "INFO",
        "MAD_SECRETS_HF": "hf-secret"}
    assert run.secret_names == {"MAD_SECRETS_HF"}
    assert spec.labels == {"org.rocm.madengine.run-id": "r1", "org.rocm.madengine.model": "m",
                           "org.rocm.madengine.image": "ci-m_cpu.ubuntu"}
    assert run.timeout == DEFAULT_TIMEOUT and run.log_path == "/res/m_cpu.ubuntu.r1.run.live.log"
    shown = spec.as_dict(run.secret_names)
    assert shown["environment"]["MAD_SECRETS_HF"] == "********" and "hf-secret" not in shown["docker_run"]


def test_nvidia_and_cpu_container_options():
    document = manifest(simple("m", n_gpus="2"))
    (on_nvidia,) = plan_all(planner(nvidia(4), ctx={"docker_gpus": "1,3"}), document)
    assert on_nvidia.spec.device_requests == [{"driver": "nvidia", "device_ids": ["1", "3"],
                                              "capabilities": [["gpu"]]}]
    assert on_nvidia.spec.devices == [] and on_nvidia.spec.cap_add == ["SYS_PTRACE", "SYS_NICE"]
    assert "'--gpus=\"device=1,3\"'" in on_nvidia.spec.docker_run()
    assert on_nvidia.spec.environment["MAD_SYSTEM_GPU_ARCHITECTURE"] == "NVIDIA A100-SXM4-40GB"
    (on_cpu,) = plan_all(planner(cpu()), document)
    assert on_cpu.gpu_ids == [] and on_cpu.spec.devices == [] and on_cpu.spec.device_requests == []
    assert on_cpu.spec.environment["MAD_GPU_VENDOR"] == "NONE"
    assert on_cpu.spec.environment["MAD_RUNTIME_NGPUS"] == "0"


def test_context_env_mounts_cpus_and_run_options():
    document = manifest(simple("m", additional_docker_run_options="--shm-size 16G --cap-add=SYS_ADMIN -e A=1 "
                                                                  "--ulimit memlock=-1:-1 -v /h:/c:ro --privileged"))
    ctx = {"docker_env_vars": {"MAD_GPU_VENDOR": "overridden", "N": 3, "GONE": None}, "docker_mounts": {"/in": "/out"},
           "docker_cpus": "0-3, 8", "model_args": "--y 2", "encapsulate_script": "numactl -N 0"}
    (run,) = plan_all(planner(amd(1), ctx=ctx), document)
    spec = run.spec
    assert spec.environment["MAD_GPU_VENDOR"] == "overridden" and spec.environment["N"] == "3"
    assert "GONE" not in spec.environment and spec.environment["A"] == "1"
    assert spec.binds == ["/out:/in:rw", "/h:/c:ro"] and spec.cpuset_cpus == "0-3,8"
    assert spec.shm_size == "16G" and spec.cap_add == ["SYS_PTRACE", "SYS_ADMIN"] and spec.privileged
    assert spec.ulimits == [{"name": "memlock", "soft": -1, "hard": -1}]
    assert spec.command == ["sh", "-c", "numactl -N 0 bash run.sh --y 2"] and run.args == "--y 2"


@pytest.mark.parametrize("options, message", [
    ("--rm", r"option --rm is not supported \(supported: "),
    ("--shm-size", r"option --shm-size needs a value"),
    ("-e NOEQUALS", r"-e NOEQUALS is not KEY=VALUE"),
    ("--ulimit nofile=x", r"--ulimit nofile=x is not NAME=SOFT\[:HARD\] with numbers"),
    ("--env 'unterminated", r"cannot split"),
])
def test_bad_run_options_fail_the_model(options, message):
    (run,) = plan_all(planner(cpu()), manifest(simple("m", additional_docker_run_options=options)))
    assert run.action == "fail"
    assert run.reason.startswith("Model 'm': additional_docker_run_options: ")
    with pytest.raises(ValueError, match=message):
        apply_run_options(ContainerSpec("n", "i", ["c"]), options)


def test_credentials_become_masked_environment():
    creds = Credentials({"HF": {"username": "hf-user", "password": "hf-pass-123"}}, "credential.json", environ={})
    document = manifest(simple("m", cred="HF"), simple("missing", cred="NOPE"))
    runs = plan_all(planner(cpu(), credentials=creds), document)
    env = runs[0].spec.environment
    assert env["HF_USERNAME"] == "hf-user" and env["HF_PASSWORD"] == "hf-pass-123"
    shown = runs[0].as_result()["container"]
    assert shown["environment"]["HF_PASSWORD"] == "********" and shown["environment"]["HF_USERNAME"] == "********"
    assert "hf-pass-123" not in shown["docker_run"]
    assert runs[1].reason == ("Model 'missing' needs credential 'NOPE', which credential_file credential.json does not "
                              "define.")


def test_data_mounts_and_failures(tmp_path):
    (tmp_path / "ds").mkdir()
    data = {"ds": {"local": {"path": str(tmp_path / "ds")}}}
    runs = plan_all(planner(cpu(), data=data), manifest(simple("m", data="ds"), simple("n", data="unknown")))
    assert runs[0].spec.binds == ["%s:/data_dlm_0:ro" % (tmp_path / "ds")]
    env = runs[0].spec.environment
    assert env["MAD_DATAHOME"] == "/data_dlm_0" and env["MAD_DATANAME"] == "ds"
    assert runs[1].reason == "Model 'n' needs data 'unknown', which data.json does not define."


def test_models_without_baked_scripts_or_with_a_url():
    key, entry, card = simple("old")
    entry["scripts"] = None
    runs = plan_all(planner(cpu()), manifest((key, entry, card), simple("cloned", url="https://example.com/x.git")))
    assert runs[0].reason == ("Model 'old': image ci-old_cpu.ubuntu has no scripts baked in (its manifest entry has no "
                              "'scripts'); rebuild it with madengine_build or give mad_root to ship them.")
    cloned = runs[1]
    assert cloned.action == "run" and cloned.spec.command == ["sh", "/madengine/run/steps.sh"]
    assert cloned.spec.working_dir == "/myworkspace" and cloned.steps.model_dir == "/myworkspace/x"
    script = cloned.steps.script()
    assert "git clone https://example.com/x.git /myworkspace/x || fail $? clone" in script
    assert "cp -RL /madengine/scripts/. \"$M/\"" in script


def test_a_cloned_model_with_https_credentials_reads_them_from_its_environment():
    creds = Credentials({"GIT": {"username": "u", "password": "s3cret"}}, environ={})
    (run,) = plan_all(planner(cpu(), credentials=creds), manifest(simple("m", url="https://h/r.git/", cred="GIT")))
    script = run.steps.script()
    assert "s3cret" not in script and "${GIT_PASSWORD}" in script and "${GIT_USERNAME}" in script
    assert run.spec.environment["GIT_PASSWORD"] == "s3cret" and "GIT_PASSWORD" in run.secret_names


def test_tools_wrap_the_model_with_their_scripts_environment_and_command():
    ctx = {"tools": [{"name": "rocprofv3", "env_vars": {"EXTRA": "1"}}], "pre_scripts": [
        {"path": "scripts/common/tools/capture.sh", "args": "x"}], "encapsulate_script": "time"}
    (run,) = plan_all(planner(cpu(), ctx=ctx), manifest(simple("m")))
    assert [i["path"] for i in run.steps.pre_scripts] == ["scripts/common/tools/capture.sh"]
    assert [i["path"] for i in run.steps.post_scripts] == ["scripts/common/post_scripts/collect.sh"]
    assert run.steps.command.startswith("bash ../scripts/common/tools/profile.sh rocprofv3 rocprofv3_output ")
    assert run.steps.command.endswith("-- time bash run.sh")
    assert run.spec.environment["EXTRA"] == "1"
    assert "/myworkspace/scripts/common/tools/profile.sh" in run.steps.files


def test_an_unknown_tool_is_a_context_error():
    with pytest.raises(MadengineError, match=r"^Tool 'nope' of the context is not in scripts/common/tools.json of "
                                             r"the collection's default scripts/common \(tools: gpu_info_power"):
        planner(cpu(), ctx={"tools": [{"name": "nope"}]})


def test_docker_gpus_all_is_every_gpu():
    (run,) = plan_all(planner(amd(2), ctx={"docker_gpus": "all"}), manifest(simple("m", n_gpus="-1")))
    assert run.gpu_ids == [0, 1]


def test_scripts_are_shipped_from_mad_root(sample_mad):
    key, entry, card = simple("dummy", scripts="scripts/sample/run_multi.sh")
    entry["scripts"] = None
    (run,) = plan_all(planner(cpu(), mad_root=str(sample_mad)), manifest((key, entry, card)))
    assert run.action == "run" and run.spec.command == ["bash", "run_multi.sh"]
    import io
    import tarfile

    names = tarfile.open(fileobj=io.BytesIO(run.scripts_tar)).getnames()
    assert "madengine/scripts/run_multi.sh" in names and "madengine/scripts/run.sh" in names


@pytest.mark.parametrize("option, ctx, model, expected", [
    (None, {}, {}, 7200),
    (None, {}, {"timeout": 5}, 5),
    (None, {}, {"timeout": -1}, 7200),
    (None, {"timeout": 30}, {"timeout": 5}, 30),
    (7200, {}, {"timeout": 5}, 7200),
    (0, {}, {"timeout": 5}, 0),
    (None, {"timeout_multiplier": 2.5}, {"timeout": 5}, 13),
    (100, {"timeout_multiplier": 3}, {}, 300),
    (0, {"timeout_multiplier": 3}, {}, 0),
])
def test_timeouts(option, ctx, model, expected):
    assert effective_timeout(option, ctx, dict(model, name="m")) == expected


def test_missing_device_nodes_are_listed(tmp_path):
    (tmp_path / "kfd").write_text("")
    runs = plan_all(planner(amd(2), dev_root=str(tmp_path)), manifest(simple("m", n_gpus="-1")))
    p = planner(amd(2), dev_root=str(tmp_path))
    assert p.missing_devices(runs) == [str(tmp_path / "dri" / "renderD128"), str(tmp_path / "dri" / "renderD136")]


def test_a_bad_timeout_multiplier_is_named():
    with pytest.raises(MadengineError, match=r"timeout_multiplier' must be a number above 0, not 0"):
        effective_timeout(None, {"timeout_multiplier": 0}, {"name": "m"})


@pytest.mark.parametrize("launcher, runner", [("deepspeed", "deepspeed --num_gpus=2"), ("vllm", ""), ("primus", ""),
                                              ("torchrun", "torchrun --standalone --nproc_per_node=2")])
def test_the_distributed_launcher_gives_the_runner(launcher, runner):
    (run,) = plan_all(planner(amd(2), ctx={"distributed": {"launcher": launcher}}), manifest(simple("m", n_gpus="2")))
    assert run.spec.environment["MAD_MULTI_NODE_RUNNER"] == runner
