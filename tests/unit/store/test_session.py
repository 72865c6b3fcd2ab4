"""Sessions: one locked scratch dir per live process; dead ones are cleaned, live ones kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from minibuild.fs.lock import FileLock
from minibuild.store.session import Session, owner_alive

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def run(tmp_path):
    path = tmp_path / "run"
    path.mkdir()
    return path


def test_the_session_dir_is_made_on_first_use_and_locked(run):
    session = Session(run)
    assert list(run.iterdir()) == []
    path = session.dir()
    assert session.dir() == path and path.parent == run
    assert path.name.startswith(f"{os.getpid()}-")
    with pytest.raises(BlockingIOError):
        FileLock(path / ".lock", wait=False)
    session.close()
    assert list(run.iterdir()) == []
    FileLock(run.parent / "probe", wait=False).release()


def test_scratch_dirs_are_fresh_and_go_with_the_session(run):
    session = Session(run)
    first, second = session.scratch("step"), session.scratch("step")
    assert first != second and first.parent == second.parent == session.dir()
    assert first.name.startswith("step-") and list(first.iterdir()) == []
    (first / "f").write_text("x")
    session.close()
    assert not first.exists() and list(run.iterdir()) == []


def test_dead_sessions_are_removed_and_unlocked_ones_of_live_pids_kept(run):
    dead = run / "99999999-dead"  # no such pid (above pid_max)
    (dead / "upper").mkdir(parents=True)
    (dead / ".lock").touch()
    no_lock = run / "99999998-nolock"
    no_lock.mkdir()
    being_made = run / f"{os.getppid()}-new"  # a live pid whose session is not locked yet
    being_made.mkdir()
    session = Session(run)
    mine = session.dir()
    assert sorted(session.clean_stale()) == [no_lock, dead]
    assert sorted(p.name for p in run.iterdir()) == sorted([being_made.name, mine.name])
    session.close()


def test_a_session_held_by_another_process_is_kept(run):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from minibuild.store.session import Session\n"
        f"s = Session(Path({str(run)!r})); s.dir(); print('ready', flush=True); time.sleep(30)")],
        stdout=subprocess.PIPE, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "ready"
        (theirs,) = run.iterdir()
        os.rename(theirs, run / "99999999-renamed")  # a dead pid in the name: the lock decides
        assert Session(run).clean_stale() == []
    finally:
        holder.kill()
        holder.wait()
    assert Session(run).clean_stale() == [run / "99999999-renamed"]  # freed with its process


def test_owner_alive():
    assert owner_alive(f"{os.getppid()}-abcd") is True
    assert owner_alive(f"{os.getpid()}-abcd") is False  # ours: judged by the lock
    assert owner_alive("99999999-abcd") is False
    assert owner_alive("not-a-pid") is False
