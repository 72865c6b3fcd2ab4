"""File locks: exclusive and shared, waiting or not, converted, released (flock per open file,
so two FileLocks in one process contend as two processes would)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from minibuild.fs.lock import FileLock


def test_an_exclusive_lock_shuts_out_every_other(tmp_path):
    path = tmp_path / "lock"
    with FileLock(path) as held:
        assert held.held and oct(os.stat(path).st_mode & 0o777) == oct(0o600)
        for exclusive in (True, False):
            with pytest.raises(BlockingIOError):
                FileLock(path, exclusive=exclusive, wait=False)
    assert not held.held
    FileLock(path, wait=False).release()  # free again once released


def test_shared_locks_share_and_shut_out_an_exclusive_one(tmp_path):
    path = tmp_path / "lock"
    with FileLock(path, exclusive=False), FileLock(path, exclusive=False, wait=False):
        with pytest.raises(BlockingIOError):
            FileLock(path, wait=False)


def test_a_failed_attempt_closes_its_file(tmp_path):
    path = tmp_path / "lock"
    before = len(os.listdir("/proc/self/fd"))
    with FileLock(path):
        for _ in range(20):
            with pytest.raises(BlockingIOError):
                FileLock(path, wait=False)
        assert len(os.listdir("/proc/self/fd")) == before + 1


def test_a_waiting_lock_is_granted_when_the_holder_lets_go(tmp_path):
    path = tmp_path / "lock"
    order = []
    holder = FileLock(path)

    def wait_for_it():
        with FileLock(path):
            order.append("waiter")

    thread = threading.Thread(target=wait_for_it)
    thread.start()
    time.sleep(0.1)
    order.append("holder done")
    holder.release()
    thread.join(5)
    assert order == ["holder done", "waiter"]


def test_without_create_a_missing_file_is_an_error_and_nothing_is_made(tmp_path):
    with pytest.raises(FileNotFoundError):
        FileLock(tmp_path / "gc", exclusive=False, create=False)
    assert not (tmp_path / "gc").exists()
    (tmp_path / "gc").touch(0o444)
    FileLock(tmp_path / "gc", exclusive=False, create=False).release()  # read-only is enough


def test_convert_to_exclusive_and_back(tmp_path):
    path = tmp_path / "lock"
    mine = FileLock(path, exclusive=False)
    mine.convert(exclusive=True)
    with pytest.raises(BlockingIOError):
        FileLock(path, exclusive=False, wait=False)
    mine.convert(exclusive=False)
    FileLock(path, exclusive=False, wait=False).release()
    mine.release()


def test_a_refused_conversion_keeps_the_shared_lock(tmp_path):
    path = tmp_path / "lock"
    mine, other = FileLock(path, exclusive=False), FileLock(path, exclusive=False)
    with pytest.raises(BlockingIOError):
        mine.convert(exclusive=True)
    other.release()
    with pytest.raises(BlockingIOError):  # still held shared by `mine`
        FileLock(path, wait=False)
    mine.release()
    mine.release()  # a second release does nothing
