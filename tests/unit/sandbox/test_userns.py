"""Rootless bootstrap, the pure parts: subordinate ranges, map arguments, which command lines
enter the namespace, the runtime dir; overlay's options and the kernel check in a namespace."""

from __future__ import annotations

import os

import pytest

from minibuild.errors import SandboxError
from minibuild.fs import idmap
from minibuild.sandbox import userns
from minibuild.sandbox.overlay import OverlayOptions, overlay_extra_options
from minibuild.sandbox.sandbox import check_userns_overlay
from minibuild.store import paths

SUBUID = """\
# comment
alice:100000:65536
1002:165536:65536
bob:231072:0
bob:300000:1000
"""


def test_subordinate_range_by_name_or_uid_first_usable_line():
    assert userns.subordinate_range(SUBUID, "alice", 1001) == userns.SubRange(100000, 65536)
    assert userns.subordinate_range(SUBUID, "carol", 1002) == userns.SubRange(165536, 65536)
    assert userns.subordinate_range(SUBUID, "bob", 1003) == userns.SubRange(300000, 1000)
    assert userns.subordinate_range(SUBUID, "dave", 1004) is None
    assert userns.subordinate_range("", "alice", 1001) is None


def test_free_range_is_above_every_range_of_both_files():
    assert userns.free_range(["", ""]) == "100000-165535"
    assert userns.free_range([SUBUID, "x:400000:10\n"]) == "400010-465545"
    assert userns.free_range([SUBUID + "containers:2147483647:2147483648\n", ""]) \
        == "301000-366535"


def test_map_arguments_root_is_the_caller_then_the_range():
    sub = userns.SubRange(100000, 65536)
    assert userns.map_arguments(42, 1001, sub) == ["42", "0", "1001", "1", "1", "100000", "65536"]
    assert userns.expected_map(1001, sub) == [idmap.IdRange(0, 1001, 1),
                                             idmap.IdRange(1, 100000, 65536)]


@pytest.mark.parametrize("argv, wanted", [
    ([], False), (["--help"], False), (["--version"], False), (["build", "--help"], False),
    (["--root", "/s", "-h"], False), (["build", "."], True), (["--root=/s", "images"], True),
    (["--root", "/s", "run", "img", "sh", "-c", "--help"], True),
])
def test_which_command_lines_enter_the_namespace(monkeypatch, argv, wanted):
    monkeypatch.setattr(os, "geteuid", lambda: 1001)
    monkeypatch.delenv(idmap.USERNS_ENV, raising=False)
    assert userns.wanted(argv) is wanted


def test_root_and_an_entered_process_do_not_enter_again(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.delenv(idmap.USERNS_ENV, raising=False)
    assert not userns.wanted(["images"])
    monkeypatch.setattr(os, "geteuid", lambda: 1001)
    monkeypatch.setenv(idmap.USERNS_ENV, "1001:1001")
    assert not userns.wanted(["images"])


def test_root_option():
    assert userns.root_option(["--root", "/s", "images"]) == "/s"
    assert userns.root_option(["--root=/t", "images"]) == "/t"
    assert userns.root_option(["images", "--root", "/s"]) is None


def test_runtime_dir_is_xdg_only_when_that_dir_is_ours(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert userns.runtime_dir(tmp_path / "store") == tmp_path / "minibuild"
    monkeypatch.setattr(os, "getuid", lambda: os.stat(tmp_path).st_uid + 1)  # e.g. root's, kept by runuser
    assert userns.runtime_dir(tmp_path / "store") == tmp_path / "store" / "runtime"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert userns.runtime_dir(tmp_path / "store") == tmp_path / "store" / "runtime"


def test_userxattr_replaces_redirect_dir_off_with_nofollow():
    params = ["redirect_dir", "metacopy", "index", "xino_auto"]
    assert overlay_extra_options(params, userxattr=True) == (
        ("redirect_dir", "nofollow"), ("metacopy", "off"), ("index", "off"), ("xino", "off"),
        ("userxattr", None))
    options = OverlayOptions(("/l",), "/u", "/w", (("metacopy", "off"), ("userxattr", None)))
    assert options.mount_data(["l"]) == "lowerdir=l,upperdir=/u,workdir=/w,metacopy=off,userxattr"
    assert options.fsconfig_pairs()[-1] == ("userxattr", None)
    assert options.describe().endswith(",metacopy=off,userxattr")


def test_kernel_check_for_overlay_in_a_user_namespace():
    check_userns_overlay("6.1.0-18-amd64")
    check_userns_overlay("5.11.0")
    check_userns_overlay("weird")
    with pytest.raises(SandboxError, match=r"5\.10\.0.*5\.11 or later.*fuse-overlayfs"):
        check_userns_overlay("5.10.0-28-amd64")


def test_default_root_rootless_uses_xdg_data_home(monkeypatch, tmp_path):
    monkeypatch.delenv("MINIBUILD_ROOT", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.delenv(idmap.USERNS_ENV, raising=False)
    assert str(paths.default_root()) == "/var/lib/minibuild"
    monkeypatch.setenv(idmap.USERNS_ENV, "1001:1001")  # uid 0, but of the rootless namespace
    assert paths.default_root() == tmp_path / ".local/share/minibuild"
    monkeypatch.setenv("XDG_DATA_HOME", "/data")
    assert str(paths.default_root()) == "/data/minibuild"
    monkeypatch.setenv("XDG_DATA_HOME", "relative")  # invalid per the XDG spec: ignored
    assert paths.default_root() == tmp_path / ".local/share/minibuild"
    monkeypatch.setenv("MINIBUILD_ROOT", "/given")
    assert str(paths.default_root()) == "/given"


def test_store_paths_spells_the_marker_as_idmap_does():
    assert paths.USERNS_ENV == idmap.USERNS_ENV


def test_an_overlay_refused_in_a_user_namespace_says_there_is_no_fuse_fallback(monkeypatch):
    from minibuild.sandbox import overlay

    options = OverlayOptions(("/l",), "/u", "/w")
    refused = OSError(1, "Operation not permitted")
    monkeypatch.setattr(idmap, "in_user_namespace", lambda: True)  # detection faked
    message = str(overlay._mount_error(options, "/m", refused, ""))
    assert "refuses overlayfs in a user namespace" in message and "fuse-overlayfs" in message
    monkeypatch.setattr(idmap, "in_user_namespace", lambda: False)
    assert "fuse-overlayfs" not in str(overlay._mount_error(options, "/m", refused, ""))
