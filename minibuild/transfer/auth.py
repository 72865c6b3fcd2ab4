"""Registry credentials: where they are read and written, auth challenges, token requests.

Read, first match wins: minibuild's own login file; podman's auth.json (`$REGISTRY_AUTH_FILE`,
else `${XDG_RUNTIME_DIR}/containers/auth.json`, then `$XDG_CONFIG_HOME/containers/auth.json`);
docker's config.json (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`). Every file has
docker's shape: `credHelpers` (per host) and `credsStore` (all hosts) name a credential helper
that is run (credhelper.py); else `auths` entries give `auth` (base64 "user:password"),
`identitytoken` (an OAuth2 refresh token), or podman-style `username`/`password`.

`login` hands the password to the helper docker's config names for the host, when it names one
(and drops any copy in minibuild's file); else it writes minibuild's file (mode 0600). `logout`
erases both. Docker Hub is `docker.io` here and `https://index.docker.io/v1/` in the files and
helpers, as docker writes it. No secret is ever put in a message.
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import httpx

from minibuild.errors import MinibuildError
from minibuild.fs.files import write_atomic
from minibuild.oci.reference import DOCKER_HUB, DOCKER_HUB_API
from minibuild.transfer import credhelper

DOCKER_HUB_SERVER = "https://index.docker.io/v1/"  # Docker Hub's key in docker's files and helpers
_HUB_ALIASES = ("index.docker.io", DOCKER_HUB_API, DOCKER_HUB)


class AuthError(MinibuildError):
    """Credentials cannot be read, stored or used."""


@dataclass(frozen=True)
class Credentials:
    """A user name and password for one registry, or an identity token (OAuth2 refresh token)."""

    username: str
    password: str
    identity_token: str | None = None

    def encoded(self) -> str:
        """base64("user:password"), as config.json and HTTP basic auth carry it."""
        return base64.b64encode(f"{self.username}:{self.password}".encode()).decode()

    def __repr__(self) -> str:  # never print a password or token by accident
        return f"Credentials(username={self.username!r}, password=***)"


def canonical_host(host: str) -> str:
    """Docker Hub's spellings (`index.docker.io`, the API host) are `docker.io`."""
    return DOCKER_HUB if host in _HUB_ALIASES else host


def server_url(host: str) -> str:
    """The key docker writes for a host: `https://index.docker.io/v1/` for Docker Hub."""
    return DOCKER_HUB_SERVER if canonical_host(host) == DOCKER_HUB else host


def login_file() -> Path:
    """`MINIBUILD_AUTH_FILE`, else $XDG_CONFIG_HOME (~/.config)/minibuild/auth.json."""
    env = os.environ.get("MINIBUILD_AUTH_FILE")
    if env:
        return Path(env)
    return _config_home() / "minibuild" / "auth.json"


def podman_auth_files() -> list[Path]:
    """$REGISTRY_AUTH_FILE, else ${XDG_RUNTIME_DIR}/containers/auth.json; then
    $XDG_CONFIG_HOME/containers/auth.json (containers/image's order)."""
    env = os.environ.get("REGISTRY_AUTH_FILE")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    first = [Path(env)] if env else [Path(runtime) / "containers" / "auth.json"] if runtime else []
    return first + [_config_home() / "containers" / "auth.json"]


def docker_config_file() -> Path:
    """$DOCKER_CONFIG/config.json, else ~/.docker/config.json."""
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"


def _config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


# -- reading ---------------------------------------------------------------------------------


def lookup(host: str) -> Credentials | None:
    """Credentials for a registry host: our login file, podman's, docker's; else None."""
    host = canonical_host(host)
    for path in (login_file(), *podman_auth_files(), docker_config_file()):
        found = _from_file(path, host)
        if found is not None:
            return found
    return None


def _from_file(path: Path, host: str) -> Credentials | None:
    """A docker-shaped file's credentials for `host`: its helper's, else its `auths` entry."""
    data = _read(path)
    helper = helper_for(data, host)
    if helper:
        held = credhelper.get(helper, server_url(host))
        if held is not None:
            return _from_helper(held)
    for key, entry in (data.get("auths") or {}).items():
        if canonical_host(_host_of(key)) == host and isinstance(entry, dict):
            found = _from_entry(entry, path)
            if found is not None:
                return found
    return None


def helper_for(data: dict, host: str) -> str | None:
    """The helper a docker config names for `host`: `credHelpers`, else `credsStore`."""
    for key, name in (data.get("credHelpers") or {}).items():
        if canonical_host(_host_of(key)) == host and name:
            return str(name)
    store_name = data.get("credsStore")
    return str(store_name) if store_name else None


