"""Image references (`name[:tag][@digest]`), parsed once at the edge, with Docker's name
normalisation: `debian` is `docker.io/library/debian:latest`, `user/app` is `docker.io/user/app`,
`index.docker.io/...` is `docker.io/...`. A first component is a registry host when it has a
`.` or a `:`, is `localhost`, or has an upper-case letter (docker/distribution `ParseNormalizedNamed`).

Tags are stored and shown in the familiar (shortest) form, as docker shows them: `debian:12`,
`user/app:1`, `127.0.0.1:5000/app:1`; two spellings of one image compare by `normalized()`.
"""

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
DOCKER_HUB = "docker.io"  # the registry of names that name none
DOCKER_HUB_API = "registry-1.docker.io"  # where Docker Hub's distribution API answers
DOCKER_HUB_AUTH = "auth.docker.io"  # Docker Hub's token service
_LEGACY_HUB = "index.docker.io"
_OFFICIAL = "library/"  # Docker Hub's namespace of one-component names


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
    def domain(self) -> str:
        """The registry the name lives in (`docker.io` when it names none)."""
        return split_name(self.name)[0]

    @property
    def path(self) -> str:
        """The repository inside its registry (`library/debian` for `debian`)."""
        return split_name(self.name)[1]

    def normalized(self) -> Reference:
        """The fully qualified spelling: `docker.io/library/debian:latest` for `debian`."""
        return Reference(f"{self.domain}/{self.path}", self.tag, self.digest)

    @property
    def familiar_name(self) -> str:
        """The shortest name docker shows: `debian` for `docker.io/library/debian`."""
        domain, path = split_name(self.name)
        if domain != DOCKER_HUB:
            return f"{domain}/{path}"
        if path.startswith(_OFFICIAL) and "/" not in path[len(_OFFICIAL):]:
            return path[len(_OFFICIAL):]
        return path

    @property
    def ref_name(self) -> str:
        """The string stored as `org.opencontainers.image.ref.name`: the familiar `name:tag`."""
        return str(Reference(self.familiar_name, self.tag, self.digest))

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def names_registry(name: str) -> bool:
    """Whether the first component of a name is a registry host ('.' or ':' in it, localhost,
    or an upper-case letter)."""
    first, slash, _ = name.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost" or first != first.lower())


def split_name(name: str) -> tuple[str, str]:
    """(registry, repository) of a name, Docker Hub's rules applied: `debian` →
    (`docker.io`, `library/debian`), `index.docker.io/x` → (`docker.io`, `library/x`)."""
    if names_registry(name):
        domain, _, path = name.partition("/")
    else:
        domain, path = DOCKER_HUB, name
    if domain == _LEGACY_HUB:
        domain = DOCKER_HUB
    if domain == DOCKER_HUB and "/" not in path:
        path = _OFFICIAL + path
    return domain, path


def same_image_name(a: str, b: str) -> bool:
    """Whether two stored or typed references (`name:tag`) name the same image, spelling aside."""
    try:
        return Reference.parse(a).normalized() == Reference.parse(b).normalized()
    except ReferenceError_:
        return a == b


def _split_tag(text: str) -> tuple[str, str | None]:
    """Split `host:port/name:tag` at the tag colon (one after the last slash)."""
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        return text[:colon], text[colon + 1:]
    return text, None
