"""The sandbox for real: overlay mounts, namespaces, chroot, process teardown (needs root)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minibuild.errors import BuildError, Interrupted, SandboxError
from minibuild.sandbox.sandbox import Process, RootFS, Sandbox, new_mount_api

BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "echo", "cat", "ls", "id", "ps", "hostname", "sleep", "true", "rm", "touch",
           "ip", "env", "pwd", "readlink", "stat", "kill", "printf", "wc")
REPO = Path(__file__).resolve().parents[2]


def _overlay_available() -> bool:
    try:
        return "overlay" in Path("/proc/filesystems").read_text().split()
    except OSError:
        return False


pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlay mounts, chroot, namespaces)"),
    pytest.mark.skipif(not _overlay_available(), reason="kernel has no overlayfs"),
    pytest.mark.skipif(not BUSYBOX.is_file(), reason="needs a static /bin/busybox "
                       "(apt-get install busybox-static)"),
]


def _mounts_under(path: Path) -> list[str]:
    """Mount points in our (the host's) namespace at or below `path`."""
    base = str(path)
    points = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    return [p for p in points if p == base or p.startswith(base + "/")]


def _processes_with(marker: bytes) -> list[int]:
    """Pids whose command line contains `marker` (ourselves excluded)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _wait_gone(marker: bytes, seconds: float = 5.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := _processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left


@pytest.fixture(autouse=True)
def _no_mount_left(tmp_path):
    yield
    assert _mounts_under(tmp_path.parent) == [], "a mount leaked into the host namespace"
    with pytest.raises(ChildProcessError):  # no child left unreaped (zombie) or running
        os.waitpid(-1, os.WNOHANG)


def make_busybox_layer(path: Path) -> Path:
    """A one-layer image: busybox, passwd/group with nobody, /data/keep.txt, /link -> /target."""
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "busybox").write_bytes(BUSYBOX.read_bytes())
    os.chmod(path / "bin" / "busybox", 0o755)
    for applet in APPLETS:
        (path / "bin" / applet).symlink_to("busybox")
    (path / "etc").mkdir()
    (path / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                         "nobody:x:65534:65534:nobody:/home/nobody:/bin/false\n")
    (path / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\nusers:x:100:nobody\n")
    (path / "data").mkdir()
    (path / "data" / "keep.txt").write_text("original\n")
    (path / "target").mkdir()
    (path / "link").symlink_to("/target")
    return path


def new_rootfs(base: Path, lowers: tuple[Path, ...]) -> RootFS:
    dirs = [base / name for name in ("upper", "work", "merged")]
    for d in dirs:
        d.mkdir(parents=True)
    return RootFS(lowers, *dirs)


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    return make_busybox_layer(tmp_path_factory.mktemp("image") / "layer")


@pytest.fixture
def rootfs(tmp_path, image) -> RootFS:
    return new_rootfs(tmp_path / "step", (image,))


def run(rootfs: RootFS, script: str, sandbox: Sandbox | None = None, **kw) -> tuple[int, str]:
    chunks: list[bytes] = []
    status = (sandbox or Sandbox()).run(rootfs, Process(("sh", "-c", script), **kw), chunks.append)
    return status, b"".join(chunks).decode()


# -- basics ---------------------------------------------------------------------------------------


def test_output_merged_and_exit_status(rootfs):
    status, out = run(rootfs, "echo hi; echo err >&2; exit 3")
    assert status == 3
    assert out == "hi\nerr\n"


def test_killed_by_signal_is_128_plus_signal(rootfs):
    assert run(rootfs, "kill -9 $$")[0] == 137


def test_write_lands_in_upper_and_lower_is_untouched(rootfs, image):
    status, _ = run(rootfs, "echo new > /new.txt && echo changed > /data/keep.txt")
    assert status == 0
    assert (rootfs.upper / "new.txt").read_text() == "new\n"
    assert (rootfs.upper / "data" / "keep.txt").read_text() == "changed\n"
    assert (image / "data" / "keep.txt").read_text() == "original\n"
    assert not (image / "new.txt").exists()


def test_rm_of_lower_file_leaves_a_whiteout(rootfs, image):
    assert run(rootfs, "rm /data/keep.txt && ! test -e /data/keep.txt")[0] == 0
    st = os.lstat(rootfs.upper / "data" / "keep.txt")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert (image / "data" / "keep.txt").exists()


def test_step_changing_nothing_leaves_upper_empty(rootfs):
    status, out = run(rootfs, "cat /etc/hosts /etc/resolv.conf >/dev/null; ls /proc /dev >/dev/null;"
                              " echo x > /dev/null && echo ok")
    assert (status, out) == (0, "ok\n")
    assert os.listdir(rootfs.upper) == []


def test_missing_executable_is_127_with_message(rootfs):
    chunks: list[bytes] = []
    status = Sandbox().run(rootfs, Process(("no-such-tool", "x")), chunks.append)
    assert status == 127
    assert b'minibuild: exec: "no-such-tool": executable file not found' in b"".join(chunks)


def test_stdin_is_fed_and_large_stdin_does_not_deadlock(rootfs):
    chunks: list[bytes] = []
    status = Sandbox().run(rootfs, Process(("sh",), stdin=b"echo from-stdin\n"), chunks.append)
    assert (status, b"".join(chunks)) == (0, b"from-stdin\n")
    data = os.urandom(600_000).hex().encode()  # 1.2 MB through stdin and back out
    chunks.clear()
    assert Sandbox().run(rootfs, Process(("cat",), stdin=data), chunks.append) == 0
    assert b"".join(chunks) == data


def test_stdin_defaults_to_dev_null(rootfs):
    assert run(rootfs, "cat; echo end") == (0, "end\n")


# -- isolation ------------------------------------------------------------------------------------


def test_pid_namespace_shows_only_the_step(rootfs):
    status, out = run(rootfs, "ls /proc | grep -E '^[0-9]+$' 2>/dev/null || ls /proc")
    pids = sorted(int(w) for w in out.split() if w.isdigit())
    assert status == 0
    assert pids[0] == 1 and len(pids) <= 4, pids  # init, sh, ls (and maybe grep)


def test_hostname_is_ours(rootfs):
    assert run(rootfs, "hostname", hostname="stepbox") == (0, "stepbox\n")
    assert os.uname().nodename != "stepbox"


def test_network_none_has_only_lo_and_it_is_up(rootfs):
    status, out = run(rootfs, "cat /proc/net/dev; echo ---; ip addr", network="none")
    assert status == 0
    net_dev, addr = out.split("---\n")
    assert [line.split(":")[0].strip() for line in net_dev.splitlines()[2:]] == ["lo"], out
    assert "inet 127.0.0.1" in addr, out  # the kernel gives lo its address once it is up
    host = run(new_rootfs(rootfs.upper.parent / "host", rootfs.lowers), "cat /proc/net/dev")[1]
    assert len(host.splitlines()) > 3, "host network expected more than lo"


def test_background_process_is_gone_after_the_step(rootfs):
    start = time.monotonic()
    status, out = run(rootfs, "sleep 31337 & echo started")
    assert (status, out) == (0, "started\n")
    assert time.monotonic() - start < 5
    assert _wait_gone(b"31337", 2.0) == []


def test_exception_in_on_output_kills_the_step(rootfs):
    def boom(chunk: bytes) -> None:
        raise RuntimeError("reporter broke")

    with pytest.raises(RuntimeError, match="reporter broke"):
        Sandbox().run(rootfs, Process(("sh", "-c", "echo go; exec sleep 31340")), boom)
    assert _wait_gone(b"31340", 2.0) == []


# -- users, env, cwd, scaffold files --------------------------------------------------------------


def test_user_is_resolved_through_the_image_passwd(rootfs):
    status, out = run(rootfs, "id; echo $HOME", user="nobody")
    assert status == 0
    assert out.splitlines() == ["uid=65534(nobody) gid=65534(nogroup) groups=100(users),65534(nogroup)",
                                "/home/nobody"]
    assert run(rootfs, "id -u; id -g", user="1234:5678")[1] == "1234\n5678\n"


def test_unknown_user_is_a_build_error(rootfs):
    with pytest.raises(BuildError, match="unable to find user ghost: no matching entries"):
        run(rootfs, "true", user="ghost")


def test_env_is_exact_plus_path_and_home(rootfs):
    status, out = run(rootfs, "env | sort; pwd", env=(("FOO", "bar baz"),), cwd="/data")
    assert status == 0
    assert out.splitlines() == ["FOO=bar baz", "HOME=/root",
                                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                "PWD=/data", "SHLVL=1", "/data"]


def test_missing_cwd_fails_clearly(rootfs):
    with pytest.raises(BuildError, match="working directory '/nope'"):
        run(rootfs, "true", cwd="/nope")


def test_resolv_conf_and_hosts_are_readable(rootfs, tmp_path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 192.0.2.53\n")
    status, out = run(rootfs, "cat /etc/resolv.conf /etc/hosts", Sandbox(resolv_conf=resolv),
                      hostname="box1")
    assert status == 0
    assert "nameserver 192.0.2.53" in out and "127.0.0.1\tlocalhost box1" in out


def test_edits_of_hosts_and_resolv_conf_stay_out_of_the_layer(rootfs):
    status, out = run(rootfs, "echo '192.0.2.9 extra' >> /etc/hosts; echo nameserver 192.0.2.1 "
                              "> /etc/resolv.conf; grep extra /etc/hosts; cat /etc/resolv.conf")
    assert (status, out) == (0, "192.0.2.9 extra\nnameserver 192.0.2.1\n")
    assert os.listdir(rootfs.upper) == []


def test_etc_copy_up_carries_image_metadata(tmp_path, image):
    layer = tmp_path / "layer"
    (layer / "etc").mkdir(parents=True)
    os.chown(layer / "etc", 123, 456)
    os.chmod(layer / "etc", 0o750)
    rootfs = new_rootfs(tmp_path / "step", (layer, image))
    assert run(rootfs, "echo x > /etc/newfile")[0] == 0
    st = os.stat(rootfs.upper / "etc")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (123, 456, 0o750)
    assert sorted(os.listdir(rootfs.upper / "etc")) == ["newfile"]


def test_image_etc_symlink_is_kept(tmp_path, image):
    layer = tmp_path / "layer"
    layer.mkdir()
    (layer / "etc").symlink_to("/data")
    rootfs = new_rootfs(tmp_path / "step", (layer, image))
    assert run(rootfs, "readlink /etc") == (0, "/data\n")
    assert os.listdir(rootfs.upper) == []


# -- teardown when the caller dies or is interrupted ---------------------------------------------

SCRIPT = """
import sys
from pathlib import Path
from minibuild.sandbox.sandbox import Process, RootFS, Sandbox
marker = sys.argv[1]
rootfs = RootFS((Path(sys.argv[2]),), Path(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5]))
def out(chunk):
    sys.stdout.write(chunk.decode()); sys.stdout.flush()
