"""Volumes, binds and tmpfs mounts in real containers, and run's --env-file, -h and -p: what
lives in a mount never reaches the upper dir, `diff`, `commit` or the host's mount table."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, write_context
from tests.integration.test_containers import cmb, host_mounts_under, pids_with, ps, wait_for  # noqa: F401
from tests.integration.test_run_mount import layer_tar

pytestmark = pytest.mark.integration

# an image with content at a VOLUME (to seed from) and symlinks that climb out of its root
SEEDED = """FROM base:1.0
RUN mkdir -p /srv/data /opt && echo seeded > /srv/data/hello && chown -R 1000:1000 /srv/data \
 && chmod 0750 /srv/data && ln -s ../../../../../..{escape} /opt/up && ln -s {escape}-abs /opt/abs
VOLUME /srv/data
"""


@pytest.fixture
def escape() -> Path:
    """A host path the image's symlinks point at; no test may create it."""
    path = Path("/tmp") / f"minibuild-escape-{secrets.token_hex(6)}"
    yield path
    assert not list(path.parent.glob(path.name + "*")), "a mount left the container's root"


@pytest.fixture
def seeded(cmb, tmp_path, escape):
    """`cmb` with the image vol:1 built."""
    cmb.build(write_context(tmp_path / "vctx", SEEDED.format(escape=escape)), "-t", "vol:1")
    return cmb


def mounts_inside(mb, container: str) -> dict[str, str]:
    """mount point -> options, as the container's /proc/mounts shows them."""
    out = mb.run("exec", container, "cat", "/proc/mounts").stdout
    return {fields[1]: fields[3] for fields in (line.split() for line in out.splitlines())}


def volumes(mb) -> dict[str, dict]:
    names = mb.run("volume", "ls", "-q").stdout.split()
    if not names:
        return {}
    return {v["Name"]: v for v in json.loads(mb.run("volume", "inspect", *names).stdout)}


def df_row(mb, kind: str) -> dict:
    return next(r for r in json.loads(mb.run("df", "--format", "json").stdout)["rows"]
                if r["kind"] == kind)


# -- binds -----------------------------------------------------------------------------------------


