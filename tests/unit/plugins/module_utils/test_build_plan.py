"""Image planning without Docker (_build module_utils): names, build context, scripts, content keys."""

from __future__ import annotations

import io
import os
import tarfile

import pytest
from build_tree import RUN_SH, ctx_tree, dockerfile, write
from catalogue_builder import model

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.build_plan import (
    CONTENT_KEY_LABEL,
    Planner,
    ScriptsBundle,
    image_name,
    log_name,
    registry_image_name,
)
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.context import normalise_context
from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.credentials import Credentials
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError


@pytest.mark.parametrize("model_name, df, arch, expected", [
    ("dummy", "docker/dummy.ubuntu.amd.Dockerfile", None, "ci-dummy_dummy.ubuntu.amd"),
    ("dummy2/model2", "docker/dummy.ubuntu.amd.Dockerfile", None, "ci-dummy2_model2_dummy.ubuntu.amd"),
    ("dummy", "docker/dummy.ubuntu.amd.Dockerfile", "gfx942", "ci-dummy_dummy.ubuntu.amd_gfx942"),
    ("Pyt_BERT", "docker/pyt.ubuntu.amd.Dockerfile", None, "ci-pyt_bert_pyt.ubuntu.amd"),
])
def test_image_names_follow_madengine(model_name, df, arch, expected):
    assert image_name("ci-", model_name, df, arch) == expected


def test_log_name():
    assert log_name("dummy2/model2", "docker/dummy.ubuntu.amd.Dockerfile") == \
        "dummy2_model2_dummy.ubuntu.amd.build.live.log"
    assert log_name("d", "docker/x.Dockerfile", "gfx90a") == "d_x_gfx90a.build.live.log"


@pytest.mark.parametrize("registry, repository, expected", [
    ("localhost:5000", None, "localhost:5000/ci-x"),
    ("localhost:5000", "team/mad", "localhost:5000/team/mad:ci-x"),
    ("docker.io", "me/mad", "me/mad:ci-x"),
    ("dockerhub", None, "ci-x"),
    ("reg.example.com/ns/", None, "reg.example.com/ns/ci-x"),
])
def test_registry_image_names_follow_madengine(registry, repository, expected):
    assert registry_image_name(registry, "ci-x", repository) == expected


def planner(root, ctx=None, creds=None, **kwargs):
    ctx = normalise_context(ctx or {})
    return Planner(str(root), ctx, ctx, creds or Credentials(environ={}), log_dir=str(root), **kwargs)


def plan_one(root, mdl, **kwargs):
    p = planner(root, **kwargs)
    plans, failures = p.plan([mdl])
    assert failures == []
    assert len(plans) == 1
    return plans[0]


def tar_members(plan):
    data = plan.write_tar(io.BytesIO(), "sha256:test").getvalue()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = {m.name: m for m in tar.getmembers()}
        dockerfile_text = tar.extractfile(".madengine-build/Dockerfile").read().decode()
    return names, dockerfile_text


@pytest.fixture
def tree(tmp_path):
    root = ctx_tree(tmp_path / "mad", dockerfiles={
        "docker/copy.ubuntu.Dockerfile": dockerfile({}, "COPY requirements.txt /r.txt\nCOPY conf/ /conf/"),
    })
    write(root, "docker/requirements.txt", "numpy\n")
    write(root, "docker/conf/a.ini", "a=1\n")
    write(root, "docker/unrelated.txt", "x\n")
    write(root, "scripts/dummy/helper.py", "print(1)\n")
    return root


def test_tar_holds_used_files_scripts_and_dockerfile(tree):
    plan = plan_one(tree, model("m", dockerfile="docker/copy"))
    names, text = tar_members(plan)
    assert set(names) == {"requirements.txt", "conf", "conf/a.ini", ".madengine-build", ".madengine-build/scripts",
                          ".madengine-build/scripts/run.sh", ".madengine-build/scripts/helper.py",
                          ".madengine-build/Dockerfile"}
    assert names[".madengine-build/scripts/run.sh"].mode & 0o111
    assert text.startswith(open(os.path.join(tree, "docker/copy.ubuntu.Dockerfile")).read())
    assert "COPY .madengine-build/scripts/ /madengine/scripts/\n" in text
    assert '"%s"="sha256:test"' % CONTENT_KEY_LABEL in text
    assert '"org.rocm.madengine.scripts.entry"="run.sh"' in text


def test_dockerfile_without_copy_sends_no_context_file(tree):
    names, _text = tar_members(plan_one(tree, model("m", dockerfile="docker/cpu")))
    assert not [n for n in names if not n.startswith(".madengine-build")]


