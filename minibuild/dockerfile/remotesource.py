"""Pure: which ADD sources are remote (an http(s) file or a git repository) and what they say.

Follows BuildKit's dockerfile2llb (`isHTTPSource`, `isGitSource`) and dfgitutil.ParseGitRef:
- a git source is `http(s)://host/path.git[#ref[:subdir]]`, `git://...`, `ssh://...` or the
  SCP form `user@host:path[#...]`; an http(s) URL whose path does not end in `.git` is a file;
- the fragment `#ref:subdir` names a branch, tag or commit and a dir inside the repository;
- a query (`?ref=`, `?tag=`, `?branch=`, `?subdir=`, `?keep-git-dir`, `?checksum=`) says the
  same in BuildKit's newer form;
- a file URL's name at a destination dir is the last component of its (decoded) path, or
  `__unnamed__` when the path has none.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from minibuild.errors import BuildError

_SCHEME = re.compile(r"^([a-zA-Z0-9]+)://")
_GIT_SCHEMES = {"http", "https", "git", "ssh"}
# git@github.com:moby/buildkit.git (sshutil.IsImplicitSSHTransport: user@host:path).
_SCP = re.compile(r"^(?P<user>[A-Za-z][A-Za-z0-9_.-]*)@(?P<host>[A-Za-z0-9.-]+):(?P<path>.+)$")
_SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")
_HEX = re.compile(r"^[0-9a-f]{1,64}$")
_FULL_SHA = re.compile(r"^([0-9a-f]{40}|[0-9a-f]{64})$")
UNNAMED = "__unnamed__"  # BuildKit's file name for a URL without a path


@dataclass(frozen=True)
class GitSource:
    """A git repository named by an ADD source."""

    remote: str  # what `git fetch` is given: the URL without fragment and query
    ref: str = ""  # branch, tag, `refs/...` or commit; "" is the remote's HEAD
    subdir: str = ""  # a dir inside the repository, "" for all of it
    keep_git_dir: bool | None = None  # from `?keep-git-dir`
    checksum: str = ""  # from `?checksum=` / `?commit=`: a commit (prefix)

    @property
    def by_commit(self) -> bool:
        """True when the ref is a full commit id (fetched with history, then checked out)."""
        return _FULL_SHA.match(self.ref) is not None


def git_source(text: str) -> GitSource | None:
    """The git repository `text` names, or None when it is not a git source."""
    scheme = _SCHEME.match(text)
    if scheme:
        name = scheme.group(1).lower()
        if name not in _GIT_SCHEMES:
            return None
        parts = urlsplit(text)
        if name in ("http", "https") and not parts.path.endswith(".git"):
            return None
        remote = parts._replace(query="", fragment="").geturl()
        return _with_options(remote, parts.fragment, parts.query, text)
    match = _SCP.match(text)
    if match is None:
        return None
    rest, _, fragment = text.partition("#")
    rest, _, query = rest.partition("?")
    return _with_options(rest, fragment, query, text)


def _with_options(remote: str, fragment: str, query: str, text: str) -> GitSource:
    """The source with its fragment (`ref:subdir`) and query options read."""
    ref, _, subdir = fragment.partition(":")
    options = {"ref": ref, "subdir": _clean_subdir(subdir)}
    for key, values in parse_qs(query, keep_blank_values=True).items():
        if len(values) > 1:
            raise BuildError(f"{text}: query {key!r} has multiple values")
        _query_option(options, key, values[0], text)
    if options["ref"].startswith("-"):  # git would read it as an option (and git refuses it)
        raise BuildError(f"{text}: invalid git ref {options['ref']!r}")
    return GitSource(remote, **options)


def _query_option(options: dict, key: str, value: str, text: str) -> None:
    """One `?key=value` of a git URL (dfgitutil.loadQuery)."""
    if key in ("ref", "subdir"):
        value = _clean_subdir(value) if key == "subdir" else value
        if options[key] and options[key] != value:
            raise BuildError(f"{text}: {key} conflicts: {options[key]!r} vs {value!r}")
        options[key] = value
    elif key in ("tag", "branch"):
        prefix = "refs/tags/" if key == "tag" else "refs/heads/"
        options["ref"] = value if value.startswith(prefix) else prefix + value
    elif key in ("checksum", "commit"):
        options["checksum"] = value
    elif key == "keep-git-dir":
        options["keep_git_dir"] = parse_bool(value or "true", f"{text}: keep-git-dir")
    else:
        raise BuildError(f"{text}: unexpected query {key!r}")


def _clean_subdir(subdir: str) -> str:
    """A subdir as BuildKit keeps it: relative, normalised, never above the repository."""
    return posixpath.normpath("/" + subdir).lstrip("/") if subdir else ""


def is_http_source(text: str) -> bool:
    """True for an http(s) URL of a file (not of a git repository)."""
    return text.startswith(("http://", "https://")) and git_source(text) is None


def is_remote(text: str) -> bool:
    """True for a source ADD fetches rather than reads from the context."""
    return is_http_source(text) or git_source(text) is not None


_NAME_MAX = 255  # a file name's bytes on Linux


def url_filename(url: str) -> str:
    """The name a downloaded file takes inside a destination dir: the URL path's last part."""
    base = posixpath.basename(unquote(urlsplit(url).path).rstrip("/") or "/")
    if "\0" in base or len(base.encode(errors="surrogateescape")) > _NAME_MAX:
        raise BuildError(f"{url}: the URL's last path part is no file name (a NUL byte, or "
                         f"over {_NAME_MAX} bytes); name the destination file instead")
    return base if base not in ("", ".", "..", "/") else UNNAMED


def parse_bool(value: str, what: str) -> bool:
    """A flag's boolean as Go's strconv.ParseBool reads it."""
    if value in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if value in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise BuildError(f"{what}: {value!r} is not a boolean (true or false)")


def http_checksum(value: str) -> str:
    """`--checksum` for an http source: `sha256:<64 hex>` (the reference: "SHA-256 is the only
    supported hash algorithm")."""
    if not _SHA256.match(value):
        raise BuildError(f"--checksum={value}: want sha256:<64 lowercase hex digits>")
    return value


def git_checksum(value: str) -> str:
    """`--checksum` for a git source: a commit id or a prefix of one."""
    if not _HEX.match(value):
        raise BuildError(f"--checksum={value}: want a commit id (hex) for a git source")
    return value
