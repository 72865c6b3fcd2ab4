"""The per-file hash cache: saved and loaded between builds, trusted only on a full stat match."""

from __future__ import annotations

import hashlib
import os
import time

from minibuild.build.hashcache import HashCache


def test_a_saved_cache_is_trusted_by_the_next_build_until_the_file_changes(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"one")
    os.utime(path, ns=(1, 1))
    time.sleep(0.15)  # past the racy window for the ctime utime just set
    first = HashCache()
    assert first.digest(str(path)) == hashlib.sha256(b"one").hexdigest()
    second = HashCache()
    second.load(first.to_json())
    assert str(path) in second
    saved = second.to_json()[str(path)]
    second.load({str(path): saved[:5] + ["f" * 64]})  # a lie the stat still matches
    assert second.digest(str(path)) == "f" * 64
    path.write_bytes(b"two")  # same size; mtime and ctime move
    assert second.digest(str(path)) == hashlib.sha256(b"two").hexdigest()


def test_malformed_entries_are_dropped_and_fresh_files_not_kept(tmp_path):
    cache = HashCache()
    cache.load({"/a": [1, 2, 3], "/b": "x", "/c": [0, 0, 0, 0, 0, "h"]})
    assert "/a" not in cache and "/b" not in cache and "/c" in cache
    fresh = tmp_path / "fresh"
    fresh.write_bytes(b"now")
    cache.digest(str(fresh))
    assert str(fresh) not in cache  # written within the racy window: could change unseen
