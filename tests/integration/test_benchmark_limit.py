"""benchmark.yml with --limit (an AWX job's limit) on a local simulated fleet of two CPU nodes and an AMD node.

The limit keeps the build host and the CPU nodes: images are built for the architectures of the nodes in the
limit only, the AMD node pulls and runs nothing, and the merged table and the summary cover the CPU nodes without
naming the AMD node missing.
"""

from __future__ import annotations

import csv
import shutil
import uuid

import docker
import pytest
from conftest import SAMPLE_MAD, run_playbook, task_results
from fleet_helpers import fleet, up

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SESSION = uuid.uuid4().hex[:8]
PREFIX = "lim%s-" % SESSION
IN_LIMIT = ["cpu-1", "cpu-2"]
LEFT_OUT = "amd-gfx942-1"
BUILD = "Build and push the images, write the manifest"


def images_of(engine):
    client = docker.APIClient(base_url=engine, timeout=60)
    try:
        return [tag for image in client.images() for tag in image.get("RepoTags") or []]
    finally:
        client.close()


def test_a_limited_run_builds_runs_and_reports_the_limited_nodes_only(tmp_path, main_api):
    directory = tmp_path / "fleet"
    _document, nodes, _state = up(directory, "cpu:2", "amd-gfx942")
    try:
        assert sorted(nodes) == sorted(IN_LIMIT + [LEFT_OUT])
        assert nodes[LEFT_OUT]["madengine_gpu_arch"] == "gfx942"
        mad = tmp_path / "mad"
        shutil.copytree(SAMPLE_MAD, mad)
        out = tmp_path / "results"
        rc, parsed, log = run_playbook(
            "rocm.madengine.benchmark", inventory=str(directory / "inventory.yml"), cwd=str(tmp_path),
            extra_vars={"madengine_mad_root": str(mad), "madengine_tags": "dummy", "madengine_image_prefix": PREFIX,
                        "madengine_output_dir": str(out), "madengine_timeout": 120,
                        "madengine_additional_context": {"gpu_vendor": "NONE", "guest_os": "UBUNTU"}},
            env={"ANSIBLE_SHOW_CUSTOM_STATS": "1"}, args=("--limit", "controller:cpu"))
        assert rc == 0, log
        # built for the nodes in the limit: one image, none for the gfx942 of the node left out
        build = task_results(parsed, BUILD)["localhost"]
        assert [image["image"] for image in build["images"]] == [PREFIX + "dummy_cpu.ubuntu"]
        assert sorted(parsed["stats"]) == sorted(IN_LIMIT + ["localhost"])
        with open(out / "perf.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert sorted((r["host"], r["model"], r["status"]) for r in rows) == [
            (node, "dummy", "SUCCESS") for node in IN_LIMIT]
        summary = parsed["global_custom_stats"]["madengine_summary"]
        assert summary["nodes"] == len(IN_LIMIT) and summary["missing_nodes"] == [] and summary["failed_total"] == 0
        assert LEFT_OUT not in (out / "perf.html").read_text()
        # the node left out pulled nothing
        assert not [tag for tag in images_of(nodes[LEFT_OUT]["madengine_docker_host"]) if PREFIX in tag]
    finally:
        fleet("down", str(directory))
