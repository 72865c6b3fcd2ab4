"""Where a step's cgroup goes: hierarchies read from a mount table, controllers placed on v2 or
v1, leftovers swept (fake cgroup trees in temp dirs; no root)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from minibuild.fs import idmap
from minibuild.sandbox import cgroups
from minibuild.sandbox.cgroups import is_ours, place, start_time
from minibuild.sandbox.hierarchy import Hierarchy, parse_hierarchies
from minibuild.sandbox.limits import LimitError, Limits

HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
"""
HYBRID_MEMBERSHIP = """\
9:name=systemd:/user.slice
8:pids:/
4:memory:/job/42
1:cpu,cpuacct:/
0::/user.slice/session-1.scope
"""


def test_hybrid_hierarchies_and_our_place_in_each():
    found = {h.mount.name: h for h in parse_hierarchies(HYBRID, HYBRID_MEMBERSHIP, ["hugetlb"])}
    assert set(found) == {"cpu,cpuacct", "memory", "pids", "systemd", "unified"}
    assert found["cpu,cpuacct"].controllers == {"cpu", "cpuacct"}
    assert found["memory"].own == "/job/42" and found["memory"].version == 1
    assert found["systemd"].controllers == frozenset()
    assert found["unified"].version == 2 and found["unified"].controllers == {"hugetlb"}
    assert found["unified"].own == "/user.slice/session-1.scope"
    assert found["cpu,cpuacct"].member("cpuacct,cpu") and not found["pids"].member("")
    assert found["unified"].member("")


def test_a_mount_of_a_subtree_locates_paths_inside_it():
    mountinfo = "50 1 0:40 /ci/job /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    (h,) = parse_hierarchies(mountinfo, "0::/ci/job/runner\n", ["pids", "memory"])
    assert h.own == "/runner"
    assert h.locate("/ci/job/runner/minibuild/x") == Path("/sys/fs/cgroup/runner/minibuild/x")
    assert h.locate("/elsewhere") is None


def _v1(tmp_path: Path, name: str, own: str = "/") -> Hierarchy:
    (tmp_path / name / own.strip("/")).mkdir(parents=True, exist_ok=True)
    return Hierarchy(tmp_path / name, 1, frozenset({name}), own)


def _v2(tmp_path: Path, controllers: set[str], own: str = "/") -> Hierarchy:
    mount = tmp_path / "unified"
    own_dir = mount / own.strip("/")
    for level in (mount, own_dir, mount / "minibuild", own_dir / "minibuild"):
        level.mkdir(parents=True, exist_ok=True)  # the kernel makes these files in a cgroup
        (level / "cgroup.subtree_control").write_text("")
    return Hierarchy(mount, 2, frozenset(controllers), own)


def test_v1_controllers_go_under_our_own_cgroup(tmp_path):
    found = [_v1(tmp_path, "pids"), _v1(tmp_path, "memory", "/job/42")]
    placed = place(Limits(memory=64 << 20, pids=10), found)
    assert placed["pids"][1] == tmp_path / "pids" / "minibuild"
    assert placed["memory"][1] == tmp_path / "memory" / "job" / "42" / "minibuild"
    assert placed["memory"][1].is_dir()


def test_v2_is_preferred_and_controllers_are_enabled_down_the_chain(tmp_path):
    v2 = _v2(tmp_path, {"pids", "memory"})
    placed = place(Limits(pids=10, memory=64 << 20), [_v1(tmp_path, "pids"), v2])
    assert {c: h.version for c, (h, _) in placed.items()} == {"pids": 2, "memory": 2}
    parent = tmp_path / "unified" / "minibuild"
    assert placed["pids"][1] == parent
    assert (tmp_path / "unified" / "cgroup.subtree_control").read_text().split() in (
        ["+memory", "+pids"], ["+pids", "+memory"])


def test_v2_falls_back_to_the_root_when_our_cgroup_cannot_hand_controllers_down(tmp_path):
    v2 = _v2(tmp_path, {"pids"}, "/user.slice/session-1.scope")
    (v2.dir(v2.own) / "cgroup.subtree_control").unlink()  # as refused (EBUSY) would be
    (placed,) = place(Limits(pids=10), [v2]).values()
    assert placed[1] == tmp_path / "unified" / "minibuild"


