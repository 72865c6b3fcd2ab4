"""The default network against the real thing (issue 13, finding 5): apt-get from Debian's mirror
in a RUN step of a Debian image, made here with debootstrap (once per session, ~40 s) and
imported; and what busybox cannot show: connecting to a host abstract socket, and ICMP
datagram sockets (unprivileged ping) without NET_RAW."""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Minibuild, integration_skip_reason, write_context
from tests.integration.test_network import mirror_reachable

pytestmark = pytest.mark.integration

SUITE, MIRROR_URL = "bookworm", "http://deb.debian.org/debian"

# connect(2) to an abstract unix socket: "reached", or "refused: <errno text>"
CONNECT_ABSTRACT = """use Socket;
socket(my $s, PF_UNIX, SOCK_STREAM, 0) or die "socket: $!";
print connect($s, pack_sockaddr_un("\\0" . $ARGV[0])) ? "reached\\n" : "refused: $!\\n";
"""
# an ICMP datagram socket, what iputils' ping uses without NET_RAW
ICMP_SOCKET = """use Socket;
print socket(my $s, PF_INET, SOCK_DGRAM, 1) ? "icmp-ok\\n" : "icmp-denied: $!\\n";
"""


def _skip_reason() -> str | None:
    reason = integration_skip_reason()
    if reason:
        return reason
    if shutil.which("debootstrap") is None:
        return "needs debootstrap (apt-get install debootstrap) to make a Debian base image"
    if not mirror_reachable():
        return "Debian's mirror (deb.debian.org:80) is not reachable from this machine"
    return None


@pytest.fixture(scope="module")
def debian(tmp_path_factory) -> Minibuild:
    """A store holding `debian:bookworm`: debootstrap --variant=minbase, tarred, imported."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("debian")
    rootfs = work / "rootfs"
    result = subprocess.run(["debootstrap", "--variant=minbase", SUITE, str(rootfs), MIRROR_URL],
                            capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        pytest.skip(f"debootstrap failed: {result.stdout[-300:]}{result.stderr[-300:]}")
    tarball = work / "rootfs.tar"
    subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "--exclude=./dev/*",
                    "--exclude=./proc/*", "--exclude=./sys/*", "-cf", str(tarball), "."],
                   check=True)
    shutil.rmtree(rootfs)
    mb = Minibuild(work / "store")
    mb.run("import", str(tarball), f"debian:{SUITE}", "-c", 'CMD ["bash"]')
    tarball.unlink()
    return mb


@pytest.fixture
def context(tmp_path) -> Path:
    return tmp_path / f"ctx-{secrets.token_hex(4)}"


def test_apt_get_reaches_debian_s_mirror_by_default(debian, context):
    write_context(context, f"FROM debian:{SUITE}\n"
                  "RUN apt-get update && apt-get install -y --no-install-recommends hello\n")
    debian.build(context, "-t", "hello:1")
    assert debian.run("run", "--rm", "hello:1", "hello").stdout == "Hello, world!\n"


def test_a_host_abstract_socket_cannot_be_connected_from_a_step(debian, context):
    name = f"minibuild-test-{secrets.token_hex(6)}"
    write_context(context, f"FROM debian:{SUITE}\nCOPY connect.pl /\n"
                  f"RUN perl /connect.pl {name}\n", {"connect.pl": CONNECT_ABSTRACT})
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind("\0" + name)
        server.listen()
        private = debian.build(context, "--no-cache")
        host = debian.build(context, "--no-cache", "--network", "host")
    assert "refused: Connection refused" in private.stderr + private.stdout
    assert "reached" in host.stderr + host.stdout  # the control: the socket is there


@pytest.mark.parametrize("network", ["default", "none"])
def test_an_unprivileged_user_may_open_icmp_sockets(debian, context, network):
    write_context(context, f"FROM debian:{SUITE}\nCOPY icmp.pl /\nUSER nobody\n"
                  "RUN perl /icmp.pl\n", {"icmp.pl": ICMP_SOCKET})
    result = debian.build(context, "--no-cache", "--network", network)
    assert "icmp-ok" in result.stderr + result.stdout


def test_the_icmp_test_can_fail(debian, context):
    """The control: where the host's own range leaves nobody out, the host network denies it."""
    low, high = map(int, Path("/proc/sys/net/ipv4/ping_group_range").read_text().split())
    if low <= 65534 <= high:
        pytest.skip("the host's ping_group_range already lets nobody open ICMP sockets")
    write_context(context, f"FROM debian:{SUITE}\nCOPY icmp.pl /\nUSER nobody\n"
                  "RUN perl /icmp.pl\n", {"icmp.pl": ICMP_SOCKET})
    result = debian.build(context, "--no-cache", "--network", "host")
    assert "icmp-denied" in result.stderr + result.stdout
