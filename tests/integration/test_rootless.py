"""Rootless minibuild for real: an unprivileged user with a subordinate id range builds, runs,
execs, commits, saves and loads; the same Buildfiles give the same layer DiffIDs as root.

pytest runs as root; every rootless command runs as the test user through
`runuser -u USER -- env -i ... VENV/bin/python -m minibuild`, with a clean environment (no
PYTHONPATH into a checkout the user may not read, no root XDG_RUNTIME_DIR). scripts/rootless-setup.sh
(run by install-deps.sh) makes the user and the venv; MINIBUILD_ROOTLESS_USER and
MINIBUILD_ROOTLESS_VENV name others.
"""

from __future__ import annotations

import io
import json
import os
import pwd
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import pytest
import zstandard

from tests.conftest import REPO, Minibuild, integration_skip_reason, make_base_context, write_context

pytestmark = pytest.mark.integration

USER = os.environ.get("MINIBUILD_ROOTLESS_USER", "minibuild-rootless")
VENV = Path(os.environ.get("MINIBUILD_ROOTLESS_VENV", "/opt/minibuild-rootless"))
SDE = ("--source-date-epoch", "0")


def _installed_matches_checkout() -> bool:
    """Whether the venv's minibuild is this checkout's (else the tests would test old code)."""
    found = list((VENV / "lib").glob("python3*/site-packages/minibuild"))
    if not found:
        return False
    for source in (REPO / "minibuild").rglob("*.py"):
        installed = found[0] / source.relative_to(REPO / "minibuild")
        if not installed.is_file() or installed.read_bytes() != source.read_bytes():
            return False
    return True


def _skip_reason() -> str | None:
    reason = integration_skip_reason()
    if reason:
        return reason
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return f"no user {USER} (scripts/rootless-setup.sh makes it)"
    if not (VENV / "bin" / "python").exists():
        return f"no venv {VENV} (scripts/rootless-setup.sh makes it)"
    if not _installed_matches_checkout():
        return f"{VENV} holds another minibuild than this checkout: rerun scripts/rootless-setup.sh"
    if shutil.which("newuidmap") is None:
        return "newuidmap is missing (apt-get install uidmap)"
    if not any(line.startswith(f"{USER}:") for line in Path("/etc/subuid").read_text().splitlines()):
        return f"{USER} has no range in /etc/subuid"
    return None


def _subordinate_start() -> int:
    for line in Path("/etc/subuid").read_text().splitlines():
        name, start, _ = line.split(":")
        if name == USER:
            return int(start)
    raise AssertionError("no range")


class Rootless:
    """Runs minibuild as the test user in a work dir of its own (HOME there too)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.home = work / "home"
        self.store = self.home / ".local/share/minibuild"

    def run(self, *args: str, check: bool = True, user: str = USER, timeout: float = 300,
            input: bytes | None = None) -> subprocess.CompletedProcess:
        """`minibuild ARGS` as the user; text output; raises with both streams if check fails."""
        env = ["env", "-i", f"HOME={self.home}", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
               "LANG=C.UTF-8", f"TMPDIR={self.work}"]
        argv = ["runuser", "-u", user, "--", *env, str(VENV / "bin" / "python"), "-m", "minibuild"]
        proc = subprocess.run([*argv, *args], cwd=self.work, capture_output=True, input=input,
                              timeout=timeout)
        out = subprocess.CompletedProcess(proc.args, proc.returncode,
                                          proc.stdout.decode(errors="replace"),
                                          proc.stderr.decode(errors="replace"))
        if check and proc.returncode != 0:
            raise AssertionError(f"rootless minibuild {' '.join(args)} exited {proc.returncode}\n"
                                 f"--- stdout\n{out.stdout}\n--- stderr\n{out.stderr}")
        return out

    def build(self, context: Path, *args: str) -> subprocess.CompletedProcess:
        """`minibuild build --progress plain ARGS CONTEXT` as the user."""
        return self.run("build", "--progress", "plain", *args, str(context))

    def diff_ids(self, image: str) -> list[str]:
        """The image's layer DiffIDs (through `inspect`'s RootFS, as docker shows them)."""
        return json.loads(self.run("inspect", image).stdout)[0]["RootFS"]["Layers"]

    def layer_tar(self, diff_id: str, config_image: str) -> tarfile.TarFile:
        """The uncompressed tar of one of the image's layers, read from the store as root."""
        inspected = json.loads(self.run("inspect", config_image).stdout)[0]
        diff_ids = inspected["RootFS"]["Layers"]
        layer = inspected["Manifest"]["layers"][diff_ids.index(diff_id)]
        blob = (self.store / "oci/blobs/sha256" / layer["digest"].split(":")[1]).read_bytes()
        if layer["mediaType"].endswith("zstd"):
            blob = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob)).read()
        return tarfile.open(fileobj=io.BytesIO(blob), mode="r:*")


