"""benchmark.yml end to end over SSH nodes of ci/simulated-fleet.sh, from the installed collection.

Each node is reached over SSH and has a Debian root of its own: Debian's python3 without the Docker SDK, its
own dockerd, and the controller's registry only at the fleet's bridge address.  The runs follow one another:

1. docker_setup prepares the nodes (pip and the SDK for the node's Python, trust of the node-side registry
   address), the controller builds once per architecture and pushes, each node pulls from its own address of
   the registry by the manifest's digests and runs; one merged CSV.  Run at -vvv with a credential a model
   uses: the secret is in no output, in no file of the controller's results and nowhere on the nodes' file
   systems (module arguments travel in AnsiballZ files under ~/.ansible/tmp, removed after each task);
   Each model's run log comes home to <output_dir>/<node>/ (log_path), the node's path in node_log_path;
2. the rerun mode runs only the failed pairs over SSH and completes the table;
3. a node's sshd is stopped while its model runs (madengine_run's unreachable_timeout of a few seconds): the
   node's rows are FAILURE rows saying unreachable since when, the other node's rows are kept, the summary and
   set_stats name the node; once sshd is back the rerun completes the table;
4. a node whose Python cannot get the Docker SDK: docker_setup fails it with one error naming node and package;
5. a --limit to one SSH node: the controller still builds, only that node runs.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import time
import uuid

import pytest
from conftest import REGISTRY, SAMPLE_MAD, ansible_env, run_playbook, task_results
from fleet_helpers import fleet, ssh, up

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SESSION = uuid.uuid4().hex[:8]
PREFIX = "sshe2e%s-" % SESSION
NODES = {"amd-gfx942-1": ("gfx942", "AMD Instinct MI300X"), "amd-gfx90a-1": ("gfx90a", "AMD Instinct MI250X")}
MODELS = ["dummy", "dummy_fail"]
SECRET = "Ssh-%s-secret" % uuid.uuid4().hex
RUN = "Run each model"


@pytest.fixture(scope="module")
def ssh_fleet(tmp_path_factory, main_api):
    fleet("image", timeout=1800)
    root = tmp_path_factory.mktemp("sshbench")
    directory = root / "fleet"
    _document, nodes, state = up(directory, "amd-gfx942", "amd-gfx90a", ssh=True)
    try:
        mad = root / "mad"
        shutil.copytree(SAMPLE_MAD, mad)
        models = json.loads((mad / "models.json").read_text())
        for model in models:
            if model["name"] == "dummy":
                model["cred"] = "SSHE2E"
        (mad / "models.json").write_text(json.dumps(models, indent=1))
        creds = root / "credential.json"
        creds.write_text(json.dumps({"SSHE2E": {"username": "e2e-user", "password": SECRET}}))
        yield {"root": root, "dir": directory, "nodes": nodes, "state": state, "mad": mad, "creds": creds,
               "inventory": str(directory / "inventory.yml"), "out": root / "results"}
    finally:
        fleet("down", str(directory))


def benchmark(ssh_fleet, args=(), env=None, **extra):
    extra_vars = {"madengine_mad_root": str(ssh_fleet["mad"]), "madengine_tags": ",".join(MODELS),
                  "madengine_image_prefix": PREFIX, "madengine_output_dir": str(ssh_fleet["out"]),
                  "madengine_timeout": 120, "madengine_additional_context": {"guest_os": "UBUNTU"},
                  "madengine_credential_file": str(ssh_fleet["creds"])}
    extra_vars.update(extra)
    rc, parsed, log = run_playbook("rocm.madengine.benchmark", inventory=ssh_fleet["inventory"],
                                   extra_vars=extra_vars, env=env, timeout=1200, args=args,
                                   cwd=str(ssh_fleet["root"]))
    assert parsed is not None, log
    return {"rc": rc, "out": parsed, "log": log}


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def first(ssh_fleet):
    return benchmark(ssh_fleet, args=("-vvv",), env={"ANSIBLE_VERBOSE_TO_STDERR": "1"}, madengine_docker_setup=True)


def test_docker_setup_prepares_the_nodes_and_each_node_runs_what_was_built(first, ssh_fleet):
    assert first["rc"] == 0, first["log"][-6000:]
    for host in ssh_fleet["nodes"].values():
        # the SDK for Debian's python3, installed by docker_setup; the node-side registry trusted
        out = ssh(host, "python3 -c 'import docker; print(docker.__version__)'; "
                        "python3 -c 'import json; print(json.load(open(\"/etc/docker/daemon.json\"))"
                        "[\"insecure-registries\"])'").stdout.splitlines()
        assert tuple(int(p) for p in out[0].split(".")[:2]) >= (7, 1), out
        assert out[1] == str([host["madengine_registry"]])
    manifest = json.loads((ssh_fleet["out"] / "build_manifest.json").read_text())
    images = dict((e["docker_image"], e) for e in manifest["built_images"].values())
    # built once on the controller and pushed to its address of the registry
    assert sorted({e["model"] for e in images.values()}) == sorted(MODELS)
    assert all(e["registry_digest"].startswith(REGISTRY + "/") for e in images.values())
    rows = read_csv(ssh_fleet["out"] / "perf.csv")
    assert sorted((r["host"], r["model"], r["status"]) for r in rows) == sorted(
        [(n, "dummy", "SUCCESS") for n in NODES] + [(n, "dummy_fail", "FAILURE") for n in NODES])
    for row in rows:
        arch, product = NODES[row["host"]]
        assert (row["gpu_architecture"], row["gpu_product"]) == (arch, product)
        # the row names the manifest's digest: what ran is what was built
        assert row["image_digest"] == images[row["docker_image"]]["registry_digest"]
    for node, host in ssh_fleet["nodes"].items():
        # the node pulled those digests from its own address of the registry
        pulled = ssh(host, "docker images --digests --format '{{.Repository}}@{{.Digest}}'").stdout.split()
        wanted = {host["madengine_registry"] + "/" + images[r["docker_image"]]["registry_digest"].split("/", 1)[1]
                  for r in rows if r["host"] == node}
        assert wanted and wanted <= set(pulled), (wanted, pulled)
    # each run log came home to <output_dir>/<node>/; the node's path is kept in node_log_path
    page = (ssh_fleet["out"] / "perf.html").read_text()
    for row in rows:
        home = ssh_fleet["out"] / row["host"] / row["node_log_path"].rsplit("/", 1)[-1]
        assert row["log_path"] == str(home) and row["node_log_path"].startswith("/"), row
        node_copy = ssh(ssh_fleet["nodes"][row["host"]], "cat '%s'" % row["node_log_path"]).stdout
        assert home.read_text() == node_copy and "of model %s on %s" % (row["model"], row["host"]) in node_copy
        assert '<a href="%s/%s">' % (row["host"], home.name) in page
    items = task_results(first["out"], RUN)
    for node in NODES:
        runs = items[node]["runs"]  # one call per node
        assert [r["container"]["environment"]["SSHE2E_PASSWORD"] for r in runs if r["model"] == "dummy"] == [
            "********"]


def test_the_secret_is_nowhere_on_the_nodes_or_in_the_output(first, ssh_fleet):
    assert first["rc"] == 0, first["log"][-6000:]
    assert "EXEC" in first["log"] and "ssh" in first["log"]  # -vvv output, with the SSH commands
    assert SECRET not in first["log"]
    for path in ssh_fleet["out"].rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    scan = ("for d in /*; do case $d in /proc|/sys|/dev) ;; *) grep -rlsF -D skip -- '%s' $d;; esac; done; "
            "ls -A /root/.ansible/tmp 2>/dev/null | wc -l" % SECRET)
    for name, host in ssh_fleet["nodes"].items():
        if name == "amd-gfx90a-1":  # the scan finds the secret where it is, in the engine's data root too
            probe = "/var/lib/docker/probe-%s" % SESSION
            found = ssh(host, "printf %%s '%s' > %s; %s; rm -f %s" % (SECRET, probe, scan, probe), check=False)
            assert found.stdout.split() == [probe, "0"], found.stdout
        # the whole file system of the node; no AnsiballZ file (module arguments) left behind
        found = ssh(host, scan, check=False)
        assert found.stdout.split() == ["0"], found.stdout


def test_the_rerun_mode_completes_the_table_over_ssh(first, ssh_fleet):
    assert first["rc"] == 0, first["log"][-6000:]
    models = json.loads((ssh_fleet["mad"] / "models.json").read_text())
    for model in models:  # the failing model is fixed: its rerun succeeds
        if model["name"] == "dummy_fail":
            model["args"] = ""
            model["scripts"] = next(m for m in models if m["name"] == "dummy")["scripts"]
    (ssh_fleet["mad"] / "models.json").write_text(json.dumps(models, indent=1))
    run = benchmark(ssh_fleet, madengine_rerun_failed=True)
    assert run["rc"] == 0, run["log"][-6000:]
    items = task_results(run["out"], RUN)
    assert {node: [r["model"] for r in items[node]["runs"]] for node in NODES} == {
        node: ["dummy_fail"] for node in NODES}
    rows = read_csv(ssh_fleet["out"] / "perf.csv")
    assert sorted((r["host"], r["model"], r["status"]) for r in rows) == sorted(
        (n, m, "SUCCESS") for n in NODES for m in MODELS)


# ---- 3. a node lost while its model runs --------------------------------------------------------------

def node_container(ssh_fleet, node):
    return "madfleet-%s-%s" % (ssh_fleet["state"]["fid"], node)


def test_a_node_lost_mid_run_keeps_its_rows_and_the_rerun_completes_the_table(first, ssh_fleet, tmp_path):
    assert first["rc"] == 0, first["log"][-6000:]
    models = json.loads((ssh_fleet["mad"] / "models.json").read_text())
    for model in models:
        if model["name"] == "dummy_slow":
            model["args"] = "--sleep 20"
    (ssh_fleet["mad"] / "models.json").write_text(json.dumps(models, indent=1))
    lost, container = "amd-gfx90a-1", node_container(ssh_fleet, "amd-gfx90a-1")
    extra = {"madengine_mad_root": str(ssh_fleet["mad"]), "madengine_tags": "dummy,dummy_slow",
             "madengine_image_prefix": PREFIX, "madengine_output_dir": str(ssh_fleet["out"]),
             "madengine_timeout": 120, "madengine_additional_context": {"guest_os": "UBUNTU"},
             "madengine_credential_file": str(ssh_fleet["creds"]),
             "madengine_run_options": {"unreachable_timeout": 5}}
    log = tmp_path / "lost.log"
    with open(log, "w") as handle:
        proc = subprocess.Popen([shutil.which("ansible-playbook") or "ansible-playbook", "-i", ssh_fleet["inventory"],
                                 "rocm.madengine.benchmark", "-e", json.dumps(extra)], stdout=handle,
                                stderr=subprocess.STDOUT, cwd=str(ssh_fleet["root"]),
                                env=ansible_env(ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
                                                ANSIBLE_SHOW_CUSTOM_STATS="1"))
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:  # dummy_slow's container is running on the node
            names = subprocess.run(["docker", "exec", container, "docker", "ps", "--format", "{{.Names}}"],
                                   capture_output=True, text=True, check=False).stdout
            if "dummy_slow" in names:
                break
            assert proc.poll() is None, log.read_text()
            time.sleep(1)
        else:
            raise AssertionError("dummy_slow never started on %s:\n%s" % (lost, log.read_text()))
        before = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
        # every sshd of the node: the listener and the sessions Ansible is using
        subprocess.run(["docker", "exec", container, "sh", "-c", "kill $(pidof sshd)"], check=True)
        rc = proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run(["docker", "exec", container, "/usr/sbin/sshd", "-E", "/var/log/sshd.log"], check=True)
    output = log.read_text()
    assert rc != 0, output  # the lost node is failed at the end, after the merge
    assert re.search(r"%s: unreachable while its models run; trying again for 5 s" % lost, output), output
    assert re.search(r"%s was unreachable for \d+ s while its models ran" % lost, output), output
    rows = {(r["host"], r["model"]): r for r in read_csv(ssh_fleet["out"] / "perf.csv")}
    assert sorted(rows) == sorted((n, m) for n in NODES for m in ("dummy", "dummy_slow"))
    assert [rows[("amd-gfx942-1", m)]["status"] for m in ("dummy", "dummy_slow")] == ["SUCCESS", "SUCCESS"]
    # one run per node: its rows come back when the run ends, so a node lost meanwhile has FAILURE rows only
    for model in ("dummy", "dummy_slow"):
        row = rows[(lost, model)]
        assert row["status"] == "FAILURE", row
        since = re.match(r"node amd-gfx90a-1 unreachable since (\S+): no row for this model$", row["error"])
        assert since and before <= since.group(1) <= time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), row
    stats = output[output.index("CUSTOM STATS"):]
    assert re.search(r'"unreachable_nodes": \[\s*"%s"\s*\]' % lost, stats), stats
    # the node is back: the rerun runs only its models and completes the table
    rerun = benchmark(ssh_fleet, madengine_tags="dummy,dummy_slow", madengine_rerun_failed=True)
    assert rerun["rc"] == 0, rerun["log"][-6000:]
    items = task_results(rerun["out"], RUN)
    assert sorted(r["model"] for r in items[lost]["runs"]) == ["dummy", "dummy_slow"], items[lost]
    assert items["amd-gfx942-1"].get("skipped"), items["amd-gfx942-1"]
    table = read_csv(ssh_fleet["out"] / "perf.csv")
    assert sorted((r["host"], r["model"], r["status"]) for r in table) == sorted(
        (n, m, "SUCCESS") for n in NODES for m in ("dummy", "dummy_slow"))


# ---- 4. a node that cannot get the Docker SDK ------------------------------------------------------------

def test_a_node_that_cannot_install_the_sdk_fails_naming_node_and_package(ssh_fleet, tmp_path):
    playbook = tmp_path / "setup.yml"
    playbook.write_text("- hosts: amd-gfx942-1\n  gather_facts: false\n  roles: [rocm.madengine.docker_setup]\n")
    rc, parsed, log = run_playbook(str(playbook), inventory=ssh_fleet["inventory"],
                                   extra_vars={"docker_setup_sdk_min_version": "999.0",
                                               "docker_setup_sdk_requirement": "docker>=999.0"}, timeout=600)
    assert rc == 2 and parsed is not None, log
    failed = task_results(parsed, "Name the node and the package that could not be installed")["amd-gfx942-1"]
    assert failed["failed"] and failed["msg"].startswith(
        "amd-gfx942-1: cannot install the Python package docker>=999.0 (the Docker SDK, at least 999.0) for "
        "/usr/bin/python3, which has "), failed["msg"]
    reason = failed["msg"].split("Install the Docker SDK with pip for the node's Python: ", 1)[1]
    assert "docker>=999.0" in reason, failed["msg"]  # pip's own words: no such version


# ---- 5. a --limit to one SSH node ------------------------------------------------------------------------

def test_a_limit_to_one_ssh_node_builds_on_the_controller_and_runs_only_it(first, ssh_fleet):
    assert first["rc"] == 0, first["log"][-6000:]
    out = ssh_fleet["root"] / "limited"
    run = benchmark(ssh_fleet, args=("--limit", "amd-gfx942-1"), madengine_tags="dummy", madengine_output_dir=str(out))
    assert run["rc"] == 0, run["log"][-6000:]
    assert "localhost" not in run["out"]["stats"] and "amd-gfx90a-1" not in run["out"]["stats"]
    rows = read_csv(out / "perf.csv")
    assert [(r["host"], r["model"], r["status"]) for r in rows] == [("amd-gfx942-1", "dummy", "SUCCESS")]
    assert rows[0]["log_path"] == str(out / "amd-gfx942-1" / rows[0]["node_log_path"].rsplit("/", 1)[-1])
    shown = task_results(run["out"], "Show where the results are")["amd-gfx942-1"]["msg"]
    assert "nodes in the run: amd-gfx942-1" in shown
