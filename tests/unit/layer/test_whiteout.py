"""The whiteout rules table: tar names, overlay upper entries, xattr filtering."""

from __future__ import annotations

import os
import stat
from types import SimpleNamespace

import pytest

from minibuild.layer import whiteout
from minibuild.errors import LayerError
from minibuild.layer.whiteout import WhiteoutKind


def fake_stat(mode: int, size: int = 0, rdev: int = 0) -> SimpleNamespace:
    """Only the fields the rules read."""
    return SimpleNamespace(st_mode=mode, st_size=size, st_rdev=rdev)


def test_constants_and_name():
    assert whiteout.WHITEOUT_PREFIX == ".wh."
    assert whiteout.OPAQUE_MARKER == ".wh..wh..opq"
    assert whiteout.whiteout_name("foo") == ".wh.foo"


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b"])
def test_whiteout_name_refuses_what_cannot_be_hidden(bad):
    with pytest.raises(LayerError):
        whiteout.whiteout_name(bad)


@pytest.mark.parametrize("path, kind, parent, hidden, hides", [
    ("etc/.wh.foo", WhiteoutKind.WHITEOUT, "etc", "foo", "etc/foo"),
    (".wh.foo", WhiteoutKind.WHITEOUT, "", "foo", "foo"),
    ("a/b/.wh..hidden", WhiteoutKind.WHITEOUT, "a/b", ".hidden", "a/b/.hidden"),
    ("etc/.wh..wh..opq", WhiteoutKind.OPAQUE, "etc", "", "etc"),
    (".wh..wh..opq", WhiteoutKind.OPAQUE, "", "", ""),
    ("x/.wh..wh.plnk", WhiteoutKind.META, "x", ".wh.plnk", "x"),
])
def test_parse_tar_path(path, kind, parent, hidden, hides):
    wo = whiteout.parse_tar_path(path)
    assert (wo.kind, wo.parent, wo.hidden, wo.path) == (kind, parent, hidden, hides)


@pytest.mark.parametrize("path", ["etc/foo", "etc/wh.foo", "etc/.whfoo", "x.wh.y"])
def test_ordinary_names_are_not_whiteouts(path):
    assert whiteout.parse_tar_path(path) is None


@pytest.mark.parametrize("path", [".wh.", "a/.wh.", ".wh..", "a/.wh...", ".wh...."[:6]])
def test_invalid_whiteouts_are_refused(path):
    with pytest.raises(LayerError, match="invalid whiteout"):
        whiteout.parse_tar_path(path)


def test_whiteout_as_parent_dir():
    assert whiteout.skip_for_parent("a/b", "a") is False
    assert whiteout.skip_for_parent(".wh..wh.plnk/1.2", ".wh..wh.plnk") is True
    for bad in (".wh.x", whiteout.OPAQUE_MARKER):
        with pytest.raises(LayerError):
            whiteout.skip_for_parent(f"{bad}/f", bad)


CHR, REG, DIR = stat.S_IFCHR | 0o600, stat.S_IFREG | 0o644, stat.S_IFDIR | 0o755


@pytest.mark.parametrize("st, xattrs, expected", [
    (fake_stat(CHR, rdev=0), {}, True),
    (fake_stat(CHR, rdev=os.makedev(1, 3)), {}, False),
    (fake_stat(REG), {"trusted.overlay.whiteout": b""}, True),
    (fake_stat(REG), {"user.overlay.whiteout": b""}, True),
    (fake_stat(REG, size=1), {"trusted.overlay.whiteout": b""}, False),
    (fake_stat(REG), {}, False),
    (fake_stat(REG), {"user.foo": b""}, False),
    (fake_stat(DIR), {"trusted.overlay.whiteout": b""}, False),
])
def test_is_overlay_whiteout(st, xattrs, expected):
    assert whiteout.is_overlay_whiteout(st, xattrs) is expected


@pytest.mark.parametrize("st, xattrs, expected", [
    (fake_stat(DIR), {"trusted.overlay.opaque": b"y"}, True),
    (fake_stat(DIR), {"user.overlay.opaque": b"y"}, True),
    (fake_stat(DIR), {"trusted.overlay.opaque": b"x"}, False),  # "has xattr whiteouts", not opaque
    (fake_stat(DIR), {}, False),
    (fake_stat(REG), {"trusted.overlay.opaque": b"y"}, False),
])
def test_is_overlay_opaque(st, xattrs, expected):
    assert whiteout.is_overlay_opaque(st, xattrs) is expected


@pytest.mark.parametrize("name, kept", [
    ("security.capability", True),
    ("security.selinux", True),
    ("user.foo", True),
    ("user.overlay.opaque", False),
    ("trusted.overlay.opaque", False),
    ("trusted.overlay.origin", False),
    ("trusted.foo", False),
    ("system.posix_acl_access", False),
])
def test_keep_xattr(name, kept):
    assert whiteout.keep_xattr(name) is kept


def test_real_whiteout_names_are_refused_with_their_path():
    whiteout.refuse_real_whiteout_name("etc/foo.wh.x")
    with pytest.raises(LayerError, match="etc/.wh.foo"):
        whiteout.refuse_real_whiteout_name(b"etc/.wh.foo")


def test_unrepresentable_overlay_features():
    whiteout.unrepresentable("a", {"trusted.overlay.origin": b"x"})
    with pytest.raises(LayerError, match="redirect_dir"):
        whiteout.unrepresentable("a", {"trusted.overlay.redirect": b"/b"})
    with pytest.raises(LayerError, match="metacopy"):
        whiteout.unrepresentable("a", {"user.overlay.metacopy": b""})
