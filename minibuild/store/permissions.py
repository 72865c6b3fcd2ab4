"""Who may reach the store: its owner only.

Unpacked layers, containers' upper dirs and cache mounts hold whatever images and steps put
there, setuid-root binaries and files with a `security.capability` xattr included: a local user
who can reach one runs it as root (issue 13, finding 2). So the store root is 0700, as
containerd's snapshot dirs are (docker's /var/lib/docker is 0710), and nothing below it can be
reached by another user, whatever its own mode. Files that hold secrets (a container's
config.json with its `-e` values, a detached container's log, build memos) are also 0600, so a
copied store or a later chmod of the root does not give them away.

A store made before this is tightened when it is opened: one stat of the root tells, and only
then are the secret files (a few per container) chmodded. No walk of the store.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterator

from minibuild.store.paths import StorePaths

ROOT_MODE = 0o700
SECRET_MODE = 0o600


def secure_root(paths: StorePaths) -> bool:
    """Make the store root 0700 (creating it if needed); True when an existing root was open to
    others and has been tightened, its secret files with it."""
    paths.root.mkdir(mode=ROOT_MODE, parents=True, exist_ok=True)
    if not stat.S_IMODE(os.stat(paths.root).st_mode) & 0o077:
        return False
    os.chmod(paths.root, ROOT_MODE)
    for path in secret_files(paths):
        try:
            os.chmod(path, SECRET_MODE, follow_symlinks=False)
        except (FileNotFoundError, NotImplementedError):
            continue  # removed meanwhile, or a symlink (which has no mode of its own)
    return True


def secret_files(paths: StorePaths) -> Iterator[Path]:
    """The files of a store that may hold secrets: container records and logs, build memos."""
    yield from paths.containers.glob("*/config.json")
    yield from paths.containers.glob("*/log")
    yield from paths.memo.glob("*")
