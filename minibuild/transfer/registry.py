"""An OCI distribution (registry API v2) client on httpx: manifests, blobs, uploads, auth, retries.

https by default; plain http for localhost/127.0.0.1/::1 or when asked (`insecure`). Docker
Hub (`docker.io`) answers at registry-1.docker.io. A 401 is answered once per request with the
challenge's scheme: a bearer token from the realm (basic credentials sent to the token server when
known), or basic auth. 5xx, 429 and dropped connections are retried with exponential backoff; a
host name that does not resolve is not (it will not resolve in a second either).
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterator

import httpx

from minibuild.transfer import auth
from minibuild.oci.digest import Digest
from minibuild.oci.mediatypes import (DOCKER_MANIFEST_LIST_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE,
                                      INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE)
from minibuild.errors import MinibuildError
from minibuild.oci.reference import DOCKER_HUB, DOCKER_HUB_API, Reference, names_registry

MANIFEST_ACCEPT = ", ".join((MANIFEST_MEDIA_TYPE, INDEX_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE,
                             DOCKER_MANIFEST_LIST_MEDIA_TYPE))
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
_CHUNK = 1 << 20
MANIFEST_LIMIT = 4 << 20


class RegistryError(MinibuildError):
    """A registry refused a request or could not be reached; the message names the request."""


@dataclass(frozen=True)
class Remote:
    """An image in a registry: host, repository and a tag or digest."""

    host: str
    repository: str
    reference: Reference

    @property
    def tag_or_digest(self) -> str:
        """What goes after /manifests/: the digest when pinned, else the tag."""
        return str(self.reference.digest) if self.reference.digest else (self.reference.tag or "latest")

    @classmethod
    def parse(cls, text: str) -> Remote:
        """A push destination: `host[:port]/repo[:tag][@digest]`, or `user/repo` on Docker Hub;
        RegistryError for a one-part name (it would be Hub's official `docker.io/library/...`)."""
        ref = Reference.parse(text)
        if not names_registry(ref.name) and "/" not in ref.name:
            raise RegistryError(f"{text!r} names no registry (it would be Docker Hub's official "
                                f"docker.io/library/{ref.name}): write HOST[:PORT]/REPOSITORY[:TAG]",
                                hint="e.g. 127.0.0.1:5000/app:1.0, or USER/REPOSITORY for Docker Hub")
        full = ref.normalized()
        return cls(full.domain, full.path, full)


def is_local(host: str) -> bool:
    """Hosts that get plain http without being asked."""
    return host.split(":")[0] in ("localhost", "127.0.0.1") or host.startswith("[::1]")


def api_host(host: str) -> str:
    """Where a registry's API answers: registry-1.docker.io for docker.io, else the host."""
    return DOCKER_HUB_API if host == DOCKER_HUB else host


def _unresolved(exc: BaseException) -> bool:
    """Whether a connection failed because the host name does not resolve."""
    seen = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            return True
        seen = seen.__cause__ or seen.__context__
    return "Name or service not known" in str(exc) or "name resolution" in str(exc)


class Client:
    """A client for one registry host; `requests` counts what was sent, by (method, kind)."""

    def __init__(self, host: str, *, insecure: bool = False, credentials: auth.Credentials | None = None,
                 transport: httpx.BaseTransport | None = None, retries: int = 4, backoff: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        scheme = "http" if insecure or is_local(host) else "https"
        self.host = host
        self.base = f"{scheme}://{api_host(host)}/v2"
        self.credentials = credentials if credentials is not None else auth.lookup(host)
        self.retries, self.backoff = retries, backoff
        self.requests: Counter[tuple[str, str]] = Counter()
        self.scopes: list[str] = []  # repository scopes every token request asks for (want())
        self._authorization: str | None = None
        # the bearer token's challenge and when to fetch a new one (before it runs out: a big
        # upload sent with a stale token would be sent twice)
        self._renewal: tuple[auth.Challenge, float] | None = None
        self._clock = clock
        self._http = httpx.Client(transport=transport, follow_redirects=True,
                                  timeout=httpx.Timeout(60.0, connect=15.0))

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # -- requests, auth, retries --------------------------------------------------------------

    def _url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base + path

    def request(self, method: str, path: str, kind: str, *, content: Callable[[], bytes | Iterator[bytes]] | None = None,
                headers: dict[str, str] | None = None, ok: tuple[int, ...] = (200,)) -> httpx.Response:
        """Send with auth and retries; RegistryError unless the status is in `ok`."""
        response = self._send(method, path, kind, content, headers, stream=False)
        return self._expect(response, method, path, ok)

    @contextmanager
    def stream(self, method: str, path: str, kind: str, ok: tuple[int, ...] = (200,),
               headers: dict[str, str] | None = None) -> Iterator[httpx.Response]:
        """Like `request`, with the body left unread for `iter_bytes()`."""
        response = self._send(method, path, kind, None, headers, stream=True)
        try:
            if response.status_code not in ok:
                response.read()
            yield self._expect(response, method, path, ok)
        finally:
            response.close()

    def _send(self, method, path, kind, content, headers, stream: bool) -> httpx.Response:
        self.requests[(method, kind)] += 1
        if self._renewal is not None and self._clock() >= self._renewal[1]:
            self._authorization = f"Bearer {self._token(self._renewal[0])}"
        url = self._url(path)
        authorized = False
        for attempt in range(self.retries + 1):
            try:
                response = self._once(method, url, content, headers, stream)
            except httpx.TransportError as exc:
                if _unresolved(exc):
                    raise RegistryError(f"cannot reach {self._label()}: the host name does not resolve "
                                        f"({exc})") from None
                if attempt == self.retries:
                    raise RegistryError(f"{method} {url}: {exc or type(exc).__name__}") from None
                time.sleep(self.backoff * 2 ** attempt)
                continue
            if response.status_code == 401 and not authorized:
                response.close()
                self._authenticate(response, method, url)
                authorized = True
                response = self._once(method, url, content, headers, stream)
            if response.status_code >= 500 or response.status_code == 429:
                if attempt < self.retries:
                    response.close()
                    time.sleep(self.backoff * 2 ** attempt)
                    continue
            return response
        raise AssertionError("unreachable")

    def _label(self) -> str:
        """`docker.io (registry-1.docker.io)`, or the host."""
        api = api_host(self.host)
        return f"{self.host} ({api})" if api != self.host else self.host

    def _once(self, method, url, content, headers, stream: bool) -> httpx.Response:
        all_headers = dict(headers or {})
        if self._authorization:
            all_headers["Authorization"] = self._authorization
        body = content() if content is not None else None
        request = self._http.build_request(method, url, headers=all_headers, content=body)
        return self._http.send(request, stream=stream)

    def _authenticate(self, response: httpx.Response, method: str, url: str) -> None:
        """Answer a 401: fetch a bearer token, or use basic credentials."""
        challenge = auth.Challenge.parse(response.headers.get("www-authenticate", ""))
        if challenge.scheme == "basic":
            if self.credentials is None:
                raise RegistryError(f"{method} {url}: unauthorized: {self.host} wants a user name and "
                                    "password, and none is saved for it", hint=f"minibuild login {self.host}")
            self._authorization = f"Basic {self.credentials.encoded()}"
        elif challenge.scheme == "bearer" and challenge.get("realm"):
            self._authorization = f"Bearer {self._token(challenge)}"
        else:
            raise RegistryError(f"{url}: unsupported authentication challenge {challenge.scheme!r}")

    def want(self, repository: str, actions: str) -> None:
        """Ask for `repository:<repository>:<actions>` in every token from now on (a push wants
        pull,push on its repository and pull on mount sources: one token serves every blob)."""
        self.scopes.append(f"repository:{repository}:{actions}")

    def _token(self, challenge: auth.Challenge) -> str:
        """A bearer token for the challenge's scope and the wanted ones, merged per repository."""
        scopes = auth.merge_scopes([challenge.get("scope") or "", *self.scopes])
        realm = challenge.get("realm") or ""
        try:
            response = auth.request_token(self._http, realm, challenge.get("service"), scopes, self.credentials)
        except httpx.TransportError as exc:
            raise RegistryError(f"token server {realm}: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise self._token_refused(realm, response)
        try:
            body = response.json()
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            raise RegistryError(f"token server {realm} sent no JSON token") from None
        if not token:
            raise RegistryError(f"token server {realm} sent no token")
        self._renewal = (challenge, self._clock() + auth.renewal_delay(body))
        return token

    def _token_refused(self, realm: str, response: httpx.Response) -> RegistryError:
        """One line naming the token server and the user (never the secret), with the login hint."""
        detail = _error_text(response)
        status = f"HTTP {response.status_code}{': ' if detail else ''}{detail}"
        if response.status_code not in (401, 403):
            return RegistryError(f"token server {realm} answered {status}")
        user = self.credentials.username if self.credentials else ""
        who = f"user {user!r}" if user else "the credentials" if self.credentials else "anonymous access"
        return RegistryError(f"unauthorized: the token server {realm} for {self.host} refused {who} ({status})",
                             hint=f"minibuild login {self.host}")

    def _expect(self, response: httpx.Response, method: str, path: str, ok: tuple[int, ...]) -> httpx.Response:
        if response.status_code in ok:
            return response
        detail = _error_detail(response)
        if response.status_code == 401:
            raise RegistryError(f"{method} {self._url(path)}: unauthorized{detail}",
                                hint=f"minibuild login {self.host}")
        raise RegistryError(f"{method} {self._url(path)}: HTTP {response.status_code}{detail}")

    # -- the API -----------------------------------------------------------------------------

    def ping(self) -> None:
        """GET /v2/: reachable and, with credentials, authorized."""
        self.request("GET", "/", "ping")

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        """A manifest's bytes (at most MANIFEST_LIMIT) and media type."""
        with self.stream("GET", f"/{repository}/manifests/{reference}", "manifest",
                         headers={"Accept": MANIFEST_ACCEPT}) as response:
            data = b""
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > MANIFEST_LIMIT:
                    raise RegistryError(f"manifest {repository}:{reference} is over {MANIFEST_LIMIT} bytes")
            media_type = response.headers.get("content-type", "").split(";")[0].strip()
            claimed = response.headers.get("docker-content-digest")
        if claimed and claimed.startswith("sha256:") and Digest.parse(claimed) != Digest.of(data):
            raise RegistryError(f"manifest {repository}:{reference}: body hashes to {Digest.of(data)}, "
                                f"the registry says {claimed}")
        return data, media_type

    def has_manifest(self, repository: str, reference: str) -> bool:
        """HEAD a manifest by tag or digest."""
        response = self.request("HEAD", f"/{repository}/manifests/{reference}", "manifest-head",
                                headers={"Accept": MANIFEST_ACCEPT}, ok=(200, 404))
        return response.status_code == 200

    def has_blob(self, repository: str, digest: Digest) -> bool:
        """HEAD the blob."""
        response = self.request("HEAD", f"/{repository}/blobs/{digest}", "blob-head", ok=(200, 404))
        return response.status_code == 200

    @contextmanager
    def blob(self, repository: str, digest: Digest) -> Iterator[Iterator[bytes]]:
        """The blob's bytes as a stream of chunks (the caller verifies the digest)."""
        with self.stream("GET", f"/{repository}/blobs/{digest}", "blob-get") as response:
            yield response.iter_bytes(_CHUNK)

    def mount_blob(self, repository: str, digest: Digest, source: str) -> bool:
        """Ask for a cross-repository mount; True when the registry mounted it."""
        response = self.request("POST", f"/{repository}/blobs/uploads/?mount={digest}&from={source}",
                                "blob-mount", ok=(201, 202))
        if response.status_code == 202:  # not mounted: drop the upload session it opened
            location = response.headers.get("location")
            if location:
                self.request("DELETE", self._location(location), "upload-cancel", ok=(204, 404, 200))
        return response.status_code == 201

    def upload_blob(self, repository: str, digest: Digest, size: int, opener: Callable[[], BinaryIO],
                    chunk_size: int | None = None, on_bytes: Callable[[int], None] = lambda n: None) -> None:
        """Upload a blob: monolithic (POST then one PUT), or chunked (PATCH per chunk) past chunk_size."""
        response = self.request("POST", f"/{repository}/blobs/uploads/", "upload-start", ok=(202,))
        location = self._location(_upload_location(response, "upload-start"))
        if chunk_size is None or size <= chunk_size:
            def body() -> Iterator[bytes]:
                with opener() as f:
                    while chunk := f.read(_CHUNK):
                        on_bytes(len(chunk))
                        yield chunk
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
            self.request("PUT", _with_digest(location, digest), "upload", content=body,
                         headers=headers, ok=(201,))
            return
        location = self._upload_chunks(location, opener, chunk_size, on_bytes)
        self.request("PUT", _with_digest(location, digest), "upload-finish", ok=(201,),
                     headers={"Content-Length": "0"})

    def _upload_chunks(self, location: str, opener, chunk_size: int, on_bytes) -> str:
        offset = 0
        with opener() as f:
            while chunk := f.read(chunk_size):
                headers = {"Content-Type": "application/octet-stream",
                           "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                           "Content-Length": str(len(chunk))}
                response = self.request("PATCH", location, "upload-chunk", content=lambda c=chunk: c,
                                        headers=headers, ok=(202,))
                location = self._location(_upload_location(response, "upload-chunk"))
                offset += len(chunk)
                on_bytes(len(chunk))
        return location

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> Digest:
        """PUT a manifest under a tag or digest; the digest of the bytes sent."""
        self.request("PUT", f"/{repository}/manifests/{reference}", "manifest-put", content=lambda: data,
                     headers={"Content-Type": media_type}, ok=(201, 200))
        return Digest.of(data)

    def _location(self, location: str) -> str:
        """Upload locations may be relative to the host."""
        if location.startswith(("http://", "https://")):
            return location
        return self.base.removesuffix("/v2") + location


def _with_digest(location: str, digest: Digest) -> str:
    return f"{location}{'&' if '?' in location else '?'}digest={digest}"


def _upload_location(response: httpx.Response, what: str) -> str:
    """Where an upload goes on: the Location header the protocol requires."""
    location = response.headers.get("location")
    if not location:
        raise RegistryError(f"{what}: {response.request.method} {response.request.url} answered "
                            f"{response.status_code} without a Location header")
    return location


def _error_detail(response: httpx.Response) -> str:
    """The registry's own error text in parentheses, when it sent the standard JSON error body."""
    text = _error_text(response)
    return f" ({text})" if text else ""


def _error_text(response: httpx.Response) -> str:
    """`CODE: message; ...` from a standard JSON error body, else ""."""
    try:
        errors = response.json().get("errors") or []
        return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors if isinstance(e, dict))
    except (ValueError, AttributeError):
        return ""
