"""benchmark.yml run the way AWX runs a job: ansible-runner with process isolation, the execution environment
image of ci/ee-image.sh as the job's container, over simulated SSH nodes (ci/simulated-fleet.sh --ssh).

The job's private data directory holds what AWX writes (tests/unit/awx_job.py): the project (a playbook importing
rocm.madengine.benchmark, the MAD catalogue, the nodes' host keys), an inventory script, the job template's extra
variables (trusted) with the survey's answers and AWX's own variables (!unsafe), the machine credential's key
(ansible-runner loads it into an ssh-agent in the container) and the registry credential of the collection's
credential type (examples/awx/credential-type.yml), rendered as AWX renders it, with a password holding quotes,
a backslash and `{{`. The job runs with --limit controller:cpu, so the AMD node of the fleet is left out.

Two jobs of that template run, with the artifacts of each read back:

- a Check job (job type "Check"): the build host, the EE, plans the build; every node in the limit, reached over
  SSH from the container, plans each model with the survey's values;
- a Run job (job type "Run"): the inventory's gpu_nodes group has madengine_docker_setup (docker_setup gives the
  nodes the Docker SDK and trust of the registry), the EE builds and pushes through the main engine, each node in
  the limit pulls and runs both models while the job's events show their progress, and the EE merges perf.csv
  and writes the report; the summary is the job's set_stats artifact.

The container sees what AWX's "paths to expose to isolated jobs" would give it: the main engine's socket (the
build host is localhost, the EE itself, building through that engine) and the results directory; it uses the
host's network, so it reaches the SSH nodes on their bridge and the registry on 127.0.0.1.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import uuid

import pytest
import yaml
from awx_job import Job, survey_extra_vars
from conftest import COLLECTION_DIR, SAMPLE_MAD
from ee_image import ee_image
from fleet_helpers import fleet, up
from secret_scan import files_holding

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SESSION = uuid.uuid4().hex[:6]
PREFIX = "awx%s-" % SESSION
PASSWORD = 'a"b\\c{{ lookup("pipe", "id") }}pw' + SESSION
# the password's end, which its JSON form in the credential file shares
PASSWORD_MARK = "}}pw" + SESSION
# its own per session: ansible-runner names its container after the job, and runs on one engine must not clash
JOB_ID = 4000 + int(SESSION[:4], 16)
LIMIT = "controller:cpu"
IN_LIMIT = ["cpu-1", "cpu-2"]
LEFT_OUT = "amd-gfx942-1"
# What the job template sets (trusted: AWX does not mark these !unsafe, so {{ }} in them is templated)
JOB_TEMPLATE_VARS = {
    "madengine_mad_root": "MAD",
    "madengine_run_id": "awx-{{ awx_job_id }}",
    "madengine_image_prefix": PREFIX,
}
# The survey's answers (the others take the survey's defaults)
ANSWERS = {
    "madengine_tags": "dummy,dummy_multi",
    "madengine_timeout": 300,
    "madengine_pull_throttle": "1",
    "madengine_additional_context": '{"gpu_vendor": "NONE", "guest_os": "UBUNTU"}',
    "madengine_fail_on_model_failure": "true",
}


@pytest.fixture(scope="module")
def image():
    return ee_image()


@pytest.fixture(scope="module")
def ssh_fleet(tmp_path_factory):
    fleet("image", timeout=1800)
    directory = tmp_path_factory.mktemp("awx") / "fleet"
    document, nodes, _state = up(directory, "cpu:2", "amd-gfx942", ssh=True)
    try:
        yield {"dir": directory, "inventory": document, "nodes": nodes}
    finally:
        fleet("down", str(directory))


def awx_inventory(fleet_info, node_vars=None):
    """The fleet's inventory as an AWX inventory holds it: the machine credential replaces the key file (and
    IdentitiesOnly, which would hide the agent's key from ssh), the host keys come with the project; ``node_vars``
    are variables of the gpu_nodes group."""
    document = json.loads(json.dumps(fleet_info["inventory"]))
    if node_vars:
        document["all"]["children"]["gpu_nodes"].setdefault("vars", {}).update(node_vars)
    known_hosts = str(fleet_info["dir"] / "ssh" / "known_hosts")
    for group in document["all"]["children"]["gpu_nodes"]["children"].values():
        for host_vars in group["hosts"].values():
            del host_vars["ansible_ssh_private_key_file"]
            host_vars["ansible_ssh_common_args"] = host_vars["ansible_ssh_common_args"].replace(
                known_hosts, "/runner/project/known_hosts").replace(" -o IdentitiesOnly=yes", "")
    return document


def prepare(root, fleet_info, node_vars=None):
    """A job's private data directory, as AWX writes it for a job of the benchmark job template."""
    job = Job(root / "private", str(JOB_ID))
    project = root / "private" / "project"
    shutil.copytree(SAMPLE_MAD, project / "MAD")
    (project / "benchmark.yml").write_text(
        "---\n- name: Benchmark\n  ansible.builtin.import_playbook: rocm.madengine.benchmark\n")
    shutil.copy(fleet_info["dir"] / "ssh" / "known_hosts", project / "known_hosts")
    job.write_inventory(awx_inventory(fleet_info, node_vars))
    job.write_ssh_key(str(fleet_info["dir"] / "ssh" / "id_ed25519"))
    results = root / "results"
    results.mkdir()
    trusted = dict(JOB_TEMPLATE_VARS, madengine_output_dir=str(results / "{{ awx_job_id }}"))
    with open(os.path.join(COLLECTION_DIR, "examples", "awx", "survey.json")) as handle:
        survey = json.load(handle)
    extra_vars = dict(trusted)
    extra_vars.update(survey_extra_vars(survey, ANSWERS))
    extra_vars.update(awx_job_id=JOB_ID, awx_job_launch_type="manual", awx_job_template_name="madengine benchmark",
                      awx_inventory_name="simulated fleet", tower_job_id=JOB_ID)
    job.write_extra_vars(extra_vars, trusted)
    with open(os.path.join(COLLECTION_DIR, "examples", "awx", "credential-type.yml")) as handle:
        credential_type = yaml.safe_load(handle)
    job.add_credential(credential_type, {"registry": "localhost:5000", "username": "awx-ci", "password": PASSWORD})
    return job, results


