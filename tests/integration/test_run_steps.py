"""madengine_run's steps around a model on the real Docker engine, against real servers on 127.0.0.1.

Models clone their ``url`` from git http-backend over HTTPS with basic authentication, from ``git daemon`` and
over SSH from an sshd; tools, pre- and post-scripts are stand-in scripts that record their order and
environment; data comes from a ``custom`` provider script and from a NAS (rsync over SSH with a password),
into mirrors the next run reuses.  The images build from a Debian image with bash, git, ssh and rsync
(tests/unit/tools_image.py).  Every server is started by the module's fixtures and stopped after.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import uuid

import docker
import pytest
from conftest import REGISTRY, run_module, run_playbook
from docker_helpers import delete_repositories, remove_labelled_images, remove_prefixed_images
from fake_gpu_sysfs import FakeGpuSysfs, fake_devices
from loopback_servers import git_daemon, https_git, make_repository, self_signed, sshd
from tools_image import ensure_image

from ansible_collections.rocm.madengine.plugins.modules import madengine_build, madengine_run

pytestmark = pytest.mark.docker

SESSION = uuid.uuid4().hex[:8]
PREFIX = "s%s-" % SESSION
TEST_LABEL = "madci.test.session"
DOCKER_HOST = "unix:///var/run/docker.sock"
RUN_LABEL = "org.rocm.madengine.run-id"
GIT_USER, GIT_SECRET = "git-user-%s" % SESSION, "Git-%s-secret" % uuid.uuid4().hex
NAS_SECRET = "Nas-%s-secret" % uuid.uuid4().hex
PLAYBOOK = os.path.join(os.path.dirname(__file__), "playbooks", "run.yml")

DOCKERFILE = """# CONTEXT {'guest_os': 'UBUNTU'}
ARG BASE_DOCKER=localhost:5000/mad-base:busybox
FROM ${BASE_DOCKER}
COPY bin/ /usr/local/bin/
RUN mkdir -p /opt/rocm/.info && echo 6.4.1 > /opt/rocm/.info/version
"""
# Stand-ins for the ROCm tools the system environment details and the GPU profilers read.
ROCMINFO = """#!/bin/sh
printf '  Name:                    AMD EPYC\n  Device Type:             CPU\n'
printf '  Name:                    gfx942\n  Marketing Name:          AMD Instinct MI300X\n'
printf '  Vendor Name:             AMD\n  Device Type:             GPU\n'
"""
AMD_SMI = """#!/bin/sh
case "$*" in
  *--power*) printf 'gpu,socket_power\n0,301\n' ;;
  *) echo "amd-smi stand-in" ;;
