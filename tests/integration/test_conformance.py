"""One catalogue through madengine 2.1 and through benchmark.yml, the rows compared column by column.

madengine 2.1 is the shared reference (``../shared/tools/madengine-reference`` beside the repository, or the
directory in ``MADENGINE_REFERENCE``); without it the test skips with "reference not available".  madengine runs
its full workflow (build + run) in AMD mode against its fake ROCm tree; benchmark.yml runs the same catalogue on
this machine as a CPU node.  Both build from the reference's bash base image, so the same Dockerfile and scripts
run in both.  Every one of madengine's 29 perf.csv columns must be equal for every row both wrote, except the
intended differences listed in INTENDED (each with its reason).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest
import yaml
from conftest import REGISTRY, SAMPLE_MAD, run_playbook

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.rows import MADENGINE_COLUMNS

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SESSION = uuid.uuid4().hex[:8]
PREFIX = "conf%s-" % SESSION
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REFERENCE = (os.environ.get("MADENGINE_REFERENCE")
             or os.path.join(REPO_ROOT, "..", "shared", "tools", "madengine-reference"))
TAGS = ["dummy", "dummy_multi", "dummy_fail", "dummy2/model2:batch-size=32", "data_local"]

# Columns that differ on purpose, and why.
INTENDED = {
    "n_gpus": "the GPUs the container got: madengine runs on its fake AMD GPU (1), benchmark.yml on a CPU node (0)",
    "gpus_per_node": "as n_gpus",
    "gpu_architecture": "madengine reads its fake ROCm tree (gfx942); the CPU node has none",
    "docker_sha": "madengine stores the error text of a failed 'docker manifest inspect' of the base image; "
                  "benchmark.yml the base image's registry digest",
    "docker_image": "benchmark.yml's image names carry madengine_image_prefix (here a per-test prefix) instead of ci-",
    "build_duration": "measured",
    "test_duration": "measured",
}


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def reference():
    setup = os.path.join(REFERENCE, "setup.sh")
    if not os.path.isfile(setup):
        pytest.skip("reference not available: %s" % REFERENCE)
    proc = subprocess.run(["bash", setup], capture_output=True, text=True, check=False, timeout=900)
    if proc.returncode != 0:
        pytest.fail("the reference's setup failed: %s" % proc.stderr[-2000:])
    values = dict(item.split("=", 1) for item in proc.stdout.split() if "=" in item)
    return values


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    """The sample catalogue plus a model with local data, in two copies (madengine writes into its own)."""
    root = tmp_path_factory.mktemp("conformance")
    data = root / "data"
    data.mkdir()
    (data / "input.txt").write_text("input\n")
    copies = []
    for name in ("madengine", "collection"):
        mad = root / name
        shutil.copytree(SAMPLE_MAD, mad)
        models = json.loads((mad / "models.json").read_text())
        models.append({"name": "data_local", "url": "", "dockerfile": "docker/cpu", "scripts": "scripts/sample/run.sh",
                       "n_gpus": "1", "training_precision": "fp32", "tags": ["cpu"], "args": "", "data": "ref_data"})
        (mad / "models.json").write_text(json.dumps(models, indent=1))
        (mad / "data.json").write_text(json.dumps({"ref_data": {"local": {"path": str(data)}}}))
        copies.append(mad)
    return {"root": root, "madengine": copies[0], "collection": copies[1]}


@pytest.fixture(scope="module")
def madengine_rows(reference, catalogue):
    mad = catalogue["madengine"]
    ctx = {"gpu_vendor": "AMD", "guest_os": "UBUNTU", "MAD_ROCM_PATH": reference["FAKE_ROCM"], "gpu_renderDs": None,
           "docker_gpus": "0", "gen_sys_env_details": False, "docker_env_vars": {"ROCM_PATH": "/opt/rocm"},
           "docker_build_arg": {"BASE_DOCKER": reference["BASE"]}}
    env = dict(os.environ, PATH="%s:%s" % (reference["SHIM_DIR"], os.environ["PATH"]))
    proc = subprocess.run([os.path.join(reference["MADENGINE_VENV"], "bin", "madengine"), "run", "--tags",
                           ",".join(TAGS), "--additional-context", json.dumps(ctx)], cwd=str(mad), env=env,
                          capture_output=True, text=True, check=False, timeout=900)
    try:
        assert proc.returncode == 3, proc.stdout[-3000:] + proc.stderr[-3000:]  # 3: a model (dummy_fail) failed
        yield read_csv(mad / "perf.csv")
    finally:
        manifest = mad / "build_manifest.json"
        images = list(json.loads(manifest.read_text()).get("built_images") or {}) if manifest.exists() else []
        subprocess.run(["docker", "rmi", "-f"] + images, capture_output=True, check=False)


@pytest.fixture(scope="module")
def collection_rows(reference, catalogue, main_api):
    root = catalogue["root"]
    inventory = root / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {
        "children": {"controller": {"hosts": {"localhost": None}}, "gpu_nodes": {"hosts": {"localhost": None}}},
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}))
    extra = {"madengine_mad_root": str(catalogue["collection"]), "madengine_tags": TAGS,
             "madengine_gpu_vendor": "NONE", "madengine_registry": REGISTRY, "madengine_image_prefix": PREFIX,
             "madengine_output_dir": str(root / "out"),
             "madengine_additional_context": {"gpu_vendor": "NONE", "guest_os": "UBUNTU",
                                              "docker_build_arg": {"BASE_DOCKER": reference["BASE"]}}}
    rc, _parsed, log = run_playbook("rocm.madengine.benchmark", inventory=str(inventory), extra_vars=extra,
                                    cwd=str(root))
    assert rc == 0, log[-5000:]
    return read_csv(root / "out" / "perf.csv")


def test_rows_agree_column_by_column_with_madengine(madengine_rows, collection_rows):
    theirs = dict((r["model"], r) for r in madengine_rows)
    ours = dict((r["model"], r) for r in collection_rows)
    assert sorted(theirs) == sorted(ours) == sorted(
        ["dummy", "dummy_fail", "dummy2/model2", "data_local"] + ["dummy_multi_%d" % n for n in range(1, 5)])
    differences = []
    for name in sorted(theirs):
        for column in MADENGINE_COLUMNS:
            if column in INTENDED:
                continue
            if theirs[name][column] != ours[name][column]:
                differences.append("%s.%s: madengine %r, benchmark.yml %r" % (name, column, theirs[name][column],
                                                                              ours[name][column]))
    assert differences == []
    # the intended differences are what they are said to be
    assert all(r["docker_image"].startswith(PREFIX) for r in collection_rows)
    assert [r["docker_image"][len(PREFIX):] for r in collection_rows] == [
        ours_row["docker_image"][len(PREFIX):] for ours_row in collection_rows]
    for name, row in ours.items():
        assert row["docker_image"][len(PREFIX):] == theirs[name]["docker_image"][len("ci-"):], name
        assert row["n_gpus"] == "0" and theirs[name]["n_gpus"] == "1"
        assert row["docker_sha"].startswith("sha256:"), row["docker_sha"]
    # multiple_results extras: the same values (madengine's pandas writes them as floats)
    for n in range(1, 5):
        key = "dummy_multi_%d" % n
        assert float(ours[key]["temperature"]) == float(theirs[key]["temperature"])
