"""Wasted space: bytes a layer still carries that later layers hide (deleted or overwritten).

This is why `RUN rm` does not shrink an image: the file's bytes stay in the layer that added
it, and the later layer only adds a whiteout on top.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence


class Summary(Protocol):
    """What accounting needs of a layer summary (snapshot.LayerSummary has it)."""

    files: tuple[tuple[str, int], ...]
    whiteouts: tuple[str, ...]
    opaques: tuple[str, ...]


@dataclass(frozen=True)
class HiddenPath:
    """A path of one layer hidden by a later one."""

    path: str
    size: int
    how: str          # "deleted" (whiteout / opaque dir above) or "overwritten"
    by_layer: int     # index of the layer that hides it


@dataclass(frozen=True)
class LayerWaste:
    """The hidden bytes of one layer."""

    layer: int
    wasted: int
    paths: tuple[HiddenPath, ...]


def _ancestors(path: str) -> list[str]:
    """`a/b/c` -> [`a`, `a/b`]."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def wasted_space(summaries: Sequence[Summary]) -> list[LayerWaste]:
    """For each layer (base first), what later layers hide of it, walking top-down once."""
    exact: dict[str, tuple[int, str]] = {}    # path -> (layer, how) hidden exactly
    subtree: dict[str, tuple[int, str]] = {}  # dir -> (layer, how) hidden with everything below
    result: list[LayerWaste] = []
    for index in range(len(summaries) - 1, -1, -1):
        summary = summaries[index]
        hidden = []
        for path, size in summary.files:
            hit = exact.get(path) or next(
                (subtree[a] for a in _ancestors(path) if a in subtree), None)
            if hit is not None and size > 0:
                hidden.append(HiddenPath(path, size, hit[1], hit[0]))
        result.append(LayerWaste(index, sum(h.size for h in hidden), tuple(hidden)))
        _hide(summary, index, exact, subtree)
    result.reverse()
    return result


def _hide(summary: Summary, index: int, exact: dict, subtree: dict) -> None:
    """Record what this layer hides from the layers below it (the nearest layer is named)."""
    for path in summary.whiteouts:
        exact[path] = subtree[path] = (index, "deleted")
    for path in summary.opaques:
        subtree[path] = (index, "deleted")
    for path, _ in summary.files:
        # A non-dir entry replaces the same path below, and anything a dir there held.
        exact[path] = subtree[path] = (index, "overwritten")
