"""Credentials: docker's, podman's and minibuild's files, credential helpers (a fake one on PATH),
identity tokens; secrets never in a message."""

from __future__ import annotations

import base64
import json
import os

import pytest

from minibuild.transfer import auth, credhelper
from minibuild.transfer.credhelper import CredentialHelperError
from tests import fake_credential_helper as fake


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Every credential location under tmp_path; a fake helper `fake` on PATH."""
    for name in ("MINIBUILD_AUTH_FILE", "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    (tmp_path / "docker").mkdir()
    db, log = fake.install(tmp_path / "bin", "fake")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    return tmp_path, db, log


def docker_config(tmp_path, data: dict) -> None:
    (tmp_path / "docker" / "config.json").write_text(json.dumps(data))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_the_helper_protocol_round_trips(env):
    _, db, log = env
    assert credhelper.get("fake", "reg.example") is None
    credhelper.store("fake", "reg.example", "u", "s3cret")
    assert credhelper.get("fake", "reg.example") == credhelper.HelperCredentials("u", "s3cret")
    assert "s3cret" not in repr(credhelper.get("fake", "reg.example"))
    assert credhelper.erase("fake", "reg.example") and not credhelper.erase("fake", "reg.example")
    assert fake.calls(log) == ["get reg.example", "store reg.example", "get reg.example",
                               "get reg.example", "erase reg.example", "erase reg.example"]


def test_a_missing_helper_is_one_clear_error(env):
    with pytest.raises(CredentialHelperError, match="docker-credential-nope is not on PATH"):
        credhelper.get("nope", "reg.example")


def test_cred_helpers_per_host_and_creds_store_for_the_rest(env):
    tmp_path, db, _ = env
    db.write_text(json.dumps({"reg.example": {"Username": "h", "Secret": "from-helper"},
                              auth.DOCKER_HUB_SERVER: {"Username": "<token>", "Secret": "refresh"}}))
    docker_config(tmp_path, {"credHelpers": {"reg.example": "fake"}, "auths": {"other.example": {"auth": b64("o:pw")}}})
    assert auth.lookup("reg.example") == auth.Credentials("h", "from-helper")
    assert auth.lookup("other.example") == auth.Credentials("o", "pw")
    docker_config(tmp_path, {"credsStore": "fake"})
    found = auth.lookup("index.docker.io")  # Docker Hub, under docker's key
    assert found.identity_token == "refresh" and found.password == ""


def test_identity_tokens_and_podman_files(env, monkeypatch):
    tmp_path, _, _ = env
    docker_config(tmp_path, {"auths": {"https://index.docker.io/v1/": {"auth": b64("me:"), "identitytoken": "tok"}}})
    assert auth.lookup("docker.io") == auth.Credentials("me", "", identity_token="tok")
    podman = tmp_path / "run" / "containers" / "auth.json"
    podman.parent.mkdir(parents=True)
    podman.write_text(json.dumps({"auths": {"docker.io": {"auth": b64("pod:man")}}}))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    assert auth.lookup("docker.io") == auth.Credentials("pod", "man")  # podman's file before docker's
    other = tmp_path / "registry-auth.json"
    other.write_text(json.dumps({"auths": {"docker.io": {"username": "env", "password": "pw"}}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(other))
    assert auth.lookup("docker.io") == auth.Credentials("env", "pw")


def test_login_goes_to_the_helper_docker_names_and_logout_erases_it(env):
    tmp_path, db, _ = env
    docker_config(tmp_path, {"credHelpers": {"reg.example": "fake"}})
    own = auth.login_file()
    own.parent.mkdir(parents=True)
    own.write_text(json.dumps({"auths": {"reg.example": {"auth": b64("old:stale")}}}))
    assert auth.store("reg.example", auth.Credentials("u", "pw")) == "docker-credential-fake"
    assert fake.held(db) == {"reg.example": {"Username": "u", "Secret": "pw"}}
    assert "pw" not in own.read_text() and "stale" not in own.read_text()  # no copy that would win
    assert auth.lookup("reg.example") == auth.Credentials("u", "pw")
    assert auth.forget("reg.example") and fake.held(db) == {}
    assert not auth.forget("reg.example")
    # without a helper for the host, minibuild's own file (Docker Hub under docker's key)
    assert auth.store("docker.io", auth.Credentials("hub", "pw")) == str(own)
    assert list(json.loads(own.read_text())["auths"]) == [auth.DOCKER_HUB_SERVER]


def test_a_failing_helper_never_shows_the_secret(env, tmp_path):
    _, _, _ = env
    broken = tmp_path / "bin" / "docker-credential-echo"
    broken.write_text("#!/bin/sh\ncat\nexit 3\n")  # echoes what it got, secret included
    broken.chmod(0o755)
    with pytest.raises(CredentialHelperError) as info:
        credhelper.store("echo", "reg.example", "u", "top-secret-value")
    assert "top-secret-value" not in str(info.value) and "***" in str(info.value)


@pytest.mark.parametrize(("given", "merged"), [
    (["repository:a:pull", "repository:a:pull,push", "repository:b:pull"],
     ["repository:a:pull,push", "repository:b:pull"]),
    (["", "repository:a:push repository:a:pull", "registry:catalog:*"],
     ["repository:a:pull,push", "registry:catalog:*"]),
    (["repository:a:delete,push", "repository:a:pull"], ["repository:a:pull,push,delete"]),
    (["odd"], ["odd"]),
])
def test_scopes_merge_per_resource(given, merged):
    assert auth.merge_scopes(given) == merged
