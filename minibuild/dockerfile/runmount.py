"""`RUN --mount=...` specs, parsed into typed mounts (pure).

A spec is one CSV record of `key=value` fields and bare flags, as BuildKit reads it:
`type=cache,target=/root/.cache,sharing=locked`. Keys are case-insensitive; values are
expanded with the step's ARGs and ENV (BuildKit does the same). A relative target is taken
from the WORKDIR, as BuildKit does. Every mistake is a BuildfileError located at the RUN.
"""

from __future__ import annotations

import csv
import posixpath
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Union

from minibuild.errors import BuildfileError
from minibuild.dockerfile.instructions import Location
from minibuild.text import parse_size  # re-exported: one size syntax for RUN --mount, run and limits

TYPES = ("bind", "cache", "tmpfs", "secret")
SHARING = ("shared", "private", "locked")
_TARGET = ("target", "dst", "destination")
_SOURCE = ("source", "src")
_OPTIONS = {  # the keys each type takes (type itself aside)
    "bind": {*_TARGET, *_SOURCE, "from", "ro", "readonly", "rw", "readwrite"},
    "cache": {*_TARGET, *_SOURCE, "from", "id", "ro", "readonly", "rw", "readwrite", "sharing",
              "mode", "uid", "gid"},
    "tmpfs": {*_TARGET, "size"},
    "secret": {*_TARGET, *_SOURCE, "id", "env", "required", "mode", "uid", "gid"},  # source: the id
}
_FLAGS = {"ro", "readonly", "rw", "readwrite", "required"}  # may stand without `=value`
_KNOWN = set().union(*_OPTIONS.values()) | {"type"}
# The sandbox mounts /proc and /dev itself, over anything mounted there before.
_RESERVED = ("/proc", "/dev")
SHM = "/dev/shm"  # the one target under them a tmpfs may take
# uid/gid are 32 bits, and (uid_t)-1 tells chown "leave it": the highest one a file can have.
_MAX_ID = 2**32 - 2
_TRUE = ("1", "t", "true")
_FALSE = ("0", "f", "false")


@dataclass(frozen=True)
class BindMount:
    """`type=bind`: a dir or file of the context (default) or of a stage/image, read-only
    unless `rw` (then the step's writes to it are thrown away)."""

    target: str
    source: str = ""  # inside `from` (its root by default) or the context (its root by default)
    from_: str | None = None  # a stage name/index or an image; None: the build context
    readwrite: bool = False

    def key(self) -> dict[str, Any]:
        """What the step's cache key holds of this mount (what it reads is added by steps)."""
        return {"type": "bind", "target": self.target, "source": self.source,
                "from": self.from_, "rw": self.readwrite}


@dataclass(frozen=True)
class CacheMount:
    """`type=cache`: a dir kept in the store across builds; its content is never in a layer
    nor in a cache key."""

    target: str
    id: str
    sharing: str = "shared"  # shared | private | locked
    readonly: bool = False
    mode: int = 0o755  # of the dir when it is created
    uid: int = 0
    gid: int = 0
    from_: str | None = None  # a stage or image whose tree a new cache starts as
    source: str = ""  # ... and the path of it the target shows (its root: "")

    def key(self) -> dict[str, Any]:
        """What the step's cache key holds of this mount (not its content)."""
        key = {"type": "cache", "target": self.target, "id": self.id, "sharing": self.sharing,
               "ro": self.readonly, "mode": self.mode, "uid": self.uid, "gid": self.gid}
        if self.from_ is not None:  # only then: keys of plain caches stay what they were
            key.update({"from": self.from_, "source": self.source})
        return key


@dataclass(frozen=True)
class TmpfsMount:
    """`type=tmpfs`: an empty tmpfs for the step."""

    target: str
    size: int | None = None  # bytes; None: the kernel's default

    def key(self) -> dict[str, Any]:
        """What the step's cache key holds of this mount."""
        return {"type": "tmpfs", "target": self.target, "size": self.size}


@dataclass(frozen=True)
class SecretMount:
    """`type=secret`: a `--secret` of the build as a read-only file and/or an env variable;
    its value is never in a layer, the history, a cache key or the build memo."""

    id: str
    target: str | None  # None: only the env variable
    env: str | None = None
    required: bool = False
    mode: int = 0o400
    uid: int = 0
    gid: int = 0

    def key(self) -> dict[str, Any]:
        """What the step's cache key holds of this mount: names only, never the value."""
        return {"type": "secret", "id": self.id, "target": self.target, "env": self.env,
                "required": self.required, "mode": self.mode, "uid": self.uid, "gid": self.gid}


RunMount = Union[BindMount, CacheMount, TmpfsMount, SecretMount]


