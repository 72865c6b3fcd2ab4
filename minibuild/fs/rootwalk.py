"""The one walk of a path inside a root, symlinks resolved as a chroot would: absolute link
targets start again at the root, `..` stops there, and at most 40 links are followed.

The walk is iterative (a stack of components still to look at) and asks a `Tree` for each
component, one name at a time below the node it stands on; it never hands a path to the kernel
to walk. What a node is (a host path, an O_PATH fd, the layer dirs of one image dir) and how a
name is looked up is the tree's business; the rules of the walk are here, once.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

MAX_LINKS = 40  # like the kernel's MAXSYMLINKS

N = TypeVar("N")


class Tree(Protocol[N]):
    """What a walk asks of the tree it walks; N is its node (a dir or an entry found)."""

    def root(self) -> N:
        """A node for the root (owned by the walk: it is released like any other)."""

    def child(self, parent: N, name: str, last: bool) -> N | None:
        """The entry `name` of the dir `parent` (not followed if a link), or None when missing;
        `last` when no component follows it."""

    def link(self, node: N) -> str | None:
        """The target of `node` when it is a symbolic link, else None."""

    def release(self, node: N) -> None:
        """Let go of a node the walk no longer holds (close an fd; nothing for a path)."""


class LinkLoop(OSError):
    """More than MAX_LINKS symbolic links on the way (ELOOP, as the kernel says it)."""


@dataclass(frozen=True)
class Walk(Generic[N]):
    """Where a walk ended: the components found (links resolved), their nodes after the root's,
    and the components below the last one found (missing, or the last one when not followed)."""

    parts: tuple[str, ...]
    nodes: tuple[N, ...]  # nodes[0] is the root, nodes[i + 1] the node of parts[i]
    rest: tuple[str, ...]


def components(path: str) -> list[str]:
    """The non-empty components of a path, last first (the walk pops from the end)."""
    return [p for p in path.split("/") if p][::-1]


def walk(tree: Tree[N], path: str, *, follow_last: bool = True) -> Walk[N]:
    """Walk `path` from the tree's root. Below a missing component nothing is looked up;
    with follow_last=False the last component is not looked up either. The nodes of the result
    are the caller's to release; on an error every node is released here."""
    state = _State(tree, [tree.root()])
    try:
        pending = components(path)
        while pending:
            part = pending.pop()
            if part == ".":
                continue
            if part == "..":
                state.up()
            elif state.rest or (not pending and not follow_last):
                state.rest.append(part)
            else:
                target = state.step(part, last=not pending)
                if target is not None:
                    state.follow(target, path)
                    pending.extend(components(target))
    except BaseException:
        state.release_all()
        raise
    return Walk(tuple(state.parts), tuple(state.nodes), tuple(state.rest))


class _State(Generic[N]):
    """Where a walk stands: the nodes held from the root down, and what is below them."""

    def __init__(self, tree: Tree[N], nodes: list[N]) -> None:
        self.tree = tree
        self.nodes = nodes
        self.parts: list[str] = []
        self.rest: list[str] = []
        self.links = 0

    def up(self) -> None:
        """`..`: back above the last component (never above the root)."""
        if self.rest:
            self.rest.pop()
        elif self.parts:
            self.parts.pop()
            self.tree.release(self.nodes.pop())

    def step(self, part: str, last: bool) -> str | None:
        """Look `part` up below the current node: None when it was entered (or is missing),
        else the target of the symbolic link it is (the link's node is let go)."""
        node = self.tree.child(self.nodes[-1], part, last)
        if node is None:
            self.rest.append(part)
            return None
        try:
            target = self.tree.link(node)
        except BaseException:
            self.tree.release(node)
            raise
        if target is None:
            self.parts.append(part)
            self.nodes.append(node)
            return None
        self.tree.release(node)
        return target

    def follow(self, target: str, path: str) -> None:
        """Count one more link; an absolute target starts again at the root."""
        self.links += 1
        if self.links > MAX_LINKS:
            raise LinkLoop(errno.ELOOP, os.strerror(errno.ELOOP), path)
        if target.startswith("/"):
            while len(self.nodes) > 1:
                self.tree.release(self.nodes.pop())
            self.parts.clear()

    def release_all(self) -> None:
        """Let go of every node held (after an error)."""
        while self.nodes:
            self.tree.release(self.nodes.pop())