try:
    Sandbox().run(rootfs, Process(("sh", "-c", f"echo started; sleep {marker} & exec sleep {marker}")), out)
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def _start_script(tmp_path: Path, rootfs: RootFS, marker: str) -> subprocess.Popen:
    script = tmp_path / "driver.py"
    script.write_text(SCRIPT)
    args = [sys.executable, str(script), marker, *(str(p) for p in (rootfs.lowers[0], rootfs.upper,
                                                                 rootfs.work, rootfs.merged))]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline() == "started\n"
    return proc


def test_sigkill_of_the_caller_leaves_no_process_and_no_mount(tmp_path, rootfs):
    proc = _start_script(tmp_path, rootfs, "31341")
    assert len(_processes_with(b"31341")) >= 4  # driver, C, I, sleep x2
    proc.kill()
    proc.wait()
    assert _wait_gone(b"31341") == []
    assert not os.path.ismount(rootfs.merged)


def test_sigint_of_the_caller_stops_the_step_cleanly(tmp_path, rootfs):
    proc = _start_script(tmp_path, rootfs, "31342")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=10)
    assert out == "interrupted\n"
    assert _processes_with(b"31342") == []  # gone before the driver returned
    assert sorted(os.listdir(tmp_path / "step")) == ["merged", "upper", "work"]  # scaffold removed


