"""A bearer token server for tests, in this process on 127.0.0.1, for a real `docker-registry`
configured with `auth: token`.

It does what Docker Hub's auth.docker.io does, as distribution 2.8 verifies it
(registry/auth/token/token.go): a GET on the realm with `service` and `scope` parameters and
optional basic credentials answers `{"token", "access_token", "expires_in", "issued_at"}`, a JWT
signed RS256 with a key `openssl` generated, whose self-signed certificate rides in the header's
`x5c` and is the registry's `rootcertbundle`. Claims: iss, sub, aud (= service), exp, nbf, iat,
jti, access. Wrong credentials get 401; no credentials get a token granting nothing (anonymous).

distribution accepts a token up to 60 s past its `exp` (its Leeway), so `lifetime` sets `exp`
that much earlier: a token then really stops working `lifetime` seconds after it is issued.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

ISSUER, SERVICE = "minibuild-test-issuer", "minibuild-test-registry"
LEEWAY = 60  # distribution's registry/auth/token Leeway, in seconds


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenServer:
    """Issues tokens; `requests` counts token requests by their sorted scope tuple."""

    key: Path
    cert: Path
    users: dict[str, str]
    lifetime: float = 300.0
    claimed_lifetime: float | None = None  # the `expires_in` told to the client (None: lifetime)
    port: int = 0
    requests: Counter = field(default_factory=Counter)
    refused: int = 0
    seen_authorization: list[str] = field(default_factory=list)

    @property
    def realm(self) -> str:
        """The URL the registry names in its challenge."""
        return f"http://127.0.0.1:{self.port}/token"

    def answer(self, query: dict[str, list[str]], authorization: str | None) -> tuple[int, dict]:
        """(status, JSON body) for one token request."""
        scopes = tuple(sorted(query.get("scope", [])))
        self.requests[scopes] += 1
        user = self._user(authorization)
        if user is None:
            self.refused += 1
            return 401, {"errors": [{"code": "UNAUTHORIZED", "message": "wrong user name or password"}]}
        access = _access(scopes) if user else []
        token = self.sign(user, query.get("service", [""])[0], access)
        return 200, {"token": token, "access_token": token, "expires_in": int(self.claimed_lifetime or self.lifetime),
                     "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def _user(self, authorization: str | None) -> str | None:
        """The authenticated user, "" for anonymous, None for wrong credentials."""
        if not authorization:
            return ""
        self.seen_authorization.append(authorization)
        scheme, _, encoded = authorization.partition(" ")
        user, _, password = base64.b64decode(encoded).decode().partition(":")
        ok = scheme.lower() == "basic" and self.users.get(user) == password
        return user if ok else None

    def sign(self, subject: str, audience: str, access: list[dict]) -> str:
        """A compact JWS, RS256, signed by `openssl dgst` with the test key."""
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
                             check=True, capture_output=True).stdout
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": subject, "aud": audience, "iat": now, "nbf": now - 1,
                  "exp": now + int(self.lifetime) - LEEWAY, "jti": uuid.uuid4().hex, "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                                   input=signing_input.encode(), check=True, capture_output=True).stdout
        return f"{signing_input}.{_b64url(signature)}"

    def total(self) -> int:
        """Token requests so far, all scopes."""
        return sum(self.requests.values())


def _access(scopes: tuple[str, ...]) -> list[dict]:
    """Grant every action asked for on every repository (the test user may do anything)."""
    granted: dict[str, set[str]] = {}
    for scope in scopes:
        for one in scope.split(" "):
            kind, _, rest = one.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind == "repository" and name:
                granted.setdefault(name, set()).update(a for a in actions.split(",") if a)
    return [{"type": "repository", "name": name, "actions": sorted(actions)}
            for name, actions in sorted(granted.items())]


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """(key, cert): a fresh RSA key and a self-signed certificate for it, by `openssl req`."""
    key, cert = directory / "token.key", directory / "token.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "2", "-subj", "/CN=minibuild test token issuer"],
                   check=True, capture_output=True)
    return key, cert


def _handler(server: TokenServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's spelling)
            url = urlparse(self.path)
            status, body = server.answer(parse_qs(url.query), self.headers.get("Authorization"))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:  # quiet: pytest shows stderr on failure
            pass

    return Handler


class running:
    """`with running(server):` serves it on 127.0.0.1 (a free port) in a thread."""

    def __init__(self, server: TokenServer) -> None:
        self.server = server
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
        server.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> TokenServer:
        self.thread.start()
        return self.server

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()
