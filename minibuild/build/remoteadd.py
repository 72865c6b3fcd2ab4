"""ADD of remote sources: http(s) files and git repositories, fetched by minibuild on the host
before the step is keyed, then copied into the image like context files.

Like BuildKit, the fetch happens on every build, outside the sandbox (so `build --network none`,
which limits RUN steps, does not stop it), and the step's cache key holds what was fetched:
- a file: its sha256, its name and the Last-Modified header (BuildKit's http cache key); the
  file is mode 0600 with Last-Modified as mtime (0 without it), not unpacked unless
  `--unpack=true`;
- a repository: the commit checked out, the subdir and whether `.git` is kept.
A build with a remote source writes no build memo (the memo cannot see a server change).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from minibuild.build.context import Source
from minibuild.dockerfile import remotesource
from minibuild.dockerfile.instructions import flag_value
from minibuild.dockerfile.remotesource import GitSource
from minibuild.errors import BuildError, BuildfileError


@dataclass(frozen=True)
class Fetched:
    """The remote sources of one ADD, fetched: where they lie and what keys them."""

    root: Path  # the dir the sources' relpaths are under (the copy's "context")
    sources: tuple[Source, ...]
    keys: tuple[dict[str, Any], ...]  # one per source, for the step's cache key


def remote_sources(keyword: str, sources: tuple[str, ...], instruction) -> bool:
    """True when the sources are remote (all of them); refuses COPY of remote sources, and
    local and remote sources in one ADD."""
    remote = [s for s in sources if remotesource.is_remote(s)]
    if remote and keyword == "COPY":
        what = "a git ref" if remotesource.git_source(remote[0]) else "a URL"
        raise BuildfileError.at(instruction, f"COPY failed: source can't be {what} for COPY: "
                                             f"{remote[0]} (use ADD)")
    if remote and len(remote) != len(sources):
        raise BuildfileError.at(instruction, "ADD: local and remote sources in one ADD are not "
                                             "supported; split them into two ADD instructions")
    if flag_value(instruction, "checksum") is not None and not (remote and len(sources) == 1):
        why = "multiple sources" if len(sources) > 1 else "local sources"
        raise BuildfileError.at(instruction, f"ADD --checksum can't be specified for {why} "
                                             "(it requires one HTTP(S) or Git source)")
    return bool(remote)


def unpack_flag(instruction) -> bool | None:
    """ADD --unpack=<bool> (a bare --unpack is true); None when not given."""
    value = flag_value(instruction, "unpack")
    if value is None:
        return None
    return _bool(instruction, "unpack", value)


def fetch(instruction, sources: tuple[str, ...], expand: Callable[[str], str], scratch: Path,
          proxies: Mapping[str, str]) -> Fetched:
    """Fetch every source of the ADD into scratch/<n>/; BuildError at the line on failure."""
    checksum = flag_value(instruction, "checksum")
    checksum = expand(checksum) if checksum else None
    keep = flag_value(instruction, "keep-git-dir")
    keep = None if keep is None else _bool(instruction, "keep-git-dir", expand(keep))
    picked, keys = [], []
    for number, text in enumerate(sources):
        below = scratch / str(number)
        below.mkdir()
        try:
            git = remotesource.git_source(text)
            if git is None:
                source, key = _fetch_file(text, below, checksum, proxies)
            else:
                source, key = _fetch_git(git, below, checksum, keep, proxies)
        except BuildError as exc:
            raise BuildError.at(instruction, f"ADD {text} failed: {exc.message}") from None
        picked.append(source)
        keys.append(key)
    return Fetched(scratch, tuple(picked), tuple(keys))


def _fetch_file(url: str, below: Path, checksum: str | None,
                proxies: Mapping[str, str]) -> tuple[Source, dict[str, Any]]:
    """Download a file; its mtime is Last-Modified; a --checksum mismatch is an error."""
    from minibuild.transfer.download import download  # httpx only when a build needs it

    want = remotesource.http_checksum(checksum) if checksum else None
    name = remotesource.url_filename(url)
    path = below / name
    got = download(url, str(path), proxies)
    if want is not None and got.digest != want:
        raise BuildError(f"digest mismatch {got.digest}: expected {want}")
    os.utime(path, (got.mtime, got.mtime))
    key = {"url": url, "digest": got.digest, "name": name, "last_modified": got.last_modified}
    return Source(f"{below.name}/{name}", "file", False, name), key


def _fetch_git(git: GitSource, below: Path, checksum: str | None, keep: bool | None,
               proxies: Mapping[str, str]) -> tuple[Source, dict[str, Any]]:
    """Check a repository out; --checksum (or ?checksum=) must be a prefix of its commit."""
    from minibuild.transfer.gitcheckout import checkout

    if git.keep_git_dir is not None and keep is not None and git.keep_git_dir != keep:
        raise BuildError("inconsistent keep-git-dir configuration")
    keep = bool(keep if keep is not None else git.keep_git_dir)
    if checksum and git.checksum and checksum != git.checksum:
        raise BuildError(f"checksum mismatch {checksum!r} != {git.checksum!r}")
    want = remotesource.git_checksum(checksum or git.checksum) if (checksum or git.checksum) else ""
    commit = checkout(git, below / "tree", keep, proxies)
    if want and not commit.startswith(want):
        raise BuildError(f"expected checksum to match {want}, got {commit}")
    key = {"git": git.remote, "ref": git.ref, "commit": commit, "subdir": git.subdir,
           "keep_git_dir": keep}
    return Source(f"{below.name}/tree", "dir", False), key


def _bool(instruction, flag: str, value: str) -> bool:
    """A boolean flag's value, or a Buildfile error naming the flag."""
    try:
        return remotesource.parse_bool(value or "true", f"ADD --{flag}")
    except BuildError as exc:
        raise BuildfileError.at(instruction, exc.message) from None
