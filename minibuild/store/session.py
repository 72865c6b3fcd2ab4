"""Sessions: the scratch dir of one live minibuild process, ROOT/run/<pid>-<random>/.

Temp blobs, step upper dirs and unpacked trees are made there, on the store's filesystem, so
finishing them is a rename. A session holds an exclusive flock on its `.lock` for as long as
its process lives; a session whose lock is free belongs to a process that died, and the next
store to open removes it (the mounts a killed build left below it first).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from minibuild.fs.files import remove_tree
from minibuild.fs.lock import FileLock
from minibuild.store import mounts, topdir


class Session:
    """This process's scratch dir under `run` (made on first use, removed by `close()`)."""

    def __init__(self, run: Path) -> None:
        self.run = run
        self._dir: Path | None = None
        self._lock: FileLock | None = None

    def dir(self) -> Path:
        """The session dir, created (and locked) on first use."""
        if self._dir is None:
            path = self.run / f"{os.getpid()}-{secrets.token_hex(4)}"
            path.mkdir()
            topdir.spread_children(path)  # each scratch tree in a roomy ext4 group (see topdir)
            self._lock = FileLock(path / ".lock")
            self._dir = path
        return self._dir

    def scratch(self, prefix: str) -> Path:
        """A fresh empty dir inside the session."""
        path = self.dir() / f"{prefix}-{secrets.token_hex(4)}"
        path.mkdir()
        return path

    def close(self) -> None:
        """Remove the session dir and drop its lock."""
        if self._dir is not None:
            remove_tree(self._dir)
            self._dir = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def clean_stale(self) -> list[Path]:
        """Remove sessions whose process died (its lock is free): mounts first, then files."""
        removed = []
        for session in sorted(self.run.iterdir()):
            if session == self._dir or owner_alive(session.name):
                continue  # a session being created is not locked yet: its pid says it is alive
            try:
                lock = FileLock(session / ".lock", wait=False)
            except BlockingIOError:
                continue  # alive
            except OSError:
                lock = None
            try:
                mounts.detach_below(session)
                remove_tree(session)
                removed.append(session)
            finally:
                if lock is not None:
                    lock.release()
        return removed


def owner_alive(session_name: str) -> bool:
    """Whether the pid a session dir is named after (`<pid>-<random>`) is a live process
    other than this one."""
    pid_text = session_name.partition("-")[0]
    if not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
