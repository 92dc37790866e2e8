"""Manifest file handling (_manifest module_utils)."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.manifest import (
    check_directory,
    check_writable,
    load_manifest,
    read_previous,
    write_if_changed,
)
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError


def test_unwritable_manifest_paths(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    cases = [
        (str(blocker / "m.json"),
         "manifest_path %s cannot be written: %s is not a directory." % (blocker / "m.json", blocker)),
        (str(tmp_path / "no" / "dir" / "m.json"), "manifest_path %s cannot be written: directory %s does not exist."
         % (tmp_path / "no" / "dir" / "m.json", tmp_path / "no" / "dir")),
        (str(tmp_path), "manifest_path %s cannot be written: it is a directory." % tmp_path),
    ]
    for path, message in cases:
        with pytest.raises(MadengineError) as err:
            check_writable(path, "manifest_path")
        assert str(err.value) == message
    check_writable(str(tmp_path / "ok.json"), "manifest_path")
    assert not (tmp_path / "ok.json").exists()


def test_log_directory_is_created_or_refused(tmp_path):
    check_directory(str(tmp_path / "logs" / "deep"), "log_dir")
    assert (tmp_path / "logs" / "deep").is_dir()
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(MadengineError) as err:
        check_directory(str(blocker), "log_dir")
    assert str(err.value) == "log_dir %s is not a directory." % blocker
    with pytest.raises(MadengineError, match="log_dir %s cannot be created: Not a directory" % (blocker / "sub")):
        check_directory(str(blocker / "sub"), "log_dir")
    check_directory(str(tmp_path / "not-made"), "log_dir", create=False)
    assert not (tmp_path / "not-made").exists()


def test_write_if_changed_leaves_identical_files_alone(tmp_path):
    path = tmp_path / "m.json"
    assert write_if_changed(str(path), {"a": 1}) is True
    stamp = os.stat(path).st_mtime_ns, os.stat(path).st_ino
    assert write_if_changed(str(path), {"a": 1}) is False
    assert (os.stat(path).st_mtime_ns, os.stat(path).st_ino) == stamp
    assert write_if_changed(str(path), {"a": 2}) is True
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"], "no temporary file is left behind"


def test_read_previous_tolerates_garbage(tmp_path):
    path = tmp_path / "m.json"
    assert read_previous(str(path)) == {}
    path.write_text("{broken")
    assert read_previous(str(path)) == {}
    path.write_text('{"built_images": {}}')
    assert read_previous(str(path)) == {"built_images": {}}


def test_load_manifest_is_strict(tmp_path):
    path = tmp_path / "m.json"
    path.write_text('{"built_images": {}}')
    with pytest.raises(MadengineError) as err:
        load_manifest(str(path))
    assert str(err.value) == "Manifest %s has no 'built_models' object; is it a madengine build manifest?" % path
    path.write_text("{oops")
    with pytest.raises(MadengineError, match="manifest %s is not valid JSON" % path):
        load_manifest(str(path))
    path.write_text('{"built_images": {}, "built_models": {}}')
    assert load_manifest(str(path))["built_models"] == {}
