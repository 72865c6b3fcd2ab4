"""--userns=auto, the parts without root: the 'containers' pool, slots under flock, the mode's
default, which dirs get idmapped."""

from __future__ import annotations

import fcntl
import os

import pytest

from minibuild.errors import SandboxError
from minibuild.sandbox import idranges
from minibuild.sandbox.idmapped import mapped_dirs
from minibuild.sandbox.overlay import OverlayOptions
from minibuild.sandbox.userns import SubRange

POOL = "alice:100000:65536\ncontainers:2147483647:2147483648\n"


def test_the_pool_is_the_containers_range_of_both_files():
    assert idranges.pool(POOL, POOL) == SubRange(2147483647, 2147483648)


@pytest.mark.parametrize("subuid,subgid", [("alice:1:65536\n", POOL), (POOL, ""),
                                           (POOL, "containers:1:65536\n")])
def test_a_missing_or_uneven_range_says_how_to_add_one(subuid, subgid):
    with pytest.raises(SandboxError, match="tee -a /etc/subuid /etc/subgid"):
        idranges.pool(subuid, subgid)


def test_a_range_smaller_than_one_slot_is_refused():
    with pytest.raises(SandboxError, match="at least 65536"):
        idranges.pool("containers:1:1000\n", "containers:1:1000\n")


def test_slots_are_taken_in_order_and_freed_with_their_fd(tmp_path):
    first, fd1 = idranges._take_slot(tmp_path / "locks", 3)
    second, fd2 = idranges._take_slot(tmp_path / "locks", 3)
    assert (first, second) == (0, 1)
    os.close(fd1)
    again, fd3 = idranges._take_slot(tmp_path / "locks", 3)
    assert again == 0
    fd4 = idranges._take_slot(tmp_path / "locks", 3)[1]
    with pytest.raises(SandboxError, match="all 3 id ranges"):
        idranges._take_slot(tmp_path / "locks", 3)
    for fd in (fd2, fd3, fd4):
        os.close(fd)


def test_a_slot_held_by_another_open_file_is_skipped(tmp_path):
    (tmp_path / "slot-0").touch()
    with open(tmp_path / "slot-0") as held:  # another process's lock, as flock sees it
        fcntl.flock(held, fcntl.LOCK_EX)
        slot, fd = idranges._take_slot(tmp_path, 2)
        os.close(fd)
    assert slot == 1


def test_the_default_mode_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(idranges.USERNS_ENV, raising=False)
    assert idranges.default_mode() == "host"
    monkeypatch.setenv(idranges.USERNS_ENV, "auto")
    assert idranges.default_mode() == "auto"
    monkeypatch.setenv(idranges.USERNS_ENV, "keep-id")
    with pytest.raises(SandboxError, match="host, auto"):
        idranges.default_mode()


def test_host_mode_needs_no_namespace_and_unknown_modes_are_refused():
    assert idranges.for_mode("host") is None
    with pytest.raises(SandboxError, match="--userns=private"):
        idranges.for_mode("private")


def test_auto_is_refused_rootless(monkeypatch):
    monkeypatch.setenv("MINIBUILD_USERNS", "1000:1000")
    with pytest.raises(SandboxError, match="for root"):
        idranges.for_mode("auto")


def test_the_upper_and_works_parent_covers_the_scaffold_other_lowers_apart():
    options = OverlayOptions(("/s/steps/x/scaffold-1", "/s/layers/a", "/s/layers/b"),
                             "/s/steps/x/upper", "/s/steps/x/work")
    assert mapped_dirs(options) == ("/s/steps/x", "/s/layers/a", "/s/layers/b")
    assert mapped_dirs(OverlayOptions(("/s/steps/xy",), "/s/steps/x/upper", "/s/steps/x/work")) \
        == ("/s/steps/x", "/s/steps/xy")
