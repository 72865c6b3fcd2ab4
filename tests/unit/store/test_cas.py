"""The content store: atomic, content-addressed blob writes; verified reads; the BlobStore seam."""

from __future__ import annotations

import errno
import json
import os
from contextlib import contextmanager

import pytest

from minibuild.errors import StoreError
from minibuild.oci.digest import Digest
from minibuild.oci.image import Descriptor, History, Image
from minibuild.store import images
from minibuild.store.cas import Blobs, BlobWriter
from minibuild.store.layout import Store
from minibuild.store.paths import StorePaths
from minibuild.store.ports import BlobStore


@pytest.fixture
def blobs(tmp_path):
    paths = StorePaths.at(tmp_path / "store")
    paths.blobs.mkdir(parents=True)
    temp = tmp_path / "temp"
    temp.mkdir()
    return Blobs(paths, lambda: temp)


def test_blob_writer_is_atomic_and_content_addressed(blobs, tmp_path):
    with pytest.raises(RuntimeError):
        with blobs.blob_writer() as writer:
            writer.write(b"half")
            raise RuntimeError("crash")
    assert list(blobs.dir.iterdir()) == [] and list((tmp_path / "temp").iterdir()) == []
    descriptor = blobs.put_bytes(b"hello", "text/plain")
    assert descriptor == Descriptor("text/plain", Digest.of(b"hello"), 5)
    assert blobs.blob_path(descriptor.digest) == blobs.dir / Digest.of(b"hello").hex
    assert blobs.blob_path(descriptor.digest).read_bytes() == b"hello"
    assert blobs.put_bytes(b"hello", "text/plain") == descriptor  # existing blob: no-op
    assert list((tmp_path / "temp").iterdir()) == []


def test_a_writer_shows_its_digest_and_bytes_before_commit(blobs, tmp_path):
    writer = BlobWriter(blobs)
    try:
        writer.write(b"ab")
        writer.write(b"c")
        assert writer.digest == Digest.of(b"abc") and writer.size == 3
        staged = writer.staged_path()
        assert staged.parent == tmp_path / "temp" and staged.read_bytes() == b"abc"
        assert not blobs.has_blob(Digest.of(b"abc"))
        assert writer.commit() == (Digest.of(b"abc"), 3)
    except BaseException:
        writer.abort()
        raise
    assert blobs.has_blob(Digest.of(b"abc")) and not staged.exists()


def test_an_aborted_writer_leaves_nothing(blobs, tmp_path):
    writer = BlobWriter(blobs)
    writer.write(b"dropped")
    writer.abort()
    assert list((tmp_path / "temp").iterdir()) == [] and list(blobs.dir.iterdir()) == []


def test_an_existing_blob_is_kept_as_it_is(blobs):
    digest = blobs.put_bytes(b"same", "text/plain").digest
    inode = os.stat(blobs.blob_path(digest)).st_ino
    blobs.put_bytes(b"same", "text/plain")
    assert os.stat(blobs.blob_path(digest)).st_ino == inode


def test_a_full_disk_is_a_store_error_naming_the_root(blobs, tmp_path):
    with pytest.raises(StoreError, match=f"no space left on device while writing a blob under {tmp_path / 'store'}"):
        with blobs.blob_writer() as writer:
            writer.write(b"x")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert list((tmp_path / "temp").iterdir()) == []
    with pytest.raises(PermissionError):  # other OSErrors pass through
        with blobs.blob_writer():
            raise PermissionError(errno.EACCES, "denied")


def test_reads_are_verified(blobs):
    descriptor = blobs.put_bytes(b'{"a": 1}', "application/json")
    assert blobs.read_json(descriptor.digest) == {"a": 1}
    blobs.blob_path(descriptor.digest).write_bytes(b'{"a": 2}')
    with pytest.raises(StoreError, match="corrupt"):
        blobs.read_blob(descriptor.digest)
    with pytest.raises(StoreError, match="missing"):
        blobs.read_blob(Digest.of(b"never stored"))


def test_cas_blobs_and_the_store_are_blob_stores(blobs, tmp_path):
    assert isinstance(blobs, BlobStore)
    with Store.open(tmp_path / "other") as store:
        assert isinstance(store, BlobStore) and isinstance(store.cas, BlobStore)
    assert not isinstance(object(), BlobStore)


class FakeBlobs:
    """A BlobStore in a dict: enough for the code that only reads and writes blobs."""

    def __init__(self) -> None:
        self.data: dict[Digest, bytes] = {}

    def blob_path(self, digest):
        raise AssertionError("not on disk")

    def has_blob(self, digest):
        return digest in self.data

    @contextmanager
    def blob_writer(self):
        raise AssertionError("not used here")
        yield

    def put_bytes(self, data, media_type):
        self.data[Digest.of(data)] = data
        return Descriptor(media_type, Digest.of(data), len(data))

    def read_blob(self, digest):
        return self.data[digest]

    def read_json(self, digest):
        return json.loads(self.data[digest])


def test_image_code_runs_on_any_blob_store():
    fake = FakeBlobs()
    assert isinstance(fake, BlobStore)
    image = Image().append(None, History("ENV a=b"))
    descriptor = images.write_image(fake, image)
    assert len(fake.data) == 2  # config and manifest
    assert images.load_image(fake, descriptor).config.history == image.config.history
