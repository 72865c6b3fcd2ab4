"""`commit` without root: a stopped container's upper dir (a plain directory here) becomes one
more layer on its image, and the config keeps what `run` changed."""

from __future__ import annotations

from dataclasses import replace

import pytest

from minibuild.containers.commit import commit_container, committed_config, snapshot_upper
from minibuild.containers.records import Container, Containers
from minibuild.layer.compression import Compression
from minibuild.oci.digest import Digest
from minibuild.oci.image import ContainerConfig, Descriptor, History, Image
from minibuild.oci.reference import Reference
from minibuild.store.layout import Store

IMAGE = ContainerConfig(entrypoint=("/entry",), cmd=("serve",), env=("PATH=/bin",),
                        working_dir="/app", user="app")


def container(**overrides) -> Container:
    return Container(id="c" * 64, name="n", image="base:1",
                     manifest=Descriptor("application/vnd.oci.image.manifest.v1+json",
                                         Digest.of(b"m"), 1),
                     diff_ids=(), argv=("sh",), env=(("PATH", "/bin"), ("A", "1")), cwd="/",
                     user="", network="host", created="2024-01-01T00:00:00Z",
                     overrides=overrides)


def test_nothing_changed_by_run_leaves_the_config_alone():
    assert committed_config(IMAGE, container()) == IMAGE


def test_an_entrypoint_flag_replaces_entrypoint_and_cmd_together():
    config = committed_config(IMAGE, container(entrypoint="/bin/sh"))
    assert config.entrypoint == ("/bin/sh",) and config.cmd is None
    config = committed_config(IMAGE, container(entrypoint="", cmd=["ls"]))
    assert config.entrypoint is None and config.cmd == ("ls",)


def test_a_command_alone_replaces_cmd_only():
    config = committed_config(IMAGE, container(cmd=["run", "it"]))
    assert config.entrypoint == ("/entry",) and config.cmd == ("run", "it")


def test_env_workdir_and_user_flags_are_kept():
    config = committed_config(IMAGE, container(env=["A=1"], workdir="/w", user=""))
    assert config.env == ("PATH=/bin", "A=1")  # the container's whole environment
    assert config.working_dir == "/w"
    assert config.user == ""  # `-u ""` given: kept, even empty


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "store") as opened:
        yield opened


def made(store: Store, **overrides) -> tuple[Containers, Container]:
    """A container record on an empty tagged base image (no layers: nothing to unpack)."""
    base = Image().with_container_config(IMAGE).append(None, History("CMD serve"))
    descriptor = store.write_image(base)
    store.tag(Reference.parse("base:1"), descriptor)
    records = Containers(store.root)
    record = records.create(replace(container(**overrides), id="", name="",
                                    manifest=descriptor))
    return records, record


def test_an_upper_dir_without_entries_makes_no_layer(store):
    records, record = made(store)
    blobs = sorted(store.paths.blobs.iterdir())
    assert snapshot_upper(store, records, record, pause=True,
                          compression=Compression.GZIP) is None
    assert sorted(store.paths.blobs.iterdir()) == blobs


def test_the_upper_dir_becomes_a_stored_unpacked_layer(store):
    records, record = made(store)
    upper = records.dirs(record.id)[0]
    (upper / "etc").mkdir()
    (upper / "etc" / "motd").write_text("hello\n")
    layer = snapshot_upper(store, records, record, pause=False, compression=Compression.GZIP)
    assert layer is not None
    assert layer.descriptor.media_type.endswith("tar+gzip")
    assert store.has_blob(layer.descriptor.digest)
    assert (store.layer_path(layer.diff_id) / "etc" / "motd").read_text() == "hello\n"
    assert (upper / "etc" / "motd").exists()  # the container keeps its writes
    assert dict(store.layer_summary(layer).files)["etc/motd"] == 6


def test_commit_stores_the_image_with_one_more_layer_and_history_entry(store):
    records, record = made(store, cmd=["sh", "-c", "x"])
    (records.dirs(record.id)[0] / "file").write_text("data")
    descriptor = commit_container(store, records, record, message="fix", author="me",
                                  pause=True, compression=Compression.NONE)
    image = store.load_image(descriptor)
    assert len(image.layers) == 1
    last = image.config.history[-1]
    assert (last.created_by, last.comment, last.author, last.empty_layer) == ("sh", "fix", "me",
                                                                              False)
    assert image.config.author == "me" and image.config.created == last.created
    assert image.config.config.cmd == ("sh", "-c", "x")
    assert image.config.config.entrypoint == ("/entry",)
    assert (store.layer_path(image.layers[0].diff_id) / "file").read_text() == "data"


def test_commit_of_an_unchanged_container_adds_an_empty_history_entry(store):
    records, record = made(store)
    descriptor = commit_container(store, records, record, message=None, author=None,
                                  pause=True, compression=Compression.ZSTD)
    image = store.load_image(descriptor)
    assert image.layers == ()
    assert [h.empty_layer for h in image.config.history] == [True, True]
    assert image.config.author is None