# -- call -----------------------------------------------------------------------------------------


def test_call_reads_context_relative_and_writes_image_absolute(tmp_path, rootfs):
    context = tmp_path / "context"
    context.mkdir()
    (context / "ctx.txt").write_text("from context\n")
    Path("/target").exists() and pytest.skip("host has a /target dir")

    def copy() -> None:
        data = Path("ctx.txt").read_text()
        Path("/x.txt").write_text(data)
        Path("/link/y.txt").write_text(data)  # /link -> /target, resolved inside the root

    Sandbox().call(rootfs, copy, cwd=context)
    assert (rootfs.upper / "x.txt").read_text() == "from context\n"
    assert (rootfs.upper / "target" / "y.txt").read_text() == "from context\n"
    assert not Path("/target").exists() and not Path("/x.txt").exists()


def test_call_reraises_minibuild_errors_with_fields(rootfs):
    def fail() -> None:
        raise BuildError("no such source", step="COPY a b", file="Buildfile", line=3)

    with pytest.raises(BuildError, match="no such source") as info:
        Sandbox().call(rootfs, fail)
    assert (info.value.step, info.value.file, info.value.line) == ("COPY a b", "Buildfile", 3)


def test_call_turns_other_exceptions_into_build_errors(rootfs):
    with pytest.raises(BuildError, match="No such file or directory"):
        Sandbox().call(rootfs, lambda: open("/does/not/exist").close())

    def odd_init() -> None:
        raise Interrupted(2)  # its __init__ does not take the message back

    with pytest.raises(Interrupted, match="interrupted"):
        Sandbox().call(rootfs, odd_init)