def run(job, image, results, check=False):
    return job.run("benchmark.yml", image, limit=LIMIT, check=check, timeout=1800,
                   container_options=["--network=host"],
                   mounts=["/var/run/docker.sock:/var/run/docker.sock", "%s:%s" % (results, results)])


def event_hosts(job, task):
    return sorted(set(e["event_data"]["host"] for e in job.task_events(task)))


def no_secret_anywhere(job, results):
    """The password is in the credential file AWX wrote and nowhere else: not in the job's output, events,
    artifacts, results, nor the inventory and extra variables."""
    private = job.dir
    written = [os.path.join(d, f) for root in (private, str(results)) for d, _s, fs in os.walk(root) for f in fs]
    holding = sorted(set(path for path, _secret in files_holding([PASSWORD, PASSWORD_MARK], written)))
    credential_files = [p for p in holding if os.path.dirname(p) == os.path.join(private, "env")]
    assert holding == credential_files and len(credential_files) == 1, holding


# ---- a Check job (job type "Check": ansible-playbook --check) ------------------------------------------------

def test_a_check_job_plans_the_limited_nodes_in_the_ee(image, ssh_fleet, tmp_path):
    job, results = prepare(tmp_path, ssh_fleet)
    proc = run(job, image, results, check=True)
    print("\ncheck job in the EE: %.1f s" % job.seconds)
    assert job.status == "successful" and job.rc == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    # ansible-runner loaded the machine credential into an agent in the container
    assert "Identity added: /runner/artifacts/%d/ssh_key_data" % JOB_ID in job.stdout

    # the build ran in the EE (localhost) in check mode: planned, nothing built or pushed
    (build,) = job.task_events("Build and push the images, write the manifest")
    assert build["event_data"]["host"] == "localhost" and build["event"] == "runner_on_ok"
    assert build["event_data"]["res"]["models"] == ["dummy", "dummy_multi"]
    assert all(i["action"] == "build" for i in build["event_data"]["res"]["images"])
    # the registry credential reached the build as no_log data
    assert build["event_data"]["res"]["invocation"]["module_args"]["credentials"] == (
        "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER")
    # the limit: the node play ran on the cpu nodes only, one job event per node planning both models, each planned
    # with what the survey sent as strings and an integer ("1" throttles the pull, 300 s, the JSON context) and the
    # job template's templated run id
    assert event_hosts(job, "Pull the images (at most madengine_pull_throttle nodes at a time)") == IN_LIMIT
    events = [e for e in job.task_events("Run each model") if e["event"] == "runner_on_ok"]
    assert sorted(e["event_data"]["host"] for e in events) == sorted(IN_LIMIT)
    for event in events:
        result = event["event_data"]["res"]
        assert result["run_id"] == "awx-%d" % JOB_ID
        assert sorted(p["model"] for p in result["runs"]) == ["dummy", "dummy_multi"]
        for planned in result["runs"]:
            assert planned["action"] == "run" and planned["timeout"] == 300
            assert planned["container"]["environment"]["MAD_GUEST_OS"] == "UBUNTU"
    (matrix,) = [e for e in job.task_events("Show the planned matrix (dry run; no report is written)")
                 if e["event"] == "runner_on_ok"]
    planned = {"dummy": "run %sdummy_cpu.ubuntu" % PREFIX, "dummy_multi": "run %sdummy_multi_cpu.ubuntu" % PREFIX}
    assert matrix["event_data"]["res"]["msg"] == dict((node, planned) for node in IN_LIMIT)
    assert LEFT_OUT not in job.stdout
    # nothing was written: no results, no report
    assert not os.listdir(results)
    no_secret_anywhere(job, results)


