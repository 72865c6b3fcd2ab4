"""Dirs of small JSON entries that the store keeps for speed only (build memos, parsed
Buildfiles, COPY reuse hints): bounded by count, emptied by `prune --cache`.

Imports nothing but os: the build memo uses it before anything heavy is loaded.
"""

from __future__ import annotations

import os


def trim(directory: str | os.PathLike, keep: int) -> None:
    """Keep the `keep` entries (`*.json`) with the newest mtimes; remove the others."""
    found = []
    for entry in os.scandir(directory):
        if entry.name.endswith(".json"):
            try:
                found.append((entry.stat().st_mtime_ns, entry.path))
            except FileNotFoundError:
                pass  # another process removed it meanwhile
    if len(found) <= keep:
        return
    found.sort()
    for _, path in found[:len(found) - keep]:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def empty(directory: str | os.PathLike) -> int:
    """Remove every file of the dir (stray temp files too); how many entries (`*.json`) were among them."""
    try:
        found = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    removed = 0
    for entry in found:
        try:
            os.unlink(entry.path)
            removed += entry.name.endswith(".json")
        except FileNotFoundError:
            pass
    return removed
