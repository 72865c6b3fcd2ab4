"""LongPaths: paths past PATH_MAX handed to the *at calls as (dir fd, short rest)."""

from __future__ import annotations

import errno
import os

from minibuild.fs.files import remove_tree
from minibuild.fs.longpath import SHORT, LongPaths
from tests.deeptree import make_deep

DEPTH = 3_000  # 6,000 bytes of "d/": past PATH_MAX


def test_a_short_path_is_passed_as_it_is(tmp_path):
    with LongPaths() as paths:
        assert paths.split(str(tmp_path)) == (None, str(tmp_path))


def test_a_long_path_reaches_the_same_entry_going_down_and_back_up(tmp_path):
    make_deep(tmp_path / "t", depth=DEPTH, bottom=b"end")
    try:
        with LongPaths() as paths:
            bottom = str(tmp_path / "t") + "/d" * DEPTH + "/bottom"
            fd, rest = paths.split(bottom)
            assert fd is not None and len(os.fsencode(rest)) < SHORT
            with open(os.open(rest, os.O_RDONLY, dir_fd=fd), "rb") as f:
                assert f.read() == b"end"
            inos = []
            for level in range(DEPTH, 0, -1):  # back up, as set_dir_times goes
                fd, rest = paths.split(str(tmp_path / "t") + "/d" * level)
                inos.append(os.stat(rest, dir_fd=fd, follow_symlinks=False).st_ino)
            assert len(set(inos)) == DEPTH
            assert len(paths._pins) <= 1  # only the pins still above the path are kept
    finally:
        remove_tree(tmp_path / "t")


def test_a_name_longer_than_short_is_refused(tmp_path):
    with LongPaths() as paths:
        try:
            paths.split("/" + "x" * (SHORT + 10))
        except OSError as exc:
            assert exc.errno == errno.ENAMETOOLONG
        else:
            raise AssertionError("no error")
