"""`run`'s mount and environment flags, parsed into typed values as docker reads them (pure).

`-v SRC:DST[:OPTS]`, `--mount type=...,source=...,target=...` and `--tmpfs DST[:OPTS]` become
`MountSpec`s (mountspec.py: the form a container's record keeps, and the checks on a set of
them); `--env-file` lines become `KEY=VALUE` (or bare `KEY`) assignments; `-h` is checked as a
hostname. Every mistake is a RunFlagError naming the flag and what it accepts.
"""

from __future__ import annotations

import posixpath
import re

from minibuild.containers.mountspec import TYPES, MountSpec, RunFlagError, target_path, \
    volume_name

_HOSTNAME = re.compile(r"[a-zA-Z0-9]([a-zA-Z0-9.-]*[a-zA-Z0-9])?")
_TRUE = ("1", "t", "true", "yes")
_FALSE = ("0", "f", "false", "no")
_VOLUME_MODES = ("ro", "rw", "z", "Z", "nocopy")
_TMPFS_FLAGS = ("ro", "rw", "exec", "noexec", "nosuid", "nodev")
_MOUNT_KEYS = {  # the keys each --mount type takes (type itself aside)
    "bind": {"source", "src", "target", "destination", "dst", "readonly", "ro", "consistency"},
    "volume": {"source", "src", "target", "destination", "dst", "readonly", "ro", "consistency",
               "volume-nocopy", "volume-driver"},
    "tmpfs": {"target", "destination", "dst", "readonly", "ro", "tmpfs-size", "tmpfs-mode"},
}


# -- host paths ------------------------------------------------------------------------------------


def _host_path(raw: str, cwd: str) -> str:
    """A host path, made absolute against `cwd` (docker takes ./x and ../x too)."""
    return posixpath.normpath(posixpath.join(cwd, raw))


def _is_host_path(raw: str) -> bool:
    return raw.startswith("/") or raw in (".", "..") or raw.startswith(("./", "../"))


# -- -v / --volume ---------------------------------------------------------------------------------


def parse_volume(text: str, cwd: str) -> MountSpec:
    """`-v SRC:DST[:OPTS]`, `-v DST[:OPTS]`: a bind (SRC a host path), a named volume (SRC a
    name) or an anonymous one (no SRC). OPTS: ro, rw, nocopy; z and Z are accepted and
    ignored (no SELinux labels here)."""
    flag = f"-v {text}"
    parts = text.split(":")
    if len(parts) > 3 or not all(parts):
        raise RunFlagError(f"{flag}: want SRC:DST[:OPTS] or DST[:OPTS]")
    if len(parts) == 1 or (len(parts) == 2 and _modes_only(parts[1])):
        source, target, options = "", parts[0], parts[1:]  # DST[:OPTS]
    else:
        source, target, options = parts[0], parts[1], parts[2:]
    modes = options[0].split(",") if options else []
    unknown = [m for m in modes if m not in _VOLUME_MODES]
    if unknown:
        raise RunFlagError(f"{flag}: unknown option {unknown[0]!r} (want ro, rw, nocopy, "
                           "or z/Z, which are ignored)")
    if "ro" in modes and "rw" in modes:
        raise RunFlagError(f"{flag}: ro and rw contradict each other")
    readonly = "ro" in modes
    target = target_path(target, flag)
    if not source:
        return MountSpec("volume", target, readonly=readonly, anonymous=True,
                         nocopy="nocopy" in modes)
    if _is_host_path(source):
        if "nocopy" in modes:
            raise RunFlagError(f"{flag}: nocopy is for volumes, not host paths")
        return MountSpec("bind", target, _host_path(source, cwd), readonly, create_source=True)
    return MountSpec("volume", target, volume_name(source, flag), readonly,
                     nocopy="nocopy" in modes)


def _modes_only(text: str) -> bool:
    """Whether `DST:TEXT` means options for DST rather than a SRC:DST pair."""
    return all(m in _VOLUME_MODES for m in text.split(","))


# -- --mount ---------------------------------------------------------------------------------------


def _fields(text: str, flag: str) -> dict[str, str | None]:
    """The CSV fields of a --mount value, keys lower-cased; a bare word has the value None."""
    from minibuild.dockerfile.runmount import csv_fields  # one CSV reading for RUN --mount and run --mount

    try:
        pairs = csv_fields(text)
    except ValueError as exc:
        raise RunFlagError(f"{flag}: {exc}") from None
    fields: dict[str, str | None] = {}
    for key, value in pairs:
        if not key:
            raise RunFlagError(f"{flag}: empty field")
        if key in fields:
            raise RunFlagError(f"{flag}: {key} given twice")
        fields[key] = value
    return fields


def _flag(fields: dict[str, str | None], key: str, flag: str) -> bool:
    """A boolean field, bare (`readonly`) or with a value (`readonly=false`)."""
    value = fields.get(key, "false")
    if value is None or value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise RunFlagError(f"{flag}: {key}={value}: want true or false")


def _value(fields: dict[str, str | None], flag: str, *keys: str) -> str:
    """The value of the first of `keys` given (aliases), or an empty string."""
    for key in keys:
        if key in fields:
            value = fields[key]
            if not value:
                raise RunFlagError(f"{flag}: {key} needs a value")
            return value
    return ""