def test_whole_context_when_sources_are_dynamic(tree):
    write(tree, "docker/dyn.ubuntu.Dockerfile", dockerfile({}, "ARG F=requirements.txt\nCOPY $F /f"))
    names, _text = tar_members(plan_one(tree, model("m", dockerfile="docker/dyn")))
    assert {"unrelated.txt", "requirements.txt", "conf/a.ini", "copy.ubuntu.Dockerfile"} <= set(names)


def test_dockerignore_is_applied(tree):
    write(tree, "docker/.dockerignore", "conf/*.ini\n")
    names, _text = tar_members(plan_one(tree, model("m", dockerfile="docker/copy")))
    assert "conf/a.ini" not in names and "requirements.txt" in names


def key_of(root, mdl, **kwargs):
    return plan_one(root, mdl, **kwargs).inputs_digest


def test_content_key_is_stable_and_tracks_what_the_build_uses(tree):
    mdl = model("m", dockerfile="docker/copy")
    first = key_of(tree, mdl)
    assert key_of(tree, mdl) == first
    write(tree, "docker/unrelated.txt", "changed\n")
    assert key_of(tree, mdl) == first, "a file the Dockerfile does not copy must not change the key"
    changes = [
        lambda: write(tree, "docker/conf/a.ini", "a=2\n"),
        lambda: write(tree, "docker/requirements.txt", "numpy\nscipy\n"),
        lambda: os.chmod(os.path.join(tree, "docker/requirements.txt"), 0o600),
        lambda: write(tree, "scripts/dummy/run.sh", RUN_SH + "# tweak\n", 0o755),
        lambda: write(tree, "scripts/dummy/new.txt", "x"),
        lambda: write(tree, "docker/copy.ubuntu.Dockerfile",
                      dockerfile({}, "COPY requirements.txt /r.txt\nCOPY conf/ /c/")),
    ]
    seen = {first}
    for change in changes:
        change()
        key = key_of(tree, mdl)
        assert key not in seen
        seen.add(key)


def test_content_key_tracks_build_args_and_base_digests(tree):
    mdl = model("m", dockerfile="docker/cpu")
    plain = plan_one(tree, mdl)
    with_arg = plan_one(tree, mdl, ctx={"docker_build_arg": {"X": "1"}})
    assert plain.inputs_digest != with_arg.inputs_digest
    base = plain.analysis.base_refs[0]
    assert plain.content_key({base: "sha256:a"}) != plain.content_key({base: "sha256:b"})
    assert plain.content_key({base: "sha256:a"}) == plan_one(tree, mdl).content_key({base: "sha256:a"})


def test_secret_build_args_keep_values_out_of_the_key(tree):
    mdl = model("m", dockerfile="docker/cpu", cred="TOKEN")
    one = plan_one(tree, mdl, creds=Credentials({"TOKEN": {"password": "p1"}}, "f", environ={}))
    two = plan_one(tree, mdl, creds=Credentials({"TOKEN": {"password": "p2"}}, "f", environ={}))
    other = plan_one(tree, mdl, creds=Credentials({"TOKEN": {"pass": "p1"}}, "f", environ={}))
    assert one.inputs_digest == two.inputs_digest != other.inputs_digest
    assert one.all_build_args == {"TOKEN_PASSWORD": "p1"} and one.build_args == {}
    assert "p1" not in one.build_command() and "TOKEN_PASSWORD=********" in one.build_command()


def test_target_archs(tree):
    p = planner(tree, target_archs=["gfx942", "gfx90a"])
    plans, failures = p.plan([model("dummy", dockerfile="docker/dummy")])
    assert failures == []
    assert [(x.image, x.arch, x.build_args["MAD_SYSTEM_GPU_ARCHITECTURE"]) for x in plans] == [
        ("ci-dummy_dummy.ubuntu.amd_gfx942", "gfx942", "gfx942"),
        ("ci-dummy_dummy.ubuntu.amd_gfx90a", "gfx90a", "gfx90a")]
    ignored = planner(tree, ctx={"docker_build_arg": {"MAD_SYSTEM_GPU_ARCHITECTURE": "gfx908"}},
                      target_archs=["gfx942"])
    plans, _failures = ignored.plan([model("dummy", dockerfile="docker/dummy")])
    assert [x.image for x in plans] == ["ci-dummy_dummy.ubuntu.amd"]
    assert ignored.warnings == ["target_archs is ignored: the context sets "
                                "docker_build_arg.MAD_SYSTEM_GPU_ARCHITECTURE=gfx908."]


