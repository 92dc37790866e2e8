"""When and how a module's task runs in the task's process on the controller (plugin_utils/on_controller.py).

The action is a stand-in with the attributes the helpers read (connection, play context, task, templar, loader);
through ansible-playbook, with the real plugins and the module for comparison: tests/integration/test_on_controller.py.
"""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace

import pytest
from conftest import imported_on_controller

SPEC = dict(
    name=dict(type="str", required=True),
    count=dict(type="int", default=2),
    where=dict(type="path"),
    password=dict(type="str", no_log=True),
    old=dict(type="str", removed_in_version="9.0.0", removed_from_collection="rocm.madengine"),
)


@pytest.fixture(scope="module")
def helpers():
    """The helpers (imported as controller code: conftest.imported_on_controller)."""
    with imported_on_controller("plugin_utils.on_controller") as on_controller:
        yield on_controller


def action(args=None, transport="local", become=False, async_val=0, environment=None, interpreter=sys.executable,
           delegate_to=None, delegated_interpreter=None, basedir="/", check_mode=False):
    task = SimpleNamespace(args=dict(args or {}), async_val=async_val, environment=environment or [{}],
                           delegate_to=delegate_to, check_mode=check_mode, action="rocm.madengine.example")
    task_vars = {"ansible_python_interpreter": interpreter}
    if delegate_to:
        task_vars["ansible_delegated_vars"] = {delegate_to: {"ansible_python_interpreter": delegated_interpreter}}
    stand_in = SimpleNamespace(_connection=SimpleNamespace(transport=transport),
                               _play_context=SimpleNamespace(become=become), _task=task,
                               _templar=SimpleNamespace(template=lambda value: value.replace("{{ here }}", "")),
                               _loader=SimpleNamespace(get_basedir=lambda: basedir))
    return stand_in, task_vars


def test_a_local_task_with_the_controller_s_own_python_runs_here(helpers):
    assert helpers.runs_here(*action())
    link = os.path.realpath(sys.executable)  # the same file under another name is the same Python
    assert helpers.runs_here(*action(interpreter=link))
    assert helpers.runs_here(*action(interpreter="{{ here }}" + sys.executable))  # templated first


@pytest.mark.parametrize("what", [
    dict(transport="ssh"), dict(transport="community.docker.docker"), dict(become=True), dict(async_val=60),
    dict(environment=[{"HTTP_PROXY": "http://proxy:3128"}]), dict(environment=["{{ proxy_env }}"]),
    dict(interpreter=None), dict(interpreter="/usr/bin/python3-does-not-exist"), dict(interpreter="/bin/sh"),
])
def test_anything_the_module_process_would_see_differently_runs_the_module(helpers, what):
    assert not helpers.runs_here(*action(**what))


def test_a_delegated_task_takes_the_delegated_host_s_interpreter(helpers):
    assert helpers.runs_here(*action(interpreter="/bin/sh", delegate_to="localhost",
                                     delegated_interpreter=sys.executable))
    assert not helpers.runs_here(*action(delegate_to="builder", delegated_interpreter="/bin/sh"))
    assert not helpers.runs_here(*action(delegate_to="builder", delegated_interpreter=None))


def test_the_task_gets_checked_params_and_its_result_is_masked_as_a_module_s(helpers, tmp_path, monkeypatch):
    seen = {}

    def task(module):
        seen.update(params=dict(module.params), cwd=os.getcwd(), check=module.check_mode)
        module.warn("the password is %s" % module.params["password"])
        module.exit_json(changed=True, echoed=module.params["password"], where=module.params["where"], count=(1, 2))

    here = os.getcwd()
    stand_in, _vars = action({"name": "x", "count": "5", "password": "hunter2-secret", "where": "~/out"},
                             basedir=str(tmp_path), check_mode=True)
    shown = []
    monkeypatch.setattr(helpers.display, "warning", shown.append)
    result = helpers.run_here(stand_in, SPEC, task)
    assert seen["params"]["count"] == 5 and seen["check"] is True
    assert seen["params"]["where"] == os.path.expanduser("~/out")  # type path, as AnsibleModule makes it
    assert seen["cwd"] == str(tmp_path) and os.getcwd() == here  # the playbook's directory, then back
    assert result == {"changed": True, "echoed": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER",
                      "where": os.path.expanduser("~/out"), "count": [1, 2]}
    assert shown == ["the password is ********"]


def test_bad_arguments_fail_with_the_validator_s_message_and_a_deprecated_option_runs_the_module(helpers):
    def task(_module):
        raise AssertionError("not reached")

    assert helpers.run_here(action({"count": 1})[0], SPEC, task) == {
        "failed": True, "msg": "missing required arguments: name"}
    failed = helpers.run_here(action({"name": "x", "bogus": 1})[0], SPEC, task)
    assert failed["failed"] and "bogus" in failed["msg"]
    assert helpers.run_here(action({"name": "x", "old": "y"})[0], SPEC, task) is None


def test_fail_json_and_a_task_that_never_ends_are_failed_results(helpers):
    def failing(module):
        module.fail_json(msg="Model 'dummy': no Dockerfile", exception="Traceback ...", model="dummy")

    assert helpers.run_here(action({"name": "x"})[0], SPEC, failing) == {
        "failed": True, "msg": "Model 'dummy': no Dockerfile", "model": "dummy", "changed": False}
    assert helpers.run_here(action({"name": "x"})[0], SPEC, lambda module: None) == {
        "failed": True, "msg": "rocm.madengine.example ended without a result.", "changed": False}


def test_programs_run_and_are_found_as_ansible_module_runs_and_finds_them(helpers, tmp_path):
    module = helpers.ControllerModule({}, {}, False, ())
    assert module.run_command(["sh", "-c", "echo out; echo err >&2; exit 3"]) == (3, "out\n", "err\n")
    assert module.run_command("printf '%s' 'a b'") == (0, "a b", "")  # a string is split, not given to a shell
    assert module.run_command("echo $((1 + 2))", use_unsafe_shell=True) == (0, "3\n", "")
    assert module.run_command(["cat"], data="in") == (0, "in\n", "")
    assert module.run_command(["sh", "-c", "echo $MADE_HERE"], environ_update={"MADE_HERE": "yes"})[1] == "yes\n"
    with pytest.raises(OSError):
        module.run_command([str(tmp_path / "nothing")], handle_exceptions=False)
    with pytest.raises(Exception) as ended:
        module.run_command(["false"], check_rc=True)
    assert ended.value.result["failed"] and ended.value.result["rc"] == 1
    assert module.get_bin_path("sh").endswith("/sh")
    assert module.get_bin_path("no-such-program-here") is None
    with pytest.raises(Exception) as ended:
        module.get_bin_path("no-such-program-here", required=True)
    assert ended.value.result["msg"] == "Failed to find required executable no-such-program-here"
