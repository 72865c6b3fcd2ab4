"""Reliability as root: kills, concurrent builds, a full disk, and what a hostile step can reach.

test_interrupt.py covers SIGINT/SIGTERM/SIGKILL of a one-step build; here: a signal after a
completed step (only completed layers stay, and they are reused), steps with many processes,
and the kill test at CI size.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import kill_test
from tests.fstree import listing
from tests.conftest import REPO, write_context

pytestmark = pytest.mark.integration

EPOCH = "1700000000"


def fsck(mb) -> dict:
    """`fsck --format json`, asserting it reports no error."""
    result = mb.run("fsck", "--format", "json", check=False)
    report = json.loads(result.stdout)
    errors = [f for f in report["findings"] if f["severity"] == "error"]
    assert result.returncode == 0 and not errors, errors or result.stderr
    return report


def blobs_match_their_names(root: Path) -> None:
    for path in (root / "oci/blobs/sha256").iterdir():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, path


def no_mounts_under(root: Path) -> bool:
    return str(root) not in Path("/proc/self/mountinfo").read_text()


# -- kill test ---------------------------------------------------------------------------------


def test_kill_test_at_ci_size(tmp_path):
    rounds = kill_test.run(count=4, seed=random.randrange(1 << 30), workdir=tmp_path)
    assert [r.problems for r in rounds] == [()] * 4


# -- signals after a completed step --------------------------------------------------------------


def rooted_in(root: Path) -> list[int]:
    return kill_test.processes_rooted_in(root)


@pytest.mark.parametrize("signum,status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_in_the_second_step_keeps_the_first_layer_and_ends_every_process(
        mb, tmp_path, signum, status):
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\nRUN echo one > /one\n"
                        "RUN sleep 1000 & sleep 1001 & (sleep 1002 &) ; echo started; wait\n")
    env = {**os.environ, "MINIBUILD_ROOT": str(mb.root), "SOURCE_DATE_EPOCH": EPOCH}
    proc = subprocess.Popen([sys.executable, "-m", "minibuild", "build", "--progress", "plain",
                             "-t", "sig:1", str(ctx)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while len(rooted_in(mb.root)) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(rooted_in(mb.root)) >= 4, "the second step never started its sleeps"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == status and b"Traceback" not in err, err.decode()
    assert rooted_in(mb.root) == [] and no_mounts_under(mb.root)
    assert list((mb.root / "run").iterdir()) == []
    assert "sig:1" not in (mb.root / "oci/index.json").read_text()
    blobs_match_their_names(mb.root)
    assert fsck(mb)["cache_entries"] >= 1  # the first step's layer, complete and cached
    quick = write_context(tmp_path / "quick", "FROM base:1.0\nRUN echo one > /one\n")
    out = mb.run("build", "--progress", "plain", str(quick), env={"SOURCE_DATE_EPOCH": EPOCH})
    assert "CACHED" in out.stderr + out.stdout  # the completed step before the signal is reused


# -- concurrent builds -------------------------------------------------------------------------


def test_four_builds_at_once_into_one_store(mb, tmp_path):
    shared = "FROM base:1.0\nWORKDIR /app\nRUN echo shared > /app/s && sleep 0.5\n"
    one = write_context(tmp_path / "one", shared + "RUN echo one > /app/one\n")
    two = write_context(tmp_path / "two", shared + "RUN echo two > /app/two\nCMD [\"sh\"]\n")
    jobs = [(one, "app:1"), (one, "app:1"), (one, "app:2"), (two, "other:1")]
    env = {**os.environ, "MINIBUILD_ROOT": str(mb.root), "SOURCE_DATE_EPOCH": EPOCH}
    procs = [subprocess.Popen([sys.executable, "-m", "minibuild", "build", "-q", "-t", tag, str(ctx)],
                              cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for ctx, tag in jobs]
    results = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0, err.decode()
    digests = [out.decode().strip() for out, _ in results]  # image IDs
    assert digests[0] == digests[1] == digests[2] != digests[3]
    fsck(mb)
    assert list((mb.root / "run").iterdir()) == [] and no_mounts_under(mb.root)
    index = json.loads((mb.root / "oci/index.json").read_text())
    names = {(m.get("annotations") or {}).get("org.opencontainers.image.ref.name")
             for m in index["manifests"]}
    assert names == {"base:1.0", "app:1", "app:2", "other:1"}
    ids = {tag: json.loads(mb.run("inspect", tag).stdout)[0]["Id"]
           for tag in ("app:1", "app:2", "other:1")}
    assert ids == {"app:1": digests[0], "app:2": digests[0], "other:1": digests[3]}
    for tag in ("app:1", "app:2", "other:1"):
        # umoci checks every layer against its DiffID; the layers are gzip, which it reads
        bundle = tmp_path / f"bundle-{tag}"
        unpack = subprocess.run(["umoci", "unpack", "--image", f"{mb.root}/oci:{tag}", str(bundle)],
                                capture_output=True, text=True)
        assert unpack.returncode == 0, unpack.stderr
        assert (bundle / "rootfs/app/s").read_text() == "shared\n"
        subprocess.run(["rm", "-rf", str(bundle)], check=True)


# -- disk full ---------------------------------------------------------------------------------


@pytest.fixture
def small_store(mb, tmp_path):
    """mb's store moved onto a 64 MiB tmpfs (unmounted afterwards)."""
    mountpoint = tmp_path / "tmpfs"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mountpoint)], check=True)
    try:
        subprocess.run(["cp", "-a", str(mb.root), str(mountpoint / "store")], check=True)
        mb.root = mountpoint / "store"
        yield mb
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=True)


