"""`build --secret` options: where the value of a secret comes from (pure; never the value).

A RUN reaches a secret by its id through a `type=secret` mount (runmount.py); the build maps
each id to a SecretSource, a file or an environment variable, read only when the step runs.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass


@dataclass(frozen=True)
class SecretSource:
    """Where a `build --secret` takes its value: a file, or an environment variable."""

    id: str
    path: str | None = None
    env: str | None = None

    def describe(self) -> str:
        """Where the value comes from, for messages (never the value)."""
        return f"file {self.path}" if self.path is not None else f"environment variable {self.env}"


def parse_secret_option(text: str) -> SecretSource:
    """`id=NAME[,src=PATH|,env=VAR][,type=file|env]`, as `docker build --secret` takes it;
    with neither src nor env the value is the environment variable named like the id.
    ValueError with a message for the command line."""
    try:
        record = next(csv.reader([text]), [])
    except csv.Error as exc:
        raise ValueError(f"{text!r}: {exc}") from None
    fields: dict[str, str] = {}
    for field in record:
        key, eq, value = field.partition("=")
        key = key.strip().lower()
        if not eq or key not in ("id", "src", "source", "env", "type"):
            raise ValueError(f"{text!r}: unexpected {field!r} (want id=, src=, env=, type=)")
        fields["src" if key == "source" else key] = value
    sid, kind = fields.get("id", ""), fields.get("type", "").lower()
    if not sid:
        raise ValueError(f"{text!r}: the secret needs an id=")
    if kind not in ("", "file", "env"):
        raise ValueError(f"{text!r}: unknown secret type {kind!r} (want file or env)")
    src, env = fields.get("src"), fields.get("env")
    if kind == "env" or (kind == "" and src is None):
        return SecretSource(sid, env=env or src or sid)
    if not src:
        raise ValueError(f"{text!r}: a type=file secret needs src=PATH")
    return SecretSource(sid, path=src)
