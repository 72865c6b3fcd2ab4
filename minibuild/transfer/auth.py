"""Registry credentials: minibuild's own login file, then docker's `config.json`; auth challenges.

Both files use docker's shape, `{"auths": {"HOST": {"auth": base64("user:password")}}}`, so a
`docker login` is seen by minibuild and the other way round. Credential helpers are not run.
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from minibuild.errors import MinibuildError
from minibuild.fs.files import write_atomic


class AuthError(MinibuildError):
    """Credentials cannot be read, stored or used."""


@dataclass(frozen=True)
class Credentials:
    """A user name and password (or token) for one registry."""

    username: str
    password: str

    def encoded(self) -> str:
        """base64("user:password"), as config.json and HTTP basic auth carry it."""
        return base64.b64encode(f"{self.username}:{self.password}".encode()).decode()

    def __repr__(self) -> str:  # never print a password by accident
        return f"Credentials(username={self.username!r}, password=***)"


def login_file() -> Path:
    """`MINIBUILD_AUTH_FILE`, else $XDG_CONFIG_HOME (~/.config)/minibuild/auth.json."""
    env = os.environ.get("MINIBUILD_AUTH_FILE")
    if env:
        return Path(env)
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "minibuild" / "auth.json"


def docker_config_file() -> Path:
    """$DOCKER_CONFIG/config.json, else ~/.docker/config.json."""
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"


def lookup(host: str) -> Credentials | None:
    """Credentials for a registry host from our login file, else docker's config, else None."""
    for path in (login_file(), docker_config_file()):
        auths = _read(path).get("auths") or {}
        for key, entry in auths.items():
            if _host_of(key) == host and isinstance(entry, dict) and entry.get("auth"):
                return _decode(entry["auth"], path)
    return None


def store(host: str, credentials: Credentials) -> Path:
    """Remember credentials for a host in our login file (mode 0600); return the file."""
    path = login_file()
    data = _read(path)
    data.setdefault("auths", {})[host] = {"auth": credentials.encoded()}
    _write(path, data)
    return path


def forget(host: str) -> bool:
    """Drop a host from our login file; False when it was not there."""
    path = login_file()
    data = _read(path)
    if host not in (data.get("auths") or {}):
        return False
    del data["auths"][host]
    _write(path, data)
    return True


def _host_of(key: str) -> str:
    """`https://host/v1/` or `host` → `host`."""
    return re.sub(r"^[a-z]+://", "", key).split("/", 1)[0]


def _decode(text: str, path: Path) -> Credentials:
    try:
        user, sep, password = base64.b64decode(text).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        sep = ""
    if not sep:
        raise AuthError(f"{path}: an `auth` entry is not base64 of user:password")
    return Credentials(user, password)


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise AuthError(f"cannot read credentials file {path}: {exc}") from None
    return data if isinstance(data, dict) else {}


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, json.dumps(data, indent=2).encode(), durable=False, mode=0o600)


@dataclass(frozen=True)
class Challenge:
    """A parsed `WWW-Authenticate` header: scheme (bearer/basic) and its parameters."""

    scheme: str
    params: tuple[tuple[str, str], ...] = ()

    def get(self, key: str) -> str | None:
        """One parameter (realm, service, scope), or None."""
        return dict(self.params).get(key)

    @classmethod
    def parse(cls, header: str) -> Challenge:
        """`Bearer realm="https://auth",service="reg",scope="repository:a:pull"` → Challenge."""
        scheme, _, rest = header.strip().partition(" ")
        params = re.findall(r'([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))', rest)
        return cls(scheme.lower(), tuple((k.lower(), quoted or bare) for k, quoted, bare in params))
