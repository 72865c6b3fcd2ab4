"""docker's credential helpers: `docker-credential-<name>` on PATH, spoken to as docker does
(docker/docker-credential-helpers `client`): `get` and `erase` take the server URL on stdin,
`store` takes `{"ServerURL", "Username", "Secret"}`; `get` answers with that JSON, or fails with
`credentials not found in native keychain` on stdout. A Username of `<token>` means the Secret is
an identity token (OAuth2 refresh token), not a password.

A helper's output is never copied into an error as it is: any secret in it is masked first.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass

from minibuild.errors import MinibuildError

NOT_FOUND = "credentials not found in native keychain"
TOKEN_USER = "<token>"
_TIMEOUT = 60  # a helper may ask a keyring to unlock; never hang a build forever


class CredentialHelperError(MinibuildError):
    """A credential helper is missing, failed, or answered something that is not its protocol."""


@dataclass(frozen=True)
class HelperCredentials:
    """What a helper holds for one server: a user name and a secret (password or token)."""

    username: str
    secret: str

    def __repr__(self) -> str:  # never print a secret by accident
        return f"HelperCredentials(username={self.username!r}, secret=***)"


def program(name: str) -> str:
    """The executable of helper `name` (`pass` → `docker-credential-pass`)."""
    return f"docker-credential-{name}"


def get(name: str, server: str) -> HelperCredentials | None:
    """What helper `name` holds for `server`; None when it holds nothing for it."""
    proc = _run(name, "get", server.encode(), ())
    if proc.returncode != 0:
        if proc.stdout.decode(errors="replace").strip() == NOT_FOUND:
            return None
        raise _failed(name, "get", server, proc, ())
    try:
        answer = json.loads(proc.stdout)
        return HelperCredentials(str(answer["Username"]), str(answer["Secret"]))
    except (ValueError, KeyError, TypeError):
        raise CredentialHelperError(f"{program(name)} get {server}: the answer is not the credential "
                                    "helper JSON ({\"Username\", \"Secret\"})") from None


def store(name: str, server: str, username: str, secret: str) -> None:
    """Hand credentials for `server` to helper `name`."""
    body = json.dumps({"ServerURL": server, "Username": username, "Secret": secret}).encode()
    proc = _run(name, "store", body, (secret,))
    if proc.returncode != 0:
        raise _failed(name, "store", server, proc, (secret,))


def erase(name: str, server: str) -> bool:
    """Ask helper `name` to forget `server`; False when it held nothing for it."""
    proc = _run(name, "erase", server.encode(), ())
    if proc.returncode != 0:
        if proc.stdout.decode(errors="replace").strip() == NOT_FOUND:
            return False
        raise _failed(name, "erase", server, proc, ())
    return True


def _run(name: str, action: str, data: bytes, secrets: tuple[str, ...]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([program(name), action], input=data, capture_output=True, timeout=_TIMEOUT)
    except FileNotFoundError:
        raise CredentialHelperError(f"credential helper {program(name)} is not on PATH",
                                    hint="install it, or drop credsStore/credHelpers from the docker "
                                         "config") from None
    except subprocess.TimeoutExpired:
        raise CredentialHelperError(f"{program(name)} {action} gave no answer in {_TIMEOUT} s") from None
    except OSError as exc:
        raise CredentialHelperError(f"cannot run {program(name)}: {mask(exc.strerror or str(exc), secrets)}") from None


def _failed(name: str, action: str, server: str, proc: subprocess.CompletedProcess,
            secrets: tuple[str, ...]) -> CredentialHelperError:
    said = (proc.stdout or proc.stderr).decode(errors="replace").strip().splitlines()
    text = mask(said[0][:200], secrets) if said else f"exit status {proc.returncode}"
    return CredentialHelperError(f"{program(name)} {action} {server} failed: {text}")


def mask(text: str, secrets: tuple[str, ...]) -> str:
    """`text` with every non-empty secret in it replaced by ***."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