def _from_helper(held: credhelper.HelperCredentials) -> Credentials:
    if held.username == credhelper.TOKEN_USER:
        return Credentials("", "", identity_token=held.secret)
    return Credentials(held.username, held.secret)


def _from_entry(entry: dict, path: Path) -> Credentials | None:
    """`auth` (with an `identitytoken` beside it, or alone), or `username` + `password`."""
    user, password = "", ""
    if entry.get("auth"):
        user, password = _decode(entry["auth"], path)
    elif entry.get("username") and entry.get("password") is not None:
        user, password = str(entry["username"]), str(entry["password"])
    token = entry.get("identitytoken")
    if token:
        return Credentials(user, "", identity_token=str(token))
    return Credentials(user, password) if user else None


# -- writing (login, logout) -----------------------------------------------------------------


def store(host: str, credentials: Credentials) -> str:
    """Remember credentials for a host: with the helper docker's config names for it, else in
    our login file (mode 0600); return where they went."""
    host = canonical_host(host)
    helper = helper_for(_read(docker_config_file()), host)
    if helper:
        credhelper.store(helper, server_url(host), credentials.username, credentials.password)
        _drop(login_file(), host)  # a stale copy there would win over the helper
        return credhelper.program(helper)
    path = login_file()
    data = _read(path)
    data.setdefault("auths", {})[server_url(host)] = {"auth": credentials.encoded()}
    _write(path, data)
    return str(path)


def forget(host: str) -> bool:
    """Drop a host from our login file and from docker's helper for it; False when neither had it."""
    host = canonical_host(host)
    dropped = _drop(login_file(), host)
    helper = helper_for(_read(docker_config_file()), host)
    if helper:
        dropped = credhelper.erase(helper, server_url(host)) or dropped
    return dropped


def _drop(path: Path, host: str) -> bool:
    data = _read(path)
    auths = data.get("auths") or {}
    keys = [k for k in auths if canonical_host(_host_of(k)) == host]
    if not keys:
        return False
    for key in keys:
        del auths[key]
    _write(path, data)
    return True


def _host_of(key: str) -> str:
    """`https://host/v1/` or `host` → `host`."""
    return re.sub(r"^[a-z]+://", "", key).split("/", 1)[0]


def _decode(text: str, path: Path) -> tuple[str, str]:
    try:
        user, sep, password = base64.b64decode(text).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        sep = ""
    if not sep:
        raise AuthError(f"{path}: an `auth` entry is not base64 of user:password")
    return user, password


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


_ACTION_ORDER = {"pull": 0, "push": 1}


def request_token(http: httpx.Client, realm: str, service: str | None, scopes: list[str],
                  credentials: Credentials | None) -> httpx.Response:
    """Ask a token server: a GET with basic credentials (or none: anonymous), or docker's OAuth2
    refresh-token POST for an identity token. Transport errors are the caller's to word."""
    if credentials is not None and credentials.identity_token:
        form = {"grant_type": "refresh_token", "refresh_token": credentials.identity_token,
                "client_id": "minibuild", "scope": " ".join(scopes), **({"service": service} if service else {})}
        return http.post(realm, data=form)
    params = [("service", service)] if service else []
    params += [("scope", scope) for scope in scopes]
    headers = {"Authorization": f"Basic {credentials.encoded()}"} if credentials else {}
    return http.get(realm, params=params, headers=headers)


def renewal_delay(body: dict) -> float:
    """Seconds until a token should be fetched anew: 10 s before its `expires_in` runs out (the
    token spec's default lifetime is 60 s when the server names none), never under half of it."""
    try:
        lifetime = float(body.get("expires_in") or 60)
    except (TypeError, ValueError):
        lifetime = 60.0
    return max(lifetime - 10.0, lifetime / 2)


def merge_scopes(scopes: list[str]) -> list[str]:
    """One scope per resource with the union of its actions, in first-seen order:
    `repository:a:pull` and `repository:a:pull,push` are `repository:a:pull,push` (a token server
    asked for both would issue the same token, and the request would look like two scopes)."""
    merged: dict[str, list[str] | None] = {}
    for scope in (one for text in scopes for one in text.split(" ") if one):
        resource, _, actions = scope.rpartition(":")
        if ":" not in resource:  # not TYPE:NAME:ACTIONS: pass it on as it came
            merged.setdefault(scope, None)
            continue
        known = merged.setdefault(resource, [])
        known.extend(a for a in actions.split(",") if a and a not in known)
    return [resource if actions is None else f"{resource}:{','.join(sorted(actions, key=_action_rank))}"
            for resource, actions in merged.items()]


def _action_rank(action: str) -> tuple[int, str]:
    return _ACTION_ORDER.get(action, 2), action