def test_a_ro_bind_refuses_writes_and_a_rw_one_writes_to_the_host_dir(cmb, tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    (host / "in.txt").write_text("from host\n")
    made = tmp_path / "made" / "by" / "run"  # -v makes a missing host dir, as docker does
    out = cmb.run("run", "--name", "b", "-v", f"{host}:/mnt/ro:ro", "-v", f"{made}:/mnt/rw",
                  "base:1.0", "sh", "-c", "cat /mnt/ro/in.txt; echo x > /mnt/ro/new; "
                  "echo written > /mnt/rw/out.txt; grep ' /mnt/' /proc/mounts", check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("from host\n") and "Read-only file system" in out.stderr
    options = {line.split()[1]: line.split()[3].split(",") for line in out.stdout.splitlines()[1:]}
    assert {"ro", "nosuid", "nodev"} <= set(options["/mnt/ro"])
    assert {"rw", "nosuid", "nodev"} <= set(options["/mnt/rw"])
    assert sorted(os.listdir(host)) == ["in.txt"]
    assert (made / "out.txt").read_text() == "written\n"
    assert stat.S_IMODE(made.stat().st_mode) == 0o755
    assert cmb.run("diff", "b").stdout == ""  # neither the files nor the /mnt stubs


def test_a_file_bind_and_its_mistakes(cmb, tmp_path):
    conf = tmp_path / "app.conf"
    conf.write_text("key=1\n")
    out = cmb.run("run", "--rm", "-v", f"{conf}:/etc/app.conf:ro", "base:1.0", "cat",
                  "/etc/app.conf")
    assert out.stdout == "key=1\n"
    cases = [
        (["-v", f"{tmp_path}/missing.conf:/etc/passwd"], 1,
         "does not exist on the host, and /etc/passwd is a file in the image"),
        (["-v", f"{conf}:/etc"], 1, "cannot mount a file on /etc: it is a directory"),
        (["--mount", f"type=bind,src={tmp_path}/none,dst=/x"], 1, "bind source path does not exist"),
        (["-v", "data:relative/dst"], 2, "'relative/dst' is not an absolute path"),
        (["-v", "bad*name:/x"], 2, "'bad*name' is not a valid volume name"),
        (["-v", f"{conf}:/x:shared"], 2, "unknown option 'shared'"),
        (["--mount", "type=volume,dst=/x,propagation=1"], 2, "unknown option 'propagation'"),
        (["-v", "a1:/x", "--tmpfs", "/x"], 2, "duplicate mount point: /x"),
    ]
    for flags, code, message in cases:
        result = cmb.run("run", "--rm", *flags, "base:1.0", "true", check=False)
        assert (result.returncode, message in result.stderr) == (code, True), (flags, result.stderr)
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "missing.conf").exists()
    assert ps(cmb) == {}


# -- named volumes -----------------------------------------------------------------------------------


def test_a_named_volume_is_seeded_persists_and_is_counted(seeded):
    first = seeded.run("run", "--rm", "-v", "data:/srv/data", "vol:1", "sh", "-c",
                       "stat -c '%a %u:%g' /srv/data; cat /srv/data/hello; echo 1 >> /srv/data/n")
    assert first.stdout == "750 1000:1000\nseeded\n"
    second = seeded.run("run", "--rm", "-v", "data:/srv/data", "vol:1", "sh", "-c",
                        "echo 2 >> /srv/data/n; cat /srv/data/n")
    assert second.stdout == "1\n2\n"
    info = volumes(seeded)
    assert list(info) == ["data"] and info["data"]["Labels"] is None
    data = Path(info["data"]["Mountpoint"])
    assert data == seeded.root / "volumes" / "data" / "_data"
    assert sorted(os.listdir(data)) == ["hello", "n"] and (data / "hello").stat().st_uid == 1000
    assert seeded.run("volume", "ls").stdout.splitlines() == ["DRIVER    VOLUME NAME",
                                                              "local     data"]
    row = df_row(seeded, "Local Volumes")
    assert (row["total"], row["active"]) == (1, 0) and row["size"] >= 11
    assert row["reclaimable"] == row["size"]
    # a volume that is not empty is never seeded again, nor is one the image lacks a dir for
    seeded.run("run", "--rm", "-v", "other:/nowhere", "vol:1", "true")
    assert os.listdir(seeded.root / "volumes" / "other" / "_data") == []


def test_volume_rm_refuses_while_a_container_uses_it_and_exec_sees_the_mounts(seeded):
    seeded.run("run", "-d", "--name", "svc", "-v", "data:/srv/data", "--tmpfs", "/scratch",
               "-v", "/srv/data/inner", "vol:1", "sleep", "600")
    seeded.run("exec", "svc", "sh", "-c", "echo via-exec > /srv/data/e; echo t > /scratch/t")
    data = seeded.root / "volumes" / "data" / "_data"
    assert (data / "e").read_text() == "via-exec\n"
    assert (data / "inner").is_dir()  # a nested mount point is made inside the volume, as docker does
    inside = mounts_inside(seeded, "svc")
    assert {"/srv/data", "/srv/data/inner", "/scratch"} <= set(inside)
    assert df_row(seeded, "Local Volumes")["active"] == 2
    refused = seeded.run("volume", "rm", "data", check=False)
    assert refused.returncode == 1
    assert "remove data: volume is in use by container" in refused.stderr and "(svc)" in refused.stderr
    seeded.run("stop", "-t", "1", "svc")
    assert seeded.run("volume", "rm", "data", check=False).returncode == 1  # stopped: still in use
    seeded.run("start", "svc")
    assert seeded.run("exec", "svc", "cat", "/srv/data/e").stdout == "via-exec\n"
    assert seeded.run("exec", "svc", "ls", "/scratch").stdout == ""  # a tmpfs starts empty
    assert seeded.run("diff", "svc").stdout == ""
    seeded.run("rm", "-f", "svc")
    assert seeded.run("volume", "rm", "data").stdout == "data\n"
    assert not (seeded.root / "volumes" / "data").exists()


def test_killing_the_supervisor_leaves_no_mount_and_keeps_the_volume(seeded):
    env = {**os.environ, "MINIBUILD_ROOT": str(seeded.root)}
    proc = subprocess.Popen([sys.executable, "-m", "minibuild", "run", "--name", "fg", "-v",
                             "keep:/k", "--tmpfs", "/t", "vol:1", "sh", "-c",
                             "echo kept > /k/f; exec sleep 6178"], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: pids_with("sleep\x006178") and ps(seeded).get("fg", {}).get(
            "status") == "running")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert wait_for(lambda: not pids_with("sleep\x006178"))
        assert host_mounts_under(seeded.root) == []
        assert (seeded.root / "volumes" / "keep" / "_data" / "f").read_text() == "kept\n"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- anonymous volumes -------------------------------------------------------------------------------


def test_an_image_volume_gets_an_anonymous_volume_removed_with_rm_v(seeded):
    out = seeded.run("run", "--rm", "vol:1", "sh", "-c", "cat /srv/data/hello; grep -c ' /srv/data ' /proc/mounts")
    assert out.stdout == "seeded\n1\n"
    assert volumes(seeded) == {}  # --rm took its anonymous volume along
    seeded.run("run", "--name", "keep", "vol:1", "sh", "-c", "echo new > /srv/data/new")
    seeded.run("run", "--name", "drop", "-v", "/scratch", "vol:1", "touch", "/scratch/x")
    assert seeded.run("diff", "keep").stdout == "" and seeded.run("diff", "drop").stdout == ""
    made = volumes(seeded)
    assert len(made) == 3 and all(len(n) == 64 for n in made)
    assert all(v["Labels"] == {"com.docker.volume.anonymous": ""} for v in made.values())
    keep = ps(seeded)["keep"]
    (name,) = [m["source"] for m in keep["mounts"]]
    assert sorted(os.listdir(seeded.root / "volumes" / name / "_data")) == ["hello", "new"]
    assert len(ps(seeded)["drop"]["mounts"]) == 2  # -v /scratch, and the image's /srv/data
    seeded.run("rm", "-v", "drop")
    assert list(volumes(seeded)) == [name]
    seeded.run("rm", "keep")  # without -v its volume stays, unused
    assert list(volumes(seeded)) == [name]
    assert seeded.run("volume", "ls", "-q", "--filter", "dangling=true").stdout.split() == [name]
    seeded.run("volume", "create", "named")
    pruned = seeded.run("volume", "prune", "-f").stdout
    assert pruned.startswith("Deleted Volumes:\n") and "Total reclaimed space:" in pruned
    assert list(volumes(seeded)) == ["named"]  # anonymous ones only, as docker 23+ prunes


# -- what diff and commit see ------------------------------------------------------------------------


def test_diff_and_commit_leave_mounts_and_their_mount_points_out(seeded, tmp_path):
    conf = tmp_path / "app.conf"
    conf.write_text("conf\n")
    seeded.run("run", "-d", "--name", "c", "-v", "deep:/new/deep/dir", "-v",
               f"{conf}:/etc/app.conf", "--tmpfs", "/scratch", "vol:1", "sleep", "600")
    seeded.run("exec", "c", "sh", "-c", "echo v > /new/deep/dir/f; echo s > /scratch/f; "
               "echo img > /srv/data/f; echo changed > /etc/app.conf; echo kept > /kept")
    assert conf.read_text() == "changed\n"
    assert seeded.run("diff", "c").stdout.splitlines() == ["A /kept"]
    upper = seeded.root / "containers" / ps(seeded)["c"]["id"] / "upper"
    assert sorted(os.listdir(upper)) == ["kept"]
    seeded.run("commit", "c", "snap:1")
    manifest = json.loads(seeded.run("inspect", "snap:1").stdout)[0]["Manifest"]
    with layer_tar(seeded, manifest["layers"][-1]) as tar:
        assert tar.getnames() == ["kept"]
    if shutil.which("skopeo"):
        skopeo = subprocess.run(["skopeo", "inspect", f"oci:{seeded.root / 'oci'}:snap:1"],
                                capture_output=True, text=True)
        assert skopeo.returncode == 0, skopeo.stderr
        assert len(json.loads(skopeo.stdout)["Layers"]) == len(manifest["layers"])
    again = seeded.run("run", "--rm", "snap:1", "sh", "-c",
                       "cat /kept; ls /new /scratch /etc/app.conf 2>&1; ls /srv/data")
    assert again.stdout.startswith("kept\n") and again.stdout.endswith("hello\n")
    assert again.stdout.count("No such file or directory") == 3


def test_a_symlinked_target_in_the_image_cannot_lead_a_mount_out_of_the_root(seeded, escape):
    out = seeded.run("run", "--rm", "-v", "up:/opt/up", "-v", "abs:/opt/abs", "vol:1", "sh",
                     "-c", f"touch /opt/up/f /opt/abs/g; grep '{escape}' /proc/mounts | cut -d' ' -f2")
    assert out.stdout.split() == [str(escape), f"{escape}-abs"]  # inside the container's root
    assert os.listdir(seeded.root / "volumes" / "up" / "_data") == ["f"]
    assert os.listdir(seeded.root / "volumes" / "abs" / "_data") == ["g"]
    assert host_mounts_under(escape) == [] and host_mounts_under(Path(f"{escape}-abs")) == []


# -- env file, hostname, tmpfs, publish --------------------------------------------------------------


def test_env_file_hostname_tmpfs_and_publish(cmb, tmp_path):
    env_file = tmp_path / "app.env"
    env_file.write_text("# settings\nA=from-file\nB=\"kept quotes\"\n\n  C=c\nFROM_HOST\nNOT_SET\n")
    with socket.socket() as probe:  # a free port to publish (forwarded by slirp4netns)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = cmb.run("run", "--name", "cfg", "--env-file", str(env_file), "-e", "C=flag", "-h", "web-1",
                  "-p", f"{port}:80", "--tmpfs", "/scratch:size=4m", "--mount",
                  "type=tmpfs,dst=/exec,tmpfs-mode=700", "base:1.0", "sh", "-c",
                  'echo "$A|$B|$C|$FROM_HOST|${NOT_SET-unset}"; hostname; grep web-1 /etc/hosts; '
                  "grep -E ' /(scratch|exec) ' /proc/mounts; stat -c %a /exec; "
                  "cp /bin/busybox /scratch/true && /scratch/true || echo noexec; "
                  "cp /bin/busybox /exec/true && /exec/true && echo exec",
                  env={"FROM_HOST": "host-value"})
    lines = out.stdout.splitlines()
    assert lines[0] == 'from-file|"kept quotes"|flag|host-value|unset'
    assert lines[1] == "web-1" and "web-1" in lines[2]
    scratch = next(line.split()[3].split(",") for line in lines if " /scratch " in line)
    assert {"nosuid", "nodev", "noexec", "size=4096k"} <= set(scratch)
    assert lines[-3:] == ["700", "noexec", "exec"]
    assert "warning" not in out.stderr  # published, not ignored (see test_network.py)
    assert cmb.run("diff", "cfg").stdout == ""
    bad = cmb.run("run", "--rm", "--env-file", str(tmp_path / "none.env"), "base:1.0", "true",
                  check=False)
    assert bad.returncode == 2 and "none.env" in bad.stderr and "Traceback" not in bad.stderr
