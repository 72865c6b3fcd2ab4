"""run -p values (pure parsing)."""

from __future__ import annotations

import pytest

from minibuild.containers.publish import parse_publish
from minibuild.containers.mountspec import RunFlagError
from minibuild.sandbox.network import PortForward


@pytest.mark.parametrize("text, forward", [
    ("8080:80", PortForward(8080, 80, "127.0.0.1", "tcp")),
    ("0.0.0.0:8080:80", PortForward(8080, 80, "0.0.0.0", "tcp")),
    ("127.0.0.2:53:5353/udp", PortForward(53, 5353, "127.0.0.2", "udp")),
    ("8080:80/tcp", PortForward(8080, 80, "127.0.0.1", "tcp")),
])
def test_accepted_forms(text, forward):
    assert parse_publish(text) == forward


@pytest.mark.parametrize("text, message", [
    ("80", "give the host port too"),
    ("8080:80/sctp", "unknown protocol 'sctp'"),
    ("8080-8081:80-81", "is not a port number"),
    ("0:80", "is not a port number"),
    ("8080:70000", "is not a port number"),
    ("localhost:8080:80", "'localhost' is not an IPv4 address"),
    ("[::1]:8080:80", "only IPv4"),
])
def test_refused_forms(text, message):
    with pytest.raises(RunFlagError, match=message):
        parse_publish(text)
