"""`fsck --deep` on stores real builds made: clean layers pass (SOURCE_DATE_EPOCH and COPY reuse
included), damage is found in every dir that holds it, and `--repair` + the next build restore it."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.conftest import Minibuild, write_context

pytestmark = pytest.mark.integration

STEPS = """FROM base:1.0
COPY --chown=7:8 --chmod=640 files/ /srv/
RUN mkdir -p /opt/a /var/x && echo hi > /opt/a/f && ln /opt/a/f /opt/a/g && ln -s f /opt/a/s \\
    && mkfifo /opt/p && chmod 4755 /opt/a/f && chown -h 2:3 /opt/a/s && echo old > /var/x/old
RUN rm /etc/group /bin/ls && rm -rf /var/x && mkdir /var/x && echo new > /var/x/new \\
    && rm /opt/a/g && echo more >> /srv/one
"""


def deep(mb: Minibuild, *args: str) -> tuple[int, dict, str]:
    """`fsck --deep --format json`: exit status, report, stderr."""
    result = mb.run("fsck", "--deep", "--format", "json", *args, check=False)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout), result.stderr


def diff_ids(mb: Minibuild, ref: str) -> list[str]:
    return json.loads(mb.run("inspect", ref).stdout)[0]["RootFS"]["Layers"]


def layer_dir(mb: Minibuild, diff_id: str) -> Path:
    return mb.root / "layers" / diff_id.split(":")[1][:16]


def dir_inodes(mb: Minibuild) -> dict[str, int]:
    return {p.name: p.stat().st_ino for p in (mb.root / "layers").iterdir()}


@pytest.mark.parametrize("epoch", [None, "1300000000"], ids=["wall-clock", "source-date-epoch"])
def test_layers_a_build_made_pass(mb, tmp_path, epoch):
    ctx = write_context(tmp_path / "ctx", STEPS, {"files/one": "1\n", "files/sub/two": "22\n"})
    mb.build(ctx, "-t", "steps:1", *(["--source-date-epoch", epoch] if epoch else []))
    status, report, stderr = deep(mb)
    assert status == 0 and report["ok"], report["findings"]
    assert report["deep_layers"] == len(list((mb.root / "layers").iterdir())) == 5
    assert len(re.findall(r"^deep \d/5: layer \w{12} .*: ok ", stderr, re.M)) == 5
    # the RUN layers are adopted upper dirs: whiteouts, an opaque dir, a hard link, a fifo
    last = layer_dir(mb, diff_ids(mb, "steps:1")[-1])
    assert os.stat(last / "etc/group", follow_symlinks=False).st_rdev == 0
    assert "trusted.overlay.opaque" in os.listxattr(last / "var/x")
    (last / "var/x/stray").write_text("written into a shared lower dir")
    status, report, _ = deep(mb)
    assert status == 1
    (finding,) = [f for f in report["findings"] if f["severity"] == "error"]
    assert finding["details"] == ["var/x/stray: not in the blob (a regular file here)"]


def edit_and_rebuild(mb: Minibuild, ctx: Path) -> str:
    (ctx / "src/d1/f1.txt").write_text("changed\n")
    return mb.build(ctx, "-t", "app:2").stderr


def test_copy_reuse_layers_pass_and_a_damaged_shared_inode_is_reported_in_both(mb, tmp_path):
    files = {f"src/d{i}/f{j}.txt": f"file {i}/{j}\n" * (j + 1) for i in range(3) for j in range(4)}
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\nCOPY src/ /app/\n", files)
    mb.build(ctx, "-t", "app:1")
    assert "11 files reused" in edit_and_rebuild(mb, ctx)
    old, new = (layer_dir(mb, diff_ids(mb, ref)[-1]) for ref in ("app:1", "app:2"))
    shared = "app/d0/f2.txt"
    assert (old / shared).samefile(new / shared)
    status, report, _ = deep(mb)
    assert status == 0, report["findings"]
    before = dir_inodes(mb)

    st = (old / shared).stat()
    with open(old / shared, "r+b") as f:
        f.write(b"FILE")  # same size; mtime put back: only the bytes differ
    os.utime(old / shared, ns=(st.st_atime_ns, st.st_mtime_ns))
    status, report, _ = deep(mb)
    assert status == 1
    errors = {f["path"]: f for f in report["findings"] if f["severity"] == "error"}
    assert set(errors) == {str(old), str(new)}
    for finding in errors.values():
        (detail,) = finding["details"]
        assert detail.startswith(f"{shared}: content differs (same size) (this inode has 1 more "
                                 "link(s) outside this layer dir")

    repaired = mb.run("fsck", "--deep", "--repair")
    assert repaired.stdout.count("removed: layer sha256:") == 2
    assert "removing this dir does not repair them" in repaired.stdout
    left = dir_inodes(mb)
    assert set(before) - set(left) == {old.name, new.name}
    assert all(before[name] == inode for name, inode in left.items())  # the rest untouched

    # The next build that needs app:2 unpacks its layer again, from the blob.
    user = write_context(tmp_path / "user", f"FROM app:2\nRUN cat /{shared} /app/d1/f1.txt > /out\n")
    mb.build(user, "-t", "user:1")
    assert (new / shared).read_text() == files["src/d0/f2.txt"] and (new / shared).stat().st_nlink == 1
    out = mb.run("run", "--rm", "user:1", "cat", "/out").stdout
    assert out == files["src/d0/f2.txt"] + "changed\n"
    status, report, _ = deep(mb)
    assert status == 0, report["findings"]


def test_repair_removes_only_the_damaged_dir_and_the_next_build_unpacks_it(mb, tmp_path):
    busybox_layer = next(p for p in (mb.root / "layers").iterdir() if (p / "bin/busybox").exists())
    os.chmod(busybox_layer / "bin/busybox", 0o600)  # every RUN on base:1.0 would now fail
    status, report, _ = deep(mb)
    assert status == 1
    (finding,) = report["findings"]
    assert finding["details"] == ["bin/busybox: mode 0600, the blob says 0755"]
    before = dir_inodes(mb)
    mb.run("fsck", "--deep", "--repair")
    left = dir_inodes(mb)
    assert set(before) - set(left) == {busybox_layer.name}
    assert all(before[name] == inode for name, inode in left.items())
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\nRUN echo ok > /ok\n")
    mb.build(ctx, "-t", "ok:1")
    assert (busybox_layer / "bin/busybox").stat().st_mode & 0o7777 == 0o755
    assert deep(mb)[0] == 0


def test_repair_leaves_a_damaged_dir_a_running_container_mounts_and_says_why(mb, tmp_path):
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\nRUN echo kept > /kept\n")
    mb.build(ctx, "-t", "c:1")
    damaged = layer_dir(mb, diff_ids(mb, "c:1")[-1])
    mb.run("run", "-d", "--name", "busy", "c:1", "sleep", "300")
    try:
        (damaged / "kept").write_text("changed\n")
        status, report, _ = deep(mb, "--repair")
        assert status == 1 and report["removed"] == []
        (finding,) = [f for f in report["findings"] if f["severity"] == "error"]
        assert "not removed: running container(s) busy use it" in finding["message"]
        assert finding["path"] is None and (damaged / "kept").read_text() == "changed\n"
        assert mb.run("exec", "busy", "cat", "/kept").stdout == "changed\n"  # its view stays whole
    finally:
        mb.run("rm", "-f", "busy")
    status, report, _ = deep(mb, "--repair")
    assert status == 0 and [f["path"] for f in report["removed"]] == [str(damaged)]
