"""The network a step or container sees: the host's, none (loopback only), or a private one with
outbound access through slirp4netns (the default, as rootless podman and BuildKit do).

A private network namespace belongs to a whole build (every RUN step joins the same one, so the
set-up is paid once) or to one container for its lifetime. A small holder process, forked
here, unshares CLONE_NEWNET, brings lo up and lets every group ping (ICMP datagram sockets, so
ping works without NET_RAW), then only waits; the sandbox's helper joins its namespace with
setns(2). Everything started here ends with `Networks.close`, by pid, and dies with us if we are
killed first: the holder by PDEATHSIG (and EOF on a pipe only we hold), slirp4netns by its exit
fd. The holder is forked from us, so its namespace is owned by our user namespace: rootless,
inside the user namespace minibuild runs in, it is made the same way, and slirp4netns (started
from our side) keeps its sockets in the host's network.
"""

from __future__ import annotations

import ipaddress
import os
import select
import signal
from collections.abc import Sequence
from typing import NoReturn

from minibuild.fs.idmap import in_user_namespace
from minibuild.errors import SandboxError
from minibuild.sandbox import linux
from minibuild.sandbox.slirp import DNS_FORWARDER, PortForward, Slirp, start_slirp

DEFAULT, HOST, NONE = "default", "host", "none"
MODES = (DEFAULT, HOST, NONE)
# docker's and podman's other names for the private network
ALIASES = {"bridge": DEFAULT, "slirp4netns": DEFAULT, "private": DEFAULT}
__all__ = ["DEFAULT", "HOST", "MODES", "NONE", "Holder", "Networks", "PortForward", "parse_mode",
           "resolv_conf"]  # PortForward lives with slirp4netns, its only reader
_PING_TOP = 2147483647  # the largest gid net.ipv4.ping_group_range takes
_MAXFD = os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 65536


def parse_mode(text: str) -> str:
    """A network mode as given (docker's spellings too), as one of MODES; ValueError if unknown."""
    mode = ALIASES.get(text, text)
    if mode not in MODES:
        raise ValueError(f"unknown network mode {text!r} (want default, host or none)")
    return mode


# -- /etc/resolv.conf ----------------------------------------------------------------------------


def resolv_conf(mode: str, host: bytes) -> bytes:
    """The resolv.conf a step gets: the host's, except that in the private network a nameserver
    only the host can reach (loopback, such as systemd-resolved's 127.0.0.53, or IPv6, which our
    slirp4netns does not route) is dropped, and slirp's forwarder stands in when none is left."""
    if mode != DEFAULT:
        return host
    lines, servers = [], 0
    for line in host.decode(errors="replace").splitlines():
        fields = line.split()
        if fields[:1] == ["nameserver"]:
            if len(fields) < 2 or not _reachable(fields[1]):
                continue
            servers += 1
        lines.append(line)
    if not servers:
        lines.append(f"nameserver {DNS_FORWARDER}")
    return ("\n".join(lines) + "\n").encode()


def _reachable(address: str) -> bool:
    """Whether slirp4netns can take a step's packets to this nameserver."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return ip.version == 4 and not ip.is_loopback and not ip.is_unspecified


# -- the holder ----------------------------------------------------------------------------------


class Holder:
    """A forked process that keeps a new network namespace alive; `fd` refers to that namespace."""

    def __init__(self) -> None:
        ready_r, ready_w = os.pipe()
        life_r, self._life = os.pipe()  # EOF for the holder when we close it or die
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            _holder_main(parent, ready_w, life_r)
        os.close(ready_w)
        os.close(life_r)
        self.pid: int | None = pid
        self.fd: int | None = None
        try:
            answer = _read_answer(ready_r)
            if answer != b"k":
                raise SandboxError("cannot create a network namespace: "
                                   f"{answer.decode(errors='replace') or 'its holder died'}")
            self.fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)  # our child
        except BaseException:
            self.close()
            raise
        finally:
            os.close(ready_r)

    def close(self) -> None:
        """Release the namespace fd, end the holder by pid and reap it."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self._life is not None:
            os.close(self._life)
            self._life = None
        if self.pid is not None:
            linux.kill(self.pid, signal.SIGKILL)  # unreaped: the pid is still ours
            os.waitpid(self.pid, 0)
            self.pid = None


