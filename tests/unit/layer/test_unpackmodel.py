"""unpackmodel: what unpacking a tar gives, in memory, by unpack's rules."""

from __future__ import annotations

import hashlib
import io
import stat
import tarfile

import pytest

from minibuild.errors import LayerError
from minibuild.layer import members
from minibuild.layer.unpackmodel import WHITEOUT, Dir, Inode, Model
from minibuild.oci import mediatypes


def _info(name: str, kind: bytes = tarfile.REGTYPE, *, mode: int = 0o644, mtime: int = 100,
          link: str = "", dev: tuple[int, int] = (0, 0)) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime, info.linkname = kind, mode, mtime, link
    info.devmajor, info.devminor = dev
    return info


def _model(*entries: tarfile.TarInfo | tuple[tarfile.TarInfo, bytes], privileged: bool = False) -> Model:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for entry in entries:
            info, body = entry if isinstance(entry, tuple) else (entry, b"")
            info.size = len(body)
            tf.addfile(info, io.BytesIO(body) if body else None)
    model = Model(privileged)
    members.walk_layer(io.BytesIO(raw.getvalue()), mediatypes.LAYER_TAR, model.apply)
    return model


def _at(model: Model, path: str):
    node = model.root
    for part in path.split("/"):
        node = node.children[part]
    return node


def test_bodies_are_hashed_and_counted_and_parents_made_implicitly():
    model = _model((_info("usr/bin/tool", mode=0o755, mtime=300), b"#!/bin/sh\n"),
                   _info("usr/share", tarfile.DIRTYPE, mode=0o700, mtime=200))
    tool = _at(model, "usr/bin/tool")
    assert isinstance(tool, Inode) and tool.kind == stat.S_IFREG and tool.mode == 0o755
    assert (tool.size, tool.sha256) == (10, hashlib.sha256(b"#!/bin/sh\n").digest())
    assert not _at(model, "usr/bin").explicit and _at(model, "usr/share").explicit
    assert (model.entries, model.content_bytes, model.max_mtime) == (2, 10, 300)


def test_a_whiteout_then_the_same_dir_is_a_recreated_opaque_dir():
    model = _model(_info("etc/.wh.conf.d"), _info("etc/conf.d/new"))
    assert isinstance(_at(model, "etc/conf.d"), Dir) and _at(model, "etc/conf.d").opaque


def test_a_dir_then_its_whiteout_makes_it_opaque_and_a_lone_whiteout_stays():
    model = _model(_info("x", tarfile.DIRTYPE), _info(".wh.x"), _info(".wh.gone"))
    assert _at(model, "x").opaque and _at(model, "gone") is WHITEOUT


def test_dir_over_dir_keeps_children_and_takes_the_new_attributes():
    model = _model(_info("d", tarfile.DIRTYPE, mode=0o755), _info("d/f"),
                   _info("d", tarfile.DIRTYPE, mode=0o700))
    assert _at(model, "d").mode == 0o700 and "f" in _at(model, "d").children


def test_a_file_over_a_dir_replaces_it():
    model = _model(_info("d/f"), _info("d"))
    assert isinstance(_at(model, "d"), Inode)


def test_a_hard_link_shares_its_targets_inode():
    model = _model((_info("a"), b"body"), _info("b", tarfile.LNKTYPE, link="a"))
    assert _at(model, "a") is _at(model, "b") and _at(model, "a").names == 2


@pytest.mark.parametrize("entries, message", [
    ((_info("b", tarfile.LNKTYPE, link="nope"),), "no such entry"),
    ((_info("d", tarfile.DIRTYPE), _info("b", tarfile.LNKTYPE, link="d")), "not a file"),
    ((_info("f"), _info("f/x")), "'f' is not a directory"),
    ((_info("null", tarfile.CHRTYPE, dev=(1, 3)),), "unpacking needs root"),
])
def test_what_unpack_refuses_the_model_refuses(entries, message):
    with pytest.raises(LayerError, match=message):
        _model(*entries)


def test_devices_as_root_and_raw_whiteouts_never():
    model = _model(_info("null", tarfile.CHRTYPE, dev=(1, 3)), privileged=True)
    assert _at(model, "null").rdev == (1, 3)
    with pytest.raises(LayerError, match="0:0 device"):
        _model(_info("wh", tarfile.CHRTYPE, dev=(0, 0)), privileged=True)
