"""The bearer token flow against a real docker-registry configured with `auth: token`: a token
server in this process (tests/token_server.py) checks basic credentials and signs JWTs with a key
and certificate `openssl` made; the registry trusts that certificate (`rootcertbundle`).

Push and pull go through it with `repository:NAME:pull,push` / `:pull` scopes; one token serves
every blob (the server counts requests per scope); an expired token (the registry answers 401
invalid_token) is replaced once and the request goes on; a wrong password is one clear line
without the secret. HOME is private, as in test_registry_auth.py.
"""

from __future__ import annotations

import base64
import io
import os
import time
from pathlib import Path

import pytest

from tests.conftest import Minibuild, write_context
from tests.registry_server import registry_server
from tests.token_server import TokenServer, make_certificate, running

pytestmark = pytest.mark.integration

USER, PASSWORD = "tokenuser", "s3cret:pässword"
WRONG = "not-the-pässword-xyz"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    for name in ("MINIBUILD_AUTH_FILE", "XDG_CONFIG_HOME", "DOCKER_CONFIG", "REGISTRY_AUTH_FILE",
                 "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def tokens(tmp_path):
    (tmp_path / "pki").mkdir()
    key, cert = make_certificate(tmp_path / "pki")
    with running(TokenServer(key, cert, {USER: PASSWORD})) as server:
        yield server


@pytest.fixture
def registry(tmp_path, home, tokens):
    with registry_server(tmp_path / "registry", token=tokens) as reg:
        yield reg


def login(mb: Minibuild, host: str, password: str, check: bool = True):
    return mb.run("login", host, "-u", USER, "--password-stdin", input=f"{password}\n".encode(), check=check)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def three_layers(mb: Minibuild, tmp_path: Path) -> None:
    """app:1 = base:1.0 plus two RUN layers: a push sends several blobs."""
    context = write_context(tmp_path / "ctx", "FROM base:1.0\nRUN echo one > /one\nRUN echo two > /two\n", {})
    mb.build(context, "-t", "app:1")


def test_push_and_pull_use_one_token_per_scope(mb, empty_mb, registry, tokens, tmp_path):
    three_layers(mb, tmp_path)
    target = f"{registry.host}/team/app:1"

    anonymous = mb.run("push", "app:1", target, check=False)  # an anonymous token grants nothing
    assert anonymous.returncode == 1 and "Traceback" not in anonymous.stderr
    assert len(error_lines(anonymous.stderr)) == 1, anonymous.stderr
    assert "unauthorized" in anonymous.stderr and f"minibuild login {registry.host}" in anonymous.stderr

    login(mb, registry.host, PASSWORD)
    login(empty_mb, registry.host, PASSWORD)  # same HOME: same login file
    tokens.requests.clear()
    pushed = mb.run("push", "app:1", target).stdout.strip()
    assert registry.requests("PUT", "/v2/team/app/blobs/uploads/") >= 4  # base layer(s), 2 RUN layers, config
    assert dict(tokens.requests) == {("repository:team/app:pull,push",): 1}, tokens.requests

    tokens.requests.clear()
    assert empty_mb.run("pull", target).stdout.strip() == pushed
    assert registry.requests("GET", "/v2/team/app/blobs/sha256:") >= 4
    assert dict(tokens.requests) == {("repository:team/app:pull",): 1}, tokens.requests
    assert all(a.startswith("Basic ") for a in tokens.seen_authorization)

    # a second repository mounts every blob from the first (a local tag names it as a source):
    # one token with both scopes
    mb.run("tag", "app:1", target)
    tokens.requests.clear()
    other = mb.run("push", "app:1", f"{registry.host}/team/other:1")
    assert "mounted from team/app" in other.stdout + other.stderr
    assert registry.requests("PUT", "/v2/team/other/blobs/uploads/") == 0
    assert dict(tokens.requests) == {("repository:team/app:pull", "repository:team/other:pull,push"): 1}


def test_wrong_password_is_one_line_without_the_secret(mb, registry, tokens, home):
    wrong = login(mb, registry.host, WRONG, check=False)
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    lines = error_lines(wrong.stderr)
    assert len(lines) == 1 and "unauthorized" in lines[0] and tokens.realm in lines[0], wrong.stderr
    assert f"refused user {USER!r}" in lines[0]
    encoded = base64.b64encode(f"{USER}:{WRONG}".encode()).decode()
    for secret in (WRONG, encoded):
        assert secret not in wrong.stdout + wrong.stderr
    assert "Login succeeded" not in wrong.stderr
    print(lines[0])
    assert not (home / ".config" / "minibuild" / "auth.json").exists()
    assert tokens.refused == 1


def _upload_across_expiry(registry, tokens) -> None:
    """Two blobs on one token, a wait past the token's real lifetime (3 s), a third blob."""
    from minibuild.oci.digest import Digest
    from minibuild.transfer.auth import Credentials
    from minibuild.transfer.registry import Client

    tokens.lifetime = 3
    client = Client(registry.host, credentials=Credentials(USER, PASSWORD))
    client.want("expiry/app", "pull,push")
    blobs = [os.urandom(1000) for _ in range(3)]
    try:
        client.upload_blob("expiry/app", Digest.of(blobs[0]), 1000, lambda: io.BytesIO(blobs[0]))
        client.upload_blob("expiry/app", Digest.of(blobs[1]), 1000, lambda: io.BytesIO(blobs[1]))
        assert tokens.total() == 1  # the second blob rode the first token
        time.sleep(tokens.lifetime + 1)
        client.upload_blob("expiry/app", Digest.of(blobs[2]), 1000, lambda: io.BytesIO(blobs[2]))
        assert tokens.total() == 2
        assert all(client.has_blob("expiry/app", Digest.of(blob)) for blob in blobs)
        assert tokens.total() == 2
    finally:
        client.close()


def test_a_token_is_renewed_before_its_expires_in_runs_out(registry, tokens):
    """In-process client, so the token outlives one request: past the `expires_in` the server
    gave, the client asks for a new token before sending (no request is refused and resent)."""
    _upload_across_expiry(registry, tokens)
    assert "token not to be used after" not in registry.log.read_text()


def test_an_expired_token_is_replaced_once_after_a_401(registry, tokens):
    """A server that claims a longer `expires_in` than the token has: the registry answers 401
    invalid_token, the client asks for a new token and the request goes through."""
    tokens.claimed_lifetime = 3600
    _upload_across_expiry(registry, tokens)
    assert "token not to be used after" in registry.log.read_text()  # the registry refused it
