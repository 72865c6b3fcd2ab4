"""Resolve a USER / --chown spec through an image's /etc/passwd and /etc/group, like docker.

The rules follow runc's `GetExecUser`: a name must exist in passwd; a numeric uid need not;
an explicit group replaces the primary gid and drops supplementary groups; without one, the
groups that list the user as a member become its supplementary groups.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from minibuild.errors import BuildError

MAX_ID = 2**31 - 1


@dataclass(frozen=True)
class PasswdEntry:
    """One line of /etc/passwd."""

    name: str
    uid: int
    gid: int
    home: str
    shell: str


@dataclass(frozen=True)
class GroupEntry:
    """One line of /etc/group."""

    name: str
    gid: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class ResolvedUser:
    """Numeric identity a process runs as, plus its home for a default HOME."""

    uid: int
    gid: int
    groups: tuple[int, ...] = ()
    home: str | None = None  # None: the user has no passwd entry
    name: str | None = None

    def process_groups(self) -> tuple[int, ...]:
        """What setgroups gets: the primary gid first, as docker does since CVE-2023-25173."""
        return tuple(dict.fromkeys((self.gid, *self.groups)))

    def default_home(self) -> str:
        """HOME when the environment sets none: passwd's, else /root for root, else /."""
        if self.home:
            return self.home
        return "/root" if self.uid == 0 else "/"


def _records(text: str, min_fields: int) -> list[list[str]]:
    """Colon-separated records; comments, NIS (+/-) and short lines are skipped."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#+-":
            continue
        fields = line.split(":")
        if len(fields) >= min_fields:
            out.append(fields)
    return out


def _number(text: str) -> int | None:
    """A decimal id in range, else None."""
    text = text.strip()
    if not text.isdigit() or not text.isascii():
        return None
    value = int(text)
    return value if value <= MAX_ID else None


def parse_passwd(text: str) -> tuple[PasswdEntry, ...]:
    """Entries of a passwd file; malformed lines (bad ids) are ignored rather than read as 0."""
    entries = []
    for fields in _records(text, 4):
        uid, gid = _number(fields[2]), _number(fields[3])
        if uid is None or gid is None:
            continue
        fields += [""] * (7 - len(fields))
        entries.append(PasswdEntry(fields[0], uid, gid, fields[5], fields[6]))
    return tuple(entries)


def parse_group(text: str) -> tuple[GroupEntry, ...]:
    """Entries of a group file; malformed lines are ignored."""
    entries = []
    for fields in _records(text, 3):
        gid = _number(fields[2])
        if gid is None:
            continue
        members = fields[3].split(",") if len(fields) > 3 else []
        entries.append(GroupEntry(fields[0], gid, tuple(m.strip() for m in members if m.strip())))
    return tuple(entries)


def _find_user(user: str, passwd: tuple[PasswdEntry, ...]) -> PasswdEntry | None:
    """First entry whose name is `user` or, when numeric, whose uid is it."""
    uid = _number(user)
    for entry in passwd:
        if entry.name == user or (uid is not None and entry.uid == uid):
            return entry
    return None


def _explicit_gid(group: str, groups: tuple[GroupEntry, ...]) -> int:
    """The gid named by an explicit `:group` part."""
    gid = _number(group)
    for entry in groups:
        if (gid is not None and entry.gid == gid) or (gid is None and entry.name == group):
            return entry.gid
    if gid is None:
        raise BuildError(f"unable to find group {group}: no matching entries in group file")
    return gid


def _split(spec: str) -> tuple[str, str]:
    """`user[:group]`, refusing empty parts such as `:0` or `root:`."""
    user, sep, group = spec.strip().partition(":")
    if sep and (not user or not group):
        raise BuildError(f"invalid user spec {spec!r} (want user, user:group, uid or uid:gid)")
    return user, group


def resolve_user(spec: str, passwd_text: str | None, group_text: str | None) -> ResolvedUser:
    """Resolve `name`, `uid`, `name:group` or `uid:gid` (empty: root) as docker does."""
    user, group = _split(spec)
    passwd = parse_passwd(passwd_text or "")
    groups = parse_group(group_text or "")
    entry = _find_user(user or "0", passwd)
    if entry is None:
        uid = _number(user or "0")
        if uid is None:
            raise BuildError(f"unable to find user {user}: no matching entries in passwd file")
        resolved = ResolvedUser(uid=uid, gid=0)
    else:
        resolved = ResolvedUser(entry.uid, entry.gid, home=entry.home, name=entry.name)
    if group:
        return ResolvedUser(resolved.uid, _explicit_gid(group, groups), (), resolved.home,
                            resolved.name)
    if resolved.name is None:
        return resolved
    extra = tuple(g.gid for g in groups if resolved.name in g.members)
    return ResolvedUser(resolved.uid, resolved.gid, extra, resolved.home, resolved.name)


MAX_FILE = 16 << 20  # an image's passwd is small; a huge or endless one is not read whole


def _read(path: Path) -> str | None:
    """A regular file's text, or None when absent, unreadable or not a regular file (FIFO...)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as f:
            return f.read(MAX_FILE).decode(errors="replace")
    except OSError:
        return None


def read_user_files(root: Path) -> tuple[str | None, str | None]:
    """(passwd, group) texts under `root` (call it inside a chroot so symlinks stay inside)."""
    return _read(root / "etc" / "passwd"), _read(root / "etc" / "group")
