"""load/save of archives built here byte by byte: good ones load with their tags, hostile ones are
refused naming the entry and leave the store exactly as it was."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import os
import tarfile
from pathlib import Path

import pytest
import zstandard

from minibuild.layer.compression import Compression
from minibuild.transfer import archive, archivetar, docker_archive
from minibuild.transfer.archivetar import ArchiveError
from minibuild.transfer.oci_archive import save as save_oci
from minibuild.transfer.importer import import_rootfs
from minibuild.oci.reference import Reference
from minibuild.store.staging import IntakeError
from minibuild.store.layout import Store


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tar_bytes(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def file_entry(name: str, data: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info, data


def link_entry(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def image_blobs(layer_entries) -> tuple[dict[str, bytes], str, str]:
    """blobs by hex, the manifest hex and the config hex of a one-layer gzip image."""
    layer_tar = tar_bytes(layer_entries)
    layer = gzip.compress(layer_tar, mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [f"sha256:{sha(layer_tar)}"]},
                         "history": [{"created_by": "test"}]}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": f"sha256:{sha(config)}", "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                       "digest": f"sha256:{sha(layer)}", "size": len(layer)}]}).encode()
    blobs = {sha(b): b for b in (layer, config, manifest)}
    return blobs, sha(manifest), sha(config)


GOOD_LAYER = [file_entry("etc/hello", b"hi\n"), file_entry("bin/tool", b"#!/bin/sh\n", 0o755)]


def oci_archive(blobs: dict[str, bytes], manifest_hex: str, ref: str = "app:1.0", extra=()) -> bytes:
    manifest = blobs[manifest_hex]
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": f"sha256:{manifest_hex}",
        "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": ref}}]}).encode()
    entries = [file_entry("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')]
    entries += [file_entry(f"blobs/sha256/{h}", b) for h, b in blobs.items()]
    return tar_bytes(entries + [file_entry("index.json", index), *extra])


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file of the store that matters (not scratch or lock files), with its content."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("run", "locks")) or not path.is_file():
            continue
        out[rel] = path.read_bytes()
    return out


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "store") as s:
        yield s


def load(store: Store, data: bytes):
    return archive.load(store, io.BytesIO(data), "test.tar")


def test_oci_archive_loads_with_its_tag_and_unpacks(store):
    blobs, manifest_hex, _ = image_blobs(GOOD_LAYER)
    loaded = load(store, oci_archive(blobs, manifest_hex))
    assert [str(t) for t in loaded[0].tags] == ["app:1.0"]
    name, desc = store.resolve("app:1.0")
    assert desc.digest.hex == manifest_hex  # the manifest bytes are kept
    image = store.load_image(desc)
    assert (store.layer_path(image.layers[0].diff_id) / "etc" / "hello").read_bytes() == b"hi\n"


def test_old_style_docker_archive_with_symlinked_layer_loads(store):
    layer_tar = tar_bytes(GOOD_LAYER)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [f"sha256:{sha(layer_tar)}"] * 2},
                         "history": [{"created_by": "a"}, {"created_by": "b"}]}).encode()
    manifest = json.dumps([{"Config": f"{sha(config)}.json", "RepoTags": ["old:2"],
                            "Layers": ["aaa/layer.tar", "bbb/layer.tar"]}]).encode()
    data = tar_bytes([file_entry("aaa/layer.tar", layer_tar), file_entry("aaa/VERSION", b"1.0"),
                      link_entry("bbb/layer.tar", "../aaa/layer.tar"),
                      file_entry(f"{sha(config)}.json", config), file_entry("manifest.json", manifest)])
    load(store, data)
    image = store.load_image(store.resolve("old:2")[1])
    assert [l.descriptor.media_type for l in image.layers] == ["application/vnd.oci.image.layer.v1.tar"] * 2


def test_save_then_load_round_trips_both_formats(store, tmp_path):
    blobs, manifest_hex, config_hex = image_blobs(GOOD_LAYER)
    load(store, oci_archive(blobs, manifest_hex))
    chosen = [store.resolve("app:1.0")]
    for writer in (save_oci, docker_archive.save):
        out = io.BytesIO()
        writer(store, chosen, out)
        with Store.open(tmp_path / writer.__module__) as other:
            archive.load(other, io.BytesIO(out.getvalue()), "saved.tar")
            desc = other.resolve("app:1.0")[1]
            assert other.load_image(desc).config == store.load_image(chosen[0][1]).config
    names = tarfile.open(fileobj=io.BytesIO(out.getvalue())).getnames()
    manifest = json.loads(tarfile.open(fileobj=io.BytesIO(out.getvalue())).extractfile("manifest.json").read())
    assert manifest[0]["RepoTags"] == ["app:1.0"] and manifest[0]["Config"] == f"blobs/sha256/{config_hex}"
    assert {"oci-layout", "index.json", "manifest.json"} <= set(names)


def _docker_layers(data: bytes) -> tuple[list[bytes], str]:
    """The layer files a docker archive's manifest.json lists, and its OCI manifest's digest hex."""
    tf = tarfile.open(fileobj=io.BytesIO(data))
    entry = json.loads(tf.extractfile("manifest.json").read())[0]
    index = json.loads(tf.extractfile("index.json").read())
    return [tf.extractfile(path).read() for path in entry["Layers"]], index["manifests"][0]["digest"]


@pytest.mark.parametrize("layer_compression", ["gzip", "none"])
def test_docker_save_writes_gzip_layers_by_default_or_plain_when_asked(store, layer_compression):
    blobs, manifest_hex, _ = image_blobs(GOOD_LAYER)
    load(store, oci_archive(blobs, manifest_hex))
    out = io.BytesIO()
    docker_archive.save(store, [store.resolve("app:1.0")], out, Compression.parse(layer_compression))
    (layer,), manifest = _docker_layers(out.getvalue())
    if layer_compression == "gzip":  # stored gzip goes in as it is, under the stored manifest
        assert layer in blobs.values() and manifest == f"sha256:{manifest_hex}"
    else:
        assert layer == tar_bytes(GOOD_LAYER) and manifest != f"sha256:{manifest_hex}"


def test_docker_save_converts_zstd_layers_to_gzip(store, tmp_path):
    layer_tar = tar_bytes(GOOD_LAYER)
    desc = import_rootfs(store, io.BytesIO(zstandard.ZstdCompressor().compress(layer_tar)), "z",
                         Reference.parse("z:1"), layer_compression=Compression.ZSTD)
    out = io.BytesIO()
    docker_archive.save(store, [("z:1", desc)], out)
    (layer,), _ = _docker_layers(out.getvalue())
    assert gzip.decompress(layer) == layer_tar
    with Store.open(tmp_path / "other") as other:
        archive.load(other, io.BytesIO(out.getvalue()), "saved.tar")
        image = other.load_image(other.resolve("z:1")[1])
        assert image.layers[0].descriptor.media_type.endswith("+gzip")
        assert image.config == store.load_image(desc).config


def hostile_cases():
    blobs, manifest_hex, _ = image_blobs(GOOD_LAYER)
    good = oci_archive(blobs, manifest_hex)
    yield "dotdot member", oci_archive(blobs, manifest_hex, extra=[file_entry("../evil", b"x")]), "'../evil'"
    yield "absolute member", oci_archive(blobs, manifest_hex, extra=[file_entry("/etc/evil", b"x")]), "'/etc/evil'"
    yield "symlink out", oci_archive(blobs, manifest_hex, extra=[link_entry("blobs/x", "../../etc/passwd")]), "blobs/x"
    wrong = dict(blobs)
    wrong[manifest_hex] = blobs[manifest_hex] + b" "
    yield "digest mismatch", oci_archive(wrong, manifest_hex), f"blobs/sha256/{manifest_hex}"
    yield "truncated", good[: good.index(b"index.json") + 600], "'index.json'"  # inside its body
    big = oci_archive(blobs, manifest_hex, extra=[file_entry("repositories", b" " * (5 << 20))])
    yield "oversized metadata", big, "'repositories' is too large"
    yield "device member", oci_archive(blobs, manifest_hex, extra=[(_device("dev/x"), None)]), "'dev/x'"
    for label, layer, needle in (
        ("layer dotdot", [file_entry("../../escape", b"x")], "'../../escape'"),
        ("layer absolute", [file_entry("/abs", b"x")], "'/abs'"),
        ("layer symlink redirect", [link_entry("etc", "/tmp"), file_entry("etc/evil", b"x")], "etc/evil"),
        ("layer hardlink out", [link_entry("h", "../../etc/passwd", tarfile.LNKTYPE)], "'h'"),
        ("layer climbing whiteout", [file_entry("a/.wh...", b"")], ".wh..."),
    ):
        lb, mh, _ = image_blobs(layer)
        yield label, oci_archive(lb, mh), needle


def _device(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    return info


@pytest.mark.parametrize("label,data,needle", list(hostile_cases()), ids=lambda v: v if isinstance(v, str) else "")
def test_hostile_archive_is_refused_and_store_unchanged(store, label, data, needle):
    blobs, manifest_hex, _ = image_blobs([file_entry("keep", b"k")])
    load(store, oci_archive(blobs, manifest_hex, ref="existing:1"))
    before = snapshot(store.root)
    with pytest.raises(IntakeError) as info:
        load(store, data)
    assert needle in str(info.value), str(info.value)
    assert snapshot(store.root) == before
    assert not list((store.root / "run").glob("*/intake-*"))  # scratch trees dropped at once
    assert not os.path.exists("/tmp/evil")


def test_layer_whose_diff_id_lies_is_refused(store):
    blobs, manifest_hex, config_hex = image_blobs(GOOD_LAYER)
    config = json.loads(blobs[config_hex])
    config["rootfs"]["diff_ids"] = ["sha256:" + "0" * 64]
    new_config = json.dumps(config).encode()
    manifest = json.loads(blobs[manifest_hex])
    manifest["config"].update(digest=f"sha256:{sha(new_config)}", size=len(new_config))
    new_manifest = json.dumps(manifest).encode()
    blobs = {h: b for h, b in blobs.items() if h not in (config_hex, manifest_hex)}
    blobs.update({sha(new_config): new_config, sha(new_manifest): new_manifest})
    with pytest.raises(IntakeError, match="unpacks to DiffID"):
        load(store, oci_archive(blobs, sha(new_manifest)))
    assert store.tags() == []


def test_import_rootfs_tarball_with_change(store, tmp_path):
    data = gzip.compress(tar_bytes([file_entry("./bin/sh", b"fake", 0o755)]))
    desc = import_rootfs(store, io.BytesIO(data), "rootfs.tgz", Reference.parse("imp:1"),
                         ('CMD ["sh"]', "ENV A=b", "WORKDIR /srv"))
    image = store.load_image(desc)
    assert image.config.config.cmd == ("sh",) and image.config.config.env == ("A=b",)
    assert image.config.config.working_dir == "/srv"
    assert image.layers[0].descriptor.media_type.endswith("+gzip")
    assert (store.layer_path(image.layers[0].diff_id) / "bin" / "sh").read_bytes() == b"fake"


@pytest.mark.parametrize("wrap, wanted, kept", [
    (lambda tar: tar, "gzip", False),  # plain: compressed as wanted
    (gzip.compress, "gzip", True),  # already gzip: the blob is the tarball itself
    (lambda tar: zstandard.ZstdCompressor().compress(tar), "gzip", False),
    (lzma.compress, "zstd", False),
    (gzip.compress, "none", False),
])
def test_import_stores_the_layer_in_the_chosen_compression(store, wrap, wanted, kept):
    tarball = wrap(tar_bytes([file_entry("./etc/os-release", b"ID=test\n")]))
    desc = import_rootfs(store, io.BytesIO(tarball), "rootfs", Reference.parse("imp:2"),
                         layer_compression=Compression.parse(wanted))
    layer = store.load_image(desc).layers[0]
    assert layer.descriptor.media_type == Compression.parse(wanted).media_type
    assert (store.read_blob(layer.descriptor.digest) == tarball) is kept
    assert (store.layer_path(layer.diff_id) / "etc" / "os-release").read_bytes() == b"ID=test\n"


def test_import_refuses_hostile_rootfs(store):
    before = snapshot(store.root)
    with pytest.raises(IntakeError, match="escape"):
        import_rootfs(store, io.BytesIO(tar_bytes([file_entry("../escape", b"x")])), "bad.tar",
                      Reference.parse("bad:1"))
    assert snapshot(store.root) == before


def test_member_names_are_normalized_or_refused():
    assert archivetar.normalize("./blobs//sha256/x") == "blobs/sha256/x"
    with pytest.raises(ArchiveError, match="climbs"):
        archivetar.normalize("blobs/../../x")