def parse_mount(text: str, cwd: str) -> MountSpec:
    """`--mount type=bind|volume|tmpfs,source=...,target=...,readonly`, docker's long form
    (type defaults to volume; a volume without a source is anonymous)."""
    flag = f"--mount {text}"
    fields = _fields(text, flag)
    kind = (fields.pop("type", None) or "volume").lower()
    if kind not in TYPES:
        raise RunFlagError(f"{flag}: unknown type {kind!r} (want bind, volume or tmpfs)")
    unknown = sorted(set(fields) - _MOUNT_KEYS[kind])
    if unknown:
        raise RunFlagError(f"{flag}: unknown option {unknown[0]!r} for type={kind} (want "
                           f"{', '.join(sorted(_MOUNT_KEYS[kind] - {'consistency'}))})")
    target = target_path(_value(fields, flag, "target", "destination", "dst"), flag)
    readonly = _flag(fields, "readonly", flag) or _flag(fields, "ro", flag)
    source = _value(fields, flag, "source", "src")
    if kind == "bind":
        if not source:
            raise RunFlagError(f"{flag}: a bind mount needs a source (the host path)")
        return MountSpec("bind", target, _host_path(source, cwd), readonly)
    if kind == "tmpfs":
        mode = _value(fields, flag, "tmpfs-mode")
        return MountSpec("tmpfs", target, readonly=readonly,
                         size=_size(_value(fields, flag, "tmpfs-size"), flag),
                         mode=_mode(mode, flag) if mode else None)
    driver = _value(fields, flag, "volume-driver")
    if driver not in ("", "local"):
        raise RunFlagError(f"{flag}: volume-driver={driver}: only the local driver exists here")
    nocopy = _flag(fields, "volume-nocopy", flag)
    if not source:
        return MountSpec("volume", target, readonly=readonly, anonymous=True, nocopy=nocopy)
    return MountSpec("volume", target, volume_name(source, flag), readonly, nocopy=nocopy)


def _size(text: str, flag: str) -> int | None:
    from minibuild.dockerfile.runmount import parse_size  # one size syntax for RUN --mount and run

    if not text:
        return None
    try:
        return parse_size(text)
    except ValueError as exc:
        raise RunFlagError(f"{flag}: {exc}") from None


def _mode(text: str, flag: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise RunFlagError(f"{flag}: mode {text!r}: want an octal mode such as 1777")
    return mode


# -- --tmpfs ---------------------------------------------------------------------------------------


def parse_tmpfs(text: str) -> MountSpec:
    """`--tmpfs DST[:OPTS]`; OPTS: size=N (bytes, or 64k, 256m, 1g), mode=OCTAL, ro, rw, exec,
    noexec (the default, as docker mounts it), nosuid and nodev (always on)."""
    flag = f"--tmpfs {text}"
    target, _, options = text.partition(":")
    target = target_path(target, flag)
    size = mode = None
    readonly, noexec = False, True
    for option in filter(None, options.split(",")):
        key, sep, value = option.partition("=")
        if sep and key == "size":
            size = _size(value, flag)
        elif sep and key == "mode":
            mode = _mode(value, flag)
        elif not sep and key in ("ro", "rw"):
            readonly = key == "ro"
        elif not sep and key in ("exec", "noexec"):
            noexec = key == "noexec"
        elif not sep and key in ("nosuid", "nodev"):
            continue  # always so
        else:
            raise RunFlagError(f"{flag}: unknown option {option!r} (want size=N, mode=OCTAL, "
                               f"{', '.join(_TMPFS_FLAGS)})")
    return MountSpec("tmpfs", target, readonly=readonly, size=size, mode=mode, noexec=noexec)


# -- --env-file, --hostname --------------------------------------------------------------------------


def parse_env_file(data: bytes, name: str) -> list[str]:
    """docker's env file: `KEY=VALUE` lines taken literally (no quotes, no expansion), blank
    lines and `#` comments skipped, leading whitespace dropped; a bare `KEY` takes the value
    of our own environment (left out when unset)."""
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise RunFlagError(f"--env-file {name}: not UTF-8 text (byte {exc.start})") from None
    out = []
    # lines end at "\n" only (and a "\r" before it), as docker's scanner reads them:
    # splitlines() would also cut a value at a form feed, a lone "\r" or U+2028
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.removesuffix("\r").lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not key:
            raise RunFlagError(f"--env-file {name}:{number}: no variable name before '='")
        if any(c.isspace() for c in key):
            raise RunFlagError(f"--env-file {name}:{number}: variable {key!r} contains "
                               "whitespace")
        if "\0" in line:
            raise RunFlagError(f"--env-file {name}:{number}: a NUL byte cannot be in the "
                               "environment")
        out.append(key + sep + value)
    return out


def check_hostname(text: str) -> str:
    """A hostname (RFC 1123 letters, digits, dots and dashes; 1 to 64 characters)."""
    if len(text) > 64 or not _HOSTNAME.fullmatch(text):
        raise RunFlagError(f"--hostname {text!r}: not a valid hostname (letters, digits, '.' "
                           "and '-', at most 64 characters, starting and ending with a letter "
                           "or digit)")
    return text
