"""The fields of a layer tar member that go to the kernel as they are: times, owners, device
numbers, a symlink's target, xattr names. A hostile tar can put anything there (PAX headers
hold any number, GNU base-256 fields any integer, a PAX value any byte), and what the kernel or
Python cannot take must be refused here, as a LayerError naming the entry, not found later as
an OverflowError or ValueError halfway through an unpack.
"""

from __future__ import annotations

import math
import tarfile

from minibuild.errors import LayerError

XATTR_PAX = "SCHILY.xattr."
_ID_LIMIT = 2**32 - 1  # uid_t and gid_t; (uid_t)-1 itself means "unchanged" to chown
_TIME_LIMIT = 2**63  # time_t


def check_member(member: tarfile.TarInfo) -> None:
    """Refuse a member whose fields cannot be applied as they stand."""
    what = f"layer entry {member.name!r}"
    mtime = member.mtime
    if not isinstance(mtime, (int, float)) or not math.isfinite(mtime) \
            or not -_TIME_LIMIT <= mtime < _TIME_LIMIT:
        raise LayerError(f"{what}: modification time {mtime!r} is out of range")
    for field in ("uid", "gid"):
        value = getattr(member, field)
        if not isinstance(value, int) or not 0 <= value < _ID_LIMIT:
            raise LayerError(f"{what}: {field} {value!r} is not a valid owner id")
    if (member.ischr() or member.isblk()) and not all(
            isinstance(n, int) and 0 <= n < _ID_LIMIT for n in (member.devmajor, member.devminor)):
        raise LayerError(f"{what}: device number {member.devmajor!r}:{member.devminor!r} is out of range")
    if member.issym() and "\0" in member.linkname:
        raise LayerError(f"{what}: symlink target {member.linkname!r} contains a NUL byte")
    for key in member.pax_headers:
        if key.startswith(XATTR_PAX) and ("\0" in key or key == XATTR_PAX):
            raise LayerError(f"{what}: xattr name {key[len(XATTR_PAX):]!r} is empty or holds a NUL byte")
