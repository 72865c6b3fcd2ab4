"""What a build saw of its context: every path it looked at and where each name a resolved path
went through led. The build memo checks these before it answers for an unchanged build.

The build context notes paths here as it resolves and hashes them; an image context (`COPY
--from`) notes nothing, its content is addressed by digest.
"""

from __future__ import annotations

import os

from minibuild.build import fsstate


class Sightings:
    """The context paths a build looked at and the trails (fsstate.trail) of those it resolved."""

    def __init__(self) -> None:
        self.paths: set[str] = set()  # every path looked at (walk_source adds the dirs it lists)
        self._trails: dict[str, list | None] = {}
        self.remote = False  # a remote source was fetched (ADD <url>): no memo can check it

    def look(self, path: str) -> str:
        """Note a context path as read by this build; returns it."""
        self.paths.add(path)
        return path

    def trace(self, path: str) -> None:
        """Note the names `path` resolves through (symlinks and their targets' components), as
        they lead now."""
        for name in fsstate.trail(path):
            if name not in self._trails:
                self._trails[name] = fsstate.identity(name)

    def inputs(self, root: str | os.PathLike) -> set[str]:
        """The absolute paths looked at, with every dir between them and the context root (a
        dir's mtime moves when an entry is added, removed or renamed)."""
        root = os.path.normpath(os.path.abspath(root))
        found = {root}
        for path in self.paths:
            path = os.path.normpath(os.path.abspath(path))
            found.add(path)
            path = os.path.dirname(path)
            while path not in found and path.startswith(root + "/"):
                found.add(path)
                path = os.path.dirname(path)
        return found

    def trails(self) -> dict[str, list | None]:
        """Where every name a resolved path went through led when it was resolved
        (fsstate.identity: a dir's inode, a symlink's target)."""
        return dict(self._trails)
