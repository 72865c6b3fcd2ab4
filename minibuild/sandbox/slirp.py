"""slirp4netns: the user-mode network stack that gives a private network namespace its way out
(rootless podman's and rootless BuildKit's), and its API socket for published ports.

It runs on minibuild's side (so its sockets live in the network namespace minibuild itself
runs in: the host's, also when minibuild is root inside a user namespace, rootless) and joins
the target namespace by its holder's pid to make tap0 there. Its exit fd is a pipe whose write
end only minibuild holds: when minibuild dies, even by SIGKILL, the kernel closes that end and
slirp4netns leaves; a normal end also kills it by pid.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from minibuild.errors import SandboxError

GATEWAY = "10.0.2.2"  # slirp's side; with --disable-host-loopback it does not lead to 127.0.0.1
DNS_FORWARDER = "10.0.2.3"  # slirp's DNS forwarder: asks the host's resolvers, from the host
GUEST_ADDRESS = "10.0.2.100"  # what --configure gives tap0
# podman's and BuildKit's options: the loopback MTU (fewer, larger packets through the user-mode
# stack) and no way from the namespace to the host's 127.0.0.1 through the gateway.
_OPTIONS = ("--configure", "--mtu=65520", "--disable-host-loopback")
# slirp4netns confines itself (own mount ns with only what it needs, and a seccomp filter): it
# parses every packet a step sends, so it should hold as little as it can.
_CONFINED = ("--enable-sandbox", "--enable-seccomp")
READY_TIMEOUT = 10.0
_MISSING_HINT = "apt-get install slirp4netns, or choose --network host or --network none"


@dataclass(frozen=True)
class PortForward:
    """`-p [ADDR:]HOST:CONTAINER[/PROTO]`: a host port forwarded into the private network."""

    host_port: int
    container_port: int
    host_addr: str = "127.0.0.1"  # docker binds 0.0.0.0; we keep it local unless told
    proto: str = "tcp"

    def to_json(self) -> dict:
        """As a container record stores it."""
        return {"host_addr": self.host_addr, "host_port": self.host_port,
                "container_port": self.container_port, "proto": self.proto}

    @classmethod
    def from_json(cls, d: dict) -> PortForward:
        """Inverse of to_json."""
        return cls(int(d["host_port"]), int(d["container_port"]), str(d["host_addr"]),
                   str(d["proto"]))


class Slirp:
    """A running slirp4netns attached to one namespace; `stop` ends it."""

    def __init__(self, proc: subprocess.Popen, exit_fd: int) -> None:
        self.proc = proc
        self.exit_fd: int | None = exit_fd

    def stop(self) -> None:
        """End it by pid (it has nothing to save; left alone after its exit fd closes it polls
        for up to ~30 ms), reap it, close the exit fd."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(2.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.exit_fd is not None:
            os.close(self.exit_fd)
            self.exit_fd = None


def start_slirp(target_pid: int, forwards: Sequence[PortForward] = ()) -> Slirp:
    """Start slirp4netns on the namespace of `target_pid`, wait until tap0 is up, add the forwards.

    Its log and API socket live in a 0700 temp dir that is gone when this returns (slirp4netns
    keeps its open log and listening socket): a minibuild killed later leaves nothing on disk,
    and nobody can add forwards afterwards.
    """
    binary = shutil.which("slirp4netns")
    if binary is None:
        raise SandboxError("the default (private) network needs slirp4netns, which is not "
                           "installed", hint=_MISSING_HINT)
    workdir = Path(tempfile.mkdtemp(prefix="minibuild-slirp-"))
    try:
        slirp = _spawn(binary, target_pid, workdir, api=bool(forwards))
        try:
            for forward in forwards:
                _add_forward(workdir / "api.sock", forward)
        except BaseException:
            slirp.stop()
            raise
        return slirp
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _spawn(binary: str, target_pid: int, workdir: Path, *, api: bool) -> Slirp:
    """Run slirp4netns with its ready and exit fds; return once it is ready."""
    ready_r, ready_w = os.pipe()
    exit_r, exit_w = os.pipe()
    argv = [binary, *_OPTIONS, *_CONFINED, f"--ready-fd={ready_w}", f"--exit-fd={exit_r}",
            *([f"--api-socket={workdir / 'api.sock'}"] if api else []), str(target_pid), "tap0"]
    try:
        with open(workdir / "log", "wb") as log:
            # a session of its own: the terminal's Ctrl-C is ours to handle, not slirp's
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    pass_fds=(ready_w, exit_r), start_new_session=True)
    except OSError as exc:
        for fd in (ready_r, exit_w):
            os.close(fd)
        raise SandboxError(f"cannot start slirp4netns: {exc.strerror}", hint=_MISSING_HINT) from exc
    finally:
        os.close(ready_w)
        os.close(exit_r)
    slirp = Slirp(proc, exit_w)
    try:
        _wait_ready(ready_r, proc, workdir / "log")
    except BaseException:
        slirp.stop()
        raise
    finally:
        os.close(ready_r)
    return slirp


def _add_forward(api_socket: Path, forward: PortForward) -> None:
    """Ask slirp4netns to listen on the host's side and forward into the namespace."""
    request = {"execute": "add_hostfwd",
               "arguments": {"proto": forward.proto, "host_addr": forward.host_addr,
                             "host_port": forward.host_port, "guest_addr": GUEST_ADDRESS,
                             "guest_port": forward.container_port}}
    reply = _ask(api_socket, request)
    if "error" in reply or "return" not in reply:
        error = reply.get("error")
        desc = error.get("desc") if isinstance(error, dict) else None
        raise SandboxError(f"cannot publish {forward.host_addr}:{forward.host_port} -> "
                           f"{forward.container_port}/{forward.proto}: {desc or reply}")


def _wait_ready(ready_fd: int, proc: subprocess.Popen, log: Path) -> None:
    """Until slirp4netns writes "1" on its ready fd; its log in the error if it gives up."""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SandboxError(f"slirp4netns was not ready within {READY_TIMEOUT:.0f} s")
        if select.select([ready_fd], [], [], left)[0]:
            if os.read(ready_fd, 1) == b"1":
                return
            proc.wait()
            lines = [line for line in log.read_text(errors="replace").splitlines()
                     if line.strip() and not line.startswith("WARNING:")]
            hint = ("/dev/net/tun must be readable and writable (mode 0666, as Debian makes it)"
                    if any("/dev/net/tun" in line for line in lines) else None)
            raise SandboxError(f"slirp4netns failed (exit status {proc.returncode}): "
                               f"{'; '.join(lines[-3:]) or 'no message'}", hint=hint)


def _ask(path: Path, request: dict) -> dict:
    """One request on slirp4netns' API socket (one connection each), its JSON reply."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5.0)
            sock.connect(str(path))
            sock.sendall(json.dumps(request).encode())
            sock.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
        reply = json.loads(data)
    except (OSError, ValueError) as exc:
        raise SandboxError(f"slirp4netns API: {exc}") from exc
    return reply if isinstance(reply, dict) else {"error": {"desc": repr(reply)}}
