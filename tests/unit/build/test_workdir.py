"""WORKDIR's directory, made as BuildKit's dispatchWorkdir makes it."""

from __future__ import annotations

import os
import stat

import pytest

from minibuild.build.workdir import make_workdir, workdir_owner
from minibuild.errors import BuildError

PASSWD = "root:x:0:0::/root:/bin/sh\napp:x:1000:100::/home/app:/bin/sh\n"
GROUP = "root:x:0:\nusers:x:100:\nstaff:x:50:\n"


@pytest.mark.parametrize("spec, owner", [
    ("app", (1000, 100)),          # a name: its passwd uid and primary gid
    ("1000", (1000, 1000)),        # a number: uid and gid both, passwd not read (WithUser ByID)
    ("app:staff", (1000, 50)),
    ("app:7", (1000, 7)),
    ("root", (0, 0)),
    ("1000:root", (1000, 0)),
    ("nosuch", (0, 0)),            # BuildKit: not found is root, and WORKDIR does not fail
    ("app:nosuch", (1000, 100)),
])
def test_the_owner_is_read_as_buildkit_s_with_user(spec, owner):
    assert workdir_owner(spec, PASSWD, GROUP) == owner


def test_no_passwd_file_leaves_names_root():
    assert workdir_owner("app", None, None) == (0, 0)


def test_make_workdir_creates_missing_dirs_0755_and_leaves_existing_ones(tmp_path):
    (tmp_path / "old").mkdir(mode=0o700)
    umask = os.umask(0o077)
    try:
        make_workdir(str(tmp_path / "old" / "new" / "deeper"))
    finally:
        os.umask(umask)
    assert stat.S_IMODE(os.stat(tmp_path / "old").st_mode) == 0o700
    for made in (tmp_path / "old" / "new", tmp_path / "old" / "new" / "deeper"):
        assert stat.S_IMODE(os.stat(made).st_mode) == 0o755


def test_make_workdir_names_a_file_in_the_way(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(BuildError, match="exists and is not a directory"):
        make_workdir(str(tmp_path / "file"))
    with pytest.raises(BuildError, match="a part of the path is a file"):
        make_workdir(str(tmp_path / "file" / "below"))
