"""The checks of the module_options action, as functions (the action through ansible-playbook: test_module_options.py
in tests/integration)."""

from __future__ import annotations

import pytest

from ansible_collections.rocm.madengine.plugins.plugin_utils.module_options import check, local_paths, spec_from_doc

FQCN = "rocm.madengine.example"
DOCUMENTED = {
    "name": {"type": "str", "description": "x"},
    "count": {"type": "int", "description": "x"},
    "mode": {"type": "str", "choices": ["fast", "slow"], "description": "x"},
    "host_root": {"type": "path", "aliases": ["sysfs_root"], "description": "x"},
    "results_dir": {"type": "path", "description": "x"},
    "tags": {"type": "list", "elements": "str", "description": "x"},
    "limits": {"type": "dict", "description": "x", "suboptions": {"cpus": {"type": "int", "description": "x"}}},
}


def test_spec_from_doc_keeps_types_choices_aliases_and_suboptions():
    spec = spec_from_doc(DOCUMENTED)
    assert spec["mode"] == {"type": "str", "choices": ["fast", "slow"]}
    assert spec["host_root"] == {"type": "path", "aliases": ["sysfs_root"]}
    assert spec["tags"] == {"type": "list", "elements": "str"}
    assert spec["limits"] == {"type": "dict", "options": {"cpus": {"type": "int"}}}
    assert spec_from_doc({"plain": {"description": "untyped means str"}}) == {"plain": {"type": "str"}}


def test_a_good_dict_has_no_problem_and_aliases_are_options():
    assert check(FQCN, DOCUMENTED, {"name": "a", "count": "3", "mode": "fast", "sysfs_root": "/x",
                                    "tags": "a,b", "limits": {"cpus": 2}}) == []
    assert check(FQCN, DOCUMENTED, {}) == []


def test_unknown_keys_are_named_with_what_the_module_takes():
    problems = check(FQCN, DOCUMENTED, {"nmae": "a", "cuont": 1, "name": "b"}, reserved=["tags"])
    assert problems == ["unknown key(s) cuont, nmae (rocm.madengine.example takes: count, host_root, limits, mode, "
                        "name, results_dir)"]


@pytest.mark.parametrize("values, expected", [
    ({"count": "many"}, "argument 'count' is of type"),
    ({"mode": "medium"}, "value of mode must be one of: fast, slow, got: medium"),
    ({"limits": {"cpus": "x"}}, "cpus"),
    ({"limits": {"gpus": 1}}, "unknown key(s) limits.gpus (rocm.madengine.example takes:"),
])
def test_wrong_values_are_named(values, expected):
    problems = check(FQCN, DOCUMENTED, values)
    assert len(problems) == 1 and expected in problems[0], problems


def test_reserved_keys_are_refused_also_under_an_alias():
    problems = check(FQCN, DOCUMENTED, {"tags": ["x"], "sysfs_root": "/x", "name": "n"}, reserved=["tags", "host_root"])
    assert problems == ["the role sets sysfs_root, tags itself"]


def test_relative_paths_are_made_absolute_against_the_given_directory():
    values = {"results_dir": "out/node1", "sysfs_root": "fake/sys", "name": "relative/but/not/a/path",
              "tags": ["a"], "count": 3}
    assert local_paths(DOCUMENTED, values, "/work/here") == {"results_dir": "/work/here/out/node1",
                                                             "sysfs_root": "/work/here/fake/sys"}
    untouched = {"results_dir": "/abs/dir", "host_root": "~/root", "sysfs_root": "$HOME/x"}
    assert local_paths(DOCUMENTED, untouched, "/work/here") == {}
    assert local_paths(DOCUMENTED, {"results_dir": "", "host_root": None}, "/w") == {}
    assert local_paths(DOCUMENTED, {"results_dir": "../up/./x"}, "/w/d") == {"results_dir": "/w/up/x"}
