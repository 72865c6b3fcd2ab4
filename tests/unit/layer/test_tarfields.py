"""Layer tar fields the kernel cannot take are refused as a LayerError naming the entry."""

from __future__ import annotations

import tarfile

import pytest

from minibuild.errors import LayerError
from minibuild.layer.tarfields import check_member


def member(kind: bytes = tarfile.REGTYPE, **fields) -> tarfile.TarInfo:
    info = tarfile.TarInfo("f")
    info.type = kind
    for key, value in fields.items():
        setattr(info, key, value)
    return info


@pytest.mark.parametrize("fields,needle", [
    ({"mtime": 1e30}, "modification time"),
    ({"mtime": -1e20}, "modification time"),
    ({"mtime": float("nan")}, "modification time"),
    ({"mtime": float("inf")}, "modification time"),
    ({"uid": 2**40}, "uid"),
    ({"uid": -5}, "uid"),
    ({"gid": 2**32 - 1}, "gid"),
    ({"linkname": "a\0b", "type": tarfile.SYMTYPE}, "NUL"),
    ({"devmajor": 2**40, "type": tarfile.CHRTYPE}, "device number"),
    ({"pax_headers": {"SCHILY.xattr.user.a\0b": "v"}}, "NUL"),
    ({"pax_headers": {"SCHILY.xattr.": "v"}}, "empty"),
])
def test_fields_out_of_range_are_refused(fields, needle):
    kind = fields.pop("type", tarfile.REGTYPE)
    with pytest.raises(LayerError, match=needle) as info:
        check_member(member(kind, **fields))
    assert "'f'" in info.value.message


def test_ordinary_fields_pass():
    check_member(member(mtime=1.5, uid=65534, gid=0, pax_headers={"SCHILY.xattr.user.k": "v\0v"}))
    check_member(member(tarfile.SYMTYPE, linkname="../x", mtime=-1))
    check_member(member(tarfile.CHRTYPE, devmajor=1, devminor=3))