def _pause_pids(store: Path) -> list[int]:
    recorded = store / "runtime" / "userns.pid"
    return [int(recorded.read_text().split()[0])] if recorded.exists() else []


@pytest.fixture(scope="module")
def rl():
    """A rootless minibuild with the sample images' contexts (base built) in a work dir the
    user owns; afterwards its pause process is ended and everything removed."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    work = Path(tempfile.mkdtemp(prefix="minibuild-rootless-"))
    os.chmod(work, 0o755)
    shutil.copytree(REPO / "sample_images", work / "sample_images",
                    ignore=shutil.ignore_patterns("busybox"))
    make_base_context(work / "sample_images" / "base")
    (work / "home").mkdir()
    user = pwd.getpwnam(USER)
    subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(work)], check=True)
    rootless = Rootless(work)
    try:
        rootless.build(work / "sample_images/base", "-t", "base:1.0", *SDE)
        yield rootless
    finally:
        for pid in _pause_pids(rootless.store):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def as_root(tmp_path_factory, rl) -> Minibuild:
    """The same sample images built as root, into a store of root's own."""
    mb = Minibuild(tmp_path_factory.mktemp("root-store"))
    mb.build(rl.work / "sample_images/base", "-t", "base:1.0", *SDE)
    return mb


def _user_context(rl: Rootless, name: str, buildfile: str) -> Path:
    context = write_context(rl.work / name, buildfile)
    user = pwd.getpwnam(USER)
    subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(context)], check=True)
    return context


# -- tests ---------------------------------------------------------------------------------------


def test_the_store_is_the_users_and_the_namespace_maps_its_range(rl):
    assert (rl.store / "oci" / "index.json").is_file()
    assert os.stat(rl.store / "oci" / "index.json").st_uid == pwd.getpwnam(USER).pw_uid
    maps = rl.run("unshare", "sh", "-c", "id -u; cat /proc/self/uid_map; echo $MINIBUILD_ROOT")
    lines = maps.stdout.split("\n")
    assert lines[0] == "0"
    assert lines[1].split() == ["0", str(pwd.getpwnam(USER).pw_uid), "1"]
    assert lines[2].split() == ["1", str(_subordinate_start()), "65536"]
    assert lines[3] == str(rl.store)
    assert len(_pause_pids(rl.store)) == 1  # one namespace for every command, kept by one process


def test_sample_images_have_the_same_layer_diff_ids_rootless_and_as_root(rl, as_root):
    samples = rl.work / "sample_images"
    builds = [("hello:1.0", samples / "hello", ()),
              ("rmdemo:1.0", samples / "rm-demo", ()),
              ("rmdemo:multi-stage", samples / "rm-demo-fixed",
               ("-f", str(samples / "rm-demo-fixed/Buildfile.multi-stage")))]
    for tag, context, extra in builds:
        rl.build(context, "-t", tag, *SDE, *extra)
        as_root.build(context, "-t", tag, *SDE, *extra)
    for tag in ("base:1.0", "hello:1.0", "rmdemo:multi-stage", "rmdemo:1.0"):
        ours = rl.diff_ids(tag)
        roots = json.loads(as_root.run("inspect", tag).stdout)[0]["RootFS"]["Layers"]
        if tag == "rmdemo:1.0":  # its `dd if=/dev/urandom` layer differs on every build
            del ours[3], roots[3]
        assert ours == roots, tag