def parse_mounts(values: Iterable[str], location: Location, *, workdir: str = "/",
                 expand: Callable[[str], str] = lambda text: text) -> tuple[RunMount, ...]:
    """Every `--mount` of one RUN; two mounts on one target are an error."""
    mounts = tuple(parse_mount(v, location, workdir=workdir, expand=expand) for v in values)
    seen: set[str] = set()
    for mount in mounts:
        if mount.target is None:
            continue
        if mount.target in seen:
            raise _error(location, f"two mounts on one target: {mount.target}")
        seen.add(mount.target)
    return mounts


def parse_mount(text: str, location: Location, *, workdir: str = "/",
                expand: Callable[[str], str] = lambda text: text) -> RunMount:
    """One `--mount` value as a typed mount; every value, `type` included, is expanded."""
    fields = {k: (v if v is None else expand(v)) for k, v in _fields(text, location).items()}
    kind = (fields.pop("type", None) or "bind").lower()
    if kind == "ssh":
        raise _error(location, "RUN --mount=type=ssh is not supported (minibuild forwards no "
                               "SSH agent); use a type=secret mount for a key")
    if kind not in TYPES:
        raise _error(location, f"unknown mount type {kind!r} (want {', '.join(TYPES)})")
    for key in fields:
        if key not in _OPTIONS[kind]:
            where = f"{key!r} does not apply to type={kind}" if key in _KNOWN else f"unknown option {key!r}"
            raise _error(location, f"RUN --mount: {where}")
    opts = _Options(fields, location, kind)
    return {"bind": _bind, "cache": _cache, "tmpfs": _tmpfs, "secret": _secret}[kind](opts, workdir)


def mount_from_refs(values: Iterable[str],
                    expand: Callable[[str], str] = lambda text: text) -> list[str]:
    """The `from=` of each bind or cache `--mount` (the stages a RUN needs), `type` and `from` expanded
    with `expand`, never failing: mistakes are reported when the RUN is prepared."""
    refs = []
    for text in values:
        try:
            record = next(csv.reader([text]), [])
        except csv.Error:
            continue
        pairs = [f.partition("=") for f in record]
        fields = {k.strip().lower(): v for k, _, v in pairs}
        if expand(fields.get("type", "bind")).lower() in ("bind", "cache") and fields.get("from"):
            refs.append(expand(fields["from"]))
    return refs


# -- one spec ----------------------------------------------------------------------------------


def csv_fields(text: str) -> list[tuple[str, str | None]]:
    """A mount spec split as docker splits it (CSV): (lower-cased key, value, or None for a bare
    word) in order; ValueError when the CSV is malformed. Shared by RUN --mount and run --mount."""
    try:
        record = next(csv.reader([text]), [])
    except csv.Error as exc:
        raise ValueError(str(exc)) from None
    return [(key.strip().lower(), value if eq else None)
            for key, eq, value in (field.partition("=") for field in record)]


def _fields(text: str, location: Location) -> dict[str, str | None]:
    """The CSV fields as key -> value (None for a bare flag); later fields win."""
    try:
        pairs = csv_fields(text)
    except ValueError as exc:
        raise _error(location, f"RUN --mount={text}: {exc}") from None
    if not pairs:
        raise _error(location, "RUN --mount needs a value (e.g. --mount=type=cache,target=/root/.cache)")
    fields: dict[str, str | None] = {}
    for key, value in pairs:
        if not key:
            raise _error(location, f"RUN --mount={text}: empty option")
        if value is None and key not in _FLAGS:
            what = f"option {key!r} needs a value" if key in _KNOWN else f"unknown option {key!r}"
            raise _error(location, f"RUN --mount: {what}")
        fields[key] = value
    return fields


