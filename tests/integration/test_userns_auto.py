"""`--userns=auto` as root: every build's steps and every container run as root of a user
namespace of their own (65536 ids of the 'containers' range), so their root is not host root,
while the store keeps in-image ids (layers identical to --userns=host builds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, Minibuild, write_context

pytestmark = pytest.mark.integration

SDE = ("--source-date-epoch", "0")
OWNERS = """FROM base:1.0
RUN mkdir /w && touch /w/a /w/b /w/c && chown 33:33 /w/a && chown 65534:65534 /w/b
"""
STEP = """FROM owners:1
RUN id -u > /w/id && stat -c '%u:%g %n' /w/a /w/b /w/c / > /w/owners && rm /w/c && \
    touch /w/new && mkdir /w/d && echo x > /w/a
"""


def _containers_range() -> tuple[int, int] | None:
    for line in Path("/etc/subuid").read_text().splitlines():
        name, start, count = line.split(":")
        if name == "containers":
            return int(start), int(count)
    return None


@pytest.fixture
def umb(mb):
    """`mb` with the owners image built as root (ids 33 and 65534 in it); containers removed."""
    if _containers_range() is None:
        pytest.skip("no 'containers' range in /etc/subuid (scripts/rootless-setup.sh adds it)")
    mb.build(write_context(mb.root.parent / "owners", OWNERS), "-t", "owners:1", *SDE)
    yield mb
    for c in json.loads(mb.run("ps", "-a", "--format", "json").stdout):
        mb.run("rm", "-f", c["name"], check=False)


def _diff_ids(mb: Minibuild, image: str) -> list[str]:
    return json.loads(mb.run("inspect", image).stdout)[0]["RootFS"]["Layers"]


def _file(mb: Minibuild, image: str, path: str) -> str:
    return mb.run("run", "--rm", "--userns=host", image, "cat", path).stdout


def test_a_step_is_root_inside_and_keeps_in_image_owners(umb):
    umb.build(write_context(umb.root.parent / "step", STEP), "-t", "step:auto", "--userns=auto",
              *SDE)
    assert _file(umb, "step:auto", "/w/id") == "0\n"
    assert _file(umb, "step:auto", "/w/owners").splitlines() == [
        "33:33 /w/a", "65534:65534 /w/b", "0:0 /w/c", "0:0 /"]
    owners = umb.run("run", "--rm", "step:auto", "stat", "-c", "%u %n", "/w/a", "/w/new",
                     "/w/d").stdout.split("\n")
    assert owners[:3] == ["33 /w/a", "0 /w/new", "0 /w/d"]  # a copied-up file keeps its owner


def test_layers_are_identical_to_a_host_build(umb):
    context = write_context(umb.root.parent / "step", STEP)
    umb.build(context, "-t", "step:auto", "--userns=auto", *SDE)
    umb.build(context, "-t", "step:host", "--userns=host", "--no-cache", *SDE)
    assert _diff_ids(umb, "step:auto") == _diff_ids(umb, "step:host")


def test_the_environment_sets_the_default(umb):
    out = umb.run("run", "--rm", "owners:1", "cat", "/proc/self/uid_map",
                  env={"MINIBUILD_USERNS_MODE": "auto"}).stdout.split()
    assert out[0] == "0" and int(out[1]) >= _containers_range()[0] and out[2] == "65536"
    host = umb.run("run", "--rm", "owners:1", "cat", "/proc/self/uid_map").stdout.split()
    assert host == ["0", "0", "4294967295"]


def _sleeping(mb: Minibuild, name: str) -> dict[str, str]:
    """/proc/PID/status of the container's command (its PID 1), as the host sees."""
    pid = json.loads(mb.run("inspect", name).stdout)[0]["State"]["Pid"]
    for _ in range(100):
        status = Path(f"/proc/{pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines())
        if fields["Name"].strip() == "sleep":
            return {k: v.split() for k, v in fields.items()}
        time.sleep(0.05)
    raise AssertionError("the container's command did not start")


def test_containers_run_as_their_range_start_and_never_share_one(umb):
    umb.run("run", "-d", "--name", "one", "--userns=auto", "owners:1", "sleep", "600")
    umb.run("run", "-d", "--name", "two", "--userns=auto", "owners:1", "sleep", "600")
    starts = []
    for name in ("one", "two"):
        status = _sleeping(umb, name)
        uid = int(status["Uid"][0])
        assert status["Uid"] == [str(uid)] * 4 and status["Gid"] == [str(uid)] * 4
        assert uid >= _containers_range()[0] and (uid - _containers_range()[0]) % 65536 == 0
        assert status["CapEff"] != ["0000000000000000"]  # root inside, with its capabilities
        starts.append(uid)
        inside = umb.run("exec", name, "sh", "-c", "id -u; cat /proc/self/uid_map").stdout.split()
        assert inside == ["0", "0", str(uid), "65536"]
    assert starts[0] != starts[1]


def test_two_builds_at_once_take_different_ranges(umb, tmp_path):
    # each RUN records its uid_map and, around a 1 s sleep, the uptime (no time namespace:
    # the host's clock) so the test sees that the two steps really overlapped
    record = "RUN cat /proc/uptime > /w/t0 && cat /proc/self/uid_map > /w/map && sleep 1 && " \
             "cat /proc/uptime > /w/t1 && echo {name} > /w/name\n"
    env = {**os.environ, "MINIBUILD_ROOT": str(umb.root), "MINIBUILD_REGISTRIES_CONF": os.devnull,
           "MINIBUILD_USERNS_LOCKS": str(tmp_path / "locks")}  # the slots of these two only
    builds = []
    for name in ("one", "two"):
        context = write_context(tmp_path / name, "FROM owners:1\n" + record.format(name=name))
        builds.append(subprocess.Popen(
            [sys.executable, "-m", "minibuild", "build", "--progress", "plain", "--userns=auto",
             "-t", f"par:{name}", str(context)], env=env, cwd=REPO,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    for build in builds:
        out = build.communicate(timeout=120)[0].decode(errors="replace")
        assert build.returncode == 0, out
    maps = [_file(umb, f"par:{name}", "/w/map").split() for name in ("one", "two")]
    spans = [[float(_file(umb, f"par:{name}", f"/w/{t}").split()[0]) for t in ("t0", "t1")]
             for name in ("one", "two")]
    assert max(s[0] for s in spans) < min(s[1] for s in spans), spans  # the sleeps overlapped
    first = _containers_range()[0]
    for inside, host, count in maps:
        assert inside == "0" and count == "65536" and (int(host) - first) % 65536 == 0
    assert maps[0][1] != maps[1][1]


def test_an_escaped_root_cannot_write_a_root_only_host_dir(umb, tmp_path):
    secret = tmp_path / "hostdir"
    secret.mkdir(mode=0o700)
    (secret / "f").write_text("host\n")
    os.chmod(secret / "f", 0o600)
    cmd = "echo pwned > /h/new; echo pwned >> /h/f; cat /h/f; ls /h"
    out = umb.run("run", "--rm", "--userns=auto", "-v", f"{secret}:/h", "owners:1", "sh", "-c",
                  cmd, check=False)
    assert "Permission denied" in out.stderr
    assert not (secret / "new").exists() and (secret / "f").read_text() == "host\n"
    host = umb.run("run", "--rm", "--userns=host", "-v", f"{secret}:/h", "owners:1", "sh", "-c",
                   "cat /h/f")
    assert host.stdout == "host\n"  # the same mount as host root: readable


def test_an_unknown_mode_is_refused(umb):
    out = umb.run("run", "--rm", "--userns=bogus", "owners:1", "true", check=False)
    assert out.returncode != 0 and "--userns" in out.stderr


def test_cache_and_secret_mounts_belong_to_the_steps_root(umb, tmp_path):
    (tmp_path / "s").write_text("sekrit\n")
    buildfile = """FROM owners:1
RUN --mount=type=cache,target=/cache echo x >> /cache/f && stat -c %u /cache/f > /w/cache
RUN --mount=type=secret,id=s cat /run/secrets/s > /w/secret
"""
    umb.build(write_context(tmp_path / "ctx", buildfile), "-t", "mounts:auto", "--userns=auto",
              "--secret", f"id=s,src={tmp_path / 's'}")
    assert _file(umb, "mounts:auto", "/w/cache") == "0\n"
    assert _file(umb, "mounts:auto", "/w/secret") == "sekrit\n"


def test_a_container_listens_below_1024_in_its_private_network(umb):
    cmd = "(nc -l -p 80 &) ; sleep 1; netstat -ltn; cat /etc/hostname"
    out = umb.run("run", "--rm", "--userns=auto", "--network", "none", "-h", "web", "owners:1",
                  "sh", "-c", cmd).stdout
    assert ":80 " in out and out.endswith("web\n")


def test_a_named_volume_is_the_containers_root_own(umb):
    out = umb.run("run", "--rm", "--userns=auto", "-v", "etcvol:/etc", "owners:1", "sh", "-c",
                  "touch /etc/new && stat -c '%u %n' /etc/new /etc/hostname").stdout
    assert out.splitlines() == ["0 /etc/new", "0 /etc/hostname"]
