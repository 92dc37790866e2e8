"""A playbook run the way AWX runs a job: what AWX writes into the job's private data directory, then
``ansible-runner run --process-isolation`` with the execution environment as the container, and the job's
artifacts read back.

What AWX does and this reproduces (AWX's models and task code, described here in our own words):

- survey: an unanswered question's default is sent when it passes the question's own checks (an integer
  default must be an int, a text default at least ``min`` long, a choice one of ``choices``); answers are
  checked the same way and win. Integer questions send ints, everything else strings.
- extra variables: one YAML file, ``env/extravars``; the job template's own extra variables are trusted,
  every other string (survey answers, AWX's ``awx_*`` variables) is written ``!unsafe`` so that Ansible never
  templates it.
- a custom credential type: its ``file`` template is rendered with Jinja's immutable sandbox (no Ansible
  filters) into a private temporary file under ``env/``, whose path inside the container
  (``/runner/env/...``) is ``tower.filename``; its ``env`` templates become the job's environment
  (``env/envvars``); its ``extra_vars`` templates are rendered the same way, written ``!unsafe`` into another
  temporary file under ``env/`` and passed as ``-e @/runner/env/...``.
- the machine credential's private key is ``env/ssh_key``: ansible-runner loads it into an ssh-agent inside
  the container, so the key is never an inventory variable.
- the inventory is an executable script under ``inventory/`` that prints the hosts and their variables as JSON.
"""

from __future__ import annotations

import glob
import json
import os
import stat
import subprocess
import sys
import tempfile
import time

import yaml

CONTAINER_ROOT = "/runner"


# ---- survey ----------------------------------------------------------------------------------------------

def _choices(question):
    choices = question.get("choices", [])
    if isinstance(choices, str):
        choices = [c for c in choices.splitlines() if c.strip()]
    return choices


def _bounded(question, size, kind):
    errors = []
    low, high = question.get("min"), question.get("max")
    if low not in ("", None) and size < kind(low):
        errors.append("%s: %r is below the minimum %s" % (question["variable"], size, low))
    if high not in ("", None) and size > kind(high):
        errors.append("%s: %r is above the maximum %s" % (question["variable"], size, high))
    return errors


def survey_errors(question, data):
    """What AWX's survey check says of ``data`` (a dict of extra variables) for one question."""
    name, kind = question["variable"], question["type"]
    if name not in data:
        return ["%s: value missing" % name] if question.get("required") else []
    value = data[name]
    if kind in ("text", "textarea", "password"):
        if not isinstance(value, str):
            return ["%s: %r is not a string" % (name, value)]
        return _bounded(question, len(value), int)
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):  # AWX: exactly an int
            return ["%s: %r is not an integer" % (name, value)]
        return _bounded(question, value, int)
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return ["%s: %r is not a number" % (name, value)]
        return _bounded(question, value, float)
    if kind == "multiplechoice":
        return [] if value in _choices(question) else ["%s: %r is not one of %s" % (name, value, _choices(question))]
    if kind == "multiselect":
        if not isinstance(value, list):
            return ["%s: %r is not a list" % (name, value)]
        return ["%s: %r is not one of %s" % (name, v, _choices(question)) for v in value if v not in _choices(question)]
    raise AssertionError("unknown survey question type %r" % kind)


def survey_extra_vars(survey, answers):
    """The extra variables a launch with ``answers`` sends: valid defaults, then the answers (checked)."""
    sent = {}
    for question in survey["spec"]:
        default = question.get("default")
        if default is not None and not survey_errors(question, {question["variable"]: default}):
            sent[question["variable"]] = default
    unknown = set(answers) - set(q["variable"] for q in survey["spec"])
    assert not unknown, "answers to no question: %s" % sorted(unknown)
    sent.update(answers)
    # a required question is answered by its default when it has a valid one (AWX's form shows it filled in)
    errors = [e for q in survey["spec"] for e in survey_errors(q, sent)]
    if errors:
        raise ValueError("; ".join(errors))
    return sent


# ---- extra variables ---------------------------------------------------------------------------------------

class _UnsafeDumper(yaml.SafeDumper):
    def represent_data(self, data):
        if isinstance(data, str):
            return self.represent_scalar("!unsafe", data)
        return super().represent_data(data)


def safe_dump(variables, trusted=None):
    """YAML of ``variables`` with every string ``!unsafe`` except in the top-level entries equal in ``trusted``."""
    trusted = trusted or {}
    parts = []
    for key, value in variables.items():
        dumper = yaml.SafeDumper if key in trusted and trusted[key] == value else _UnsafeDumper
        parts.append(yaml.dump_all([{key: value}], None, Dumper=dumper, default_flow_style=False))
    return "".join(parts)


def container_path(path, private_data_dir):
    return os.path.join(CONTAINER_ROOT, os.path.relpath(path, private_data_dir))


# ---- a custom credential type ------------------------------------------------------------------------------

class _Namespace(object):
    pass


