"""Review of run's volumes, binds and flags: a seed cut short, mounts on /etc and its files,
/etc/hostname, a workdir inside a mount, a mount target swapped for a symlink mid-walk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, write_context
from tests.integration.test_containers import cmb, host_mounts_under, pids_with, ps, wait_for  # noqa: F401

pytestmark = pytest.mark.integration

# 10,000 files at a VOLUME: seeding them takes long enough to be cut short
BIG = """FROM base:1.0
RUN mkdir /big && cd /big && for d in $(seq 10 29); do mkdir d$d; \
 for f in $(seq 1 500); do echo $f > d$d/f$f; done; done
VOLUME /big
"""


def test_a_seed_cut_short_by_sigkill_is_redone_at_the_next_start(cmb, tmp_path):
    cmb.build(write_context(tmp_path / "big", BIG), "-t", "big:1")
    data = cmb.root / "volumes" / "half" / "_data"
    env = {**os.environ, "MINIBUILD_ROOT": str(cmb.root)}
    proc = subprocess.Popen([sys.executable, "-m", "minibuild", "run", "--name", "half", "-v",
                             "half:/big", "big:1", "true"], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # the first dirs appear while the copy runs: kill `run` then, mid-seed
        assert wait_for(lambda: (data / "d10").exists() or proc.poll() is not None, 60)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert wait_for(lambda: not pids_with(str(cmb.root)))
    assert host_mounts_under(cmb.root) == []
    cmb.run("rm", "-f", "half")
    out = cmb.run("run", "--rm", "-v", "half:/big", "big:1", "sh", "-c",
                  "find /big -type f | wc -l; cat /big/d29/f500")
    assert out.stdout.split() == ["10000", "500"]
    assert not (cmb.root / "volumes" / "half" / "seeding").exists()
    assert ps(cmb) == {}


def test_a_mount_on_etc_or_on_its_files_wins_over_the_sandboxs_own(cmb, tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("10.1.2.3\tmine\n")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 192.0.2.53\n")
    out = cmb.run("run", "--rm", "-v", f"{hosts}:/etc/hosts:ro", "--mount",
                  f"type=bind,src={resolv},dst=/etc/resolv.conf", "base:1.0", "sh", "-c",
                  "cat /etc/hosts /etc/resolv.conf")
    assert out.stdout == "10.1.2.3\tmine\nnameserver 192.0.2.53\n"  # docker: the user's mount
    # base:1.0 has no /etc/hosts (the sandbox supplies it): a volume or tmpfs on /etc lacks it
    cmb.build(write_context(tmp_path / "etcvol", "FROM base:1.0\nVOLUME /etc\n"), "-t", "etcvol:1")
    out = cmb.run("run", "--rm", "etcvol:1", "sh", "-c", "cat /etc/passwd /etc/hosts")
    assert out.stdout.startswith("root:") and "localhost" in out.stdout
    out = cmb.run("run", "--rm", "--tmpfs", "/etc", "base:1.0", "sh", "-c", "ls /etc")
    assert out.stdout.split() == ["hostname", "hosts", "resolv.conf"]
    empty = tmp_path / "empty-etc"
    empty.mkdir()
    assert cmb.run("run", "--rm", "-v", f"{empty}:/etc:ro", "base:1.0", "ls", "/etc").stdout == ""
    assert ps(cmb) == {}


def test_etc_hostname_holds_the_hostname_and_stays_out_of_the_upper_dir(cmb, tmp_path):
    out = cmb.run("run", "--name", "hn", "-h", "web-1", "base:1.0", "sh", "-c",
                  "cat /etc/hostname; echo changed > /etc/hostname")
    assert out.stdout == "web-1\n"
    assert cmb.run("diff", "hn").stdout == ""
    cid = ps(cmb)["hn"]["id"]
    assert cmb.run("run", "--rm", "base:1.0", "cat", "/etc/hostname").stdout != "web-1\n"
    default = cmb.run("run", "--name", "plain", "base:1.0", "cat", "/etc/hostname").stdout
    assert default == ps(cmb)["plain"]["id"][:12] + "\n"  # the short id, as `hostname` says
    mine = tmp_path / "hostname"
    mine.write_text("mine\n")
    assert cmb.run("run", "--rm", "-v", f"{mine}:/etc/hostname", "-h", "x", "base:1.0", "cat",
                   "/etc/hostname").stdout == "mine\n"
    assert not (cmb.root / "containers" / cid / "upper" / "etc").exists()


def test_a_workdir_inside_a_volume_or_tmpfs_is_made_there_as_docker_does(cmb):
    out = cmb.run("run", "--name", "wd", "-v", "work:/data", "-w", "/data/sub/dir", "base:1.0",
                  "sh", "-c", "pwd; touch here")
    assert out.stdout == "/data/sub/dir\n"
    assert (cmb.root / "volumes" / "work" / "_data" / "sub" / "dir" / "here").is_file()
    assert cmb.run("diff", "wd").stdout == ""
    assert cmb.run("run", "--rm", "--tmpfs", "/scratch", "-w", "/scratch/b", "base:1.0",
                   "pwd").stdout == "/scratch/b\n"


def _swap_race_child(tmp: Path) -> None:
    """In a forked child with a mount namespace of its own: mount a file on /sub/marker while
    `sub` is swapped for a symlink to a host dir right after it was first looked at."""
    from minibuild.sandbox import linux
    from minibuild.sandbox.stepmounts import Bind, mount_all

    linux.unshare(linux.CLONE_NEWNS)
    linux.mount("none", "/", "", linux.MS_REC | linux.MS_PRIVATE, None)
    root, outside = tmp / "root", tmp / "outside"
    swapped = []

    def swap() -> None:
        if not swapped:
            swapped.append(True)
            os.rename(root / "sub", root / "sub.old")
            os.symlink(outside, root / "sub")  # what a racing owner of `sub` would plant

    real_lstat, real_open = os.lstat, os.open

    def lstat(path, *args, **kwargs):
        st = real_lstat(path, *args, **kwargs)
        if str(path).endswith("/sub"):
            swap()
        return st

    def open_(path, *args, **kwargs):
        fd = real_open(path, *args, **kwargs)
        if str(path) == "sub" or str(path).endswith("/sub"):
            swap()
        return fd

    os.lstat, os.open = lstat, open_
    try:
        mount_all([Bind("/sub/marker", str(tmp / "conf"), True, True)], str(root), False)
    except Exception:  # noqa: BLE001 - refusing is fine; only the host dir matters
        pass
    finally:
        os.lstat, os.open = real_lstat, real_open


def test_a_mount_target_swapped_for_a_symlink_mid_walk_stays_inside_the_root(tmp_path):
    (tmp_path / "root" / "sub").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "conf").write_text("conf\n")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            _swap_race_child(tmp_path)
            code = 0
        finally:
            os._exit(code)
    assert os.waitpid(pid, 0)[1] == 0
    assert os.listdir(tmp_path / "outside") == []  # no mount point made through the link
    assert os.listdir(tmp_path / "root" / "sub.old") == ["marker"]


def test_volume_prune_removes_what_a_killed_volume_rm_left(cmb):
    cmb.run("volume", "create", "keep")
    left = cmb.root / "volumes" / ".rm-gone-0123abcd" / "_data"  # renamed, then killed
    left.mkdir(parents=True)
    (left / "big").write_bytes(b"x" * 4096)
    cmb.run("volume", "prune", "-f")
    assert sorted(p.name for p in (cmb.root / "volumes").iterdir() if p.name != ".lock") == ["keep"]
