"""The AWX survey and credential type the collection ships (examples/awx/, shown in docs/awx.md) hold.

Survey: every question's variable is one the madengine role's argument specs describe; its type and choices match
(an integer question for an int, choices equal to the spec's choices, "false"/"true" for a bool); its default is the
role's default, or, for a question without a usable default, nothing is sent and the role's default applies; and
what a launch sends (AWX's rules: typed answers, strings from choices) passes the role's argument validation.

Credential type: its file injector, rendered as AWX renders it (Jinja's immutable sandbox, no Ansible filters),
writes valid JSON for a password with quotes, backslashes, `{{` and characters JSON or HTML escape, and the
collection's json_file lookup reads that file back byte for byte without templating it.
"""

from __future__ import annotations

import json
import os
import re
import textwrap

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from awx_job import inject_credential, survey_errors, survey_extra_vars
from conftest import COLLECTION_DIR, run_playbook, task_results

SURVEY = os.path.join(COLLECTION_DIR, "examples", "awx", "survey.json")
CREDENTIAL_TYPE = os.path.join(COLLECTION_DIR, "examples", "awx", "credential-type.yml")
AWX_DOC = os.path.join(COLLECTION_DIR, "docs", "awx.md")
NASTY_PASSWORDS = ['pa"ss\\word', 'x{{ lookup("pipe", "id") }}y', "{% raw %}'<&>'\t\u00e9\\n", '{{', '"}}', "\\\""]


def load_survey():
    with open(SURVEY) as handle:
        return json.load(handle)


def role_specs():
    """{entry point: its options} of the madengine role."""
    with open(os.path.join(COLLECTION_DIR, "roles", "madengine", "meta", "argument_specs.yml")) as handle:
        specs = yaml.safe_load(handle)["argument_specs"]
    return dict((entry, spec.get("options", {})) for entry, spec in specs.items())


def spec_of(variable):
    """The variable's spec (the same in every entry point that has it) and those entry points."""
    found = dict((entry, options[variable]) for entry, options in role_specs().items() if variable in options)
    assert found, "survey variable %s is in no argument spec of the madengine role" % variable
    shapes = set(json.dumps(dict((k, v) for k, v in spec.items() if k != "description"), sort_keys=True)
                 for spec in found.values())
    assert len(shapes) == 1, "%s differs between entry points: %s" % (variable, shapes)
    return next(iter(found.values())), sorted(found)


def as_role_reads(spec, value):
    """A sent value as the role's argument validation turns it (str "true" to True, "3" to 3, ...)."""
    shape = dict((k, v) for k, v in spec.items() if k in ("type", "choices", "elements"))
    validator = ArgumentSpecValidator({"v": shape})
    result = validator.validate({"v": value})
    assert not result.error_messages, result.error_messages
    return result.validated_parameters["v"]