def test_history_of_the_rm_demo(rl):
    rl.build(rl.work / "sample_images/rm-demo", "-t", "rmdemo:1.0", *SDE)
    shown = rl.run("history", "rmdemo:1.0").stdout
    assert "hides 52.4MB of earlier layers" in shown
    assert "52.4MB  /opt/sdk/sdk.tar" in shown


def test_image_ids_33_and_65534_stay_in_steps_on_disk_and_in_the_tar(rl):
    context = _user_context(rl, "owners", (
        "FROM base:1.0\n"
        "RUN mkdir -p /srv/www /var/empty && echo hi > /srv/www/index.html"
        " && chown -R 33:33 /srv/www && chown 65534:65534 /var/empty\n"
        "RUN stat -c '%u:%g %n' /srv/www/index.html /var/empty > /ids\n"))
    rl.build(context, "-t", "owners:1")
    assert rl.run("run", "--rm", "owners:1", "cat", "/ids").stdout == (
        "33:33 /srv/www/index.html\n65534:65534 /var/empty\n")
    diff_ids = rl.diff_ids("owners:1")
    with rl.layer_tar(diff_ids[-2], "owners:1") as tar:
        owners = {m.name.rstrip("/"): (m.uid, m.gid) for m in tar.getmembers()}
    assert owners["srv/www/index.html"] == (33, 33) and owners["var/empty"] == (65534, 65534)
    on_disk = [p for p in (rl.store / "layers").glob("*/srv/www/index.html")]
    start = _subordinate_start()
    assert [(os.stat(p).st_uid, os.stat(p).st_gid) for p in on_disk] == [(start + 32, start + 32)]


def test_run_exec_diff_commit_stop_rm(rl):
    rl.run("run", "-d", "--name", "web", "base:1.0", "sleep", "600")
    try:
        out = rl.run("exec", "web", "sh", "-c",
                     "id -u; echo data > /tmp/file; chown 33:33 /tmp/file; rm /bin/vi").stdout
        assert out == "0\n"
        assert rl.run("diff", "web").stdout.split("\n")[:4] == ["C /bin", "D /bin/vi", "C /tmp",
                                                               "A /tmp/file"]
        rl.run("commit", "-m", "data", "web", "web:1")
        assert "web" in rl.run("ps").stdout
    finally:
        rl.run("rm", "-f", "web")
    shown = rl.run("run", "--rm", "web:1", "sh", "-c", "ls -n /tmp/file; ls /bin/vi", check=False)
    assert shown.stdout.split()[2:4] == ["33", "33"] and shown.returncode == 1
    assert rl.run("ps", "-a", "-q").stdout == ""


def test_save_load_keeps_whiteouts_and_opaque_dirs(rl):
    context = _user_context(rl, "opaque", (
        "FROM base:1.0\nRUN mkdir /opq && touch /opq/a /gone\n"
        "RUN rm -rf /opq /gone && mkdir /opq && touch /opq/b\n"))
    rl.build(context, "-t", "opaque:1")
    archive = rl.work / "opaque.tar"
    rl.run("save", "opaque:1", "-o", str(archive))
    top = rl.diff_ids("opaque:1")[-1]
    with rl.layer_tar(top, "opaque:1") as tar:
        names = {m.name.rstrip("/") for m in tar.getmembers()} - {".", ""}
    assert names == {".wh.gone", "opq", "opq/.wh..wh..opq", "opq/b"}
    rl.run("rmi", "opaque:1")
    rl.run("prune", "--cache")  # the step cache keeps layers too
    assert not list((rl.store / "layers").glob("*/opq/b"))
    rl.run("load", "-i", str(archive))
    unpacked = next((rl.store / "layers").glob("*/opq/b")).parent
    assert os.getxattr(unpacked, "user.overlay.opaque") == b"y"  # the userxattr form
    gone = os.lstat(unpacked.parent / "gone")
    assert gone.st_rdev == 0 and (gone.st_mode & 0o170000) == 0o020000  # a 0:0 whiteout
    shown = rl.run("run", "--rm", "opaque:1", "sh", "-c", "ls /opq; ls /gone 2>&1", check=False)
    assert shown.stdout == "b\nls: /gone: No such file or directory\n"


