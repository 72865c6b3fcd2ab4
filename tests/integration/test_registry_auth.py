"""login, logout and authenticated push/pull against a real docker-registry with htpasswd auth.

HOME points at a temporary directory (and the variables that would move the credential files are
unset), so the user's own ~/.config/minibuild/auth.json and ~/.docker/config.json are never read
or written.
"""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from tests.conftest import Minibuild
from tests.registry_server import registry_server

pytestmark = pytest.mark.integration

USER, PASSWORD = "alice", "correct:horse bättery"  # a colon and non-ASCII survive the round trip


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A private HOME for this test and the minibuild processes it starts."""
    home = tmp_path / "home"
    home.mkdir()
    for name in ("MINIBUILD_AUTH_FILE", "XDG_CONFIG_HOME", "DOCKER_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def registry(tmp_path, home):
    with registry_server(tmp_path / "registry", users={USER: PASSWORD}) as reg:
        yield reg


def login(mb: Minibuild, host: str, password: str, check: bool = True):
    return mb.run("login", host, "-u", USER, "--password-stdin", input=f"{password}\n".encode(), check=check)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_login_push_pull_logout(mb, empty_mb, registry, home):
    auth_file = home / ".config" / "minibuild" / "auth.json"
    target = f"{registry.host}/private/app:1"

    anonymous = mb.run("push", "base:1.0", target, check=False)
    assert anonymous.returncode == 1 and "Traceback" not in anonymous.stderr
    assert len(error_lines(anonymous.stderr)) == 1, anonymous.stderr
    assert "unauthorized" in anonymous.stderr and f"minibuild login {registry.host}" in anonymous.stderr

    wrong = login(mb, registry.host, "not the password", check=False)
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    assert len(error_lines(wrong.stderr)) == 1, wrong.stderr
    assert "unauthorized" in wrong.stderr and "Login succeeded" not in wrong.stderr
    assert not auth_file.exists()

    ok = login(mb, registry.host, PASSWORD)
    assert f"Login succeeded (saved in {auth_file})" in ok.stderr
    assert mode(auth_file) == 0o600 and mode(auth_file.parent) == 0o700
    saved = json.loads(auth_file.read_text())["auths"][registry.host]["auth"]
    assert base64.b64decode(saved).decode() == f"{USER}:{PASSWORD}"
    assert list(auth_file.parent.iterdir()) == [auth_file]  # no temporary file left beside it
    assert not (home / ".docker").exists()

    pushed = mb.run("push", "base:1.0", target).stdout.strip()
    assert registry.requests("PUT", "/v2/private/app/manifests/1") == 1
    pulled = empty_mb.run("pull", target).stdout.strip()
    assert pulled == pushed

    # a second login (typed as a URL, as people do) rewrites the file and makes it private again
    auth_file.chmod(0o644)
    login(mb, f"http://{registry.host}/v2/", PASSWORD)
    assert mode(auth_file) == 0o600
    assert list(json.loads(auth_file.read_text())["auths"]) == [registry.host]

    out = mb.run("logout", registry.host)
    assert f"Removed login credentials for {registry.host}" in out.stderr
    assert json.loads(auth_file.read_text())["auths"] == {}
    assert mode(auth_file) == 0o600

    after = mb.run("push", "base:1.0", f"{registry.host}/private/other:1", check=False)
    assert after.returncode == 1 and "Traceback" not in after.stderr
    lines = error_lines(after.stderr)
    assert len(lines) == 1 and "unauthorized" in lines[0], after.stderr
    assert registry.requests("PUT", "/v2/private/other/manifests/1") == 0

    again = mb.run("logout", registry.host, check=False)
    assert again.returncode != 0 and f"not logged in to {registry.host}" in again.stderr


@pytest.mark.parametrize("key", ["{host}", "http://{host}/v2/"])
def test_credentials_from_docker_config(mb, empty_mb, registry, home, key):
    docker_config = home / ".docker" / "config.json"
    docker_config.parent.mkdir()
    entry = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    docker_config.write_text(json.dumps({"auths": {key.format(host=registry.host): {"auth": entry}}}))
    before = docker_config.read_bytes()
    target = f"{registry.host}/fromdocker:1"

    pushed = mb.run("push", "base:1.0", target).stdout.strip()
    assert empty_mb.run("pull", target).stdout.strip() == pushed
    assert docker_config.read_bytes() == before  # read, never written
    assert not (home / ".config").exists()  # and minibuild's own login file was not created

    # minibuild's login file wins over docker's config: wrong saved credentials are used and refused
    auth_file = home / ".config" / "minibuild" / "auth.json"
    auth_file.parent.mkdir(parents=True)
    wrong = base64.b64encode(f"{USER}:stale".encode()).decode()
    auth_file.write_text(json.dumps({"auths": {registry.host: {"auth": wrong}}}))
    refused = empty_mb.run("pull", f"{registry.host}/fromdocker:1", check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    lines = error_lines(refused.stderr)
    assert len(lines) == 1 and "unauthorized" in lines[0], refused.stderr
