"""A container's mounts as the sandbox gets them, and volume seeding, on plain directories
(no root, no overlay: the image's layers are directories standing in for the lowers)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from minibuild.containers.containermounts import attach, covered, seed
from minibuild.containers.mountspec import MountSpec
from minibuild.containers.records import Container, ContainerError, Containers
from minibuild.containers.volumes import Volumes, seed_marker
from minibuild.oci.digest import Digest
from minibuild.oci.image import Descriptor
from minibuild.sandbox.sandbox import RootFS
from minibuild.sandbox.stepmounts import Bind, Tmpfs


def test_covered_means_the_target_or_below_it():
    specs = (MountSpec("volume", "/data", "v"), MountSpec("tmpfs", "/run/"))
    assert covered("/data", specs) and covered("/data/x/y", specs)
    assert covered("/run/lock", specs)
    assert not covered("/data2", specs)  # a sibling sharing the prefix is not inside
    assert not covered("/", specs) and not covered("/etc", ())


class Setup:
    """A store root with one container record, and its rootfs as plain dirs."""

    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "store"
        self.records = Containers(self.root)
        self.layer = tmp / "layer"
        self.layer.mkdir()
        self.container = self.records.create(Container(
            id="", name="box", image="base:1",
            manifest=Descriptor("application/vnd.oci.image.manifest.v1+json",
                                Digest.of(b"m"), 1),
            diff_ids=(), argv=("sh",), env=(), cwd="/", user="", network="none",
            created="2024-01-01T00:00:00Z"))
        upper, work, merged = self.records.dirs(self.container.id)
        self.fs = RootFS((self.layer,), upper, work, merged)

    def attach(self, *mounts: MountSpec, hostname: str = ""):
        container = replace(self.container, mounts=mounts, hostname=hostname)
        return attach(self.root, self.fs, container)


@pytest.fixture
def setup(tmp_path) -> Setup:
    return Setup(tmp_path)


def test_no_mounts_still_binds_a_hostname_file(setup):
    umask = os.umask(0o077)  # the file is readable in the container whatever our umask
    try:
        attached = setup.attach(hostname="web")
    finally:
        os.umask(umask)
    (hostname,) = attached.mounts
    assert hostname == Bind("/etc/hostname", str(setup.records.path(setup.container.id)
                                                 / "hostname"), False, True,
                            name="/etc/hostname")
    assert Path(hostname.source).read_text() == "web\n"
    assert os.stat(hostname.source).st_mode & 0o777 == 0o644
    assert attached.seeds == ()


def test_the_hostname_defaults_to_the_short_id(setup):
    (hostname,) = setup.attach().mounts
    assert Path(hostname.source).read_text() == setup.container.short_id + "\n"


def test_no_hostname_file_where_the_user_or_the_image_has_one_or_etc_is_read_only(setup, tmp_path):
    source = tmp_path / "myhost"
    source.write_text("mine\n")
    mine = MountSpec("bind", "/etc/hostname", str(source))
    assert [m.target for m in setup.attach(mine).mounts] == ["/etc/hostname"]
    etc = tmp_path / "etc"
    etc.mkdir()
    frozen = MountSpec("bind", "/etc", str(etc), readonly=True)
    assert [m.target for m in setup.attach(frozen).mounts] == ["/etc"]
    (setup.layer / "etc" / "hostname").mkdir(parents=True)
    assert setup.attach().mounts == ()


def test_a_tmpfs_keeps_its_options(setup):
    spec = MountSpec("tmpfs", "/scratch", size=4096, mode=0o700, readonly=True, noexec=False)
    tmpfs = setup.attach(spec).mounts[0]
    assert tmpfs == Tmpfs("/scratch", 4096, mode=0o700, readonly=True, noexec=False)


def test_a_bind_follows_host_symlinks_and_knows_files_from_dirs(setup, tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "conf").write_text("x")
    mounts = setup.attach(MountSpec("bind", "/a", str(tmp_path / "link"), readonly=True),
                          MountSpec("bind", "/b.conf", str(tmp_path / "conf"))).mounts
    assert mounts[0] == Bind("/a", str(tmp_path / "real"), True, False,
                             name=f"bind {tmp_path / 'link'}", host=True)
    assert mounts[1].source == str(tmp_path / "conf") and mounts[1].file
    assert mounts[1].host  # a host path: never idmapped under --userns=auto


def test_a_missing_bind_source_is_made_only_for_v(setup, tmp_path):
    with pytest.raises(ContainerError, match="does not exist"):
        setup.attach(MountSpec("bind", "/a", str(tmp_path / "absent")))
    made = setup.attach(MountSpec("bind", "/a", str(tmp_path / "new" / "dir"),
                                  create_source=True)).mounts[0]
    assert (tmp_path / "new" / "dir").is_dir() and not made.file


def test_v_does_not_make_a_dir_for_a_file_of_the_image(setup, tmp_path):
    (setup.layer / "app.conf").write_text("image's")
    with pytest.raises(ContainerError, match="is a file in the image") as caught:
        setup.attach(MountSpec("bind", "/app.conf", str(tmp_path / "absent"),
                               create_source=True))
    assert "create the host file first" in caught.value.hint
    assert not (tmp_path / "absent").exists()


def test_an_empty_volume_is_seeded_unless_nocopy(setup):
    volumes = Volumes(setup.root)
    with volumes.locked():
        volumes.create("data")
        volumes.create("quiet")
    attached = setup.attach(MountSpec("volume", "/data", "data", readonly=True),
                            MountSpec("volume", "/quiet", "quiet", nocopy=True))
    assert attached.mounts[0] == Bind("/data", str(volumes.data("data")), True, False,
                                      name="volume data")
    assert attached.seeds == (("/data", volumes.data("data")),)


def test_a_volume_with_files_is_not_seeded_again_unless_its_seed_was_cut_short(setup):
    volumes = Volumes(setup.root)
    with volumes.locked():
        volumes.create("data")
    (volumes.data("data") / "kept").write_text("x")
    assert setup.attach(MountSpec("volume", "/data", "data")).seeds == ()
    seed_marker(volumes.data("data")).touch()
    assert setup.attach(MountSpec("volume", "/data", "data")).seeds == (
        ("/data", volumes.data("data")),)


def test_a_volume_whose_dir_went_away_is_made_again(setup):
    anonymous = "a" * 64
    attached = setup.attach(MountSpec("volume", "/cache", anonymous, anonymous=True))
    volume = Volumes(setup.root).get(anonymous)
    assert volume.anonymous and volume.mountpoint.is_dir()
    assert attached.mounts[0].name == f"volume {anonymous[:12]}"


def test_seed_copies_the_image_dir_into_an_empty_volume(tmp_path):
    merged = tmp_path / "merged"
    (merged / "srv" / "sub").mkdir(parents=True)
    (merged / "srv" / "index.html").write_text("hi")
    (merged / "srv" / "sub" / "deep").write_text("deep")
    data = tmp_path / "vol" / "_data"
    data.mkdir(parents=True)
    seed(str(merged), [("/srv", data)])
    assert (data / "index.html").read_text() == "hi"
    assert (data / "sub" / "deep").read_text() == "deep"
    assert not seed_marker(data).exists()


def test_seed_leaves_a_volume_with_files_and_one_the_image_has_no_dir_for(tmp_path):
    merged = tmp_path / "merged"
    (merged / "srv").mkdir(parents=True)
    (merged / "srv" / "image").write_text("image")
    full = tmp_path / "full" / "_data"
    full.mkdir(parents=True)
    (full / "mine").write_text("mine")
    empty = tmp_path / "empty" / "_data"
    empty.mkdir(parents=True)
    seed(str(merged), [("/srv", full), ("/nothing-here", empty),
                       ("/srv", tmp_path / "gone" / "_data")])
    assert [p.name for p in full.iterdir()] == ["mine"]
    assert list(empty.iterdir()) == []


def test_seed_redoes_a_copy_that_was_cut_short(tmp_path):
    merged = tmp_path / "merged"
    (merged / "srv").mkdir(parents=True)
    (merged / "srv" / "whole").write_text("whole")
    data = tmp_path / "vol" / "_data"
    data.mkdir(parents=True)
    (data / "half").write_text("half")
    seed_marker(data).touch()
    seed(str(merged), [("/srv", data)])
    assert [p.name for p in data.iterdir()] == ["whole"]
    assert not seed_marker(data).exists()


def test_seed_resolves_the_target_inside_the_root(tmp_path):
    merged = tmp_path / "merged"
    (merged / "real").mkdir(parents=True)
    (merged / "real" / "in-root").write_text("ok")
    (merged / "srv").symlink_to("/real")  # absolute: it means merged/real, not the host's /real
    data = tmp_path / "vol" / "_data"
    data.mkdir(parents=True)
    seed(str(merged), [("/srv", data)])
    assert [p.name for p in data.iterdir()] == ["in-root"]
