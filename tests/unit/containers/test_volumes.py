"""Volumes in a store (names, records, in use), the seeding copy, and their df rows."""

from __future__ import annotations

import fcntl
import os
import stat

import pytest

from minibuild.containers.containermounts import covered
from minibuild.containers.records import Container
from minibuild.oci.digest import Digest
from minibuild.oci.image import Descriptor
from minibuild.containers.mountspec import MountSpec, RunFlagError
from minibuild.containers.runflags import parse_tmpfs, parse_volume
from minibuild.containers.treecopy import copy_tree, open_dir
from minibuild.maintenance.inventory import held_locks
from minibuild.maintenance.usage import CacheMountFigures, Inventory, VolumeFigures, account
from minibuild.containers.volumes import ANONYMOUS, VolumeError, Volumes, users


def container(cid: str, *mounts: MountSpec) -> Container:
    digest = Digest.of(b"m")
    return Container(id=cid * 64, name=f"c{cid}", image="base:1.0",
                     manifest=Descriptor("application/vnd.oci.image.manifest.v1+json", digest, 1),
                     diff_ids=(digest,), argv=("sh",), env=(), cwd="/", user="", network="host",
                     created="2024-01-01T00:00:00Z", mounts=mounts, hostname="web")


def test_a_record_keeps_its_mounts_and_hostname():
    c = container("a", parse_volume("v1:/v:ro", "/"), parse_tmpfs("/t:size=1k"))
    assert Container.from_json(c.to_json()) == c
    old = {k: v for k, v in c.to_json().items() if k not in ("mounts", "hostname")}
    assert Container.from_json(old).mounts == () and Container.from_json(old).hostname == ""


def test_create_get_list_and_labels(tmp_path):
    volumes = Volumes(tmp_path)
    with volumes.locked():
        made = volumes.create("data", labels=[("team", "db")])
        again = volumes.create("data")
        anonymous = volumes.create(anonymous=True)
    assert again == made and made.labels == (("team", "db"),) and not made.anonymous
    assert anonymous.anonymous and len(anonymous.name) == 64
    assert made.mountpoint == tmp_path / "volumes" / "data" / "_data"
    assert made.mountpoint.is_dir() and stat.S_IMODE(made.mountpoint.stat().st_mode) == 0o755
    assert [v.name for v in volumes.all()] == sorted([anonymous.name, "data"])
    shown = anonymous.inspect()
    assert shown["Labels"] == {ANONYMOUS: ""} and shown["Driver"] == "local"
    assert shown["Mountpoint"].endswith(f"/volumes/{anonymous.name}/_data")
    with pytest.raises(VolumeError, match="no such volume: nope"):
        volumes.get("nope")
    with pytest.raises(RunFlagError, match="not a valid volume name"):
        with volumes.locked():
            volumes.create("../escape")
    assert not (tmp_path / "escape").exists()


def test_a_volume_in_use_is_refused_whatever_the_container_s_state(tmp_path):
    volumes = Volumes(tmp_path)
    with volumes.locked():
        volumes.create("data")
        volumes.create("free")
    user = container("a", parse_volume("data:/d", "/"), parse_volume("/host:/h", "/"))
    assert users("data", [user]) == [user] and users("free", [user]) == []
    assert users("host", [container("b", parse_volume("/host:/h", "/"))]) == []  # a bind
    with pytest.raises(VolumeError, match=r"in use by container aaaaaaaaaaaa \(ca\)"):
        volumes.remove("data", [user])
    volumes.remove("free", [user])
    assert [v.name for v in volumes.all()] == ["data"]


def test_drop_anonymous_keeps_named_ones_and_ones_another_container_uses(tmp_path):
    volumes = Volumes(tmp_path)
    with volumes.locked():
        one, two = volumes.create(anonymous=True).name, volumes.create(anonymous=True).name
        volumes.create("named")
    anon = MountSpec("volume", "/a", one, anonymous=True)
    shared = MountSpec("volume", "/b", two, anonymous=True)
    gone = container("a", anon, shared, MountSpec("volume", "/n", "named"))
    other = container("b", MountSpec("volume", "/x", two))
    assert volumes.drop_anonymous(gone, [gone, other]) == [one]
    assert sorted(v.name for v in volumes.all()) == sorted(["named", two])


