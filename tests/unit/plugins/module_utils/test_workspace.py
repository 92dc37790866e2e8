from __future__ import annotations

import io
import tarfile

import pytest

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.workspace import (
    Clone,
    StepLog,
    Steps,
    clone_dir,
    public_url,
    safe_members,
)
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError


@pytest.mark.parametrize("url, name", [("https://h/org/repo.git", "repo"), ("https://h/org/repo/", "repo"),
                                       ("git@h:org/repo.git", "repo"), ("ssh://h:22/srv/git/model-repo.git",
                                                                        "model-repo")])
def test_clone_directory_is_the_last_segment(url, name):
    assert clone_dir(url) == name


def test_a_url_without_a_name_and_user_info_in_messages():
    with pytest.raises(MadengineError, match=r"^url https://h/ does not end in a usable directory name"):
        clone_dir("https://user:pw@h/")
    assert public_url("https://user:pw@h/r.git") == "https://h/r.git"
    assert Clone("git@h:org/r.git").is_ssh and not Clone("https://h/r.git").is_ssh


def test_step_markers_time_steps_and_name_the_failure():
    clock = iter([100.0, 100.5]).__next__
    log = StepLog(clock)
    assert log.feed("##madengine## 10.0 step clone\n")
    assert not log.feed("Cloning into '/myworkspace/r'...\n")
    assert not log.feed("fatal: Authentication failed for 'https://h/r.git/'\n")
    assert log.feed("##madengine## 12.5 fail 128 clone\n") and log.feed("##madengine## 12.5 end 128\n")
    assert log.failure == (128, ["clone"]) and log.end_rc == 128 and log.ended.is_set()
    assert log.durations["clone"] == 2.5
    assert log.last_output["clone"] == "fatal: Authentication failed for 'https://h/r.git/'"
    # a date without nanoseconds (busybox): the node's clock
    log = StepLog(clock)
    log.feed("##madengine## 1796398751.%N model-start\n")
    assert log.in_model
    log.feed("##madengine## 1796398751.%N model-end 0\n")
    assert log.model_seconds == 0.5 and log.model_rc == 0


def test_the_script_removes_secrets_when_a_step_fails_and_keeps_running_with_keep_alive():
    steps = Steps("m")
    steps.command = "bash run.sh"
    steps.scripts_dir = "/madengine/scripts"
    assert "rm -f /madengine/run/ssh_key /madengine/run/nas_password" in steps.script()
    assert "sleep 3600" not in steps.script() and 'rm -rf "$M"\nmark end' in steps.script()
    steps.keep_alive = True
    assert "while :; do sleep 3600 & wait $!; done" in steps.script() and 'rm -rf "$M"\nmark end' not in steps.script()
    names = tarfile.open(fileobj=io.BytesIO(steps.archive())).getnames()
    assert names == ["madengine", "madengine/run", "madengine/run/steps.sh"]


def test_only_plain_files_inside_the_workspace_are_taken():
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, kind in (("myworkspace/a.csv", tarfile.REGTYPE), ("myworkspace/../etc/x", tarfile.REGTYPE),
                           ("myworkspace/link", tarfile.SYMTYPE), ("myworkspace/scripts/common/t.sh", tarfile.REGTYPE),
                           ("myworkspace/run_directory/f", tarfile.REGTYPE)):
            info = tarfile.TarInfo(name)
            info.type = kind
            tar.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
    buffer.seek(0)
    with tarfile.open(fileobj=buffer) as tar:
        kept = [inner for _m, inner in safe_members(tar, ["scripts/common/t.sh", "run_directory"])]
    assert kept == ["a.csv"]
