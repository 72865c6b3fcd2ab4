"""Image references (`name[:tag][@digest]`), parsed once at the edge."""

from __future__ import annotations

import re
from dataclasses import dataclass

from minibuild.oci.digest import Digest
from minibuild.errors import ReferenceError_

# docker/distribution reference grammar, simplified to what a local store needs.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_NAME = re.compile(rf"^(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")

DEFAULT_TAG = "latest"


@dataclass(frozen=True)
class Reference:
    """An image name with a tag or a digest (a tag defaults to `latest`)."""

    name: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse `name`, `name:tag`, `name@sha256:...`; raise ReferenceError_ with the reason."""
        if not text or text != text.strip():
            raise ReferenceError_(f"invalid reference format: {text!r}")
        rest, at, digest_text = text.partition("@")
        digest = Digest.parse(digest_text) if at else None
        name, tag = _split_tag(rest)
        if not _NAME.match(name):
            reason = "repository name must be lowercase" if name.lower() != name else "invalid reference format"
            raise ReferenceError_(f"{reason}: {text!r}")
        if tag is not None and not _TAG.match(tag):
            raise ReferenceError_(f"invalid tag {tag!r} in {text!r}")
        if tag is None and digest is None:
            tag = DEFAULT_TAG
        return cls(name=name, tag=tag, digest=digest)

    @property
    def ref_name(self) -> str:
        """The string stored as `org.opencontainers.image.ref.name` (`name:tag`)."""
        return str(self)

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def names_registry(name: str) -> bool:
    """Whether the first component of a name is a registry host ('.' or ':' in it, or localhost)."""
    first, slash, _ = name.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")


def _split_tag(text: str) -> tuple[str, str | None]:
    """Split `host:port/name:tag` at the tag colon (one after the last slash)."""
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        return text[:colon], text[colon + 1:]
    return text, None
