"""ADD's http(s) download: one URL into one file, its sha256 and Last-Modified.

Done by minibuild itself, outside any sandbox, as BuildKit's http source is done by buildkitd:
`build --network none` limits RUN steps only. Proxies: the build's predefined proxy args when
given (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY and their lowercase forms), else the
environment minibuild runs in, as httpx reads it.
"""

from __future__ import annotations

import email.utils
import hashlib
import os
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import urlsplit

import httpx

from minibuild.errors import BuildError

_CHUNK = 1 << 20
_TIMEOUT = httpx.Timeout(30.0, read=300.0)


@dataclass(frozen=True)
class Download:
    """What a download wrote: the file's digest and size, and the server's Last-Modified."""

    digest: str  # "sha256:<hex>" of the content
    size: int
    last_modified: str | None  # the header as sent (a cache key input, as in BuildKit)
    mtime: int  # seconds: Last-Modified, else 0 (BuildKit's time.Unix(0, 0))


def download(url: str, target: str, proxies: Mapping[str, str] | None = None) -> Download:
    """GET `url` into the new file `target` (mode 0600); BuildError in one line on failure."""
    proxy = proxy_for(url, proxies) if proxies else None
    # The build's proxy args replace the environment's proxies (a bypassed host: no proxy at
    # all); trust_env stays on for the rest (SSL_CERT_FILE...).
    direct = {"all://": None} if proxies and proxy is None else None
    try:
        with httpx.Client(proxy=proxy, mounts=direct, follow_redirects=True,
                          timeout=_TIMEOUT) as client:
            with client.stream("GET", url) as response:
                if response.status_code >= 400:
                    raise BuildError(f"GET {url}: {response.status_code} {response.reason_phrase}")
                digest, size = _save(response, target)
                modified = response.headers.get("last-modified")
    except httpx.HTTPError as exc:
        raise BuildError(f"GET {url}: {_reason(exc)}") from None
    return Download(digest, size, modified, _parse_time(modified))


def _save(response: httpx.Response, target: str) -> tuple[str, int]:
    """Stream the body into target (0600, as BuildKit's http source); its digest and size."""
    sha, size = hashlib.sha256(), 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        for chunk in response.iter_bytes(_CHUNK):
            sha.update(chunk)
            size += len(chunk)
            out.write(chunk)
    os.chmod(target, 0o600)  # whatever the umask
    return f"sha256:{sha.hexdigest()}", size


def _reason(exc: httpx.HTTPError) -> str:
    """The last line of an httpx error (its message), or its class name when it has none."""
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def _parse_time(value: str | None) -> int:
    """Seconds since the epoch of an HTTP date (Go's http.ParseTime), 0 when absent or bad."""
    if not value:
        return 0
    try:
        return int(email.utils.parsedate_to_datetime(value).timestamp())
    except (TypeError, ValueError, IndexError):
        return 0


def proxy_for(url: str, proxies: Mapping[str, str]) -> str | None:
    """The proxy the build args give for url (Go's httpproxy rules, simplified: NO_PROXY is a
    comma list of hosts, `.suffix`es, or `*`)."""
    parts = urlsplit(url)
    if _bypassed(parts.hostname or "", _arg(proxies, "NO_PROXY")):
        return None
    return _arg(proxies, f"{parts.scheme.upper()}_PROXY") or _arg(proxies, "ALL_PROXY") or None


def _arg(proxies: Mapping[str, str], name: str) -> str:
    """A proxy arg, upper case first, then lower case (as Go reads the environment)."""
    return proxies.get(name) or proxies.get(name.lower()) or ""


def _bypassed(host: str, no_proxy: str) -> bool:
    """True when NO_PROXY names host (exactly, by a domain suffix, or `*`)."""
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if entry == "*" or (entry and (host == entry.lstrip(".") or host.endswith("." + entry.lstrip(".")))):
            return True
    return False
