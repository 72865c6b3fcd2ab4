"""The build memo's key and its records, without a real build."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from minibuild.build import fsstate, memo

ENV = {"HOME": "/root", "PATH": "/usr/bin", "MINIBUILD_ROOT": "/tmp/store"}


def key(argv, cwd="/src", env=ENV):
    cmd = memo.command(argv, cwd, env, "1.0")
    return cmd.key if cmd else None


def test_only_build_commands_have_a_memo():
    assert key(["build", "."]) is not None
    assert key(["--root", "/x", "build", "."]) is not None
    assert key(["--root=/x", "build", "."]) is not None
    for argv in (["history", "app"], ["run", "app"], [], ["--root"], ["build", "--no-cache", "."],
                 ["build", "--help"], ["--debug", "build", "."]):
        assert key(argv) is None, argv
    assert key(["build", "."], env={**ENV, "MINIBUILD_MEMO": "0"}) is None


def test_the_key_covers_argv_cwd_and_environment_but_not_shell_bookkeeping():
    base = key(["build", "-t", "a:1", "."])
    assert key(["build", "-t", "a:2", "."]) != base
    assert key(["build", "-t", "a:1", "."], cwd="/other") != base
    assert key(["build", "-t", "a:1", "."], env={**ENV, "FLAVOUR": "x"}) != base
    assert key(["build", "-t", "a:1", "."], env={**ENV, "OLDPWD": "/a", "SHLVL": "3", "_": "/bin/mb"}) == base
    assert memo.command(["build", "."], "/src", ENV, "1.0") != memo.command(["build", "."], "/src", ENV, "1.1")


def test_the_store_comes_from_root_then_the_environment():
    assert memo.command(["--root", "/x", "build"], "/", ENV, "1").root == Path("/x")
    assert memo.command(["build"], "/", ENV, "1").root == Path("/tmp/store")


def _store(tmp_path: Path) -> memo.Command:
    root = tmp_path / "store"
    (root / "oci" / "blobs" / "sha256").mkdir(parents=True)
    (root / "locks").mkdir()
    (root / "locks" / "gc").touch()
    index = {"manifests": [{"digest": "sha256:" + "a" * 64,
                            "annotations": {"org.opencontainers.image.ref.name": "app:1"}}]}
    (root / "oci" / "index.json").write_text(json.dumps(index))
    (root / "oci" / "blobs" / "sha256" / ("a" * 64)).write_text("{}")
    return memo.Command(root, "k" * 64)


def _record(cmd: memo.Command, inputs, started_ns: int, *, index_before: str | None = None,
            trails=None) -> bool:
    before = index_before or memo.index_hash(cmd.root)
    return memo.record(cmd, started_ns=started_ns, index_before=before, inputs=inputs,
                       trails=trails or {}, blobs=["sha256:" + "a" * 64],
                       steps=[memo.Step(1, 2, "stage-0", "FROM base", False),
                              memo.Step(2, 2, "stage-0", "COPY a /", True)],
                       digest="sha256:" + "a" * 64, tags=["app:1"], shown_tags=["app:1"], warnings=[])


def test_a_recorded_memo_answers_until_an_input_changes(tmp_path):
    cmd = _store(tmp_path)
    source = tmp_path / "a.txt"
    source.write_text("one")
    os.utime(source, ns=(1, 1))
    missing = str(tmp_path / "absent")
    time.sleep(0.15)  # the file's ctime is now older than the racy window
    assert _record(cmd, [str(source), missing], time.time_ns())
    replay = memo.lookup(cmd)
    assert replay is not None and replay.digest == "sha256:" + "a" * 64
    assert [s.cached for s in replay.steps] == [False, True]
    Path(missing).write_text("now it exists")
    assert memo.lookup(cmd) is None


def test_a_fresh_input_is_not_memoized(tmp_path):
    cmd = _store(tmp_path)
    source = tmp_path / "a.txt"
    source.write_text("one")
    assert not _record(cmd, [str(source)], time.time_ns())
    assert not cmd.path.exists()


def test_a_moved_tag_or_a_missing_blob_voids_the_memo(tmp_path):
    cmd = _store(tmp_path)
    assert _record(cmd, [], time.time_ns())
    index = cmd.root / "oci" / "index.json"
    data = json.loads(index.read_text())
    data["manifests"][0]["digest"] = "sha256:" + "b" * 64
    index.write_text(json.dumps(data))
    assert memo.lookup(cmd) is None
    cmd2 = _store(tmp_path / "two")
    assert _record(cmd2, [], time.time_ns())
    (cmd2.root / "oci" / "blobs" / "sha256" / ("a" * 64)).unlink()
    assert memo.lookup(cmd2) is None


def test_a_damaged_memo_is_a_miss(tmp_path):
    cmd = _store(tmp_path)
    cmd.path.parent.mkdir(parents=True)
    cmd.path.write_text("{not json")
    assert memo.lookup(cmd) is None
    cmd.path.write_text(json.dumps({"format": memo.FORMAT, "key": cmd.key}))
    assert memo.lookup(cmd) is None


def test_a_build_that_changed_the_tags_it_resolved_is_not_memoized(tmp_path):
    cmd = _store(tmp_path)
    assert not _record(cmd, [], time.time_ns(), index_before="0" * 64)
    assert not cmd.path.exists()


def test_a_traced_name_that_changed_during_the_build_is_not_memoized(tmp_path):
    cmd = _store(tmp_path)
    link = tmp_path / "current"
    link.symlink_to("a")
    seen = {str(link): fsstate.identity(str(link))}
    link.unlink()
    link.symlink_to("b")
    assert not _record(cmd, [], time.time_ns(), trails=seen)
    assert _record(cmd, [], time.time_ns(), trails={str(link): fsstate.identity(str(link))})
    assert memo.lookup(cmd) is not None
    link.unlink()
    link.symlink_to("c")  # the same inode may come back: the target text tells
    assert memo.lookup(cmd) is None


def test_the_trail_follows_every_link_on_the_way(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "f").write_text("x")
    (tmp_path / "hop").symlink_to("real")
    (tmp_path / "entry").symlink_to("hop/f")
    names = fsstate.trail(str(tmp_path / "entry"))
    assert str(tmp_path / "entry") in names and str(tmp_path / "hop") in names
    assert names[-1] == str(tmp_path / "real" / "f")
    assert fsstate.trail(str(tmp_path / "missing" / "x"))[-1] == str(tmp_path / "missing")


def test_whole_second_timestamps_need_a_longer_wait():
    now = 10 * 1_000_000_000
    fine = [0, 0, 0, 0, now - 500_000_000 + 1, now - 500_000_000 + 1]
    coarse = [0, 0, 0, 0, now - 1_000_000_000, now - 1_000_000_000]
    assert fsstate.settled(fine, now)
    assert not fsstate.settled(coarse, now)
    assert fsstate.settled(coarse, now + 2_000_000_000)


def test_the_key_covers_every_subpackage_of_minibuild():
    """An edited module anywhere in minibuild (not only in build/) is another minibuild."""
    import minibuild

    package = Path(minibuild.__file__).parent
    covered = {Path(path).parent for path, _, _ in memo._code_state()}
    for sub in ("build", "cli", "dockerfile", "store", "layer", "sandbox"):
        assert package / sub in covered, sub
    assert package in covered
