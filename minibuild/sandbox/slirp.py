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


class Slirp:
    """A running slirp4netns attached to one namespace; `stop` ends it."""

    def __init__(self, proc: subprocess.Popen, exit_fd: int, workdir: Path) -> None:
        self.proc = proc
        self.exit_fd: int | None = exit_fd
        self.workdir = workdir

    @property
    def api_socket(self) -> Path:
        """Where its API listens (the dir is ours, 0700: only root may add forwards)."""
        return self.workdir / "api.sock"

    def add_forward(self, proto: str, host_addr: str, host_port: int, guest_port: int) -> None:
        """Forward host_addr:host_port (on the host's side) to the namespace's guest_port."""
        request = {"execute": "add_hostfwd",
                   "arguments": {"proto": proto, "host_addr": host_addr, "host_port": host_port,
                                 "guest_addr": GUEST_ADDRESS, "guest_port": guest_port}}
        reply = _ask(self.api_socket, request)
        if "error" in reply or "return" not in reply:
            desc = reply.get("error", {}).get("desc") if isinstance(reply.get("error"), dict) \
                else None
            raise SandboxError(f"cannot publish {host_addr}:{host_port} -> {guest_port}/{proto}: "
                               f"{desc or reply}")

    def stop(self) -> None:
        """End it by pid (it has nothing to save; left alone after its exit fd closes it polls
        for up to ~30 ms), close the exit fd, reap it, remove its dir."""
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
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_slirp(target_pid: int, *, api: bool = False) -> Slirp:
    """Start slirp4netns on the namespace of `target_pid` and wait until tap0 is up."""
    binary = shutil.which("slirp4netns")
    if binary is None:
        raise SandboxError("the default (private) network needs slirp4netns, which is not "
                           "installed", hint=_MISSING_HINT)
    workdir = Path(tempfile.mkdtemp(prefix="minibuild-slirp-"))  # 0700
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
        for fd in (ready_r, ready_w, exit_r, exit_w):
            os.close(fd)
        shutil.rmtree(workdir, ignore_errors=True)
        raise SandboxError(f"cannot start slirp4netns: {exc.strerror}", hint=_MISSING_HINT) from exc
    os.close(ready_w)
    os.close(exit_r)
    slirp = Slirp(proc, exit_w, workdir)
    try:
        _wait_ready(ready_r, proc, workdir / "log")
    except BaseException:
        slirp.stop()
        raise
    finally:
        os.close(ready_r)
    return slirp


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
