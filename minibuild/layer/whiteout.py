"""Every `.wh.` rule in one place: overlay upper-dir whiteouts and OCI layer tar whiteouts.

Pure: callers hand in names, stat results and xattr dicts; nothing here touches the disk.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from minibuild.errors import LayerError

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"

_PREFIX_B = WHITEOUT_PREFIX.encode()
# `.wh..wh.*` names other than the opaque marker: aufs bookkeeping found in old docker layers.
_META_PREFIX = WHITEOUT_PREFIX + WHITEOUT_PREFIX

# trusted.* when overlay runs as real root; user.* when mounted with `userxattr` in a user namespace.
_OVERLAY_NAMESPACES = ("trusted.overlay.", "user.overlay.")
# Overlay features that a tar cannot express: the upper entry does not hold what it shows.
_UNREPRESENTABLE = {
    "redirect": "a renamed directory (redirect_dir); mount with redirect_dir=off",
    "metacopy": "a metadata-only copy-up (metacopy); mount with metacopy=off",
}


def _text(name: str | bytes) -> str:
    return os.fsdecode(name)


def is_whiteout_basename(name: str | bytes) -> bool:
    """True when a file name is in the reserved `.wh.` namespace (whiteout or opaque marker)."""
    if isinstance(name, bytes):
        return name.startswith(_PREFIX_B)
    return name.startswith(WHITEOUT_PREFIX)


def _check_hidden_name(hidden: str, where: str) -> None:
    # `.wh.` alone hides nothing; `.wh..`/`.wh...` would hide the dir itself or climb out of it.
    if hidden in ("", ".", "..") or "/" in hidden or "\0" in hidden:
        raise LayerError(f"invalid whiteout entry {where!r}")


def whiteout_name(name: str) -> str:
    """The tar basename that deletes `name` from lower layers: `.wh.<name>`."""
    _check_hidden_name(name, WHITEOUT_PREFIX + name)
    return WHITEOUT_PREFIX + name


class WhiteoutKind(Enum):
    """What a `.wh.` entry in a layer tar means."""

    WHITEOUT = "whiteout"  # deletes one path of the lower layers
    OPAQUE = "opaque"  # hides every lower child of its directory
    META = "meta"  # aufs bookkeeping (`.wh..wh.plnk`, `.wh..wh.aufs`): old docker layers; ignored


@dataclass(frozen=True)
class TarWhiteout:
    """A whiteout entry of a layer tar, decoded: its dir and the name it hides ("" when opaque)."""

    kind: WhiteoutKind
    parent: str  # relative dir path, "" for the root
    hidden: str

    @property
    def path(self) -> str:
        """The path this entry deletes (whiteout) or makes opaque (opaque)."""
        if self.kind is not WhiteoutKind.WHITEOUT:
            return self.parent
        return f"{self.parent}/{self.hidden}" if self.parent else self.hidden


def parse_tar_path(path: str) -> TarWhiteout | None:
    """Decode a normalised archive path (`a/b/.wh.x`); None when it is an ordinary entry.

    Raises LayerError for `.wh.` names that hide nothing or climb (`.wh.`, `.wh..`, `.wh...`).
    """
    parent, _, base = path.rpartition("/")
    if not base.startswith(WHITEOUT_PREFIX):
        return None
    if base == OPAQUE_MARKER:
        return TarWhiteout(WhiteoutKind.OPAQUE, parent, "")
    hidden = base[len(WHITEOUT_PREFIX):]
    _check_hidden_name(hidden, path)
    if base.startswith(_META_PREFIX):
        return TarWhiteout(WhiteoutKind.META, parent, hidden)
    return TarWhiteout(WhiteoutKind.WHITEOUT, parent, hidden)


def skip_for_parent(path: str, dir_name: str) -> bool:
    """For a dir component of a tar path: True inside aufs bookkeeping dirs (skip the entry).

    Raises LayerError when the component is any other `.wh.` name: a whiteout cannot hold children.
    """
    if not dir_name.startswith(WHITEOUT_PREFIX):
        return False
    if dir_name.startswith(_META_PREFIX) and dir_name != OPAQUE_MARKER:
        return True
    raise LayerError(f"layer entry {path!r} has a whiteout as a directory")


def _overlay_xattr(xattrs: Mapping[str, bytes], key: str) -> bytes | None:
    for namespace in _OVERLAY_NAMESPACES:
        value = xattrs.get(namespace + key)
        if value is not None:
            return value
    return None


def is_overlay_whiteout(st: os.stat_result, xattrs: Mapping[str, bytes]) -> bool:
    """True when an upper-dir entry is an overlay whiteout (chardev 0:0, or xattr-marked empty file)."""
    if stat.S_ISCHR(st.st_mode):
        return st.st_rdev == 0
    if stat.S_ISREG(st.st_mode) and st.st_size == 0:
        return _overlay_xattr(xattrs, "whiteout") is not None
    return False


def is_overlay_opaque(st: os.stat_result, xattrs: Mapping[str, bytes]) -> bool:
    """True when an upper-dir directory is opaque (`overlay.opaque` = "y").

    New kernels write "x" to mean "holds xattr whiteouts inside": that is NOT opaque.
    """
    if not stat.S_ISDIR(st.st_mode):
        return False
    return _overlay_xattr(xattrs, "opaque") == b"y"


def is_overlay_xattr(name: str) -> bool:
    """True for overlayfs' private xattrs (`trusted.overlay.*`, `user.overlay.*`)."""
    return name.startswith(_OVERLAY_NAMESPACES)


def keep_xattr(name: str) -> bool:
    """True when an xattr belongs in a layer: security.* and user.* except overlay's own.

    trusted.* is never kept (overlay's private state, and a layer must not inject it);
    system.* (POSIX ACLs) is dropped: its binary form is not portable between hosts.
    """
    if is_overlay_xattr(name):
        return False
    return name.startswith(("user.", "security."))


def needs_xattr_value(name: str) -> bool:
    """True when snapshot must read this xattr's value: kept ones and overlay's markers."""
    return keep_xattr(name) or is_overlay_xattr(name)


def unrepresentable(path: str, xattrs: Mapping[str, bytes]) -> None:
    """Raise LayerError when an upper entry uses an overlay feature a tar cannot express."""
    for key, why in _UNREPRESENTABLE.items():
        if _overlay_xattr(xattrs, key) is not None:
            raise LayerError(f"{path!r} is {why}")


def refuse_real_whiteout_name(path: str | bytes) -> None:
    """Raise LayerError for a real file named `.wh.*`: a layer cannot carry it."""
    text = _text(path)
    base = text.rpartition("/")[2]
    if base.startswith(WHITEOUT_PREFIX):
        raise LayerError(
            f"{text!r}: file names starting with {WHITEOUT_PREFIX!r} cannot be stored in a layer"
        )
