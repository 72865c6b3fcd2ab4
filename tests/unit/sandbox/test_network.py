"""The network module's pure parts: modes, the step's resolv.conf, slirp4netns' API requests."""

from __future__ import annotations

import json
import socket
import threading

import pytest

from minibuild.errors import SandboxError
from minibuild.sandbox import slirp
from minibuild.sandbox.network import PortForward, parse_mode, resolv_conf


@pytest.mark.parametrize("text, mode", [("default", "default"), ("bridge", "default"),
                                        ("slirp4netns", "default"), ("host", "host"),
                                        ("none", "none")])
def test_modes_and_docker_s_spellings(text, mode):
    assert parse_mode(text) == mode


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown network mode 'container:x'"):
        parse_mode("container:x")


HOST = b"# generated\nsearch example.org\nnameserver 10.255.255.53\noptions ndots:2\n"


@pytest.mark.parametrize("mode", ["host", "none"])
def test_host_and_none_see_the_host_s_file_unchanged(mode):
    assert resolv_conf(mode, HOST) == HOST
    assert resolv_conf(mode, b"nameserver 127.0.0.53\n") == b"nameserver 127.0.0.53\n"


def test_the_private_network_keeps_a_reachable_nameserver():
    assert resolv_conf("default", HOST) == HOST


def test_a_loopback_only_resolver_gives_way_to_slirp_s_forwarder():
    text = b"nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n"
    assert resolv_conf("default", text) == (b"options edns0 trust-ad\nsearch lan\n"
                                            b"nameserver 10.0.2.3\n")


def test_unreachable_nameservers_are_dropped_and_reachable_ones_kept():
    text = b"nameserver 127.0.0.1\nnameserver ::1\nnameserver fe80::1%eth0\nnameserver 9.9.9.9\n"
    assert resolv_conf("default", text) == b"nameserver 9.9.9.9\n"


def test_no_host_file_still_resolves_in_the_private_network():
    assert resolv_conf("default", b"") == b"nameserver 10.0.2.3\n"


def test_port_forward_round_trips_through_json():
    forward = PortForward(8080, 80, "0.0.0.0", "udp")
    assert PortForward.from_json(json.loads(json.dumps(forward.to_json()))) == forward


class _FakeApi:
    """A unix socket answering each connection with the next reply, noting the requests."""

    def __init__(self, path, replies):
        self.requests, self.replies = [], list(replies)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        for reply in self.replies:
            conn, _ = self.server.accept()
            with conn:
                data = b""
                while chunk := conn.recv(4096):
                    data += chunk
                self.requests.append(json.loads(data))
                conn.sendall(json.dumps(reply).encode())


def test_add_forward_asks_for_a_hostfwd_to_the_guest(tmp_path):
    api = _FakeApi(tmp_path / "api.sock", [{"return": {"id": 1}}])
    slirp._add_forward(tmp_path / "api.sock", PortForward(8080, 80))
    api.thread.join(2)
    assert api.requests == [{"execute": "add_hostfwd", "arguments": {
        "proto": "tcp", "host_addr": "127.0.0.1", "host_port": 8080,
        "guest_addr": "10.0.2.100", "guest_port": 80}}]


def test_a_refused_forward_says_why(tmp_path):
    _FakeApi(tmp_path / "api.sock", [{"error": {"desc": "bad request: add_hostfwd: failed"}}])
    with pytest.raises(SandboxError, match="cannot publish 127.0.0.1:8080 -> 80/tcp: bad request"):
        slirp._add_forward(tmp_path / "api.sock", PortForward(8080, 80))


def test_no_slirp4netns_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(slirp.shutil, "which", lambda name: None)
    with pytest.raises(SandboxError, match="needs slirp4netns") as caught:
        slirp.start_slirp(1)
    assert "apt-get install slirp4netns" in caught.value.hint