def test_the_v2_freezer_needs_no_controller_but_its_file(tmp_path):
    v2 = _v2(tmp_path, set())
    freezer = _v1(tmp_path, "freezer")
    # a kernel without cgroup.freeze: the v1 freezer
    assert place(Limits(freezer=True), [v2, freezer])["freezer"][0] is freezer
    (tmp_path / "unified" / "minibuild" / "cgroup.freeze").write_text("0")
    assert place(Limits(freezer=True), [v2, freezer])["freezer"][0] is v2


def test_a_missing_controller_is_refused_unless_optional(tmp_path):
    found = [_v1(tmp_path, "pids")]
    with pytest.raises(LimitError, match=r"memory limit \(--memory\)"):
        place(Limits(memory=64 << 20), found)
    assert place(Limits(pids=10, memory=1 << 30, optional=frozenset({"memory"})), found).keys() \
        == {"pids"}
    assert place(Limits(), found) == {}


def test_sweep_removes_only_empty_cgroups_of_gone_makers(tmp_path):
    parent = tmp_path / "pids" / "minibuild"
    me = f"{os.getpid()}-{start_time(os.getpid())}-0a1b"
    recycled = f"{os.getpid()}-1-0a1c"  # our pid, another start time: its maker is gone
    for name in (me, recycled, "999999999-5-ff", "not-ours", "1-2-busy"):
        (parent / name).mkdir(parents=True)
    (parent / "1-2-busy" / "cgroup.procs").write_text("")  # rmdir fails, as for a busy cgroup
    cgroups.sweep([parent])
    assert sorted(os.listdir(parent)) == sorted([me, "not-ours", "1-2-busy"])


def test_is_ours():
    assert is_ours("/minibuild/12-345-abcdef01")
    assert is_ours("/job/42/minibuild/12-345-abcdef01/")
    assert not is_ours("/minibuild") and not is_ours("/other/12-345-ab")
    assert not is_ours("/minibuild/12-345-abcdef01/nested")


def test_remove_takes_the_parent_along_unless_another_step_uses_it(tmp_path):
    parent = tmp_path / "pids" / "minibuild"
    mine, other = parent / "1-2-aa", parent / "1-2-bb"
    for path in (mine, other):
        path.mkdir(parents=True)
    cgroups.Cgroup({"pids": (1, mine)}).remove()
    assert not mine.exists() and other.is_dir()
    cgroups.Cgroup({"pids": (1, other)}).remove()
    assert not parent.exists() and parent.parent.is_dir()


def test_rootless_a_limit_no_cgroup_can_apply_is_skipped_not_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(idmap.USERNS_ENV, "1000:1000")
    found = [Hierarchy(tmp_path / "absent", 1, frozenset({"pids"}), "/")]  # as not writable
    limits = Limits(memory=64 << 20, pids=10)
    assert cgroups.Cgroup.create(limits, found) is None
    assert cgroups.unavailable(limits, found) == {"memory", "pids"}
    monkeypatch.delenv(idmap.USERNS_ENV)
    with pytest.raises(LimitError):
        cgroups.Cgroup.create(limits, found)


def test_rootless_a_delegated_v2_subtree_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv(idmap.USERNS_ENV, "1000:1000")
    v2 = _v2(tmp_path, set(), "/user@1000.service/app.scope")
    (v2.dir(v2.own) / "minibuild" / "cgroup.freeze").write_text("0")  # our own cgroup: writable
    group = cgroups.Cgroup.create(Limits(memory=64 << 20, freezer=True), [v2])
    assert group is not None and set(group.dirs) == {"freezer"}
    assert group.dirs["freezer"][1].parent == v2.dir(v2.own) / "minibuild"
    assert cgroups.unavailable(Limits(memory=64 << 20, freezer=True), [v2]) == {"memory"}
    group.remove(0)