def inject_credential(credential_type, inputs, private_data_dir):
    """Render the type's injectors for ``inputs``: (environment variables, ansible-playbook arguments)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    tower = _Namespace()
    namespace = {"tower": tower}
    for field in credential_type["inputs"]["fields"]:
        value = inputs.get(field["id"])
        if field.get("type") == "boolean":
            namespace[field["id"]] = bool(value)
        elif value:
            namespace[field["id"]] = value
    sandbox = ImmutableSandboxedEnvironment()
    env_dir = os.path.join(private_data_dir, "env")
    os.makedirs(env_dir, exist_ok=True)
    injectors = credential_type.get("injectors", {})
    for label, template in injectors.get("file", {}).items():
        handle, path = tempfile.mkstemp(dir=env_dir)
        with os.fdopen(handle, "w") as out:
            out.write(sandbox.from_string(template).render(**namespace))
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IWGRP)
        if "." not in label:
            tower.filename = container_path(path, private_data_dir)
        else:
            if not isinstance(getattr(tower, "filename", None), _Namespace):
                tower.filename = _Namespace()
            setattr(tower.filename, label.split(".", 1)[1], container_path(path, private_data_dir))
    env = dict((name, sandbox.from_string(template).render(**namespace))
               for name, template in injectors.get("env", {}).items())
    args = []
    extra_vars = dict((name, sandbox.from_string(template).render(**namespace))
                      for name, template in injectors.get("extra_vars", {}).items())
    if extra_vars:
        handle, path = tempfile.mkstemp(dir=env_dir)
        with os.fdopen(handle, "w") as out:
            out.write(safe_dump(extra_vars))
        os.chmod(path, stat.S_IRUSR | stat.S_IRGRP)
        args += ["-e", "@" + container_path(path, private_data_dir)]
    return env, args


# ---- the job -----------------------------------------------------------------------------------------------

INVENTORY_SCRIPT = """#!/usr/bin/env python3
# The job's inventory, as AWX writes it: a script that prints the hosts and their variables.
import json
import sys

if "--host" in sys.argv:
    print(json.dumps({}))
else:
    print(%r)
"""


def inventory_script_data(document):
    """An Ansible YAML inventory document ({all: {children: ...}}) as the JSON an inventory script prints."""
    data = {"_meta": {"hostvars": {}}}

    def walk(name, group):
        entry = data.setdefault(name, {"hosts": [], "children": [], "vars": {}})
        for host, host_vars in (group.get("hosts") or {}).items():
            entry["hosts"].append(host)
            data["_meta"]["hostvars"].setdefault(host, {}).update(host_vars or {})
        entry["vars"].update(group.get("vars") or {})
        for child, child_group in (group.get("children") or {}).items():
            entry["children"].append(child)
            walk(child, child_group or {})

    walk("all", document["all"])
    return data


class Job(object):
    """One job: its private data directory, the ansible-runner run in the EE, and its artifacts."""

    def __init__(self, private_data_dir, ident):
        self.dir = str(private_data_dir)
        self.ident = ident
        self.args = []
        self.env = {}
        for sub in ("project", "inventory", "env", "artifacts"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        os.chmod(os.path.join(self.dir, "env"), 0o700)

    def write_inventory(self, document):
        path = os.path.join(self.dir, "inventory", "hosts")
        with open(path, "w") as handle:
            handle.write(INVENTORY_SCRIPT % json.dumps(inventory_script_data(document)))
        os.chmod(path, 0o700)

    def write_extra_vars(self, variables, trusted):
        with open(os.path.join(self.dir, "env", "extravars"), "w") as handle:
            handle.write(safe_dump(variables, trusted))

    def write_ssh_key(self, key_path):
        with open(key_path) as source, open(os.path.join(self.dir, "env", "ssh_key"), "w") as handle:
            data = source.read()
            handle.write(data if data.endswith("\n") else data + "\n")
        os.chmod(os.path.join(self.dir, "env", "ssh_key"), 0o600)

    def add_credential(self, credential_type, inputs):
        env, args = inject_credential(credential_type, inputs, self.dir)
        self.env.update(env)
        self.args += args

    def run(self, playbook, image, limit=None, container_options=(), mounts=(), timeout=1800, check=False):
        if self.env:
            with open(os.path.join(self.dir, "env", "envvars"), "w") as handle:
                handle.write(yaml.safe_dump(self.env))
        args = list(self.args) + (["--check"] if check else [])
        runner = os.path.join(os.path.dirname(sys.executable), "ansible-runner")
        cmd = [runner, "run", self.dir, "-p", playbook, "--ident", self.ident,
               "--process-isolation", "--process-isolation-executable", "docker", "--container-image", image]
        for option in container_options:
            cmd.append("--container-option=%s" % option)
        for mount in mounts:
            cmd += ["--container-volume-mount", mount]
        if limit:
            cmd += ["--limit", limit]
        if args:
            cmd.append("--cmdline=%s" % " ".join(args))
        started = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        self.seconds = time.monotonic() - started
        self.proc = proc
        return proc

    # artifacts
    @property
    def artifacts(self):
        return os.path.join(self.dir, "artifacts", self.ident)

    def read(self, name):
        with open(os.path.join(self.artifacts, name)) as handle:
            return handle.read()

    @property
    def rc(self):
        return int(self.read("rc"))

    @property
    def status(self):
        return self.read("status").strip()

    @property
    def stdout(self):
        return self.read("stdout")

    def events(self):
        found = []
        for path in glob.glob(os.path.join(self.artifacts, "job_events", "*.json")):
            with open(path) as handle:
                found.append(json.load(handle))
        return sorted(found, key=lambda event: event["counter"])

    def stats(self):
        """The playbook_on_stats event's data: per-host counts and artifact_data (what set_stats published)."""
        stats = [e for e in self.events() if e["event"] == "playbook_on_stats"]
        assert len(stats) == 1, "no playbook_on_stats event; stdout:\n%s" % self.stdout[-3000:]
        return stats[0]["event_data"]

    def task_events(self, task, events=("runner_on_ok", "runner_on_failed", "runner_item_on_ok",
                                        "runner_item_on_failed", "runner_on_skipped", "runner_on_unreachable")):
        """The job events of the task called ``task`` (or ``<role> : task``)."""
        return [e for e in self.events() if e["event"] in events and
                (e["event_data"].get("task") == task or e["event_data"].get("task", "").endswith(" : " + task))]