class _Options:
    """The fields of one spec, read with their type's rules."""

    def __init__(self, values: dict[str, str | None], location: Location, kind: str) -> None:
        self.values, self.location, self.kind = values, location, kind

    def text(self, *keys: str) -> str | None:
        """The value of the first key given (aliases), or None."""
        for key in keys:
            if key in self.values:
                value = self.values[key]
                if value is None:
                    raise self.error(f"option {key!r} needs a value")
                return value
        return None

    def flag(self, *keys: str) -> bool | None:
        """A boolean given bare (`ro`) or with a value (`ro=false`); None when absent."""
        result = None
        for key in keys:
            if key not in self.values:
                continue
            value = self.values[key]
            if value is None or value.lower() in _TRUE:
                result = True
            elif value.lower() in _FALSE:
                result = False
            else:
                raise self.error(f"{key}={value}: want true or false")
        return result

    def number(self, key: str, default: int, *, base: int = 10) -> int:
        """A non-negative integer (octal for modes)."""
        value = self.text(key)
        if value is None:
            return default
        try:
            number = int(value, base)
        except ValueError:
            number = -1
        if number < 0 or (base == 8 and number > 0o7777):
            what = "an octal mode such as 0755" if base == 8 else "a non-negative integer"
            raise self.error(f"{key}={value}: want {what}") from None
        if number > _MAX_ID:
            raise self.error(f"{key}={value}: want at most {_MAX_ID}")
        return number

    def readonly(self, default: bool) -> bool:
        """ro/readonly vs rw/readwrite (the last one written wins when both are given)."""
        ro, rw = self.flag("ro", "readonly"), self.flag("rw", "readwrite")
        if ro is None and rw is None:
            return default
        if ro is not None and rw is not None:
            last = [k for k in self.values if k in ("ro", "readonly", "rw", "readwrite")][-1]
            return ro if last in ("ro", "readonly") else not rw
        return ro if ro is not None else not rw

    def target(self, workdir: str, *, required: bool = True, allowed: tuple[str, ...] = ()) -> str | None:
        """The target, absolute (a relative one is under the WORKDIR, as BuildKit does); none
        under /proc or /dev but those `allowed`."""
        raw = self.text(*_TARGET)
        if not raw:
            if required:
                raise self.error("needs a target (target=/path)")
            return None
        path = posixpath.normpath(posixpath.join("/", workdir, raw))
        path = "/" + path.lstrip("/")
        if path == "/":
            raise self.error("cannot mount over / (target=/)")
        if path not in allowed and any(path == r or path.startswith(r + "/") for r in _RESERVED):
            raise self.error(f"cannot mount on {path}: the sandbox mounts /proc and /dev itself")
        return path

    def error(self, message: str) -> BuildfileError:
        """An error located at the RUN, naming the mount type."""
        return _error(self.location, f"RUN --mount=type={self.kind}: {message}")


def _bind(opts: _Options, workdir: str) -> BindMount:
    source = opts.text(*_SOURCE) or ""
    return BindMount(opts.target(workdir), source, opts.text("from") or None,
                     not opts.readonly(True))


def _cache(opts: _Options, workdir: str) -> CacheMount:
    """A cache; `from=` a stage or image makes a new cache start as a copy of its tree, and the
    target shows its `source=` path (BuildKit: the cache is a snapshot on top of `from`, one per
    id and `from`; mode/uid/gid apply to an empty cache only)."""
    target = opts.target(workdir)
    sharing = (opts.text("sharing") or "shared").lower()
    if sharing not in SHARING:
        raise opts.error(f"sharing={sharing}: want {', '.join(SHARING)}")
    source = opts.text(*_SOURCE) or ""
    from_ = opts.text("from") or None
    if source and from_ is None:
        raise opts.error("source= needs from= (the stage or image the cache starts from)")
    # BuildKit's default id: path.Clean(target), so target=/x/ and target=/x share a cache
    cid = opts.text("id") or _clean(opts.text(*_TARGET) or target)
    return CacheMount(target, cid, sharing, opts.readonly(False),
                      opts.number("mode", 0o755, base=8), opts.number("uid", 0),
                      opts.number("gid", 0), from_, posixpath.normpath("/" + source).lstrip("/"))


def _clean(path: str) -> str:
    """Go's path.Clean (posixpath.normpath keeps a leading `//`)."""
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def _tmpfs(opts: _Options, workdir: str) -> TmpfsMount:
    size = opts.text("size")
    try:
        parsed = None if size is None else parse_size(size)
    except ValueError as exc:
        raise opts.error(str(exc)) from None
    # /dev/shm: the step's tmpfs replaces the sandbox's (BuildKit's dedupMounts keeps the
    # user's mount of a default mount's destination), e.g. a bigger one for a browser's tests.
    return TmpfsMount(opts.target(workdir, allowed=(SHM,)), parsed)


def _secret(opts: _Options, workdir: str) -> SecretMount:
    raw_target = opts.text(*_TARGET)
    named, source = opts.text("id"), opts.text(*_SOURCE)
    if named and source:  # BuildKit takes source= as the id, and refuses both
        raise opts.error("give the secret's id= or its source=, not both")
    sid = named or source or (posixpath.basename(raw_target.rstrip("/")) if raw_target else "")
    if not sid:
        raise opts.error("needs an id (id=NAME) or a target to name it")
    env = opts.text("env") or None
    if env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env):
        raise opts.error(f"env={env}: not a valid environment variable name")
    if raw_target:
        target = opts.target(workdir)
    elif env is None:
        # BuildKit: /run/secrets/ + path.Base(id), so id=a/b is the file /run/secrets/b
        name = posixpath.basename(_clean(sid))
        if name in ("", ".", "..", "/"):
            raise opts.error(f"id={sid} cannot name a file in /run/secrets: give a target")
        target = f"/run/secrets/{name}"
    else:
        target = None  # env only
    return SecretMount(sid, target, env, bool(opts.flag("required")),
                       opts.number("mode", 0o400, base=8), opts.number("uid", 0),
                       opts.number("gid", 0))


def _error(location: Location, message: str) -> BuildfileError:
    return BuildfileError.at(location, message)
