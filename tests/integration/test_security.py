"""Attacks from a RUN step or a container, each refused (issue 13's findings 1, 6, 12 and NET_RAW).

Each test reproduces what the audit did and checks that it is refused now; run against the code
before the fixes, each one fails. The calls busybox cannot make come from tests/syscall_probe.py,
a few-byte x86_64 program assembled at test time (no compiler needed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from minibuild.sandbox.confinement import SecurityOptions
from minibuild.sandbox.sandbox import Process, Sandbox
from tests import syscall_probe
from tests.conftest import REPO, write_context
from tests.integration.test_containers import cmb, ps, wait_for  # noqa: F401 - a fixture
from tests.integration.test_sandbox import image, make_busybox_layer, new_rootfs, run  # noqa: F401

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlay mounts, namespaces)"),
]
needs_probe = pytest.mark.skipif(not syscall_probe.supported(), reason="the probe is x86_64 code")

EPERM, EACCES, ENOSYS = 1, 13, 38
KEYCTL, ADD_KEY, CLONE3, PERSONALITY, SOCKET = 250, 248, 435, 135, 41
KEYCTL_JOIN_SESSION_KEYRING, KEY_SPEC_USER_KEYRING = 1, -4
ADDR_NO_RANDOMIZE = 0x0040000
AF_PACKET, SOCK_RAW, ETH_P_ALL_BE = 17, 3, 0x0300


def _probes(description: bytes) -> dict[str, bytes]:
    """The attack programs, by file name."""
    p = syscall_probe.probe
    return {"keyctl": p(KEYCTL, KEYCTL_JOIN_SESSION_KEYRING, b"minibuild-test"),
            "addkey": p(ADD_KEY, b"user", description, b"planted", 7, KEY_SPEC_USER_KEYRING),
            "clone3": p(CLONE3, 0, 0),
            "personality": p(PERSONALITY, ADDR_NO_RANDOMIZE),
            "packet": p(SOCKET, AF_PACKET, SOCK_RAW, ETH_P_ALL_BE)}


@pytest.fixture(scope="module")
def key_name() -> bytes:
    """A key description no one else uses; the step must not plant it in the host's keyring."""
    return f"minibuild-audit-{uuid.uuid4().hex[:12]}".encode()


@pytest.fixture(scope="module")
def probe_layer(tmp_path_factory, key_name) -> Path:
    """busybox plus the probes in /probe/."""
    layer = make_busybox_layer(tmp_path_factory.mktemp("probe-image") / "layer")
    (layer / "probe").mkdir()
    for name, program in _probes(key_name).items():
        (layer / "probe" / name).write_bytes(program)
        os.chmod(layer / "probe" / name, 0o755)
    return layer


def _step(tmp_path: Path, layer: Path, argv: tuple[str, ...],
          security: SecurityOptions = SecurityOptions(), **kw) -> tuple[int, str]:
    chunks: list[bytes] = []
    rootfs = new_rootfs(tmp_path / uuid.uuid4().hex[:8], (layer,))
    status = Sandbox(security=security).run(rootfs, Process(argv, **kw), chunks.append)
    return status, b"".join(chunks).decode(errors="replace")


def _host_has_key(description: bytes) -> bool:
    return any(line.endswith(b": " + description) or (b" " + description + b":") in line
               for line in Path("/proc/keys").read_bytes().splitlines())


# -- finding 6: seccomp ---------------------------------------------------------------------------


@needs_probe
def test_a_step_cannot_reach_the_host_keyrings(tmp_path, probe_layer, key_name):
    assert _step(tmp_path, probe_layer, ("/probe/keyctl",))[0] == EPERM
    assert _step(tmp_path, probe_layer, ("/probe/addkey",))[0] == EPERM
    assert not _host_has_key(key_name), "the step planted a key in host root's keyring"