def test_leftovers_of_killed_commands_go(tmp_path):
    volumes = Volumes(tmp_path)
    (volumes.dir / ".new-x-1234" / "_data").mkdir(parents=True)
    (volumes.dir / ".rm-y-1234").mkdir()
    volumes.clean_leftovers()
    assert sorted(p.name for p in volumes.dir.iterdir()) == [".lock"]


def test_covered():
    specs = [parse_volume("/h:/data", "/"), parse_tmpfs("/run/x")]
    assert covered("/data", specs) and covered("/data/sub", specs)
    assert not covered("/database", specs) and not covered("/run", specs)


# -- the seeding copy ----------------------------------------------------------------------------


def test_copy_tree_keeps_modes_times_links_xattrs_and_never_follows_a_link(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "file").write_bytes(b"x" * 100_000)
    os.chmod(src / "sub" / "file", 0o4751)
    os.utime(src / "sub" / "file", ns=(1, 1_000_000_000))
    (src / "link").symlink_to("/etc/passwd")
    (src / "out").symlink_to("../outside")
    os.mkfifo(src / "fifo", 0o640)
    os.chmod(src / "sub", 0o2750)
    os.chmod(src, 0o700)
    try:
        os.setxattr(src / "sub" / "file", "user.note", b"kept")
        xattrs = True
    except OSError:
        xattrs = False
    dst.mkdir()
    source, target = open_dir(str(src)), open_dir(str(dst))
    try:
        copy_tree(source, target)
    finally:
        os.close(source)
        os.close(target)
    assert sorted(os.listdir(dst)) == ["fifo", "link", "out", "sub"]
    assert (dst / "sub" / "file").read_bytes() == b"x" * 100_000
    st = os.lstat(dst / "sub" / "file")
    assert stat.S_IMODE(st.st_mode) == 0o4751 and st.st_mtime_ns == 1_000_000_000
    assert stat.S_IMODE(os.lstat(dst / "sub").st_mode) == 0o2750
    assert stat.S_IMODE(os.lstat(dst).st_mode) == 0o700  # the root takes the source's mode
    assert os.readlink(dst / "link") == "/etc/passwd" and os.readlink(dst / "out") == "../outside"
    assert stat.S_ISFIFO(os.lstat(dst / "fifo").st_mode)
    assert not (tmp_path / "outside").exists()
    if xattrs:
        assert os.getxattr(dst / "sub" / "file", "user.note") == b"kept"


def test_open_dir_refuses_a_symlink_or_a_file(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("")
    (tmp_path / "l").symlink_to("d")
    fd = open_dir(str(tmp_path / "d"))
    assert fd is not None
    os.close(fd)
    assert open_dir(str(tmp_path / "l")) is None and open_dir(str(tmp_path / "f")) is None
    assert open_dir(str(tmp_path / "missing")) is None


# -- df --------------------------------------------------------------------------------------------


def test_df_rows_for_volumes_and_cache_mounts():
    usage = account(Inventory({"blob:a": 10}, {}, {}, {}, {}, [],
                              [VolumeFigures("used", 100, 2, False),
                               VolumeFigures("free", 30, 0, True)],
                              [CacheMountFigures("c1", 1000, True),
                               CacheMountFigures("c2", 7, False)]))
    rows = {r.kind: r for r in usage.rows}
    volumes, mounts = rows["Local Volumes"], rows["Cache Mounts"]
    assert (volumes.total, volumes.active, volumes.size, volumes.reclaimable) == (2, 1, 130, 30)
    assert (mounts.total, mounts.active, mounts.size, mounts.reclaimable) == (2, 1, 1007, 7)
    assert usage.total == 10 + 130 + 1007


def test_held_locks_reads_proc_locks(tmp_path):
    text = ("1: FLOCK  ADVISORY  WRITE 1234 fd:01:77 0 EOF\n"
            "1: -> FLOCK  ADVISORY  WRITE 99 fd:01:78 0 EOF\n"
            "2: POSIX  ADVISORY  READ 55 08:10:1234 0 EOF\n")
    assert held_locks(text) == {(0xfd, 1, 77), (8, 16, 1234)}
    path = tmp_path / "lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        st = os.fstat(fd)
        key = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
        assert key not in held_locks()
        fcntl.flock(fd, fcntl.LOCK_SH)
        assert key in held_locks()
    finally:
        os.close(fd)


def test_mountpoint_is_absolute_for_a_relative_store_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    volumes = Volumes("store")
    with volumes.locked():
        made = volumes.create("data")
    assert made.inspect()["Mountpoint"] == str(tmp_path / "store" / "volumes" / "data" / "_data")
