"""The result-row schema and its CSV writer."""

from __future__ import annotations

import csv
import os
import stat

import pytest

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.rows import (
    COLUMNS,
    MADENGINE_COLUMNS,
    make_row,
    read_csv,
    write_csv,
)
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError

MADENGINE_HEADER = (
    "model,n_gpus,nnodes,gpus_per_node,training_precision,pipeline,args,tags,docker_file,base_docker,docker_sha,"
    "docker_image,git_commit,machine_name,deployment_type,launcher,gpu_architecture,performance,metric,"
    "relative_change,status,build_duration,test_duration,dataname,data_provider_type,data_size,"
    "data_download_duration,build_number,additional_docker_run_options"
)


def test_madengine_columns_come_first_in_its_order():
    assert ",".join(MADENGINE_COLUMNS) == MADENGINE_HEADER
    assert len(MADENGINE_COLUMNS) == 29
    assert COLUMNS[:29] == MADENGINE_COLUMNS
    assert "host" in COLUMNS[29:] and "image_digest" in COLUMNS[29:]


def test_make_row_fills_every_column_with_text():
    row = make_row(model="dummy", status="SUCCESS", performance=12.5, tags=["a", "b"], exit_code=0, temperature=20)
    assert list(row)[: len(COLUMNS)] == list(COLUMNS)
    assert row["performance"] == "12.5" and row["tags"] == "a,b" and row["exit_code"] == "0"
    assert row["temperature"] == "20" and row["metric"] == ""


def test_make_row_rejects_unknown_status():
    with pytest.raises(ValueError):
        make_row(model="x", status="PASSED")


def test_append_keeps_header_and_adds_new_columns_at_the_end(tmp_path):
    path = str(tmp_path / "perf.csv")
    write_csv(path, [make_row(model="a", status="SUCCESS")])
    header = write_csv(path, [make_row(model="b_1", status="SUCCESS", temperature="20")], append=True)
    assert header[: len(COLUMNS)] == list(COLUMNS) and header[-1] == "temperature"
    read_header, rows = read_csv(path)
    assert read_header == header
    assert [r["model"] for r in rows] == ["a", "b_1"]
    assert rows[0]["temperature"] == "" and rows[1]["temperature"] == "20"
    with open(path, newline="") as handle:
        assert next(csv.reader(handle))[:29] == MADENGINE_HEADER.split(",")


def test_write_is_atomic_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "perf.csv"
    write_csv(str(path), [make_row(model="a", status="FAILURE", error="exit code 3")])
    assert os.listdir(tmp_path) == ["perf.csv"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644


def test_target_that_cannot_be_replaced_is_a_clear_error(tmp_path):
    (tmp_path / "perf.csv").mkdir()  # a directory where the CSV should go: the rename fails
    with pytest.raises(MadengineError, match=r"Cannot write .*perf\.csv"):
        write_csv(str(tmp_path / "perf.csv"), [make_row(model="a", status="SUCCESS")])
    assert sorted(os.listdir(tmp_path)) == ["perf.csv"]  # no temporary file left behind


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(MadengineError, match=r"Cannot write .*nowhere"):
        write_csv(str(tmp_path / "nowhere" / "perf.csv"), [make_row(model="a", status="SUCCESS")])
