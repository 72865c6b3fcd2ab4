"""Credentials as users already keep them: docker's credHelpers/credsStore (a fake
docker-credential-fake on PATH), podman's auth.json, against a real docker-registry with htpasswd;
the password never shows in any output, file or store but the helper's own.

HOME, XDG_CONFIG_HOME, DOCKER_CONFIG and PATH point into the test's temp dir."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from tests import fake_credential_helper as fake
from tests.conftest import Minibuild
from tests.registry_server import registry_server

pytestmark = pytest.mark.integration

USER, PASSWORD = "carol", "s3cret-Pässword:with colon"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    for name in ("MINIBUILD_AUTH_FILE", "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DOCKER_CONFIG", str(home / ".docker"))
    (home / ".docker").mkdir()
    return home


@pytest.fixture
def helper(tmp_path, monkeypatch, home):
    db, log = fake.install(tmp_path / "bin", "fake")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    return db, log


@pytest.fixture
def registry(tmp_path, home):
    with registry_server(tmp_path / "registry", users={USER: PASSWORD}) as reg:
        yield reg


def everything_written(*roots: Path) -> bytes:
    """The bytes of every file under the roots (store, HOME), to look for a secret in."""
    return b"".join(p.read_bytes() for root in roots for p in sorted(root.rglob("*"))
                    if p.is_file() and not p.is_symlink())


def test_cred_helper_login_push_pull_logout(mb, empty_mb, registry, helper, home):
    db, log = helper
    (home / ".docker" / "config.json").write_text(json.dumps({"credHelpers": {registry.host: "fake"}}))
    outputs = []
    login = mb.run("login", registry.host, "-u", USER, "--password-stdin", input=f"{PASSWORD}\n".encode())
    outputs.append(login)
    assert "Login succeeded (saved in docker-credential-fake)" in login.stderr
    assert fake.held(db) == {registry.host: {"Username": USER, "Secret": PASSWORD}}
    target = f"{registry.host}/private/app:1"
    outputs.append(mb.run("push", "base:1.0", target))
    outputs.append(empty_mb.run("pull", target))
    assert f"get {registry.host}" in fake.calls(log)
    outputs.append(mb.run("logout", registry.host))
    assert fake.held(db) == {} and f"erase {registry.host}" in fake.calls(log)
    refused = empty_mb.run("pull", f"{registry.host}/private/app:1", check=False)
    outputs.append(refused)
    assert refused.returncode == 1 and "unauthorized" in refused.stderr and "Traceback" not in refused.stderr
    secret = PASSWORD.encode()
    assert not any(PASSWORD in o.stdout + o.stderr for o in outputs)
    assert secret not in everything_written(mb.root, empty_mb.root, home, registry.log.parent)
    assert not any(PASSWORD in line for line in fake.calls(log))


def test_creds_store_and_podman_auth_json(empty_mb, mb, registry, helper, home, tmp_path, monkeypatch):
    db, _ = helper
    mb.run("login", registry.host, "-u", USER, "--password-stdin", input=f"{PASSWORD}\n".encode())
    mb.run("push", "base:1.0", f"{registry.host}/shared/app:1")
    own = home / ".config" / "minibuild" / "auth.json"
    own.unlink()
    db.write_text(json.dumps({registry.host: {"Username": USER, "Secret": PASSWORD}}))
    (home / ".docker" / "config.json").write_text(json.dumps({"credsStore": "fake"}))
    empty_mb.run("pull", "-q", f"{registry.host}/shared/app:1")

    (home / ".docker" / "config.json").unlink()
    podman = tmp_path / "podman-auth.json"
    entry = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    podman.write_text(json.dumps({"auths": {registry.host: {"auth": entry}}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(podman))
    other = Minibuild(tmp_path / "third")
    other.run("pull", "-q", f"{registry.host}/shared/app:1")
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "missing.json"))
    refused = Minibuild(tmp_path / "fourth").run("pull", f"{registry.host}/shared/app:1", check=False)
    assert refused.returncode == 1 and "unauthorized" in refused.stderr and PASSWORD not in refused.stderr


def test_a_missing_helper_is_one_line(empty_mb, registry, home):
    (home / ".docker" / "config.json").write_text(json.dumps({"credsStore": "nosuchhelper"}))
    proc = empty_mb.run("pull", f"{registry.host}/x:1", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "docker-credential-nosuchhelper is not on PATH" in proc.stderr
