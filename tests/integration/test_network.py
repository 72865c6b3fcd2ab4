"""Network modes for real (issue 13, findings 4 and 5): the default private network of builds and
containers (one namespace per build, slirp4netns for the way out), the host's loopback and
abstract sockets out of reach, -p forwards, and nothing left running when minibuild ends."""

from __future__ import annotations

import http.server
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO, Minibuild, write_context

pytestmark = pytest.mark.integration

MIRROR = ("deb.debian.org", 80)


def mirror_reachable() -> bool:
    """Whether Debian's mirror answers on port 80 from here (else the outbound tests skip)."""
    try:
        socket.create_connection(MIRROR, timeout=5).close()
        return True
    except OSError:
        return False


needs_mirror = pytest.mark.skipif(not mirror_reachable(),
                                  reason=f"{MIRROR[0]}:80 is not reachable from this machine")


def wait_for(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def descendants(pid: int) -> set[int]:
    """Every live process under `pid` (through /proc/PID/task/*/children)."""
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                continue
            todo.extend(k for k in kids if k not in found)
            found.update(kids)
    return found


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def alive(pids: set[int]) -> set[int]:
    return {p for p in pids if Path(f"/proc/{p}").exists() and comm(p) != ""}


@pytest.fixture
def web():
    """An HTTP server on the host's 127.0.0.1 (a random port) answering `host-secret`."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"host-secret\n")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def abstract():
    """A listening abstract unix socket in the host's network namespace; its name."""
    name = f"minibuild-test-{secrets.token_hex(6)}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind("\0" + name)
    sock.listen()
    yield name
    sock.close()


def build_output(mb: Minibuild, tmp_path: Path, script: str, *args: str) -> str:
    """Build `FROM base:1.0` + `RUN script` (no cache); what the build printed."""
    context = write_context(tmp_path / f"ctx-{secrets.token_hex(4)}",
                            f"FROM base:1.0\nRUN {script}\n")
    result = mb.build(context, "--no-cache", *args)
    return result.stdout + result.stderr


# -- the default: a private network per build ------------------------------------------------------


def test_build_steps_get_a_private_network_with_slirp(mb, tmp_path):
    out = build_output(mb, tmp_path, "ip -o addr; ip route; cat /proc/sys/net/ipv4/ping_group_range")
    assert "tap0    inet 10.0.2.100/24" in out
    assert "default via 10.0.2.2 dev tap0" in out
    # ICMP datagram sockets for every group: iputils' ping without NET_RAW (busybox's ping only
    # knows raw sockets; test_network_debian.py opens one as nobody)
    assert "0\t2147483647" in out


def test_every_run_step_of_a_build_shares_one_namespace(mb, tmp_path):
    context = write_context(tmp_path / "ctx", "FROM base:1.0\n"
                            "RUN readlink /proc/self/ns/net > /one\n"
                            "RUN readlink /proc/self/ns/net > /two\n"
                            "RUN --network=none readlink /proc/self/ns/net > /three\n")
    mb.build(context, "-t", "ns:1")
    out = mb.run("run", "--rm", "--network", "none", "ns:1", "cat", "/one", "/two",
                 "/three").stdout.split()
    host = os.readlink("/proc/self/ns/net")
    assert out[0] == out[1] != host
    assert out[2] not in (out[0], host)


def test_host_loopback_is_out_of_reach_by_default_and_reached_with_host(mb, tmp_path, web):
    script = (f"timeout 3 wget -q -O- http://127.0.0.1:{web}/ || echo refused-lo; "
              f"timeout 3 wget -q -O- http://10.0.2.2:{web}/ || echo refused-gw")
    out = build_output(mb, tmp_path, script)
    assert "host-secret" not in out
    assert "refused-lo" in out and "refused-gw" in out
    assert "host-secret" in build_output(mb, tmp_path, script, "--network", "host")


def test_host_abstract_sockets_are_out_of_reach_by_default(mb, tmp_path, abstract):
    # abstract unix sockets belong to a network namespace: /proc/net/unix lists the ones a
    # process of the step could connect to (busybox has no unix-socket client)
    assert f"@{abstract}" not in build_output(mb, tmp_path, "cat /proc/net/unix")
    assert f"@{abstract}" in build_output(mb, tmp_path, "cat /proc/net/unix",
                                          "--network", "host")


def test_containers_default_to_a_private_network_too(mb, web, abstract):
    out = mb.run("run", "--rm", "base:1.0", "sh", "-c",
                 f"ip -o addr; cat /proc/net/unix; timeout 3 wget -q -O- http://127.0.0.1:{web}/ "
                 "|| echo refused").stdout
    assert "10.0.2.100/24" in out and "refused" in out
    assert "host-secret" not in out and abstract not in out
    assert "host-secret" in mb.run("run", "--rm", "--network", "host", "base:1.0", "wget", "-q",
                                   "-O-", f"http://127.0.0.1:{web}/").stdout  # the control
    for spelling in ("bridge", "slirp4netns"):
        assert "10.0.2.100" in mb.run("run", "--rm", "--network", spelling, "base:1.0",
                                      "ip", "-o", "addr").stdout


@needs_mirror
def test_a_step_reaches_the_outside_by_name(mb, tmp_path):
    out = build_output(mb, tmp_path, "cat /etc/resolv.conf; timeout 10 wget -q -O- "
                       "http://deb.debian.org/debian/dists/bookworm/Release | head -1")
    assert "Origin: Debian" in out


def test_resolv_conf_names_a_nameserver_the_step_can_reach(mb, tmp_path):
    out = build_output(mb, tmp_path, "grep ^nameserver /etc/resolv.conf")
    servers = [line.split()[1] for line in out.splitlines() if line.startswith("nameserver")]
    assert servers and not any(s.startswith("127.") or ":" in s for s in servers)


# -- finding 4: RUN --network=host needs the user's permission -------------------------------------


def test_run_network_host_does_not_override_build_network_none(mb, tmp_path):
    context = write_context(tmp_path / "ctx", "FROM base:1.0\nRUN true\n"
                            "RUN --network=host cat /proc/net/unix\n")
    for args in ((), ("--network", "none"), ("--network", "default")):
        result = mb.build(context, *args, check=False)
        assert result.returncode != 0
        assert "Buildfile:3" in result.stderr and "--allow network.host" in result.stderr
    allowed = mb.build(context, "--network", "none", "--allow", "network.host", "--no-cache")
    assert allowed.returncode == 0


def test_run_network_none_is_always_allowed(mb, tmp_path):
    out = build_output(mb, tmp_path, "--network=none ip -o link")
    assert "tap0" not in out and "lo:" in out


# -- run -p ----------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _supervisor(root: Path, cid: str) -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"container-supervise\0" + cid.encode() in cmdline:
                return int(entry.name)
    raise AssertionError("no supervisor")


def _get(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as reply:
            return reply.read().decode()
    except OSError:
        return ""


def test_publish_forwards_a_host_port_and_everything_ends_with_the_container(mb):
    port = _free_port()
    cid = mb.run("run", "-d", "-p", f"{port}:8000", "base:1.0", "sh", "-c",
                 "mkdir -p /www && echo from-container > /www/index.html && "
                 "exec httpd -f -p 8000 -h /www").stdout.strip()
    try:
        assert wait_for(lambda: _get(port) == "from-container\n"), "the forward never answered"
        helpers = descendants(_supervisor(mb.root, cid))
        assert "slirp4netns" in {comm(p) for p in helpers}
        sockets = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
        listening = {f[1] for f in sockets if f[3] == "0A" and f[1].endswith(f":{port:04X}")}
        assert listening == {f"0100007F:{port:04X}"}  # on 127.0.0.1 only
        assert "10.0.2.100/24" in mb.run("exec", cid, "ip", "-o", "addr").stdout
        mb.run("stop", "-t", "1", cid)
        assert wait_for(lambda: not alive(helpers)), [comm(p) for p in alive(helpers)]
        assert _get(port) == ""
        mb.run("start", cid)  # a new supervisor makes a new namespace with the same forwards
        assert wait_for(lambda: _get(port) == "from-container\n"), "no forward after start"
    finally:
        mb.run("rm", "-f", cid, check=False)


def test_publish_with_host_network_is_ignored_with_a_warning(mb):
    result = mb.run("run", "--rm", "--network", "host", "-p", "8080:80", "base:1.0", "true")
    assert "-p 8080:80 ignored" in result.stderr


# -- no helper outlives minibuild ------------------------------------------------------------------


@pytest.mark.parametrize("how", ["build", "run"])
def test_killing_minibuild_ends_the_holder_and_slirp4netns(mb, tmp_path, how):
    context = write_context(tmp_path / "ctx", "FROM base:1.0\nRUN sleep 6178\n")
    args = (["build", "--progress", "plain", str(context)] if how == "build"
            else ["run", "base:1.0", "sleep", "6178"])
    env = {**os.environ, "MINIBUILD_ROOT": str(mb.root)}
    proc = subprocess.Popen([sys.executable, "-m", "minibuild", *args], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: "sleep" in {comm(p) for p in descendants(proc.pid)}, 30)
        helpers = descendants(proc.pid)
        assert "slirp4netns" in {comm(p) for p in helpers}
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert wait_for(lambda: not alive(helpers)), [comm(p) for p in alive(helpers)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_networks_end_their_helpers_by_pid_and_reap_them():
    from minibuild.sandbox.network import Networks

    leftovers = set(Path(tempfile.gettempdir()).glob("minibuild-slirp-*"))
    networks = Networks()
    for mode in ("default", "none", "default"):
        networks.netns(mode)
    # slirp4netns' log and API socket are gone once it runs: a SIGKILL leaves nothing on disk
    assert set(Path(tempfile.gettempdir()).glob("minibuild-slirp-*")) == leftovers
    holders = {h.pid for h in networks._holders.values()}
    slirps = {s.proc.pid for s in networks._slirps}
    assert len(holders) == 2 and len(slirps) == 1
    assert descendants(os.getpid()) >= holders | slirps
    networks.close()
    assert not (holders | slirps) & descendants(os.getpid())
    with pytest.raises(ChildProcessError):  # reaped: no zombie left
        os.waitpid(-1, os.WNOHANG)