@needs_probe
def test_the_profile_gives_its_own_errnos(tmp_path, probe_layer):
    assert _step(tmp_path, probe_layer, ("/probe/clone3",))[0] == ENOSYS  # glibc falls back
    assert _step(tmp_path, probe_layer, ("/probe/personality",))[0] == EPERM
    assert _step(tmp_path, probe_layer, ("sh", "-c", "echo forks fine | cat"))[1] == "forks fine\n"


@needs_probe
def test_unconfined_is_an_explicit_choice(tmp_path, probe_layer):
    unconfined = SecurityOptions(seccomp="unconfined")
    assert _step(tmp_path, probe_layer, ("/probe/keyctl",), unconfined)[0] == 0
    status = ("cat", "/proc/self/status")
    assert "Seccomp:\t0\n" in _step(tmp_path, probe_layer, status, unconfined)[1]
    assert "Seccomp:\t2\n" in _step(tmp_path, probe_layer, status)[1]  # 2: a filter


@pytest.fixture
def probe_image(cmb, tmp_path, key_name):
    """`probes:1` in the store: base:1.0 plus the probes in /probe/."""
    files = {f"probe/{name}": program for name, program in _probes(key_name).items()}
    ctx = write_context(tmp_path / "probe-ctx", "FROM base:1.0\nCOPY probe /probe\n", files)
    for name in _probes(key_name):
        os.chmod(ctx / "probe" / name, 0o755)
    cmb.build(ctx, "-t", "probes:1")
    return cmb


@needs_probe
def test_build_run_and_exec_apply_the_profile(probe_image, tmp_path, key_name):
    mb = probe_image
    ctx = write_context(tmp_path / "attack", "FROM probes:1\nRUN /probe/keyctl\n")
    failed = mb.build(ctx, check=False)
    assert failed.returncode != 0 and "exit code 1" in failed.stderr
    mb.build(ctx, "--security-opt", "seccomp=unconfined")
    assert mb.run("run", "--rm", "probes:1", "/probe/addkey", check=False).returncode == EPERM
    mb.run("run", "-d", "--name", "target", "probes:1", "sleep", "600")
    assert mb.run("exec", "target", "/probe/keyctl", check=False).returncode == EPERM
    assert mb.run("exec", "target", "/probe/addkey", check=False).returncode == EPERM
    assert not _host_has_key(key_name)
    mb.run("run", "-d", "--name", "loose", "--security-opt", "seccomp=unconfined", "probes:1",
           "sleep", "600")
    assert mb.run("exec", "loose", "/probe/keyctl", check=False).returncode == 0  # as recorded


@needs_probe
def test_a_profile_file_with_its_errno(probe_image, tmp_path):
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["keyctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": EACCES}]}))
    out = probe_image.run("run", "--rm", "--security-opt", f"seccomp={profile}", "probes:1",
                          "/probe/keyctl", check=False)
    assert out.returncode == EACCES
    bad = probe_image.run("run", "--rm", "--security-opt", "seccomp=/no/such.json", "base:1.0",
                          "true", check=False)
    assert bad.returncode == 1 and "seccomp profile /no/such.json" in bad.stderr
    assert probe_image.run("run", "--rm", "--security-opt", "apparmor=x", "base:1.0", "true",
                           check=False).returncode != 0


def test_no_new_privileges_only_when_asked(cmb, tmp_path):
    line = ("grep", "NoNewPrivs", "/proc/self/status")
    assert cmb.run("run", "--rm", "base:1.0", *line).stdout.split() == ["NoNewPrivs:", "0"]
    out = cmb.run("run", "--rm", "--security-opt", "no-new-privileges", "base:1.0", *line)
    assert out.stdout.split() == ["NoNewPrivs:", "1"]
    ctx = write_context(tmp_path / "nnp", "FROM base:1.0\nRUN grep 'NoNewPrivs:.1' /proc/self/status\n")
    assert cmb.build(ctx, check=False).returncode != 0
    cmb.build(ctx, "--security-opt", "no-new-privileges=true")


