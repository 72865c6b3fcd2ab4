"""Reading uid/gid maps: which ids a user namespace holds, and how messages show them."""

from __future__ import annotations

from minibuild.fs import idmap

ROOTLESS = "         0       1001          1\n         1     100000      65536\n"


def test_parse_map_and_holds():
    ranges = idmap.parse_map(ROOTLESS)
    assert ranges == [idmap.IdRange(0, 1001, 1), idmap.IdRange(1, 100000, 65536)]
    assert ranges[1].holds(1) and ranges[1].holds(65536) and not ranges[1].holds(65537)
    assert idmap.parse_map("junk\n1 2\n") == []


def test_mapped_ids_and_description(monkeypatch):
    monkeypatch.setattr(idmap, "read_map", lambda kind="uid", pid="self": idmap.parse_map(ROOTLESS))
    assert idmap.is_mapped(0) and idmap.is_mapped(33) and idmap.is_mapped(65536)
    assert not idmap.is_mapped(65537) and not idmap.is_mapped(100000)
    assert idmap.describe_map() == "0-65536"


def test_the_test_process_runs_in_the_initial_namespace_or_knows_it_does_not():
    identity = [tuple(r) for r in idmap.read_map()] == [(0, 0, 4294967295)]
    assert idmap.in_user_namespace() is not identity