def test_call_from_scratch_has_an_empty_root(tmp_path):
    rootfs = new_rootfs(tmp_path / "step", ())
    Sandbox().call(rootfs, lambda: Path("/hello").write_text(str(sorted(os.listdir("/")))))
    assert (rootfs.upper / "hello").read_text() == "[]"  # nothing but what fn writes
    assert sorted(p.name for p in (tmp_path / "step").iterdir()) == ["merged", "upper", "work"]


# -- many layers, both mount APIs, mount errors ---------------------------------------------------


def _layers(base: Path, count: int, name: str) -> tuple[Path, ...]:
    layers = []
    for i in range(count):
        layer = base / name.format(i)
        layer.mkdir(parents=True)
        (layer / f"f{i}").write_text(str(i))
        (layer / "top").write_text(str(i))  # the topmost layer must win
        layers.append(layer)
    return tuple(layers)


def _check_layers(count: int) -> None:
    missing = [i for i in range(count) if not os.path.exists(f"/f{i}")]
    Path("/result").write_text(f"{missing} {Path('/top').read_text()}")


@pytest.mark.skipif(not new_mount_api(), reason="kernel lacks fsopen/lowerdir+ (Linux >= 6.8)")
def test_300_long_named_layers_with_the_new_mount_api(tmp_path):
    layers = _layers(tmp_path / "layers", 300, "layer-{:03d}-" + "x" * 40)  # far over one page
    rootfs = new_rootfs(tmp_path / "step", layers)
    Sandbox(mount_api="new").call(rootfs, lambda: _check_layers(300))
    assert (rootfs.upper / "result").read_text() == "[] 0"


def test_300_layers_with_mount2_and_relative_paths(tmp_path, image):
    layers = _layers(tmp_path / "layers", 300, "L{:03d}")
    rootfs = new_rootfs(tmp_path / "step", layers)
    Sandbox(mount_api="legacy").call(rootfs, lambda: _check_layers(300))
    assert (rootfs.upper / "result").read_text() == "[] 0"
    status, out = run(new_rootfs(tmp_path / "step2", layers + (image,)), "cat /top /f299",
                      Sandbox(mount_api="legacy"))
    assert (status, out) == (0, "0299")


def test_mount2_with_far_apart_long_layers_uses_fd_paths(tmp_path):
    layers = _layers(tmp_path / "layers", 150, "layer-{:03d}-" + "x" * 40)  # 8 KB relative
    rootfs = new_rootfs(tmp_path / "step", layers)
    Sandbox(mount_api="legacy").call(rootfs, lambda: _check_layers(150))
    assert (rootfs.upper / "result").read_text() == "[] 0"


def test_mount2_over_one_page_is_refused_clearly(tmp_path, image):
    deep = tmp_path.joinpath(*["d" * 200] * 11)  # upperdir + workdir alone exceed a page
    rootfs = new_rootfs(deep, (image,))
    with pytest.raises(SandboxError, match="over mount\\(2\\)'s 4096"):
        Sandbox(mount_api="legacy").call(rootfs, lambda: None)


@pytest.mark.parametrize("api", ["new", "legacy"])
def test_mount_failure_shows_the_options(tmp_path, image, api):
    if api == "new" and not new_mount_api():
        pytest.skip("kernel lacks the new mount API")
    rootfs = new_rootfs(tmp_path / "step", (image,))
    bad = RootFS(rootfs.lowers, rootfs.upper, rootfs.upper, rootfs.merged)  # workdir == upperdir
    with pytest.raises(SandboxError, match="cannot mount overlay on .*upperdir=.*workdir="):
        Sandbox(mount_api=api).call(bad, lambda: None)