@pytest.mark.parametrize("scripts, entry, runner, files", [
    ("scripts/dummy/run.sh", "run.sh", "bash", ["helper.py", "run.sh"]),
    ("scripts/dummy/helper.py", "helper.py", "python3", ["helper.py", "run.sh"]),
    ("scripts/dummy", "run.sh", "bash", ["helper.py", "run.sh"]),
])
def test_scripts_bundle(tree, scripts, entry, runner, files):
    bundle = ScriptsBundle.from_model(str(tree), {"name": "m", "scripts": scripts})
    assert (bundle.source_dir, bundle.entry, bundle.runner) == ("scripts/dummy", entry, runner)
    assert [item[0] for item in bundle.files] == files
    assert bundle.as_dict()["command"] == "%s %s" % (runner, entry)


@pytest.mark.parametrize("scripts, message", [
    ("scripts/nope.sh", "Model 'm': scripts path scripts/nope.sh does not exist under mad_root"),
    ("../outside.sh", "Model 'm': scripts path ../outside.sh lies outside mad_root"),
    ("docker", "Model 'm': scripts directory docker has no run.sh."),
])
def test_bad_scripts_paths(tree, scripts, message):
    with pytest.raises(MadengineError) as err:
        ScriptsBundle.from_model(str(tree), {"name": "m", "scripts": scripts})
    assert str(err.value).startswith(message)


def test_model_failures_are_isolated(tree):
    p = planner(tree, creds=Credentials({}, "creds.json", environ={}))
    write(tree, "docker/tools.ubuntu.Dockerfile", dockerfile({}, "COPY --from=tools /x /x"))
    plans, failures = p.plan([
        model("good", dockerfile="docker/cpu"),
        model("novendor", dockerfile="docker/dummy_none"),
        model("needscred", dockerfile="docker/cpu", cred="HF"),
        model("noscripts", dockerfile="docker/cpu", scripts="scripts/missing.sh"),
        model("buildkit", dockerfile="docker/tools"),
    ])
    assert [x.model_name for x in plans] == ["good"]
    assert [(f["model"], f["stage"]) for f in failures] == [
        ("novendor", "plan"), ("needscred", "plan"), ("noscripts", "plan"), ("buildkit", "plan")]
    assert failures[0]["error"] == ("Model 'novendor' has no Dockerfile for gpu_vendor=AMD guest_os=UBUNTU: "
                                    "docker/dummy_none.* no file matches.")
    assert failures[1]["error"] == ("Model 'needscred' needs credential 'HF', which credential_file creds.json does "
                                    "not define.")
    assert "named build context 'tools', which needs BuildKit" in failures[3]["error"]


def test_invalid_image_prefix(tree):
    p = planner(tree, image_prefix="Bad Prefix ")
    _plans, failures = p.plan([model("m", dockerfile="docker/cpu")])
    assert failures[0]["error"] == ("Model 'm': image name bad prefix m_cpu.ubuntu (from image_prefix 'Bad Prefix ') "
                                    "is not a valid Docker image name.")


def test_duplicate_models_build_once(tree):
    p = planner(tree)
    plans, failures = p.plan([model("m", dockerfile="docker/cpu"), model("m", dockerfile="docker/cpu")])
    assert len(plans) == 1 and failures == []
    assert p.warnings == ["Image ci-m_cpu.ubuntu of model 'm' is already built for model 'm'; the duplicate is "
                          "skipped."]


def test_mad_secrets_environment_becomes_secret_build_args(tree):
    creds = Credentials({}, None, environ={"MAD_SECRETS_HF_TOKEN": "hf-value-1", "PATH": "/bin"})
    one = plan_one(tree, model("m", dockerfile="docker/cpu"), creds=creds)
    two = plan_one(tree, model("m", dockerfile="docker/cpu"),
                   creds=Credentials({}, None, environ={"MAD_SECRETS_HF_TOKEN": "hf-value-2"}))
    assert one.all_build_args == {"MAD_SECRETS_HF_TOKEN": "hf-value-1"}
    assert one.inputs_digest == two.inputs_digest
    assert "MAD_SECRETS_HF_TOKEN=********" in one.build_command() and "hf-value-1" not in one.build_command()


# ---- a build for the nodes' (vendor, architecture) targets ---------------------------------------

FLEET_TARGETS = [("AMD", "gfx90a"), ("AMD", "gfx942"), ("NVIDIA", "H100"), ("NONE", "")]


