"""ADD's download helpers (download.py): proxy choice from the build's proxy args, HTTP dates."""

from __future__ import annotations

from minibuild.transfer.download import _parse_time, proxy_for


def test_the_proxy_follows_the_scheme_then_all_proxy_and_no_proxy():
    args = {"HTTP_PROXY": "http://p:3128", "https_proxy": "http://s:3128", "NO_PROXY": ".local,10.0.0.1"}
    assert proxy_for("http://example.com/f", args) == "http://p:3128"
    assert proxy_for("https://example.com/f", args) == "http://s:3128"
    assert proxy_for("http://build.local/f", args) is None
    assert proxy_for("http://10.0.0.1/f", args) is None
    assert proxy_for("https://x/f", {"ALL_PROXY": "socks5://a:1"}) == "socks5://a:1"
    assert proxy_for("https://x/f", {"all_proxy": "http://a", "no_proxy": "*"}) is None


def test_last_modified_is_read_as_an_http_date_and_zero_without_one():
    assert _parse_time("Sun, 13 Sep 2020 12:26:40 GMT") == 1_600_000_000
    assert _parse_time(None) == 0 == _parse_time("yesterday")