def _read_answer(fd: int) -> bytes:
    """The holder's first word: b"k" once ready, else its error (EOF: it died)."""
    data = b""
    while select.select([fd], [], [], 10.0)[0]:
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
        if data == b"k":
            break
    return data


def _holder_main(parent: int, ready: int, life: int) -> NoReturn:
    """The holder: new netns, lo up, ping allowed; then wait for EOF on `life` (or SIGKILL)."""
    code = 1
    try:
        linux.die_with_parent()
        if os.getppid() != parent:
            os._exit(code)
        linux.set_disposition(range(1, signal.NSIG), linux.SIG_IGN)  # only SIGKILL ends us
        _close_all_but(ready, life)  # keep no lock or pipe of the parent's alive
        linux.unshare(linux.CLONE_NEWNET)
        linux.loopback_up()
        _allow_ping()
        os.write(ready, b"k")
        os.close(ready)
        os.read(life, 1)
        code = 0
    except BaseException as exc:  # noqa: BLE001 - a forked child reports and leaves
        try:
            os.write(ready, str(exc).encode(errors="replace") or type(exc).__name__.encode())
        except OSError:
            pass
    finally:
        os._exit(code)


def _close_all_but(*keep: int) -> None:
    """Close every fd from 3 up except `keep`."""
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, _MAXFD)


def _allow_ping() -> None:
    """net.ipv4.ping_group_range over every gid we map (per netns): ping without NET_RAW.

    Best effort: without it only ping needs NET_RAW; nothing else depends on it.
    """
    try:  # both ends must be mapped in our user namespace (rootless: only the mapped range)
        with open("/proc/self/gid_map") as f:
            ranges = [(int(a), int(a) + int(n) - 1) for a, _, n in (line.split() for line in f)]
        low, high = min(r[0] for r in ranges), min(max(r[1] for r in ranges), _PING_TOP)
        with open("/proc/sys/net/ipv4/ping_group_range", "w") as f:
            f.write(f"{low} {high}\n")
    except (OSError, ValueError):
        pass


# -- the namespaces of one build or container ----------------------------------------------------


def tun_usable() -> bool:
    """Whether slirp4netns, started by us, can open /dev/net/tun: always as the host's root; a
    rootless user needs it world read-write (Debian's 0666; some hosts keep it 0600)."""
    return os.geteuid() == 0 and not in_user_namespace() or os.access("/dev/net/tun", os.R_OK | os.W_OK)


_warned: list[bool] = []


def _warn_host_fallback() -> None:
    """Once per process: the default network falls back to the host's. Written here, not by the
    CLI, because the choice is made deep in a build; it is a warning, never an error."""
    if not _warned:
        _warned.append(True)
        os.write(2, b"warning: /dev/net/tun is not open to this user, so RUN steps and containers "
                    b"use the host network (as --network host); chmod 0666 /dev/net/tun (Debian's "
                    b"default) gives them a private one\n")


class Networks:
    """The network namespaces of one build or one container, made on first use and shared by
    every step that asks for the same mode; `forwards` go to the private one."""

    def __init__(self, forwards: Sequence[PortForward] = ()) -> None:
        self.forwards = tuple(forwards)
        self._holders: dict[str, Holder] = {}
        self._slirps: list[Slirp] = []

    def netns(self, mode: str) -> int | None:
        """An fd on the namespace for `mode` (made now if needed); None for the host's."""
        if mode == HOST:
            return None
        if mode not in MODES:
            raise SandboxError(f"unknown network mode {mode!r}")
        if mode == DEFAULT and not tun_usable():
            _warn_host_fallback()
            return None
        if mode not in self._holders:
            self._holders[mode] = self._make(mode)
        return self._holders[mode].fd

    def _make(self, mode: str) -> Holder:
        """A holder, and for the private network slirp4netns on it with the forwards."""
        holder = Holder()
        if mode != DEFAULT:
            return holder
        try:
            self._slirps.append(start_slirp(holder.pid, self.forwards))
        except BaseException:
            holder.close()
            raise
        return holder

    def close(self) -> None:
        """End every process started here (slirp4netns first: it works on the holder's netns)."""
        for slirp in self._slirps:
            slirp.stop()
        self._slirps.clear()
        for holder in self._holders.values():
            holder.close()
        self._holders.clear()

    def __enter__(self) -> Networks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