@pytest.fixture
def fleet_tree(tmp_path):
    """``gpu``: AMD and NVIDIA Dockerfiles, the AMD one taking the architecture; ``cpu``: vendor-neutral, no
    architecture; ``archy``: vendor-neutral taking the architecture; ``amdonly``: an AMD Dockerfile only."""
    root = ctx_tree(tmp_path / "mad", extra_models=[
        model("gpu", dockerfile="docker/gpu"), model("archy", dockerfile="docker/archy"),
        model("amdonly", dockerfile="docker/amdonly"), model("nothing", dockerfile="docker/nothing")],
        dockerfiles={
            "docker/gpu.ubuntu.amd.Dockerfile": dockerfile({"gpu_vendor": "AMD"}, "ARG MAD_SYSTEM_GPU_ARCHITECTURE"),
            "docker/gpu.ubuntu.nvidia.Dockerfile": dockerfile({"gpu_vendor": "NVIDIA"}),
            "docker/archy.ubuntu.Dockerfile": dockerfile({"guest_os": "UBUNTU"}, "ARG MAD_SYSTEM_GPU_ARCHITECTURE="),
            "docker/amdonly.ubuntu.amd.Dockerfile": dockerfile({"gpu_vendor": "AMD", "guest_os": "UBUNTU"}),
    })
    return root


def test_the_nodes_targets_build_one_image_per_model_and_vendor_architecture(fleet_tree):
    p = planner(fleet_tree, targets=FLEET_TARGETS)
    plans, failures = p.plan([model("gpu", dockerfile="docker/gpu"), model("dummy_cpu", dockerfile="docker/cpu"),
                              model("archy", dockerfile="docker/archy")])
    assert failures == [] and p.skipped == [{"model": "gpu", "gpu_vendor": "NONE", "reason": (
        "Model 'gpu' has no Dockerfile for gpu_vendor=NONE guest_os=UBUNTU: docker/gpu.ubuntu.amd.Dockerfile its "
        "CONTEXT wants gpu_vendor='AMD', the context has 'NONE'; docker/gpu.ubuntu.nvidia.Dockerfile its CONTEXT "
        "wants gpu_vendor='NVIDIA', the context has 'NONE'")}]
    assert [(x.image, x.arch, x.gpu_vendor, x.build_args.get("MAD_SYSTEM_GPU_ARCHITECTURE")) for x in plans] == [
        ("ci-gpu_gpu.ubuntu.amd_gfx90a", "gfx90a", "AMD", "gfx90a"),
        ("ci-gpu_gpu.ubuntu.amd_gfx942", "gfx942", "AMD", "gfx942"),
        ("ci-gpu_gpu.ubuntu.nvidia", None, "NVIDIA", None),
        # a Dockerfile that does not take the architecture: one image for every vendor and architecture
        ("ci-dummy_cpu_cpu.ubuntu", None, "", None),
        ("ci-archy_archy.ubuntu_gfx90a", "gfx90a", "", "gfx90a"),
        ("ci-archy_archy.ubuntu_gfx942", "gfx942", "", "gfx942"),
        ("ci-archy_archy.ubuntu_h100", "H100", "", "H100"),
        ("ci-archy_archy.ubuntu", None, "", None)]
    assert p.warnings == []


def test_a_model_without_any_dockerfile_for_the_fleet_fails_and_one_for_other_vendors_is_skipped(fleet_tree):
    cpu_only = planner(fleet_tree, targets=[("NONE", "")])
    plans, failures = cpu_only.plan([model("amdonly", dockerfile="docker/amdonly"),
                                     model("nothing", dockerfile="docker/nothing")])
    assert plans == [] and [(s["model"], s["gpu_vendor"]) for s in cpu_only.skipped] == [("amdonly", "NONE")]
    assert failures == [{"model": "nothing", "stage": "plan", "error": (
        "Model 'nothing' has no Dockerfile for gpu_vendor=NONE guest_os=UBUNTU: docker/nothing.* no file matches.")}]


def test_a_fixed_architecture_in_the_context_wins_over_the_nodes(fleet_tree):
    p = planner(fleet_tree, ctx={"docker_build_arg": {"MAD_SYSTEM_GPU_ARCHITECTURE": "gfx90a"}},
                targets=[("AMD", "gfx942"), ("AMD", "gfx90a")])
    plans, failures = p.plan([model("gpu", dockerfile="docker/gpu")])
    assert failures == [] and [(x.image, x.build_args["MAD_SYSTEM_GPU_ARCHITECTURE"]) for x in plans] == [
        ("ci-gpu_gpu.ubuntu.amd", "gfx90a")]
    assert p.warnings == ["The nodes' architectures are ignored: the context sets "
                          "docker_build_arg.MAD_SYSTEM_GPU_ARCHITECTURE=gfx90a."]
