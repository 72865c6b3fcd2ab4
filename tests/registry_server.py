"""A real registry for tests: Debian's `docker-registry` on 127.0.0.1, a free port, temp storage,
stopped by its PID; optionally with htpasswd (basic) auth.

distribution 2.8 serves htpasswd auth over plain http too (its docs ask for TLS, the code does not
insist), so the auth tests need no certificate. The bcrypt hashes it requires come from
`htpasswd -Bbn` (Debian's apache2-utils)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx

CONFIG = """version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
http:
  addr: {address}:{port}
"""
TOKEN_AUTH = """auth:
  token:
    realm: {realm}
    service: {service}
    issuer: {issuer}
    rootcertbundle: {cert}
"""
AUTH = """auth:
  htpasswd:
    realm: minibuild-test
    path: {htpasswd}
"""


@dataclass
class Registry:
    """A running registry: `host` is 127.0.0.1:PORT; `log` has one line per request."""

    host: str
    log: Path
    users: dict[str, str] = field(default_factory=dict)

    def requests(self, method: str, path_part: str) -> int:
        """How many requests of this method had `path_part` in their URI so far."""
        return sum(1 for line in self.log.read_text(errors="replace").splitlines()
                   if "response completed" in line and f'http.request.method={method}' in line
                   and path_part in line)


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def write_htpasswd(path: Path, users: dict[str, str]) -> None:
    """An htpasswd file with one bcrypt line per user (what distribution accepts)."""
    lines = [subprocess.run(["htpasswd", "-Bbn", user, password], check=True, capture_output=True,
                            text=True).stdout.strip() for user, password in users.items()]
    path.write_text("".join(line + "\n" for line in lines))


@contextmanager
def registry_server(directory: Path, users: dict[str, str] | None = None,
                    address: str = "127.0.0.1", token=None) -> Iterator[Registry]:
    """Start docker-registry on `address` (a loopback one: 127.0.0.1 gets plain http without
    being asked, 127.0.0.2 does not) with storage under `directory`; stop it by PID.

    With `users` ({name: password}) every request needs basic auth, checked against an htpasswd
    file written under `directory`. With `token` (a tests.token_server.TokenServer, already
    serving) the registry wants bearer tokens from it instead."""
    binary = shutil.which("docker-registry")
    if binary is None:
        import pytest

        pytest.skip("needs docker-registry (apt-get install docker-registry)")
    if users and shutil.which("htpasswd") is None:
        import pytest

        pytest.skip("needs htpasswd (apt-get install apache2-utils)")
    port = free_port(address)
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "config.yml"
    text = CONFIG.format(storage=directory / "storage", port=port, address=address)
    if users:
        write_htpasswd(directory / "htpasswd", users)
        text += AUTH.format(htpasswd=directory / "htpasswd")
    elif token is not None:
        from tests.token_server import ISSUER, SERVICE

        text += TOKEN_AUTH.format(realm=token.realm, service=SERVICE, issuer=ISSUER, cert=token.cert)
    config.write_text(text)
    log = directory / "registry.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_ready(address, port, proc, (200, 401) if users or token else (200,))
        yield Registry(f"{address}:{port}", log, dict(users or {}))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(address: str, port: int, proc: subprocess.Popen, ready: tuple[int, ...]) -> None:
    for _ in range(100):
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited with {proc.returncode}")
        try:
            if httpx.get(f"http://{address}:{port}/v2/", timeout=1).status_code in ready:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("docker-registry did not answer on /v2/")