def test_an_image_owned_by_ids_beyond_the_range_is_refused_by_name(rl):
    rootfs = rl.work / "big-ids.tar"
    with tarfile.open(rootfs, "w") as tar:
        info = tarfile.TarInfo("far")
        info.uid = info.gid = 70000
        tar.addfile(info, io.BytesIO(b""))
    os.chmod(rootfs, 0o644)
    failed = rl.run("import", str(rootfs), "far:1", check=False)
    assert failed.returncode == 1
    assert "uid 70000" in failed.stderr and "potentially insufficient UIDs" in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1


def _interfaces(text: str) -> set[str]:
    return {line.split(":")[0].strip() for line in text.splitlines()[2:]}


def test_network_private_by_default_host_and_none_on_request(rl):
    host = _interfaces(Path("/proc/net/dev").read_text())
    shown = rl.run("run", "--rm", "base:1.0", "cat", "/proc/net/dev")
    if (os.stat("/dev/net/tun").st_mode & 0o666) != 0o666:  # the host's /dev is never changed
        assert _interfaces(shown.stdout) == host and "/dev/net/tun" in shown.stderr
        return
    assert _interfaces(shown.stdout) == {"lo", "tap0"}  # slirp4netns, as for root
    assert "10.0.2.100/24" in rl.run("run", "--rm", "base:1.0", "ip", "-o", "addr").stdout
    built = rl.build(_user_context(rl, "net", "FROM base:1.0\nRUN ip -o addr\n"), "--no-cache")
    assert "10.0.2.100/24" in built.stdout + built.stderr  # RUN steps too
    on_host = rl.run("run", "--rm", "--network", "host", "base:1.0", "cat", "/proc/net/dev")
    assert _interfaces(on_host.stdout) == host
    alone = rl.run("run", "--rm", "--network", "none", "base:1.0", "cat", "/proc/net/dev")
    assert _interfaces(alone.stdout) == {"lo"}


def test_a_user_without_a_range_gets_one_line_with_the_usermod_command(rl):
    failed = rl.run("images", user="nobody", check=False)
    assert failed.returncode == 1
    assert failed.stderr.count("\n") == 1
    assert "subordinate id range for user nobody" in failed.stderr
    assert "usermod --add-subuids" in failed.stderr and "--add-subgids" in failed.stderr


def test_a_root_store_and_a_rootless_store_side_by_side(rl, as_root):
    rl.run("run", "-d", "--name", "mine", "base:1.0", "sleep", "600")
    as_root.run("run", "-d", "--name", "roots", "base:1.0", "sleep", "600")
    try:
        assert rl.run("ps", "--format", "json").stdout.count('"mine"') == 1
        assert "roots" not in rl.run("ps").stdout and "mine" not in as_root.run("ps").stdout
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and "Up" not in as_root.run("ps").stdout:
            time.sleep(0.05)
    finally:
        rl.run("rm", "-f", "mine")
        as_root.run("rm", "-f", "roots")