def test_the_survey_in_the_docs_is_the_shipped_file():
    with open(AWX_DOC) as handle:
        text = handle.read()
    section = text.split("## 4. Survey", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```json\n(.*?)```", section, re.S)
    assert len(blocks) == 1 and json.loads(blocks[0]) == load_survey()
    # the table above it lists the same questions, variables and types
    rows = re.findall(r"^\| (.+?) \| `(\w+)` \| (\w+)", section, re.M)
    assert [(q, v, t.lower()) for q, v, t in rows] == [
        (q["question_name"], q["variable"], q["type"]) for q in load_survey()["spec"]]


@pytest.mark.parametrize("question", load_survey()["spec"], ids=lambda q: q["variable"])
def test_every_question_matches_the_argument_specs(question):
    spec, _entries = spec_of(question["variable"])
    kind = spec.get("type", "str")
    if question["type"] == "integer":
        assert kind == "int"
    elif question["type"] == "float":
        assert kind == "float"
    elif question["type"] in ("text", "textarea"):
        # raw: the role reads a string too (a comma-separated list, a JSON object)
        assert kind in ("str", "raw", "list") and "choices" not in spec
    elif question["type"] == "multiplechoice":
        choices = question["choices"]
        if kind == "bool":
            assert sorted(choices) == ["false", "true"]
        elif "choices" in spec:
            assert choices == [str(c) for c in spec["choices"]]
        else:
            assert kind == "int", "a choice question for a %s variable without choices" % kind
        for choice in choices:
            as_role_reads(spec, choice)
    else:
        raise AssertionError("no survey question type %s is used" % question["type"])


@pytest.mark.parametrize("question", load_survey()["spec"], ids=lambda q: q["variable"])
def test_every_default_is_the_roles(question):
    spec, _entries = spec_of(question["variable"])
    default = question.get("default")
    sent = default is not None and not survey_errors(question, {question["variable"]: default})
    if sent:
        assert as_role_reads(spec, default) == spec.get("default"), question["variable"]
    else:
        # nothing is sent: the role's default applies; a required question must be answered
        assert question["required"] or "default" in spec or spec.get("type") == "int"
    if question["required"] and not sent:
        assert not spec.get("default"), "%s is required but the role has a default" % question["variable"]


@pytest.mark.parametrize("answers", [
    {"madengine_tags": "pyt_huggingface_gpt2"},
    {"madengine_tags": "dummy, dummy2/all", "madengine_timeout": 0, "madengine_pull_throttle": "4",
     "madengine_registry": "build01.example.com:5000", "madengine_additional_context": '{"guest_os": "UBUNTU"}',
     "madengine_rebuild": "always", "madengine_rerun_failed": "true", "madengine_fail_on_model_failure": "true",
     "madengine_matrix": "shard"},
], ids=["defaults", "every-answer"])
def test_what_a_launch_sends_passes_the_argument_specs(answers):
    sent = survey_extra_vars(load_survey(), answers)
    for variable, value in sent.items():
        spec, _entries = spec_of(variable)
        as_role_reads(spec, value)
    assert sent["madengine_tags"] == answers["madengine_tags"]
    if len(answers) == 1:
        # defaults: strings from the choice questions, nothing for the optional ones without a valid default
        assert sent == {"madengine_tags": "pyt_huggingface_gpt2", "madengine_pull_throttle": "0",
                        "madengine_rebuild": "never", "madengine_rerun_failed": "false",
                        "madengine_fail_on_model_failure": "false", "madengine_matrix": "all"}


def test_a_launch_the_survey_refuses():
    with pytest.raises(ValueError, match="madengine_tags: value missing"):
        survey_extra_vars(load_survey(), {})
    with pytest.raises(ValueError, match="madengine_timeout: '60' is not an integer"):
        survey_extra_vars(load_survey(), {"madengine_tags": "dummy", "madengine_timeout": "60"})
    with pytest.raises(ValueError, match="madengine_pull_throttle: '3' is not one of"):
        survey_extra_vars(load_survey(), {"madengine_tags": "dummy", "madengine_pull_throttle": "3"})


# ---- the credential type -------------------------------------------------------------------------------------

def load_credential_type():
    with open(CREDENTIAL_TYPE) as handle:
        return yaml.safe_load(handle)


def test_the_credential_type_in_the_docs_is_the_shipped_file():
    with open(AWX_DOC) as handle:
        blocks = re.findall(r"```yaml\n( *# AWX custom credential type.*?)```", handle.read(), re.S)
    assert len(blocks) == 1 and yaml.safe_load(textwrap.dedent(blocks[0])) == load_credential_type()


@pytest.mark.parametrize("password", NASTY_PASSWORDS)
def test_the_injected_file_is_json_with_the_password_unchanged(tmp_path, password):
    env, args = inject_credential(load_credential_type(), {"registry": "localhost:5000", "username": "ci",
                                                           "password": password}, str(tmp_path))
    assert env == {}
    # one private file for the credential, one for the extra variables that name it
    files = sorted(p for p in (tmp_path / "env").iterdir())
    assert len(files) == 2 and args[0] == "-e" and args[1].startswith("@/runner/env/tmp")
    extra_vars_file = tmp_path / "env" / os.path.basename(args[1])
    (credential_file,) = [p for p in files if p != extra_vars_file]
    assert oct(credential_file.stat().st_mode & 0o777) == "0o660"
    assert json.loads(credential_file.read_text()) == {"localhost:5000": {"username": "ci", "password": password}}
    # the extra variable is written !unsafe (Ansible never templates it) and points at the file in the container
    text = extra_vars_file.read_text()
    assert text == "!unsafe 'madengine_credential_file': !unsafe '/runner/env/%s'\n" % credential_file.name


def test_pasted_json_breaks_where_tojson_does_not(tmp_path):
    """What the injector of earlier releases did: a password with a quote or a backslash gave invalid JSON."""
    pasted = dict(load_credential_type(), injectors={"file": {"template": '{"{{ registry }}": {"username": '
                                                              '"{{ username }}", "password": "{{ password }}"}}'}})
    inject_credential(pasted, {"registry": "r:5000", "username": "u", "password": 'pa"ss'}, str(tmp_path))
    (written,) = list((tmp_path / "env").iterdir())
    with pytest.raises(ValueError):
        json.loads(written.read_text())
    # and Ansible's to_json does not exist where AWX renders injectors
    with_to_json = dict(load_credential_type(), injectors={"file": {"template": "{{ password | to_json }}"}})
    with pytest.raises(Exception, match="No filter named 'to_json'"):
        inject_credential(with_to_json, {"registry": "r", "username": "u", "password": "p"}, str(tmp_path / "x"))


def test_the_lookup_reads_the_injected_file_without_templating_it(tmp_path):
    password = NASTY_PASSWORDS[1] + NASTY_PASSWORDS[0]
    _env, args = inject_credential(load_credential_type(), {"registry": "localhost:5000", "username": "ci",
                                                            "password": password}, str(tmp_path))
    (credential_file,) = [p for p in (tmp_path / "env").iterdir() if "@/runner/env/" + p.name != args[1]]
    playbook = tmp_path / "read.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Read the credential file", "hosts": "localhost", "gather_facts": False, "tasks": [
            {"name": "Read it", "ansible.builtin.set_fact": {
                "read": "{{ lookup('rocm.madengine.json_file', madengine_credential_file) }}"}},
            {"name": "Compare", "ansible.builtin.assert": {"that": [
                "read['localhost:5000'].password == expected"]}, "vars": {"expected": "{{ wanted | b64decode }}"}}]}]))
    import base64

    rc, out, log = run_playbook(playbook, args=("-c", "local"), extra_vars={
        "madengine_credential_file": str(credential_file),
        "wanted": base64.b64encode(password.encode()).decode()})
    assert rc == 0, log
    assert task_results(out, "Compare")["localhost"]["msg"] == "All assertions passed"