# -- NET_RAW (finding 5's capability part) ----------------------------------------------------------


@needs_probe
def test_a_step_cannot_open_packet_sockets(tmp_path, probe_layer):
    """An AF_PACKET socket sniffed the host's loopback in the audit: NET_RAW is gone."""
    assert _step(tmp_path, probe_layer, ("/probe/packet",))[0] == EPERM
    status, out = _step(tmp_path, probe_layer, ("cat", "/proc/self/status"))
    bounding = int(next(line for line in out.splitlines() if line.startswith("CapBnd:")).split()[1], 16)
    assert not bounding & (1 << 13)


def test_busybox_arping_is_refused(cmb):
    out = cmb.run("run", "--rm", "base:1.0", "arping", "-c", "1", "-w", "1", "-I", "lo",
                  "127.0.0.1", check=False)
    assert out.returncode != 0 and "Operation not permitted" in out.stderr, out


# -- finding 1: exec passed the caller's fds ------------------------------------------------------


def _exec_with_fd7(mb, directory: Path, *args: str) -> subprocess.CompletedProcess:
    """`bash -c 'exec 7<DIR; minibuild exec ARGS'`, as the audit ran it."""
    env = {**os.environ, "MINIBUILD_ROOT": str(mb.root)}
    line = 'exec 7<"$0"; shift; exec "$@"'
    return subprocess.run(["bash", "-c", line, str(directory), "bash", sys.executable, "-m",
                           "minibuild", "exec", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=60)


def test_exec_does_not_hand_our_fds_to_the_container(cmb, tmp_path):
    host = tmp_path / "host-dir"
    host.mkdir()
    (host / "host-secret").write_text("x")
    cmb.run("run", "-d", "--name", "fds", "base:1.0", "sleep", "600")
    out = _exec_with_fd7(cmb, host, "fds", "sh", "-c",
                         "echo x > /proc/self/fd/7/planted; ls /proc/self/fd/7/; ls /proc/self/fd")
    assert not (host / "planted").exists(), "exec wrote into the host through fd 7"
    assert "host-secret" not in out.stdout
    assert sorted(out.stdout.split()) == ["0", "1", "2", "3"]  # 3: ls's own directory fd
    moved = _exec_with_fd7(cmb, host, "-w", "/proc/self/fd/7", "fds", "ls")
    assert moved.returncode == 126 and "host-secret" not in moved.stdout
    assert "working directory" in moved.stderr


def test_exec_into_a_missing_workdir_says_so(cmb):
    cmb.run("run", "-d", "--name", "wd", "base:1.0", "sleep", "600")
    out = cmb.run("exec", "-w", "/missing", "wd", "true", check=False)
    assert out.returncode == 126
    assert "working directory '/missing'" in out.stderr and "No such file" in out.stderr


def test_a_workdir_outside_the_root_is_refused(tmp_path):
    """runc's CVE-2024-21626 check: whatever path got us there, a cwd outside our root fails."""
    from minibuild.errors import BuildError
    from minibuild.sandbox.process import enter_workdir

    jail = tmp_path / "jail"
    jail.mkdir()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.chdir(tmp_path)
            os.chroot(jail)  # the cwd stays outside the new root, as through a leaked fd
            try:
                enter_workdir(".")
                os.write(write_end, b"entered")
            except BuildError as exc:
                os.write(write_end, str(exc).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    message = os.read(read_end, 1000).decode()
    os.waitpid(pid, 0)
    os.close(read_end)
    assert message == "working directory '.' is outside the container's root"


# -- finding 12: no host executable inside (runc's CVE-2019-5736 pattern) --------------------------


def _host_python_libraries() -> list[str]:
    """The dynamic loader and libraries our interpreter needs (so that it would start inside)."""
    out = subprocess.run(["ldd", os.readlink("/proc/self/exe")], capture_output=True, text=True)
    return [word for word in out.stdout.split() if word.startswith("/")]


@pytest.fixture(scope="module")
def host_exe_layer(tmp_path_factory) -> Path:
    """busybox, our interpreter's libraries (so it runs if reached: `-V` needs nothing else),
    links to /proc/self/exe and /proc/1/exe, and a script whose interpreter is /proc/self/exe."""
    layer = make_busybox_layer(tmp_path_factory.mktemp("host-exe") / "layer")
    for library in _host_python_libraries():
        target = layer / library.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(library, target)
    (layer / "self-link").symlink_to("/proc/self/exe")
    (layer / "init-link").symlink_to("/proc/1/exe")
    (layer / "script").write_text("#!/proc/self/exe -V\n")
    (layer / "nested").write_text("#!/script\n")
    os.chmod(layer / "script", 0o755)
    os.chmod(layer / "nested", 0o755)
    return layer


@pytest.mark.parametrize("argv", [("/proc/self/exe", "-V"), ("/self-link", "-V"),
                                  ("/init-link", "-V"), ("/proc/1/exe", "-V"), ("/script",),
                                  ("/nested",)])
def test_a_step_cannot_run_the_host_interpreter(tmp_path, host_exe_layer, argv):
    status, out = _step(tmp_path, host_exe_layer, argv)
    assert "Python 3" not in out
    # /proc/1/exe: I is outside the step's Landlock domain (and not dumpable), so even X,
    # still holding every capability, is denied the link; our own exe: the identity check
    refused = ("refusing to run a host executable", "Permission denied")
    assert status == 126 and any(words in out for words in refused), out


def test_a_shell_in_the_step_cannot_reach_pid_1(tmp_path, host_exe_layer):
    """(The step's lesser capabilities already kept it out before I went undumpable: this is
    the regression test of both.)"""
    script = ("/proc/1/exe -V; readlink /proc/1/exe || echo =exe; ls /proc/1/root/ || echo =root; "
              "readlink /proc/1/fd/0 || echo =fd; cat /proc/1/environ || echo =environ; "
              "cat /proc/1/cmdline >/dev/null && echo =cmdline")
    status, out = _step(tmp_path, host_exe_layer, ("sh", "-c", script))
    assert "Python 3" not in out
    lines = out.splitlines()
    assert {"=exe", "=root", "=fd", "=environ", "=cmdline"} <= set(lines), out  # ps still works
    assert "Permission denied" in out


def test_landlock_refuses_a_host_file_whatever_the_path(tmp_path):
    """What closes the race of a path swapped between our check and execve (exec, with other
    processes of the container running): the kernel refuses any file outside the root."""
    from minibuild.sandbox import landlock

    if not landlock.available():
        pytest.skip("the kernel has no Landlock")
    jail = make_busybox_layer(tmp_path / "jail")
    host = os.open("/bin/busybox", os.O_RDONLY)  # a host executable, reached through an fd
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            os.chroot(jail)
            os.chdir("/")
            landlock.execute_only_beneath("/")
            if os.fork() == 0:
                try:
                    os.execve(host, ["true"], {})
                finally:
                    os._exit(4)
            code = 0 if os.wait()[1] == 4 << 8 else 5
            if os.fork() == 0:
                try:
                    os.execve("/bin/true", ["true"], {})
                finally:
                    os._exit(6)
            code = code or (0 if os.wait()[1] == 0 else 7)
        finally:
            os._exit(code)
    os.close(host)
    assert os.waitpid(pid, 0)[1] == 0  # the host file refused, the jail's own allowed


def test_exec_cannot_run_the_host_interpreter(cmb, tmp_path):
    files = {library.lstrip("/"): Path(library).read_bytes() for library in _host_python_libraries()}
    ctx = write_context(tmp_path / "libs", "FROM base:1.0\nCOPY . /\n", files)
    (ctx / "Buildfile").rename(tmp_path / "Buildfile")
    cmb.run("build", "--progress", "plain", "-f", str(tmp_path / "Buildfile"), "-t", "libs:1",
            str(ctx))
    cmb.run("run", "-d", "--name", "hostexe", "libs:1", "sleep", "600")
    for argv in (("/proc/self/exe", "-V"), ("sh", "-c", "/proc/1/exe -V")):
        out = cmb.run("exec", "hostexe", *argv, check=False)
        assert "Python 3" not in out.stdout + out.stderr and out.returncode != 0, out
    assert "refusing to run a host executable" in \
        cmb.run("run", "--rm", "libs:1", "/proc/self/exe", "-V", check=False).stderr


# -- finding 3 (the walk half): a tree swapped under commit and diff ----------------------------

RENAMEAT2, AT_FDCWD, RENAME_EXCHANGE = 316, -100, 2


@needs_probe
def test_commit_and_diff_never_follow_a_dir_swapped_for_a_host_link(cmb, tmp_path):  # noqa: F811
    """A container loops renameat2(RENAME_EXCHANGE) between a dir and a symlink to a host dir
    holding a 0600 secret (the audit's attack): 20 `commit --no-pause` and 20 `diff` while it
    runs neither crash nor carry a host entry (a walk by path would follow the link)."""
    host = tmp_path / "host-dir"
    host.mkdir()
    secret_name, secret = f"host-secret-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex.encode()
    (host / secret_name).write_bytes(secret)
    os.chmod(host / secret_name, 0o600)
    swap = tmp_path / "swap"
    swap.write_bytes(syscall_probe.probe(RENAMEAT2, AT_FDCWD, b"a", AT_FDCWD, b"b", RENAME_EXCHANGE))
    os.chmod(swap, 0o755)
    cmb.run("run", "-d", "--name", "swapper", "base:1.0", "sh", "-c",
            f"mkdir -p /w/a/sub && echo mine > /w/a/sub/f && ln -s {host} /w/b && cd /w && "
            "while [ ! -x /swap ]; do sleep 0.1; done; while :; do /swap; done")
    cmb.run("cp", str(swap), "swapper:/swap")
    assert cmb.run("exec", "swapper", "sh", "-c", "cd /w && /swap; echo $?").stdout == "0\n"
    outputs = []
    for n in range(20):
        commit = cmb.run("commit", "--no-pause", "swapper", f"swapped:{n}", check=False)
        diff = cmb.run("diff", "swapper", check=False)
        for out in (commit, diff):
            assert out.returncode in (0, 1) and "Traceback" not in out.stderr, out.stderr
        outputs.append(diff.stdout)
    assert ps(cmb)["swapper"]["status"] == "running"
    assert not any(secret_name in out for out in outputs)
    assert any("/w/" in out for out in outputs)  # the walks did see the swapping tree
    cmb.run("rm", "-f", "swapper")
    for n in range(20):
        archive = tmp_path / f"swapped-{n}.tar"
        if cmb.run("save", "-o", str(archive), f"swapped:{n}", check=False).returncode == 0:
            names, data = _archive_contents(archive)
            assert secret_name not in names and secret not in data, n


def _archive_contents(archive: Path) -> tuple[str, bytes]:
    """Every member name below every layer of a saved image, and all their bytes."""
    import io
    import tarfile

    names, data = [], []
    with tarfile.open(archive) as outer:
        for member in outer.getmembers():
            if not member.isfile():
                continue
            blob = outer.extractfile(member).read()
            try:
                layer = tarfile.open(fileobj=io.BytesIO(blob))
            except tarfile.TarError:
                continue  # a config or manifest
            for inner in layer.getmembers():
                names.append(inner.name)
                if inner.isfile():
                    data.append(layer.extractfile(inner).read())
    return "\n".join(names), b"\n".join(data)
