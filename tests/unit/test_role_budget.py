"""How much the roles' tasks hold, measured on the installed collection.

Roles compose and modules compute: the task YAML of every role stays small, and ``default(omit)`` (an option
handed over only when a variable happens to be set) is rare, because variables reach module options through
``module_defaults`` fed from option dicts. The limits are for all of ``roles/*/tasks`` together; a failure lists
every file with its numbers so the growth is found at once.
"""

from __future__ import annotations

import glob
import os

import pytest

MAX_TASK_LINES = 900
MAX_DEFAULT_OMIT = 10

pytestmark = pytest.mark.structure


def task_files(collection_dir):
    files = sorted(glob.glob(os.path.join(collection_dir, "roles", "*", "tasks", "*.yml")))
    assert files, "no task files under %s/roles" % collection_dir
    return files


def measure(collection_dir):
    """{roles/<role>/tasks/<file>: (lines, default(omit) count)}, as ``wc -l`` and ``grep -o`` count them."""
    found = {}
    for path in task_files(collection_dir):
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        found[os.path.relpath(path, collection_dir)] = (text.count("\n"), text.count("default(omit)"))
    return found


def table(found):
    return "\n".join("%5d %3d  %s" % (lines, omits, name) for name, (lines, omits) in sorted(found.items()))


def test_the_roles_task_yaml_stays_within_its_budget(collection_dir):
    found = measure(collection_dir)
    lines = sum(n for n, _o in found.values())
    omits = sum(o for _n, o in found.values())
    report = "lines, default(omit), file:\n%s\n%5d %3d  total" % (table(found), lines, omits)
    assert lines <= MAX_TASK_LINES, "roles/*/tasks hold %d lines (at most %d)\n%s" % (lines, MAX_TASK_LINES, report)
    assert omits <= MAX_DEFAULT_OMIT, "roles/*/tasks hold %d default(omit) (at most %d)\n%s" % (
        omits, MAX_DEFAULT_OMIT, report)


def test_the_measure_counts_what_wc_and_grep_count(tmp_path):
    tasks = tmp_path / "roles" / "r" / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "main.yml").write_text("---\n- name: A\n  x: \"{{ a | default(omit) }} {{ b | default(omit) }}\"\n")
    (tasks / "other.yml").write_text("---\n- name: B\n  y: \"{{ c | default('') }}\"")  # no final newline
    assert measure(str(tmp_path)) == {"roles/r/tasks/main.yml": (3, 2), "roles/r/tasks/other.yml": (2, 0)}
