"""The build args Docker defines itself (the reference's "Predefined ARGs", "Automatic platform
ARGs in the global scope" and "BuildKit built-in build args").

- Automatic platform args (TARGETPLATFORM, BUILDOS, ...) and TARGETSTAGE live in the global
  scope: FROM lines and global ARG defaults see them; a stage sees one after `ARG NAME`. minibuild
  builds for the machine it runs on, so target and build platform are both this host's.
- Proxy args (HTTP_PROXY, no_proxy, ...) reach every RUN's environment without an ARG line, and
  stay out of the history and the cache keys, unless a stage declares them with ARG.
- SOURCE_DATE_EPOCH dates the build; BUILDKIT_SANDBOX_HOSTNAME names the RUN sandbox's host.

None of them is ever reported as a build arg no ARG consumed.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping

from minibuild.errors import BuildfileError
from minibuild.oci.image import host_architecture

PROXY_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY",
              "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")
PLATFORM_ARGS = ("TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT", "BUILDPLATFORM",
                 "BUILDOS", "BUILDARCH", "BUILDVARIANT")
EPOCH = "SOURCE_DATE_EPOCH"
HOSTNAME = "BUILDKIT_SANDBOX_HOSTNAME"
# The reference's table of BuildKit built-in args: accepted (most mean nothing here), never
# reported as unused.
BUILDKIT_ARGS = ("BUILDKIT_BUILD_NAME", "BUILDKIT_CACHE_MOUNT_NS", "BUILDKIT_CONTEXT_KEEP_GIT_DIR",
                 "BUILDKIT_INLINE_CACHE", "BUILDKIT_MULTI_PLATFORM", HOSTNAME, "BUILDKIT_SYNTAX",
                 EPOCH)
_KNOWN = frozenset((*PROXY_ARGS, *PLATFORM_ARGS, "TARGETSTAGE", *BUILDKIT_ARGS))
# The variant a 32-bit ARM machine reports itself as (arm64 has none: BuildKit normalises v8 away).
_ARM_VARIANTS = {"armv5tel": "v5", "armv6l": "v6", "armv7l": "v7", "armv8l": "v8"}


def host_platform() -> tuple[str, str, str]:
    """(os, architecture, variant) of this machine, as Docker names them: linux, amd64, ""."""
    architecture = host_architecture()
    variant = _ARM_VARIANTS.get(platform.machine(), "") if architecture == "arm" else ""
    return "linux", architecture, variant


def format_platform(os_name: str, architecture: str, variant: str = "") -> str:
    """`linux/amd64`, `linux/arm/v7`."""
    return "/".join(part for part in (os_name, architecture, variant) if part)


def automatic_args(target_stage: str) -> dict[str, str]:
    """The automatic platform args and TARGETSTAGE, with this host's values."""
    os_name, architecture, variant = host_platform()
    name = format_platform(os_name, architecture, variant)
    values = {}
    for side in ("TARGET", "BUILD"):
        values.update({f"{side}PLATFORM": name, f"{side}OS": os_name,
                       f"{side}ARCH": architecture, f"{side}VARIANT": variant})
    values["TARGETSTAGE"] = target_stage
    return values


def is_builtin(name: str) -> bool:
    """True for an arg Docker defines itself: a --build-arg of it is never 'not consumed'."""
    return name in _KNOWN


def proxy_env(build_args: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The predefined proxy args the build was given, for every RUN's environment."""
    return tuple((name, build_args[name]) for name in PROXY_ARGS if name in build_args)


def with_epoch(build_args: Mapping[str, str], epoch: int | None) -> dict[str, str]:
    """The build args, with SOURCE_DATE_EPOCH set from `--source-date-epoch` (or the
    environment's SOURCE_DATE_EPOCH, as buildx passes it) unless a --build-arg gives it."""
    args = dict(build_args)
    if epoch is not None:
        args.setdefault(EPOCH, str(epoch))
    return args


def source_date_epoch(build_args: Mapping[str, str], global_values: Mapping[str, str],
                      file: str) -> int | None:
    """SOURCE_DATE_EPOCH of a build: a --build-arg, else a global ARG's default; None when
    unset or empty (BuildKit's getBuildArgValue)."""
    text = build_args.get(EPOCH) or global_values.get(EPOCH) or ""
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise BuildfileError(f"invalid SOURCE_DATE_EPOCH {text!r}: want a Unix time in seconds",
                             file=file)
    return value


def check_platform(text: str, where) -> None:
    """FROM --platform: only this machine's OS and architecture can be built (there is no
    emulation here); a variant (`linux/arm/v6` on a v7 machine) runs natively, so any goes."""
    wanted = [part for part in text.strip().lower().split("/") if part]
    host = host_platform()
    if wanted[:2] != list(host[:2]):
        raise BuildfileError.at(where, f"FROM --platform={text}: minibuild builds only for this "
                                       f"machine's platform, {format_platform(*host)}")