esac
"""
# A stand-in rocprofv3: writes a trace into its -d directory and runs the command after --.
ROCPROFV3 = """#!/bin/bash
out=.
while [ $# -gt 0 ] && [ "$1" != "--" ]; do [ "$1" = "-d" ] && { out=$2; shift; }; shift; done
shift
mkdir -p "$out"; echo "kernel,calls" > "$out/stub_kernel_trace.csv"; echo "gemm,7" >> "$out/stub_kernel_trace.csv"
"$@"
"""
TOOLS_JSON = {"tools": {
    "tool_a": {"pre_scripts": [{"path": "scripts/common/pre_scripts/note.sh", "args": "pre-A"}],
               "post_scripts": [{"path": "scripts/common/post_scripts/note.sh", "args": "post-A"}],
               "cmd": "bash ../scripts/common/tools/wrap.sh A", "env_vars": {"TOOL_A": "a-on"}},
    "tool_b": {"pre_scripts": [{"path": "scripts/common/pre_scripts/note.sh", "args": "pre-B"}],
               "post_scripts": [{"path": "scripts/common/post_scripts/note.sh", "args": "post-B"}],
               "cmd": "bash ../scripts/common/tools/wrap.sh B", "env_vars": {"TOOL_B": "b-on"}},
}}
NOTE_SH = "#!/bin/bash\necho \"$1\" >> /myworkspace/order.txt\necho \"note $1 in $(basename \"$(pwd)\")\"\n"
WRAP_SH = ("#!/bin/bash\nname=$1; shift\necho \"wrap-$name\" >> /myworkspace/order.txt\n\"$@\"\nrc=$?\n"
           "mkdir -p tool_${name}_output && echo \"$name done\" > tool_${name}_output/summary.txt\n"
           "cp -R tool_${name}_output /myworkspace/\nexit $rc\n")
TOOLED_SH = """#!/bin/bash
echo model >> /myworkspace/order.txt
echo "model saw TOOL_A=$TOOL_A TOOL_B=$TOOL_B in $(basename "$(pwd)")"
printf 'kernel,calls\\nk,3\\n' > tooled_trace.csv
echo "performance: 42 samples_per_second"
"""
CLONE_SH = """#!/bin/bash
echo "readme: $(cat README)"
echo "performance: 5 samples_per_second"
"""
DATA_SH = """#!/bin/bash
echo "datahome=$MAD_DATAHOME"
cat "$MAD_DATAHOME/payload.txt"
echo "performance: 3 samples_per_second"
"""
FETCH_SH = """#!/bin/bash
echo "fetching into $(pwd) with $*"
echo "fetched by custom $*" > payload.txt
"""
PLAIN_SH = "#!/bin/bash\nsleep ${1:-0}\necho \"performance: 9 samples_per_second\"\n"


def write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(str(path), "w") as handle:
        handle.write(text)
    os.chmod(str(path), mode)


def model(name, script, **extra):
    card = {"name": name, "dockerfile": "docker/tools", "scripts": script, "n_gpus": "1", "tags": ["steps"],
            "args": ""}
    card.update(extra)
    return card


@pytest.fixture(scope="module")
def api():
    client = docker.APIClient(base_url=DOCKER_HOST, version="auto", timeout=120)
    yield client
    for container in client.containers(all=True, filters={"label": RUN_LABEL}):
        if (container.get("Labels") or {}).get(RUN_LABEL, "").startswith(PREFIX):
            client.remove_container(container["Id"], force=True)
    remove_labelled_images(client, "%s=%s" % (TEST_LABEL, SESSION))
    remove_prefixed_images(client, REGISTRY, PREFIX)   # benchmark.yml's builds carry no test label
    delete_repositories(REGISTRY, PREFIX)
    client.close()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """The git servers (HTTPS with basic auth, git daemon, sshd) and the NAS (the same sshd), on 127.0.0.1."""
    root = tmp_path_factory.mktemp("servers")
    gitroot, nas = root / "git", root / "nas"
    gitroot.mkdir()
    commit = make_repository(str(gitroot), "model-repo", {"README": "cloned model code\n"})
    write(nas / "nas_ds" / "payload.txt", "payload from the NAS %s\n" % SESSION)
    cert, key = self_signed(str(root))
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "id")], check=True)
    image = ensure_image()
    with https_git(str(gitroot), cert, key, (GIT_USER, GIT_SECRET)) as (https_url, requests), \
            git_daemon(str(gitroot)) as git_url, \
            sshd(image, (root / "id.pub").read_text().strip(), "nas", NAS_SECRET,
                 [(str(gitroot), "/srv/git"), (str(nas), "/srv/nas")]) as ssh_port:
        yield {"commit": commit, "https": https_url, "requests": requests, "git": git_url, "ssh_port": ssh_port,
               "cert_dir": root, "ssh_key": (root / "id").read_text(), "root": root}


@pytest.fixture(scope="module")
def built(api, servers, tmp_path_factory):
    root = tmp_path_factory.mktemp("steps")
    mad = root / "mad"
    write(mad / "docker" / "tools.ubuntu.Dockerfile", DOCKERFILE)
    write(mad / "docker" / "bin" / "rocprofv3", ROCPROFV3, 0o755)
    write(mad / "docker" / "bin" / "rocminfo", ROCMINFO, 0o755)
    write(mad / "docker" / "bin" / "amd-smi", AMD_SMI, 0o755)
    write(mad / "scripts" / "common" / "pre_scripts" / "note.sh", NOTE_SH, 0o755)
    write(mad / "scripts" / "common" / "post_scripts" / "note.sh", NOTE_SH, 0o755)
    write(mad / "scripts" / "common" / "tools" / "wrap.sh", WRAP_SH, 0o755)
    write(root / "tools.json", json.dumps(TOOLS_JSON))
    write(mad / "scripts" / "tooled" / "run.sh", TOOLED_SH, 0o755)
    write(mad / "scripts" / "clone" / "run.sh", CLONE_SH, 0o755)
    write(mad / "scripts" / "data" / "run.sh", DATA_SH, 0o755)
    write(mad / "scripts" / "data" / "fetch.sh", FETCH_SH, 0o755)
    write(mad / "scripts" / "data" / "broken_fetch.sh", "#!/bin/bash\necho 'the dataset server said no'\nexit 3\n",
          0o755)
    write(mad / "scripts" / "plain" / "run.sh", PLAIN_SH, 0o755)
    repo = "model-repo.git"
    ssh_url = "ssh://127.0.0.1:%d/srv/git/%s" % (servers["ssh_port"], repo)
    models = [
        model("tooled", "scripts/tooled/run.sh"),
        model("clone_https", "scripts/clone/run.sh", url="%s/%s" % (servers["https"], repo), cred="GITHTTP"),
        model("clone_anon", "scripts/clone/run.sh", url="%s/%s" % (servers["git"], repo)),
        model("clone_ssh", "scripts/clone/run.sh", url=ssh_url, cred="GITSSH"),
        model("clone_denied", "scripts/clone/run.sh", url="%s/%s" % (servers["https"], repo), cred="GITBAD"),
        model("data_custom", "scripts/data/run.sh", data="custom_ds"),
        model("data_nas", "scripts/data/run.sh", data="nas_ds"),
        model("data_fail", "scripts/data/run.sh", data="bad_ds"),
        model("plain", "scripts/plain/run.sh"),
        model("sleepy", "scripts/plain/run.sh", args="3", timeout=2),
        model("skippy", "scripts/plain/run.sh", skip_gpu_arch="gfx942", n_gpus="-1"),
    ]
    write(mad / "models.json", json.dumps(models, indent=1))
    mirror = root / "mirror"
    mirror.mkdir()
    data = {"custom_ds": {"custom": {"path": "scripts/data/fetch.sh", "args": "--size 3", "mirrorlocal": str(mirror)}},
            "nas_ds": {"nas": {"path": "/srv/nas/nas_ds", "mirrorlocal": str(mirror)}},
            "bad_ds": {"custom": {"path": "scripts/data/broken_fetch.sh"}}}
    write(mad / "data.json", json.dumps(data))
    credentials = {"GITHTTP": {"username": GIT_USER, "password": GIT_SECRET},
                   "GITBAD": {"username": GIT_USER, "password": "Wrong-" + GIT_SECRET},
                   "GITSSH": {"username": "root", "ssh_key": servers["ssh_key"]},
                   "NAS_NODES": [{"NAME": "nas1", "HOST": "127.0.0.1", "PORT": servers["ssh_port"],
                                  "USERNAME": "nas", "PASSWORD": NAS_SECRET}]}
    creds = root / "credential.json"
    creds.write_text(json.dumps(credentials))
    base = ensure_image(REGISTRY)
    manifest = root / "build_manifest.json"
    result = run_module(madengine_build, {
        "mad_root": str(mad), "tags": ["steps"], "registry": REGISTRY, "credential_file": str(creds),
        "manifest_path": str(manifest), "image_prefix": PREFIX, "labels": {TEST_LABEL: SESSION},
        "docker_host": DOCKER_HOST, "additional_context": {"docker_build_arg": {"BASE_DOCKER": base}},
        "summary_output": str(root / "build_summary.json")})
    assert not result.failed, result.get("msg")
    assert result["failures"] == []
    return {"root": root, "mad": mad, "manifest": str(manifest), "creds": str(creds), "mirror": mirror,
            "result": result, "credentials": credentials}


def run(built, tmp_path, check_mode=False, **options):
    args = {"manifest_path": built["manifest"], "results_dir": str(tmp_path / "results"), "docker_host": DOCKER_HOST,
            "sysfs_root": FakeGpuSysfs(tmp_path / "sys-cpu").root, "run_id": PREFIX + uuid.uuid4().hex[:6],
            "node_name": "node-1", "mad_root": str(built["mad"]), "credential_file": built["creds"]}
    args.update(options)
    return run_module(madengine_run, dict((k, v) for k, v in args.items() if v is not None), check_mode=check_mode)


def rows_of(result):
    assert not result.failed, result.get("msg")
    return dict((row["model"], row) for row in result["results"])


def session_containers(api):
    return [c for c in api.containers(all=True, filters={"label": RUN_LABEL})
            if (c.get("Labels") or {}).get(RUN_LABEL, "").startswith(PREFIX)]


# ---- tools, pre- and post-scripts ----------------------------------------------------------------------------

TOOL_CONTEXT = {"tools": [{"name": "tool_a"}, {"name": "tool_b", "env_vars": {"TOOL_B": "b-from-context"}}],
                "pre_scripts": [{"path": "scripts/common/pre_scripts/note.sh", "args": "pre-context"}],
                "post_scripts": [{"path": "scripts/common/post_scripts/note.sh", "args": "post-context"}]}


def test_tools_and_scripts_run_in_madengine_order_with_their_environment(built, tmp_path, api):
    """The build sends scripts/common to the node (no mad_root there); tool_b's pre-script runs first, the context's
    last; the wrappers nest B around A around the model; post-scripts in the reverse order; outputs collected."""
    build = run_module(madengine_build, {
        "mad_root": str(built["mad"]), "tags": ["tooled"], "registry": REGISTRY,
        "manifest_path": str(tmp_path / "m.json"), "image_prefix": PREFIX, "labels": {TEST_LABEL: SESSION},
        "docker_host": DOCKER_HOST,
        "additional_context": dict(TOOL_CONTEXT, docker_build_arg={"BASE_DOCKER": ensure_image(REGISTRY)})})
    assert not build.failed, build.get("msg")
    sent = build["catalogue_files"]
    assert sorted(sent) == ["scripts/common/post_scripts/note.sh", "scripts/common/pre_scripts/note.sh",
                            "scripts/common/tools/wrap.sh"]
    result = run(built, tmp_path, manifest_path=None, manifest=build["manifest"], mad_root=None,
                 catalogue_files=sent, tools_config=str(built["root"] / "tools.json"), credential_file=None)
    row = rows_of(result)["tooled"]
    assert row["status"] == "SUCCESS" and row["performance"] == "42", row["error"]
    outputs = row["output_files"].split(",")
    directory = os.path.dirname(row["log_path"])
    assert all(p.startswith(row["log_path"][:-len(".run.live.log")] + ".outputs/") for p in outputs)
    by_name = dict((os.path.relpath(p, os.path.dirname(outputs[0])), p) for p in outputs)
    order = open(by_name["order.txt"]).read().split()
    assert order == ["pre-B", "pre-A", "pre-context", "wrap-B", "wrap-A", "model", "post-context", "post-A",
                     "post-B"]
    assert set(by_name) == {"order.txt", "tooled_trace.csv", "tool_A_output/summary.txt", "tool_B_output/summary.txt"}
    assert open(by_name["tooled_trace.csv"]).read() == "kernel,calls\nk,3\n"
    log = open(row["log_path"]).read()
    assert "model saw TOOL_A=a-on TOOL_B=b-from-context in run_directory" in log
    assert "note pre-B in run_directory" in log
    assert directory == str(tmp_path / "results")
    (planned,) = result["runs"]
    assert planned["steps"]["model_dir"] == "/myworkspace/run_directory"
    assert planned["steps"]["command"] == ("bash ../scripts/common/tools/wrap.sh B "
                                           "bash ../scripts/common/tools/wrap.sh A bash run.sh")
    assert session_containers(api) == []


def test_default_tools_profile_the_model_with_the_collections_tools_json(built, tmp_path):
    """The catalogue has no tools.json: rocprofv3 and the power profiler come from the collection's own, around a
    stand-in rocprofv3 and amd-smi."""
    ctx = {"tools": [{"name": "rocprofv3"}, {"name": "gpu_info_power_profiler"}]}
    result = run(built, tmp_path, tags=["plain"], additional_context=ctx)
    row = rows_of(result)["plain"]
    assert row["status"] == "SUCCESS", row["error"]
    (trace,) = [p for p in row["output_files"].split(",") if p.endswith("stub_kernel_trace.csv")]
    assert trace.endswith(".outputs/rocprofv3_output/stub_kernel_trace.csv")
    assert open(trace).read() == "kernel,calls\ngemm,7\n"
    (power,) = [p for p in row["output_files"].split(",") if p.endswith("/gpu_info_power_profiler_output.csv")]
    lines = open(power).read().splitlines()
    assert lines[0] == "time,sample" and any(line.endswith(',"0,301"') for line in lines[1:]), lines


def test_a_failing_pre_script_is_a_failure_naming_it(built, tmp_path):
    ctx = {"pre_scripts": [{"path": "scripts/data/broken_fetch.sh"}]}
    row = rows_of(run(built, tmp_path, tags=["plain"], additional_context=ctx))["plain"]
    assert row["status"] == "FAILURE"
    assert row["error"] == ("pre-script scripts/data/broken_fetch.sh failed (exit code 3): the dataset server said no")
    assert row["test_duration"] == "" and row["performance"] == ""


def test_an_unknown_tool_fails_the_task_naming_tools_json(built, tmp_path):
    result = run(built, tmp_path, tags=["plain"], additional_context={"tools": [{"name": "no_such_tool"}]})
    assert result.failed and "Tool 'no_such_tool' of the context is not in scripts/common/tools.json" in result["msg"]


# ---- models with a url -------------------------------------------------------------------------------------

def test_models_with_a_url_are_cloned_and_record_the_commit(built, servers, tmp_path, api):
    ctx = {"docker_mounts": {"/certs": str(servers["cert_dir"])},
           "docker_env_vars": {"GIT_SSL_CAINFO": "/certs/cert.pem"}}
    result = run(built, tmp_path, tags=["clone_https", "clone_anon", "clone_ssh", "clone_denied"],
                 additional_context=ctx)
    rows = rows_of(result)
    for name in ("clone_https", "clone_anon", "clone_ssh"):
        row = rows[name]
        assert row["status"] == "SUCCESS", (name, row["error"])
        assert row["git_commit"] == servers["commit"], name
        assert "readme: cloned model code" in open(row["log_path"]).read(), name
    denied = rows["clone_denied"]
    assert denied["status"] == "FAILURE" and denied["git_commit"] == ""
    assert denied["error"].startswith("cloning %s/model-repo.git failed (exit code 128): " % servers["https"])
    assert "Authentication failed" in denied["error"] or "401" in denied["error"], denied["error"]
    authed = [r for r in servers["requests"] if r[2]]
    assert authed, "the https clone authenticated"
    texts = [json.dumps(result)] + [open(p).read() for p in (tmp_path / "results").iterdir() if p.is_file()]
    for secret in (GIT_SECRET, "Wrong-" + GIT_SECRET, servers["ssh_key"].splitlines()[1]):
        assert not any(secret in text for text in texts)
    image = rows["clone_https"]["docker_image"]
    history = subprocess.run(["docker", "history", "--no-trunc", image], capture_output=True, text=True,
                             check=True).stdout
    inspect = subprocess.run(["docker", "image", "inspect", image], capture_output=True, text=True, check=True).stdout
    assert GIT_SECRET not in history + inspect
    assert session_containers(api) == []


def test_a_failed_clone_keeps_secrets_out_of_the_verbose_play(built, servers, tmp_path):
    results_dir = tmp_path / "pb"
    extra_vars = {"manifest_path": built["manifest"], "run_id": PREFIX + "pb", "results_dir": str(results_dir),
                  "credential_file": built["creds"], "sysfs_root": FakeGpuSysfs(tmp_path / "sys").root,
                  "models": ["clone_denied"]}
    rc, _parsed, log = run_playbook(PLAYBOOK, args=("-vvv",), env={"ANSIBLE_STDOUT_CALLBACK": "default"},
                                    extra_vars=extra_vars)
    assert rc == 0, log
    assert "cloning %s/model-repo.git failed (exit code 128)" % servers["https"] in log
    assert "GITBAD_PASSWORD=********" in log
    for text in [log] + [p.read_text() for p in results_dir.iterdir() if p.is_file()]:
        assert "Wrong-" + GIT_SECRET not in text and GIT_SECRET not in text


# ---- data providers -----------------------------------------------------------------------------------------

def test_downloaded_data_fills_the_row_and_the_mirror_is_reused(built, tmp_path):
    first = rows_of(run(built, tmp_path / "one", tags=["data_custom", "data_nas"]))
    custom, nas = first["data_custom"], first["data_nas"]
    assert custom["status"] == "SUCCESS" and nas["status"] == "SUCCESS", (custom["error"], nas["error"])
    assert (custom["dataname"], custom["data_provider_type"]) == ("custom_ds", "custom")
    assert (nas["dataname"], nas["data_provider_type"]) == ("nas_ds", "nas")
    for row in (custom, nas):
        assert row["data_size"].endswith("K") and float(row["data_download_duration"]) > 0, row
    assert "fetched by custom --size 3" in open(custom["log_path"]).read()
    assert "payload from the NAS %s" % SESSION in open(nas["log_path"]).read()
    mirror = built["mirror"]
    assert (mirror / "nas_ds" / "payload.txt").read_text() == "payload from the NAS %s\n" % SESSION
    marker = json.loads((mirror / ".custom_ds.madengine-mirror").read_text())
    assert marker["provider"] == "custom" and not (mirror / ".custom_ds.madengine-partial").exists()
    again = rows_of(run(built, tmp_path / "two", tags=["data_custom", "data_nas"]))
    for row in again.values():
        assert row["status"] == "SUCCESS" and row["data_download_duration"] == "0.0", row
    assert "fetching into" not in open(again["data_custom"]["log_path"]).read()
    texts = [open(p).read() for d in (tmp_path / "one" / "results", tmp_path / "two" / "results")
             for p in map(str, d.iterdir()) if os.path.isfile(p)]
    assert not any(NAS_SECRET in text for text in texts)


def test_a_download_that_fails_names_the_provider_and_the_model(built, tmp_path):
    row = rows_of(run(built, tmp_path, tags=["data_fail"]))["data_fail"]
    assert row["status"] == "FAILURE"
    assert row["error"] == ("data 'bad_ds' of model 'data_fail' could not be downloaded by provider custom "
                            "(exit code 3): the dataset server said no")
    assert row["dataname"] == "bad_ds" and row["data_provider_type"] == "custom"


def test_an_unreachable_nas_names_the_provider_and_the_model(built, tmp_path):
    credentials = dict(built["credentials"])
    credentials["NAS_NODES"] = [dict(credentials["NAS_NODES"][0], PORT=1)]
    ctx = {"data": {"nas_ds": {"nas": {"path": "/srv/nas/nas_ds"}}}}   # no mirror: a download is needed
    row = rows_of(run(built, tmp_path, tags=["data_nas"], credential_file=None, credentials=credentials,
                      additional_context=ctx))["data_nas"]
    assert row["status"] == "FAILURE"
    assert row["error"] == ("Model 'data_nas': data 'nas_ds' is not available: provider nas: no NAS node answers on "
                            "its SSH port (tried nas1 (127.0.0.1:1)).")


# ---- the small switches ---------------------------------------------------------------------------------------

def test_timeout_multiplier_stretches_the_model_timeout(built, tmp_path):
    plain = rows_of(run(built, tmp_path / "a", tags=["sleepy"]))["sleepy"]
    assert plain["status"] == "TIMEOUT"
    stretched = rows_of(run(built, tmp_path / "b", tags=["sleepy"], additional_context={"timeout_multiplier": 3}))
    assert stretched["sleepy"]["status"] == "SUCCESS", stretched["sleepy"]["error"]


def test_system_environment_details_are_an_env_csv_beside_the_results(built, tmp_path):
    row = rows_of(run(built, tmp_path, tags=["plain"], additional_context={"gen_sys_env_details": True}))["plain"]
    assert row["status"] == "SUCCESS", row["error"]
    env_csv = tmp_path / "results" / "plain_env.csv"
    assert str(env_csv) in row["output_files"].split(",")
    lines = env_csv.read_text().splitlines()
    assert lines[0] == "sep=|" and "------- Section: os_information    ----------" in lines
    assert "Distribution|Linux" in lines and any(line.startswith("OS version|Debian") for line in lines)
    assert "------- Section: cpu_information    ----------" in lines
    gpu = lines.index("------- Section: gpu_information    ----------")
    assert lines[gpu + 1:gpu + 4] == ["Name|gfx942", "Marketing Name|AMD Instinct MI300X", "Vendor Name|AMD"]
    assert "ROCm version|6.4.1" in lines
    off = rows_of(run(built, tmp_path / "off", tags=["plain"], sys_env_details=False,
                      additional_context={"gen_sys_env_details": True}))["plain"]
    assert off["output_files"] == "" and not (tmp_path / "off" / "results" / "plain_env.csv").exists()


def test_keep_model_dir_copies_it_out_and_removes_the_container(built, tmp_path, api):
    row = rows_of(run(built, tmp_path, tags=["clone_anon"], keep_model_dir=True))["clone_anon"]
    assert row["status"] == "SUCCESS", row["error"]
    kept = [p for p in row["output_files"].split(",") if "/model-repo/" in p]
    assert any(p.endswith(".outputs/model-repo/README") for p in kept)
    assert any(p.endswith(".outputs/model-repo/run.sh") for p in kept)
    assert session_containers(api) == []


def test_keep_alive_leaves_the_container_running_and_says_how_to_enter_it(built, tmp_path, api):
    result = run(built, tmp_path, tags=["plain"], keep_alive=True)
    row = rows_of(result)["plain"]
    assert row["status"] == "SUCCESS", row["error"]
    (planned,) = result["runs"]
    name = planned["container"]["name"]
    assert planned["kept"] and planned["enter"] == "docker exec -it %s bash" % name
    assert any(planned["enter"] in w for w in result.get("warnings", []))
    try:
        state = api.inspect_container(name)["State"]
        assert state["Running"], state
        out = subprocess.run(["docker", "exec", name, "ls", "/myworkspace/run_directory"], capture_output=True,
                             text=True, check=True).stdout.split()
        assert "run.sh" in out
    finally:
        api.remove_container(name, force=True)


def test_summary_files_have_madengines_shape(built, tmp_path):
    build_summary = json.loads((built["root"] / "build_summary.json").read_text())
    assert set(build_summary) == {"successful_builds", "failed_builds", "total_build_time", "successful_pushes",
                                  "failed_pushes"}
    assert len(build_summary["successful_builds"]) == 11 and build_summary["failed_builds"] == []
    path = tmp_path / "summary" / "run_summary.json"
    result = run(built, tmp_path, tags=["plain", "data_fail"], summary_output=str(path))
    summary = json.loads(path.read_text())
    assert set(summary) == {"successful_runs", "failed_runs", "total_runs", "session_start_row", "session_row_count"}
    assert [(r["model"], r["status"]) for r in summary["successful_runs"]] == [("plain", "SUCCESS")]
    assert summary["successful_runs"][0]["performance"] == "9"
    assert [(r["model"], r["status"]) for r in summary["failed_runs"]] == [("data_fail", "FAILURE")]
    assert summary["total_runs"] == 2 and summary["session_row_count"] == 2 and summary["session_start_row"] == 0
    with open(result["perf_csv"], newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 2
    shutil.rmtree(tmp_path / "summary")


def test_benchmark_variables_disable_skip_gpu_arch_and_docker_gpus_all(built, tmp_path):
    """benchmark.yml over two nodes with two fake gfx942 GPUs each: the one with madengine_disable_skip_gpu_arch
    runs the model that lists gfx942 in skip_gpu_arch, on every GPU (docker_gpus: all); the other skips it."""
    import yaml

    fs = FakeGpuSysfs(tmp_path / "sys").add_amd_gpu("gfx942").add_amd_gpu("gfx942")
    fake_devices(tmp_path / "dev", [128, 136])
    gpu = {"madengine_gpu_vendor": "AMD",
           "madengine_run_options": {"sysfs_root": fs.root, "dev_root": str(tmp_path / "dev")}}
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {
        "children": {"controller": {"hosts": {"ctl": None}},
                     "gpu_nodes": {"hosts": {"skipper": gpu, "runner": dict(gpu, **{
                         "madengine_disable_skip_gpu_arch": True,
                         "madengine_additional_context": {"docker_gpus": "all"}})}}},
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}))
    extra = {"madengine_mad_root": str(built["mad"]), "madengine_tags": ["skippy"], "madengine_registry": REGISTRY,
             "madengine_image_prefix": PREFIX, "madengine_output_dir": str(tmp_path / "out"), "madengine_serial": 1,
             "madengine_credential_file": built["creds"],
             "madengine_additional_context": {"docker_build_arg": {"BASE_DOCKER": ensure_image(REGISTRY)}}}
    rc, _parsed, log = run_playbook("rocm.madengine.benchmark", inventory=str(inventory), extra_vars=extra,
                                    cwd=str(tmp_path))
    assert rc == 0, log[-5000:]
    with open(tmp_path / "out" / "perf.csv", newline="") as handle:
        rows = dict((r["host"], r) for r in csv.DictReader(handle))
    assert rows["skipper"]["status"] == "SKIPPED" and "skip_gpu_arch of model 'skippy' lists gfx942" in (
        rows["skipper"]["error"])
    assert rows["runner"]["status"] == "SUCCESS", rows["runner"]["error"]
    assert (rows["runner"]["gpu_ids"], rows["runner"]["n_gpus"], rows["runner"]["gpu_architecture"]) == (
        "0,1", "2", "gfx942")
