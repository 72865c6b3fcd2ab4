"""Image paths looked up through unpacked layer dirs, and the mount points RUN --mount needs.

Whiteouts and opaque dirs use overlay's user.* xattr forms, which need no root."""

from __future__ import annotations

import functools
import os
import stat
from pathlib import Path

import pytest

from minibuild.layer import layerpath
from minibuild.errors import BuildError
from minibuild.sandbox.stepmounts import Bind, SecretFile, Tmpfs, make_stubs
from tests.conftest import user_xattrs_work


@pytest.fixture
def layers(tmp_path):
    """Three layers, top first: `top` hides /gone and makes /fresh opaque; `mid` links."""
    if not user_xattrs_work(tmp_path):
        pytest.skip("this filesystem has no user xattrs")
    top, mid, bottom = (tmp_path / n for n in ("top", "mid", "bottom"))
    for d in (top, mid, bottom):
        d.mkdir()
    for d in ("usr/lib", "etc", "gone", "fresh/old", "var"):
        (bottom / d).mkdir(parents=True)
    (bottom / "etc/passwd").write_text("root\n")
    (mid / "var").mkdir()
    (mid / "var/run").symlink_to("/run")
    (mid / "up").symlink_to("usr/../usr/lib")
    (mid / "loop").symlink_to("loop")
    (top / "gone").write_text("")
    os.setxattr(top / "gone", "user.overlay.whiteout", b"y")
    (top / "fresh").mkdir()
    os.setxattr(top / "fresh", "user.overlay.opaque", b"y")
    (top / "run").mkdir(0o700)
    return (top, mid, bottom)


def test_an_existing_dir_and_file(layers):
    found = layerpath.resolve(layers, "/usr/lib")
    assert found.exists and found.is_dir() and found.path == "/usr/lib"
    passwd = layerpath.resolve(layers, "/etc//passwd")
    assert passwd.exists and not passwd.is_dir()
    assert layerpath.resolve(layers, "/").exists and layerpath.resolve(layers, "/").is_dir()


def test_missing_components_are_kept_as_written(layers):
    found = layerpath.resolve(layers, "/usr/lib/a/b")
    assert found.parts == ("usr", "lib", "a", "b") and len(found.found) == 2 and not found.exists
    assert layerpath.resolve(layers, "/usr/nope/../lib").exists


def test_whiteouts_and_opaque_dirs_hide_what_is_below(layers):
    assert not layerpath.resolve(layers, "/gone").exists
    assert layerpath.resolve(layers, "/fresh").exists
    assert not layerpath.resolve(layers, "/fresh/old").exists


def test_symlinks_resolve_inside_the_image(layers):
    found = layerpath.resolve(layers, "/var/run/secrets")
    assert found.parts == ("run", "secrets") and len(found.found) == 1
    assert stat.S_IMODE(found.found[0].st_mode) == 0o700
    assert layerpath.resolve(layers, "/up/x").parts == ("usr", "lib", "x")
    assert layerpath.resolve(layers, "/../../etc/passwd").exists


def test_a_file_in_the_path_and_link_loops_are_errors(layers):
    with pytest.raises(BuildError, match="/etc/passwd is not a directory"):
        layerpath.resolve(layers, "/etc/passwd/x")
    with pytest.raises(BuildError, match="too many levels of symbolic links"):
        layerpath.resolve(layers, "/loop/x")


def test_an_empty_image_has_only_a_root(tmp_path):
    assert layerpath.resolve((), "/a/b").parts == ("a", "b")
    assert layerpath.resolve((), "/a/b").found == ()


def test_stubs_go_into_the_scaffold_with_the_images_attributes(layers, tmp_path):
    scaffold = tmp_path / "scaffold"
    scaffold.mkdir()
    os.chmod(layers[2] / "usr", 0o711)
    os.utime(layers[2] / "usr", ns=(10**9, 2 * 10**9))
    make_stubs(scaffold, functools.partial(layerpath.resolve, layers), [
        Tmpfs("/usr/lib/cache/x"),
        SecretFile("/var/run/secrets/tok", "tok", b"v"),
        Bind("/etc", "/somewhere", True, False),  # exists: nothing to make
        Tmpfs("/gone/x/nested"),
        Tmpfs("/gone/x"),  # /gone/x/nested lies inside it: made by the child, not here
    ])
    assert sorted(str(p.relative_to(scaffold)) for p in scaffold.rglob("*")) == [
        "gone", "gone/x", "run", "run/secrets", "run/secrets/tok", "usr", "usr/lib",
        "usr/lib/cache", "usr/lib/cache/x"]
    usr = (scaffold / "usr").stat()
    assert stat.S_IMODE(usr.st_mode) == 0o711 and usr.st_mtime_ns == 2 * 10**9
    assert stat.S_IMODE((scaffold / "run").stat().st_mode) == 0o700
    assert stat.S_IMODE((scaffold / "usr/lib/cache").stat().st_mode) == 0o755
    assert (scaffold / "run/secrets/tok").is_file()


def test_a_target_of_the_wrong_kind_is_an_error(layers, tmp_path):
    lookup = functools.partial(layerpath.resolve, layers)
    with pytest.raises(BuildError, match="cannot mount a directory on /etc/passwd: it is a file"):
        make_stubs(tmp_path, lookup, [Tmpfs("/etc/passwd")])
    with pytest.raises(BuildError, match="cannot mount a file on /etc: it is a directory"):
        make_stubs(tmp_path, lookup, [SecretFile("/etc", "x", b"")])
