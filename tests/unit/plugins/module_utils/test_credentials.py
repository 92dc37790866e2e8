"""credential.json handling (_credentials module_utils)."""

from __future__ import annotations

import json

import pytest

from ansible_collections.rocm.madengine.plugins.module_utils.benchmark.credentials import (
    Credentials,
    document_secrets,
    registry_key,
)
from ansible_collections.rocm.madengine.plugins.module_utils.common import MadengineError

DOC = {
    "localhost:5000": {"username": "alice", "password": "reg-pass-1", "repository": "team/mad"},
    "dockerhub": {"username": "hubuser", "password": "hub-pass-2", "repository": "hubuser/mad"},
    "AMD_GITHUB": {"username": "gh-user", "password": "gh-token-3"},
    "half": {"username": "bob"},
    "listy": ["x"],
}


@pytest.fixture
def creds(tmp_path):
    path = tmp_path / "credential.json"
    path.write_text(json.dumps(DOC))
    return Credentials.load(str(path), environ={})


@pytest.mark.parametrize("registry, key", [
    ("", "dockerhub"), ("docker.io", "dockerhub"), ("dockerhub", "dockerhub"), ("localhost:5000", "localhost:5000"),
])
def test_registry_key(registry, key):
    assert registry_key(registry) == key


def test_registry_auth_and_repository(creds):
    auth = creds.registry_auth("localhost:5000")
    assert (auth.username, auth.password) == ("alice", "reg-pass-1")
    assert "reg-pass-1" not in auth.origin and "entry 'localhost:5000'" in auth.origin
    assert creds.registry_repository("localhost:5000") == "team/mad"
    assert creds.registry_repository("docker.io") == "hubuser/mad"
    assert creds.registry_auth("localhost:5000/ns").username == "alice"  # falls back to the host entry
    assert creds.registry_auth("other:5000") is None


def test_explicit_options_win(creds):
    auth = creds.registry_auth("localhost:5000", "opt-user", "opt-pass")
    assert (auth.username, auth.password, auth.origin) == (
        "opt-user", "opt-pass", "the registry_username/registry_password options")
    with pytest.raises(MadengineError, match="must be given together"):
        creds.registry_auth("localhost:5000", "opt-user", None)


def test_incomplete_registry_entry(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"r:1": {"username": "bob"}}))
    with pytest.raises(MadengineError) as err:
        Credentials.load(str(path), environ={}).registry_auth("r:1")
    assert str(err.value) == ("Entry 'r:1' of credential_file %s needs both 'username' and 'password' to log in "
                              "to registry r:1." % path)


def test_dockerhub_environment_overrides(creds):
    env_creds = Credentials(DOC, "f", environ={"MAD_DOCKERHUB_USER": "envuser", "MAD_DOCKERHUB_PASSWORD": "env-pass"})
    auth = env_creds.registry_auth("docker.io")
    assert (auth.username, auth.password) == ("envuser", "env-pass")
    assert env_creds.registry_repository("dockerhub") == "hubuser/mad"


def test_model_build_args(creds):
    assert creds.model_build_args({"name": "m", "cred": "AMD_GITHUB"}) == {
        "AMD_GITHUB_USERNAME": "gh-user", "AMD_GITHUB_PASSWORD": "gh-token-3"}
    assert creds.model_build_args({"name": "m", "cred": ""}) == {}


def test_missing_model_credential(creds, tmp_path):
    with pytest.raises(MadengineError) as err:
        creds.model_build_args({"name": "llama", "cred": "HF_TOKEN"})
    assert str(err.value) == ("Model 'llama' needs credential 'HF_TOKEN', which credential_file %s does not define."
                              % (tmp_path / "credential.json"))
    with pytest.raises(MadengineError) as err:
        Credentials.load(None, environ={}).model_build_args({"name": "llama", "cred": "HF_TOKEN"})
    assert str(err.value) == "Model 'llama' needs credential 'HF_TOKEN', but no credential_file was given."
    with pytest.raises(MadengineError, match=r"Credential 'listy' of model 'm' .* must be a JSON object"):
        creds.model_build_args({"name": "m", "cred": "listy"})


def test_credential_file_must_be_an_object(tmp_path):
    path = tmp_path / "c.json"
    path.write_text("[]")
    with pytest.raises(MadengineError, match="must hold a JSON object keyed by credential name"):
        Credentials.load(str(path), environ={})


def test_secret_values(creds):
    secrets = creds.secret_values([{"name": "m", "cred": "AMD_GITHUB"}], extra=["opt-pass", None])
    assert set(secrets) == {"reg-pass-1", "hub-pass-2", "gh-user", "gh-token-3", "opt-pass"}
    assert set(creds.no_log_values([{"name": "m", "cred": "AMD_GITHUB"}], extra=["opt-pass"])) == {
        "reg-pass-1", "hub-pass-2", "gh-token-3", "opt-pass"}
    env_creds = Credentials({}, None, environ={"MAD_SECRETS_HF": "hf-secret", "OTHER": "x"})
    assert env_creds.env_secrets == {"MAD_SECRETS_HF": "hf-secret"}
    assert env_creds.secret_values() == ["hf-secret"] == env_creds.no_log_values()


def test_document_secrets_are_every_value_but_user_names_and_repositories():
    document = {
        "localhost:5000": {"username": "alice", "password": "Pw-1", "repository": "team/mad"},
        "dockerhub": {"User": "bob", "Repo": "bob/mad", "password": "Pw-2"},
        "HF_TOKEN": {"username": "hf-user", "token": "Tok-3", "expires": 20261122},
        "MAD_AWS_S3": [{"USERNAME": "s3-user", "PASSWORD": "Pw-4"}],
    }
    assert sorted(document_secrets(document)) == ["20261122", "Pw-1", "Pw-2", "Pw-4", "Tok-3"]
    assert document_secrets(None) == [] and document_secrets({}) == []


def test_credentials_given_as_data_name_their_origin():
    creds = Credentials.load(document={"HF": "not-an-object"}, environ={})
    with pytest.raises(MadengineError) as err:
        creds.model_build_args({"name": "llama", "cred": "HF"})
    assert str(err.value) == "Credential 'HF' of model 'llama' in the credentials option must be a JSON object."
    with pytest.raises(MadengineError) as err:
        Credentials.load(document=["HF"], environ={})
    assert str(err.value) == ("The credentials option must be an object keyed by credential name, as in "
                              "credential.json.")
