"""The registry client against httpx's MockTransport: auth flows, retries, digest checks."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from minibuild.transfer import auth, remote as transfer
from minibuild.oci.digest import Digest
from minibuild.transfer.registry import Client, RegistryError, Remote
from minibuild.oci.reference import names_registry
from minibuild.store.staging import IntakeError
from minibuild.store.layout import Store


def client(handler, **kw) -> Client:
    return Client("reg.example:5000", transport=httpx.MockTransport(handler), backoff=0, **kw)


def test_bearer_token_flow_sends_basic_to_the_realm_then_the_token():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.url.path, request.headers.get("authorization")))
        if request.url.host == "auth.example":
            assert request.url.params["scope"] == "repository:app:pull"
            return httpx.Response(200, json={"token": "T0K"})
        if request.headers.get("authorization") != "Bearer T0K":
            return httpx.Response(401, headers={"www-authenticate":
                'Bearer realm="https://auth.example/token",service="reg",scope="repository:app:pull"'})
        return httpx.Response(200)

    c = client(handler, credentials=auth.Credentials("u", "p"))
    assert c.has_blob("app", Digest("a" * 64))
    basic = "Basic " + base64.b64encode(b"u:p").decode()
    assert seen[1] == ("auth.example", "/token", basic)
    assert seen[-1][2] == "Bearer T0K"
    assert c.base.startswith("https://")  # not a local host


def test_basic_challenge_without_credentials_says_login():
    c = client(lambda r: httpx.Response(401, headers={"www-authenticate": 'Basic realm="r"'}),
               credentials=None)
    c.credentials = None
    with pytest.raises(RegistryError) as info:
        c.ping()
    assert "minibuild login reg.example:5000" in (info.value.hint or "")


def test_5xx_and_dropped_connections_are_retried():
    calls = {"n": 0}

    def handler(request):
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.RemoteProtocolError("peer closed connection")
        if calls["n"] == 2:
            return httpx.Response(503)
        return httpx.Response(200)

    client(handler, credentials=None).ping()
    assert calls["n"] == 3


def test_persistent_5xx_ends_in_one_clear_error():
    c = client(lambda r: httpx.Response(500, json={"errors": [{"code": "UNKNOWN", "message": "boom"}]}),
               credentials=None, retries=2)
    with pytest.raises(RegistryError, match=r"HTTP 500 \(UNKNOWN: boom\)"):
        c.ping()


def test_pull_refuses_a_blob_that_does_not_match_its_digest(tmp_path):
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": str(Digest.of(config)), "size": len(config)},
                           "layers": []}).encode()

    def handler(request):
        if "/manifests/" in request.url.path:
            return httpx.Response(200, content=manifest,
                                  headers={"content-type": "application/vnd.oci.image.manifest.v1+json"})
        return httpx.Response(200, content=config.replace(b"amd64", b"arm64"))

    with Store.open(tmp_path / "store") as store:
        with pytest.raises(IntakeError, match="hashes to"):
            transfer.pull(store, "127.0.0.1:1/app:1", client=client(handler, credentials=None))
        assert store.tags() == [] and not any(store.paths.blobs.iterdir())


def test_a_manifest_whose_body_differs_from_its_digest_header_is_refused():
    c = client(lambda r: httpx.Response(200, content=b"{}", headers={"docker-content-digest": "sha256:" + "1" * 64}),
               credentials=None)
    with pytest.raises(RegistryError, match="the registry says"):
        c.get_manifest("app", "1")


def test_names_and_remotes():
    assert names_registry("127.0.0.1:5000/app") and names_registry("localhost/app")
    assert names_registry("ghcr.io/o/app") and not names_registry("app") and not names_registry("my/app")
    remote = Remote.parse("localhost:5000/team/app@sha256:" + "b" * 64)
    assert (remote.host, remote.repository, remote.tag_or_digest) == ("localhost:5000", "team/app", "sha256:" + "b" * 64)
    with pytest.raises(RegistryError, match="names no registry"):
        Remote.parse("app:1")


def test_credentials_from_login_file_then_docker_config(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIBUILD_AUTH_FILE", str(tmp_path / "auth.json"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "config.json").write_text(json.dumps(
        {"auths": {"https://reg.example/v1/": {"auth": base64.b64encode(b"d:pw").decode()}}}))
    assert auth.lookup("reg.example") == auth.Credentials("d", "pw")
    auth.store("reg.example", auth.Credentials("m", "x:y"))
    assert auth.lookup("reg.example") == auth.Credentials("m", "x:y")
    assert oct((tmp_path / "auth.json").stat().st_mode & 0o777) == "0o600"
    assert auth.forget("reg.example") and not auth.forget("reg.example")
    assert auth.lookup("reg.example") == auth.Credentials("d", "pw")


def test_challenge_parse():
    c = auth.Challenge.parse('Bearer realm="https://a/t",service="r s",scope="repository:x:pull,push"')
    assert (c.scheme, c.get("realm"), c.get("service"), c.get("scope")) == \
        ("bearer", "https://a/t", "r s", "repository:x:pull,push")


class TokenRegistry:
    """A registry behind a token server: tokens carry a number; `expire()` makes the current one
    stale, as a token running out mid-push does."""

    def __init__(self) -> None:
        self.issued: list[dict] = []
        self.valid: set[str] = set()

    def expire(self) -> None:
        self.valid.clear()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example":
            form = dict(httpx.QueryParams(request.content.decode())) if request.method == "POST" else {}
            self.issued.append({"method": request.method, "scopes": request.url.params.get_list("scope"),
                                "form": form, "authorization": request.headers.get("authorization")})
            token = f"T{len(self.issued)}"
            self.valid.add(token)
            return httpx.Response(200, json={"access_token": token})
        if (request.headers.get("authorization") or "").removeprefix("Bearer ") not in self.valid:
            return httpx.Response(401, headers={"www-authenticate":
                'Bearer realm="https://auth.example/token",service="reg",scope="repository:app:pull"'})
        if request.method == "HEAD":
            return httpx.Response(404)
        return httpx.Response(200)


def test_one_token_with_pull_push_serves_every_blob_and_a_401_refreshes_it():
    registry = TokenRegistry()
    c = client(registry, credentials=auth.Credentials("u", "p"))
    c.want("app", "pull,push")
    c.want("other", "pull")
    for n in range(5):
        assert not c.has_blob("app", Digest(f"{n:064x}"))
    assert len(registry.issued) == 1  # reused across blobs
    assert registry.issued[0]["scopes"] == ["repository:app:pull,push", "repository:other:pull"]
    registry.expire()
    assert not c.has_blob("app", Digest("f" * 64))  # 401 → a fresh token → the request again
    assert len(registry.issued) == 2


def test_a_token_is_renewed_before_it_runs_out_not_after_a_401():
    """A big upload sent with a stale token would be sent twice: fetch a new token 10 s before
    `expires_in` (60 s, the spec's default, when the server names none) runs out."""
    registry, now = TokenRegistry(), [0.0]
    unauthorized = []
    inner = registry.__call__

    def handler(request):
        response = inner(request)
        unauthorized.append(response.status_code == 401 and request.url.host != "auth.example")
        return response

    c = client(handler, credentials=auth.Credentials("u", "p"), clock=lambda: now[0])
    assert not c.has_blob("app", Digest("a" * 64))
    assert len(registry.issued) == 1 and unauthorized.count(True) == 1  # the first challenge
    now[0] = 45.0
    assert not c.has_blob("app", Digest("b" * 64))
    assert len(registry.issued) == 1  # still fresh
    now[0] = 51.0
    assert not c.has_blob("app", Digest("c" * 64))
    assert len(registry.issued) == 2 and unauthorized.count(True) == 1  # renewed, no 401


def test_renewal_delay_follows_expires_in():
    assert auth.renewal_delay({}) == 50
    assert auth.renewal_delay({"expires_in": 300}) == 290
    assert auth.renewal_delay({"expires_in": 8}) == 4
    assert auth.renewal_delay({"expires_in": "junk"}) == 50


def test_an_identity_token_is_exchanged_with_docker_refresh_token_grant():
    registry = TokenRegistry()
    c = client(registry, credentials=auth.Credentials("", "", identity_token="refresh-me"))
    c.ping()
    issued = registry.issued[0]
    assert issued["method"] == "POST" and issued["authorization"] is None
    assert issued["form"]["grant_type"] == "refresh_token" and issued["form"]["refresh_token"] == "refresh-me"
    assert issued["form"]["service"] == "reg" and issued["form"]["scope"] == "repository:app:pull"


def test_docker_hub_is_asked_at_its_api_host():
    c = Client("docker.io", credentials=auth.Credentials("u", "p"))  # given: no file is read
    assert c.base == "https://registry-1.docker.io/v2"
    c.close()