def test_push_and_pull_through_a_local_registry(rl, tmp_path):
    if shutil.which("docker-registry") is None:
        pytest.skip("needs docker-registry (apt-get install docker-registry)")
    from tests.registry_server import registry_server

    other = rl.work / "other-store"  # pulled into an empty store: every layer unpacked rootless
    with registry_server(tmp_path / "registry") as reg:
        try:
            pushed = rl.run("push", "base:1.0", f"{reg.host}/rootless/base:1.0").stdout.strip()
            pulled = rl.run("--root", str(other), "pull", f"{reg.host}/rootless/base:1.0")
            assert pulled.stdout.strip() == pushed
            shown = rl.run("--root", str(other), "run", "--rm", f"{reg.host}/rootless/base:1.0",
                           "sh", "-c", "stat -c %u:%g /tmp /root")
            assert shown.stdout == "0:0\n0:0\n"
        finally:
            for pid in _pause_pids(other):  # no XDG_RUNTIME_DIR: that store keeps its own
                os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(os.environ.get("MINIBUILD_TEST_APT") != "1",
                    reason="opt-in (MINIBUILD_TEST_APT=1): debootstraps Debian 12 from its mirror "
                           "(minutes, network)")
def test_a_debian_build_with_apt_get_from_the_mirror(rl):
    if shutil.which("debootstrap") is None:
        pytest.skip("needs debootstrap (apt-get install debootstrap)")
    rootfs, archive = rl.work / "debian-rootfs", rl.work / "debian.tar"
    subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs),
                    "http://deb.debian.org/debian"], check=True, capture_output=True, timeout=900)
    # as in Debian's published images: no device nodes (a user namespace cannot make them)
    subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "--exclude=./dev/*", "-cf",
                    str(archive), "."], check=True)
    os.chmod(archive, 0o644)
    rl.run("import", str(archive), "debian:12", "--change", 'CMD ["bash"]')
    context = _user_context(rl, "apt", (
        "FROM debian:12\nRUN apt-get update -qq && apt-get install -y -qq --no-install-recommends "
        "hello >/dev/null && hello && stat -c %u /var/cache/apt/archives/partial\n"))
    built = rl.build(context, "-t", "apt:1")
    assert "Hello, world!" in built.stderr + built.stdout
    assert "\n42\n" in built.stderr + built.stdout  # apt's sandbox user _apt, uid 42 inside


def _users_cgroups() -> list[Path]:
    """minibuild cgroups the test user made (root's tests may run alongside)."""
    from minibuild.sandbox import cgroups

    uid = pwd.getpwnam(USER).pw_uid
    return [p for p in cgroups.parents() + cgroups.present() if p.stat().st_uid == uid]


def test_limits_without_a_delegated_cgroup_warn_once_and_pause_says_why(rl):
    """No delegation (the usual rootless case): a build's default pids limit is skipped without
    a word, a flag given is ignored with one warning line (rootless podman on cgroup v1), the
    steps still run, `pause` is one clear error and `commit` still pauses (SIGSTOP)."""
    context = _user_context(rl, "limits", "FROM base:1.0\nRUN echo one > /one\n")
    out = rl.build(context, "--no-cache", "-t", "lim:1")
    assert "cgroup" not in out.stderr and "limit" not in out.stderr  # (a tun warning may be)
    out = rl.build(context, "--no-cache", "--memory", "64m", "--pids-limit", "50", "-t", "lim:2")
    warned = [line for line in out.stderr.splitlines() if "cgroup" in line]
    assert warned == ["warning: --memory, --pids-limit ignored: rootless minibuild has no "
                      "delegated cgroup to apply them in (run as root, or delegate a cgroup v2 "
                      "subtree with the controller)"]
    assert rl.run("run", "--rm", "--cpus", "0.5", "lim:2", "cat", "/one").stdout == "one\n"
    rl.run("run", "-d", "--name", "lim", "base:1.0", "sleep", "600")
    try:
        out = rl.run("pause", "lim", check=False)
        assert out.returncode == 1 and "Traceback" not in out.stderr
        assert out.stderr.splitlines() == [
            "error: container lim has no freezer cgroup",
            "hint: rootless minibuild makes none without a delegated cgroup v2 subtree"]
        rl.run("commit", "lim", "lim:3")
    finally:
        rl.run("rm", "-f", "lim")
    assert _users_cgroups() == []
