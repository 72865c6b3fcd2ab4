"""WORKDIR's directory: created as BuildKit's dispatchWorkdir does (convert.go).

BuildKit makes the dir with `llb.Mkdir(wd, 0755, WithParents, WithUser(USER))`: every dir it
creates (the parents too) gets mode 0755 and, when USER is set, the user's uid/gid; dirs that
already exist are left alone (fsutil's MkdirAll). The user is read as `llb.WithUser` reads a
chown (solver/llbsolver/ops/user_linux.go readUser): a number is uid and gid both; a name is
looked up in the image's /etc/passwd (its uid and primary gid), and a name not found there is
root, silently (the RUN that follows fails on it, WORKDIR does not); `:group` names or numbers
the gid.
"""

from __future__ import annotations

import os
from pathlib import Path

from minibuild.build.rootwriter import chown
from minibuild.errors import BuildError
from minibuild.fs.users import parse_group, parse_passwd, read_user_files


def make_workdir(path: str, user: str | None = None) -> None:
    """mkdir -p inside the image (run chrooted), the dirs it makes owned by USER; a file in
    the way is a clear error."""
    owner = None
    if user:
        owner = workdir_owner(user, *read_user_files(Path("/")))
    current = "/"
    for part in [p for p in path.split("/") if p]:
        current = os.path.join(current, part)
        if not os.path.isdir(current):
            _make(path, current, owner)


def _make(path: str, current: str, owner: tuple[int, int] | None) -> None:
    """One missing dir: 0755 whatever the umask, then its owner."""
    try:
        os.mkdir(current, 0o755)
    except (FileExistsError, NotADirectoryError):
        if os.path.normpath(current) == os.path.normpath(path):
            raise BuildError(f"WORKDIR {path}: it exists and is not a directory") from None
        raise BuildError(f"WORKDIR {path}: a part of the path is a file, not a directory") from None
    os.chmod(current, 0o755)
    if owner is not None:
        chown(current, owner)


def workdir_owner(spec: str, passwd: str | None, group: str | None) -> tuple[int, int]:
    """The uid/gid BuildKit's WithUser(USER) gives (see the module docstring)."""
    name, _, group_part = spec.partition(":")
    uid = gid = 0
    if name.isdigit():
        uid = gid = int(name)
    elif name and name != "root":
        entry = next((e for e in parse_passwd(passwd or "") if e.name == name), None)
        if entry is not None:
            uid, gid = entry.uid, entry.gid
    if group_part.isdigit():
        gid = int(group_part)
    elif group_part and group_part != "root":
        found = next((g for g in parse_group(group or "") if g.name == group_part), None)
        gid = found.gid if found is not None else gid
    elif group_part == "root":
        gid = 0
    return uid, gid