# ---- a Run job (job type "Run") -------------------------------------------------------------------------------

MODELS = ["dummy", "dummy_multi"]
# the rows of each node: dummy's one, dummy_multi's four (one a metric of its output)
ROW_MODELS = ["dummy", "dummy_multi_1", "dummy_multi_2", "dummy_multi_3", "dummy_multi_4"]


def progress(job):
    """(node, model, "started" or the end's status, event type, task) of each progress line of the job."""
    found = []
    for event in job.events():
        line = event.get("stdout", "")
        match = (re.match(r"^(\S+): \[\d+/\d+\] (\S+) (started)", line)
                 or re.match(r"^(\S+): \[\d+/\d+ done\] (\S+) (\S+) in ", line))
        if match:
            found.append(match.groups() + (event["event"], event["event_data"].get("task", "")))
    return found


def test_a_run_job_benchmarks_the_limited_nodes_in_the_ee(image, ssh_fleet, tmp_path):
    job, results = prepare(tmp_path, ssh_fleet, node_vars={"madengine_docker_setup": True})
    proc = run(job, image, results)
    print("\nrun job in the EE: %.1f s" % job.seconds)
    assert job.status == "successful" and job.rc == 0, job.stdout[-6000:] + proc.stderr[-2000:]
    out = results / str(JOB_ID)

    # the summary the job published with set_stats (AWX: the job's artifacts)
    summary = job.stats()["artifact_data"]["madengine_summary"]
    assert summary["run_id"] == "awx-%d" % JOB_ID
    assert summary["counts"] == {"SUCCESS": 10, "FAILURE": 0, "TIMEOUT": 0, "SKIPPED": 0}, summary
    assert summary["rows"] == 10 and summary["nodes"] == 2 and summary["hosts"] == IN_LIMIT
    assert summary["failed"] == [] and summary["failed_total"] == 0
    assert summary["missing_nodes"] == [] and summary["unreachable_nodes"] == []
    assert summary["csv"] == str(out / "perf.csv") and summary["html"] == str(out / "perf.html")

    # each model's progress on each node of the limit: a start and an end line, job events of the run task
    lines = progress(job)
    assert sorted((node, model, what) for node, model, what, _e, _t in lines) == sorted(
        [(n, m, "started") for n in IN_LIMIT for m in MODELS] + [(n, m, "SUCCESS") for n in IN_LIMIT for m in MODELS])
    assert all(kind == "verbose" and task.endswith("Run each model") for _n, _m, _w, kind, task in lines), lines
    for node in IN_LIMIT:
        assert "%s: 2 model(s) to run: dummy, dummy_multi" % node in job.stdout

    assert sorted(re.findall(r"(\S+): \[2/2 done\] dummy_multi SUCCESS in [\d.]+ s \(4 rows\)", job.stdout)) == IN_LIMIT

    # the merged CSV: the SUCCESS rows of each node and model of the limit, of the job's run and images
    with open(out / "perf.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted((r["host"], r["model"], r["status"]) for r in rows) == sorted(
        (n, m, "SUCCESS") for n in IN_LIMIT for m in ROW_MODELS)
    images = dict(("dummy" if r["model"] == "dummy" else "dummy_multi", r["docker_image"]) for r in rows)
    assert images == dict((m, "%s%s_cpu.ubuntu" % (PREFIX, m)) for m in MODELS), rows
    assert all(r["run_id"] == "awx-%d" % JOB_ID for r in rows), rows
    # the report names every row; the node left out by the limit is in no output
    page = (out / "perf.html").read_text()
    assert all(node in page for node in IN_LIMIT) and all(model in page for model in ROW_MODELS)
    assert LEFT_OUT not in job.stdout and LEFT_OUT not in page
    # the build ran in the EE, for both models, with the credential as no_log data
    (build,) = job.task_events("Build and push the images, write the manifest")
    assert build["event_data"]["host"] == "localhost" and build["event"] == "runner_on_ok"
    assert build["event_data"]["res"]["invocation"]["module_args"]["credentials"] == (
        "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER")
    no_secret_anywhere(job, results)
