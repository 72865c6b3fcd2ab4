"""rootwalk: the one walk inside a root, checked on an in-memory tree that counts what it is asked."""

from __future__ import annotations

import errno

import pytest

from minibuild.fs.rootwalk import MAX_LINKS, LinkLoop, components, walk


class FakeTree:
    """Paths of a dict (`"/a/b": None` for a dir or file, `"/l": "target"` for a link); nodes
    are the absolute paths, and every node handed out must be released exactly once."""

    def __init__(self, entries: dict[str, str | None], fail_at: str = "") -> None:
        self.entries = entries
        self.fail_at = fail_at
        self.held: list[str] = []
        self.asked: list[tuple[str, bool]] = []

    def _hand_out(self, node: str) -> str:
        self.held.append(node)
        return node

    def root(self) -> str:
        return self._hand_out("")

    def child(self, parent: str, name: str, last: bool) -> str | None:
        path = f"{parent}/{name}"
        self.asked.append((path, last))
        if path == self.fail_at:
            raise PermissionError(errno.EACCES, "denied")
        return self._hand_out(path) if path in self.entries else None

    def link(self, node: str) -> str | None:
        return self.entries.get(node) if node else None

    def release(self, node: str) -> None:
        self.held.remove(node)


IMAGE = {"/usr": None, "/usr/lib": None, "/usr/lib/x": None, "/etc": None, "/usr/abs": "/etc",
         "/lib": "usr/lib", "/abs": "/etc", "/up": "../../usr", "/loop": "loop",
         "/usr/lib/self": ".", "/usr/lib/parent": ".."}


def _walk(path: str, entries=IMAGE, **kw):
    tree = FakeTree(entries)
    found = walk(tree, path, **kw)
    assert tree.held == list(found.nodes)  # the result holds exactly what is not released
    return found, tree


def test_components_come_last_first_without_empty_ones():
    assert components("/a//b/") == ["b", "a"]
    assert components("") == []


@pytest.mark.parametrize("path, parts", [
    ("/", ()), ("/usr/lib/x", ("usr", "lib", "x")), ("usr/./lib/", ("usr", "lib")),
    ("/usr/../etc", ("etc",)), ("/../../etc", ("etc",)),  # `..` stops at the root
    ("/lib/x", ("usr", "lib", "x")),  # relative link: from the link's dir
    ("/usr/lib/self/x", ("usr", "lib", "x")), ("/usr/lib/parent/lib", ("usr", "lib")),
    ("/usr/abs", ("etc",)),  # absolute link: starts again at the root
    ("/up/lib", ("usr", "lib")),  # a link climbing above the root stops there
])
def test_links_dots_and_dotdots_resolve_inside_the_root(path, parts):
    found, _ = _walk(path)
    assert found.parts == parts and found.rest == ()
    assert found.nodes == ("", *("/" + "/".join(parts[:i + 1]) for i in range(len(parts))))


def test_below_a_missing_component_nothing_is_looked_up():
    found, tree = _walk("/usr/nope/a/b")
    assert found.parts == ("usr",) and found.rest == ("nope", "a", "b")
    assert [path for path, _ in tree.asked] == ["/usr", "/usr/nope"]


def test_dotdot_after_a_missing_component_takes_it_back():
    found, _ = _walk("/usr/nope/../lib")
    assert found.parts == ("usr", "lib") and found.rest == ()


def test_the_last_component_is_flagged_and_left_alone_when_not_followed():
    _, tree = _walk("/usr/lib")
    assert tree.asked == [("/usr", False), ("/usr/lib", True)]
    found, tree = _walk("/usr/lib", follow_last=False)
    assert found.parts == ("usr",) and found.rest == ("lib",) and tree.asked == [("/usr", False)]
    found, _ = _walk("/abs", follow_last=False)
    assert found.rest == ("abs",)  # the link itself, not where it leads


def test_forty_links_are_followed_and_the_forty_first_is_a_loop():
    chain = {f"/l{i}": f"l{i + 1}" for i in range(MAX_LINKS)}
    found, _ = _walk("/l0", {**chain, f"/l{MAX_LINKS}": None})
    assert found.parts == (f"l{MAX_LINKS}",)
    tree = FakeTree({**chain, f"/l{MAX_LINKS}": "l0"})
    with pytest.raises(LinkLoop) as caught:
        walk(tree, "/l0")
    assert caught.value.errno == errno.ELOOP and tree.held == []


def test_an_error_from_the_tree_releases_every_node():
    tree = FakeTree(IMAGE, fail_at="/usr/lib/x")
    with pytest.raises(PermissionError):
        walk(tree, "/lib/x")
    assert tree.held == []
