"""`run -p [ADDR:]HOST:CONTAINER[/PROTO]`: ports published from the host into a container's
private network, forwarded by slirp4netns (see sandbox/network.py). Pure parsing.

Unlike docker, which listens on 0.0.0.0, a port is published on 127.0.0.1 unless an address is
given: a container's service is not open to the whole network by accident.
"""

from __future__ import annotations

import ipaddress

from minibuild.containers.mountspec import RunFlagError
from minibuild.sandbox.network import PortForward

_PROTOCOLS = ("tcp", "udp")
_FORM = "[ADDR:]HOST:CONTAINER[/tcp|/udp]"


def parse_publish(text: str) -> PortForward:
    """One -p value as a PortForward; RunFlagError naming what is wrong."""
    spec, _, proto = text.partition("/")
    proto = proto or "tcp"
    if proto not in _PROTOCOLS:
        raise RunFlagError(f"-p {text}: unknown protocol {proto!r} (want tcp or udp)")
    parts = spec.rsplit(":", 2)
    if len(parts) < 2:
        raise RunFlagError(f"-p {text}: give the host port too ({_FORM}); minibuild picks no "
                           "random port")
    addr = parts[0] if len(parts) == 3 else "127.0.0.1"
    return PortForward(_port(parts[-2], text), _port(parts[-1], text), _address(addr, text), proto)


def _port(value: str, text: str) -> int:
    """A port number 1..65535 (no ranges)."""
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise RunFlagError(f"-p {text}: {value!r} is not a port number (1-65535; no ranges)")
    return int(value)


def _address(value: str, text: str) -> str:
    """The host address to listen on: IPv4 (slirp4netns forwards no IPv6 here)."""
    try:
        ip = ipaddress.ip_address(value.removeprefix("[").removesuffix("]"))  # [::1] as docker
    except ValueError:
        raise RunFlagError(f"-p {text}: {value!r} is not an IPv4 address") from None
    if ip.version != 4:
        raise RunFlagError(f"-p {text}: only IPv4 host addresses can be published")
    return str(ip)
