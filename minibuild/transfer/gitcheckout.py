"""ADD's git source: a checkout of one ref of a repository, with the `git` CLI.

As BuildKit's git source (source/git/source.go): a shallow fetch of the ref (a full commit id
is fetched with history, as a server may refuse to send a bare commit), a detached checkout,
submodules updated, and `.git` kept only when asked (`--keep-git-dir`; then with `origin` set
to the URL and no reflog or FETCH_HEAD). Files get mode 0644, or 0755 when git records them
executable, and dirs 0755, whatever the umask (the reference: "the permissions bits for files
are 644 ... 755"); mtimes are the checkout's (BuildKit's default `mtime=checkout`).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from typing import Mapping

from minibuild.dockerfile.remotesource import GitSource
from minibuild.errors import BuildError

_NO_PROMPT = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "GIT_CONFIG_NOSYSTEM": "1"}
# A repository from a Buildfile is not trusted: its submodules may not read the host's
# repositories (file://) or run commands (ext::), whatever git's defaults or the user's config
# say (environment config wins over the files).
_TRANSPORTS = {"GIT_CONFIG_COUNT": "2",
               "GIT_CONFIG_KEY_0": "protocol.file.allow", "GIT_CONFIG_VALUE_0": "never",
               "GIT_CONFIG_KEY_1": "protocol.ext.allow", "GIT_CONFIG_VALUE_1": "never"}


def checkout(source: GitSource, target: Path, keep_git_dir: bool,
             proxies: Mapping[str, str] | None = None) -> str:
    """Check `source` out into the new dir target (its subdir's contents when it names one);
    returns the commit id."""
    if shutil.which("git") is None:
        raise BuildError("ADD from a git repository needs the `git` command (apt install git)")
    work = target.parent / (target.name + ".git-work")
    work.mkdir()
    env = {**os.environ, **_NO_PROMPT, **_TRANSPORTS, **_proxy_env(proxies or {})}
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")  # never a prompt in a build
    _git(work, env, "-c", "init.defaultBranch=master", "init", "-q")
    _git(work, env, "remote", "add", "origin", source.remote)
    _fetch(work, env, source)
    _git(work, env, "checkout", "-q", "--detach", source.ref if source.by_commit else "FETCH_HEAD")
    commit = _git(work, env, "rev-parse", "HEAD").strip()
    if (work / ".gitmodules").exists():
        _git(work, env, "submodule", "update", "--init", "--recursive", "--depth=1")
    if keep_git_dir and not source.subdir:
        _git(work, env, "remote", "set-url", "origin", redact(source.remote))  # as BuildKit
        _git(work, env, "reflog", "expire", "--all", "--expire=now")
        (work / ".git" / "FETCH_HEAD").unlink(missing_ok=True)
    else:
        shutil.rmtree(work / ".git")
    _take(work, source, target)
    normalize_modes(target)
    return commit


def redact(url: str) -> str:
    """The URL without its user part (`https://user:TOKEN@h/r.git` and `https://TOKEN@h/r.git`
    → `https://h/r.git`): a kept .git/config must not carry a secret into the image."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _proxy_env(proxies: Mapping[str, str]) -> dict[str, str]:
    """The build's proxy args for git, in both spellings (curl reads http_proxy lowercase)."""
    env = {}
    for name, value in proxies.items():
        env[name.upper()] = env[name.lower()] = value
    return env


def _fetch(work: Path, env: dict[str, str], source: GitSource) -> None:
    """Fetch the ref: shallow, retried in full where the server cannot send a shallow pack
    (git's dumb http)."""
    if source.by_commit:
        _git(work, env, "fetch", "-q", "--tags", "origin")
        return
    ref = source.ref or "HEAD"
    try:
        _git(work, env, "fetch", "-q", "--depth=1", "--no-tags", "origin", ref)
    except BuildError:
        _git(work, env, "fetch", "-q", "--no-tags", "origin", ref)


def _take(work: Path, source: GitSource, target: Path) -> None:
    """Move the checkout (or its subdir) to target; the subdir must be a dir of the checkout."""
    if not source.subdir:
        work.rename(target)
        return
    inner = work / source.subdir
    if inner.is_symlink() or not inner.is_dir() or _escapes(work, inner):
        raise BuildError(f"{source.remote}: subdir {source.subdir!r} is not a directory "
                         "of the repository")
    inner.rename(target)
    shutil.rmtree(work)


def _escapes(top: Path, inner: Path) -> bool:
    """True when a path below top resolves outside it (through a symlinked dir on the way)."""
    real = os.path.realpath(top)
    return not os.path.realpath(inner).startswith(real + os.sep)


def normalize_modes(top: Path) -> None:
    """Files 0644 (0755 when executable), dirs 0755; symlinks untouched."""
    os.chmod(top, 0o755)
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                os.chmod(path, 0o755)
            elif stat.S_ISREG(st.st_mode):
                os.chmod(path, 0o755 if st.st_mode & 0o100 else 0o644)


def _git(work: Path, env: dict[str, str], *args: str) -> str:
    """Run git in work; its stdout, or BuildError with git's last error line."""
    result = subprocess.run(["git", *args], cwd=work, env=env, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
        reason = lines[-1] if lines else f"exit code {result.returncode}"
        raise BuildError(f"git {args[0]} failed: {reason}")
    return result.stdout