def test_disk_full_during_a_snapshot_is_one_clear_line_and_leaves_no_partial_blob(small_store, tmp_path):
    mb = small_store
    # 40 MB of random bytes fit in the upper dir, but not again as a blob next to it
    big = write_context(tmp_path / "big", "FROM base:1.0\n"
                        "RUN head -c 41943040 /dev/urandom > /big\n")
    result = mb.build(big, "-t", "big:1", check=False)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no space left" in errors[0].lower(), result.stderr
    assert "Traceback" not in result.stderr
    blobs_match_their_names(mb.root)
    assert list((mb.root / "run").iterdir()) == [] and no_mounts_under(mb.root)
    fsck(mb)
    small = write_context(tmp_path / "small", "FROM base:1.0\nRUN head -c 1048576 /dev/urandom > /f\n")
    mb.build(small, "-t", "small:1")
    fsck(mb)


# -- isolation -----------------------------------------------------------------------------------


def step_output(mb, tmp_path, name: str, script: str, *args: str) -> str:
    ctx = write_context(tmp_path / name, "FROM base:1.0\nRUN " + script + "\n")
    result = mb.build(ctx, "--no-cache", *args)
    return result.stdout + result.stderr


def test_a_step_sees_no_host_process_and_has_its_own_hostname(mb, tmp_path):
    out = step_output(mb, tmp_path, "ps", "echo pids: $(ls /proc | grep '^[0-9]' | tr '\\n' ' '); "
                                          "echo host: $(hostname)")
    pids = next(line for line in out.splitlines() if line.startswith("pids:")).split()[1:]
    # pid 1 (our init), the shell and the pipeline: a handful of small pids, none of the host's
    assert 1 <= len(pids) <= 8 and max(map(int, pids)) <= 8 and "1" in pids, pids
    assert "host: minibuild" in out and socket.gethostname() != "minibuild"


def test_network_none_has_only_loopback(mb, tmp_path):
    out = step_output(mb, tmp_path, "net", "echo ifs: $(tail -n +3 /proc/net/dev | cut -d: -f1)",
                      "--network", "none")
    line = next(line for line in out.splitlines() if line.startswith("ifs:"))
    assert line.split()[1:] == ["lo"]


