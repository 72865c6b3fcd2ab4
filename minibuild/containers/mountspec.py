"""A container's mount as its record keeps it (`MountSpec`), and the rules every mount obeys
whichever flag or VOLUME made it: an absolute target off /proc and /dev, a valid volume name,
one mount per target, an anonymous volume for each VOLUME of the image no flag covers (pure).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from minibuild.errors import MinibuildError

TYPES = ("bind", "volume", "tmpfs")
# docker's rule for a local volume name: at least two characters
VOLUME_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
# The sandbox mounts /proc and /dev itself, over anything mounted there before.
_RESERVED = ("/proc", "/dev")


class RunFlagError(MinibuildError):
    """A `run` flag (-v, --mount, --tmpfs, --env-file, -h) that does not parse."""

    exit_code = 2


@dataclass(frozen=True)
class MountSpec:
    """One mount of a container: a host path, a volume or a tmpfs on a target inside it."""

    type: str  # bind | volume | tmpfs
    target: str  # absolute, normalised, inside the container
    source: str = ""  # bind: an absolute host path; volume: its name ("" until one is given)
    readonly: bool = False
    anonymous: bool = False  # a volume made for this container alone (-v /dst, VOLUME)
    create_source: bool = False  # bind from -v: a missing host dir is made (docker's rule)
    nocopy: bool = False  # volume: never seeded from the image
    size: int | None = None  # tmpfs: bytes
    mode: int | None = None  # tmpfs: its root's mode
    noexec: bool = False  # tmpfs

    def describe(self) -> str:
        """`volume data on /data (ro)`, for messages and listings."""
        what = {"bind": f"bind {self.source}", "tmpfs": "tmpfs",
                "volume": "anonymous volume" if self.anonymous else f"volume {self.source}"}
        return f"{what[self.type]} on {self.target}" + (" (ro)" if self.readonly else "")

    def to_json(self) -> dict[str, Any]:
        """The spec as a container's record stores it (defaults left out)."""
        out: dict[str, Any] = {"type": self.type, "target": self.target}
        for key, value in (("source", self.source), ("readonly", self.readonly),
                           ("anonymous", self.anonymous), ("create_source", self.create_source),
                           ("nocopy", self.nocopy), ("size", self.size), ("mode", self.mode),
                           ("noexec", self.noexec)):
            if value not in ("", False, None):
                out[key] = value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MountSpec:
        """Inverse of to_json."""
        return cls(type=data["type"], target=data["target"], source=data.get("source", ""),
                   readonly=bool(data.get("readonly")), anonymous=bool(data.get("anonymous")),
                   create_source=bool(data.get("create_source")),
                   nocopy=bool(data.get("nocopy")), size=data.get("size"),
                   mode=data.get("mode"), noexec=bool(data.get("noexec")))


def target_path(raw: str, flag: str) -> str:
    """An absolute, normalised mount target; not `/`, not inside /proc or /dev."""
    if not raw:
        raise RunFlagError(f"{flag}: no destination (the path inside the container)")
    if not raw.startswith("/"):
        raise RunFlagError(f"{flag}: the destination {raw!r} is not an absolute path")
    path = "/" + posixpath.normpath(raw).lstrip("/")
    if path == "/":
        raise RunFlagError(f"{flag}: cannot mount over / (the container's root)")
    if any(path == r or path.startswith(r + "/") for r in _RESERVED):
        raise RunFlagError(f"{flag}: cannot mount on {path}: every container gets its own "
                           "/proc and /dev")
    return path


def volume_name(name: str, flag: str = "volume") -> str:
    """A volume name, checked against docker's rule."""
    if not VOLUME_NAME.fullmatch(name):
        raise RunFlagError(f"{flag}: {name!r} is not a valid volume name: it takes two or more "
                           "of [a-zA-Z0-9_.-], starting with a letter or digit",
                           hint="a host directory is given as an absolute path (or one "
                                "starting with ./)")
    return name


# -- the set of mounts ---------------------------------------------------------------------------


def check_targets(specs: Sequence[MountSpec]) -> None:
    """Refuse two mounts on one target (docker: duplicate mount point)."""
    seen: set[str] = set()
    for spec in specs:
        if spec.target in seen:
            raise RunFlagError(f"duplicate mount point: {spec.target}",
                               hint="give each -v, --mount and --tmpfs its own destination")
        seen.add(spec.target)


def with_image_volumes(specs: Sequence[MountSpec], volumes: Iterable[str]) -> list[MountSpec]:
    """The mounts asked for, plus an anonymous volume for each VOLUME of the image that none
    of them covers already (docker gives every one its own)."""
    out = list(specs)
    taken = {spec.target for spec in specs}
    for raw in volumes:
        target = "/" + posixpath.normpath("/" + raw).lstrip("/")
        if target == "/" or target in taken:
            continue
        taken.add(target)
        out.append(MountSpec("volume", target_path(target, f"the image's VOLUME {raw}"),
                             anonymous=True))
    return out


def named(spec: MountSpec, name: str) -> MountSpec:
    """An anonymous volume spec with the name it was given."""
    return replace(spec, source=name)