def _host_mounts_of_interest(store: Path) -> list[str]:
    """The host mounts a hostile step could touch: / itself and anything under the store.

    (The whole table is not compared: other processes on the machine may mount meanwhile.)
    """
    points = [line.split(" ")[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return sorted(p for p in points if p == "/" or p.startswith(str(store)))


def test_a_step_cannot_unmount_remount_or_escape_its_root(mb, tmp_path):
    before = _host_mounts_of_interest(mb.root)
    root_options = os.statvfs("/").f_flag
    out = step_output(mb, tmp_path, "mounts",
                      "grep CapBnd /proc/self/status; "
                      "umount / && echo =UNMOUNTED; umount -l / && echo =UNMOUNTED; "
                      "mount -o remount,ro / && echo =REMOUNTED; "
                      "mount -o remount,ro /etc/hosts && echo =REMOUNTED; "
                      "mknod /tmp/disk b 8 0 && echo =MKNOD; "
                      "mkdir -p /jail && chroot /jail /bin/true && echo =CHROOTED; "
                      "echo =after > /after && cat /after")
    lines = set(out.splitlines())
    assert not lines & {"=UNMOUNTED", "=REMOUNTED", "=MKNOD", "=CHROOTED"}, out
    bounding = int(next(l for l in lines if l.startswith("CapBnd:")).split()[-1], 16)
    for cap in (21, 27, 18, 16, 12):  # SYS_ADMIN, MKNOD, SYS_CHROOT, SYS_MODULE, NET_ADMIN
        assert not bounding & (1 << cap), hex(bounding)
    assert "=after" in lines  # the step still works normally
    assert _host_mounts_of_interest(mb.root) == before
    assert os.statvfs("/").f_flag == root_options  # the host root was not remounted


def test_rm_rf_root_in_a_throwaway_image_leaves_the_layers_and_the_store_intact(mb, tmp_path):
    mb.run("build", "-q", "-t", "throwaway:1",
           str(write_context(tmp_path / "t", "FROM base:1.0\nRUN echo x > /x\n")))
    before = {p.name: listing(p) for p in (mb.root / "layers").iterdir()}
    out = step_output(mb, tmp_path, "rm", "rm -rf --no-preserve-root / 2>/dev/null; "
                                         "rm -rf / 2>/dev/null; echo =survived")
    assert "=survived" in out.splitlines()
    assert {p.name: listing(p) for p in (mb.root / "layers").iterdir() if p.name in before} == before
    fsck(mb)
    blobs_match_their_names(mb.root)
    again = write_context(tmp_path / "again", "FROM base:1.0\nRUN busybox true && echo ok > /ok\n")
    mb.build(again, "--no-cache")


def test_a_step_cannot_write_host_sysctls_or_read_kernel_memory(mb, tmp_path):
    out = step_output(mb, tmp_path, "proc",
                      "v=$(cat /proc/sys/vm/stat_interval); echo $v > /proc/sys/vm/stat_interval "
                      "&& echo =SYSCTL; echo h > /proc/sysrq-trigger && echo =SYSRQ; "
                      "test -s /proc/kcore && echo =KCORE; cat /proc/keys | head -c1 | grep -q . "
                      "&& echo =KEYS; echo =after")
    lines = set(out.splitlines())
    assert not lines & {"=SYSCTL", "=SYSRQ", "=KCORE", "=KEYS"}, out
    assert "=after" in lines


def test_device_nodes_from_a_layer_do_not_open_host_devices(mb, tmp_path):
    import tarfile

    ctx = tmp_path / "dev"
    ctx.mkdir()
    with tarfile.open(ctx / "dev.tar", "w") as tar:
        node = tarfile.TarInfo("myrandom")
        node.type, node.devmajor, node.devminor, node.mode = tarfile.CHRTYPE, 1, 8, 0o666
        tar.addfile(node)
    (ctx / "Buildfile").write_text("FROM base:1.0\nADD dev.tar /\n"
                                   "RUN head -c8 /myrandom > /dev/null && echo =OPENED; echo =after\n")
    lines = mb.build(ctx, "--no-cache").stderr.splitlines()
    assert "=after" in lines and "=OPENED" not in lines, lines
