"""The build memo: what a finished build read and what it produced, so that the same command on
unchanged inputs answers before the engine (or click, lark, zstandard) is even imported.

A memo is found by the exact command: argv, working directory, environment (minus shell
bookkeeping such as OLDPWD), uid, minibuild's version and the size and mtime of its own source
files (a changed minibuild is another command). It holds

- the stat signature (mode, dev, inode, size, mtime_ns, ctime_ns) of every path the build looked
  at: the Buildfile, .dockerignore, each context file it hashed, each dir it listed, and each dir
  on the way from the context root (adding, removing or renaming an entry moves a dir's mtime);
  ctime cannot be set by a user, so a file rewritten with its old size and mtime still differs;
- where every name a resolved path went through leads, from `/` (a dir's mode, dev and inode;
  a symlink's target text): the context argument, the Buildfile, .dockerignore and each COPY
  source, symlinks followed;
- the sha256 of index.json, which the build must have left as it found it (a build that moves a
  tag it resolves, or runs beside one that does, is not memoized), so every FROM, COPY --from and
  tag resolves as it did, and the tags it wrote, checked against that index;
- the blobs the result needs (manifest, config, layers, the images it was built from) and the
  step cache entries it used (a real build without them would run those steps again).

If anything differs, or the store is locked for gc/fsck, the normal build runs; with its step
cache it gives the same image, so the memo only saves start-up time. A memo is not written for
`--no-cache`, for a build that fetched an ADD URL or git repository, for a Buildfile read from stdin, /dev or /proc, or when an input changed within one
timestamp tick before the build started (100 ms; 2 s on filesystems with whole-second times), as
a write in the same tick could go unseen. `prune --cache` deletes memos with the step cache;
only the newest 200 are kept; `MINIBUILD_MEMO=0` turns them off. Not checked: blob contents
(a corrupt store is `fsck`'s business) and the host (the sandbox is not needed for a cached
build).

Only the standard library is imported here at start-up: this runs on every `minibuild` call.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple, Sequence

try:  # CPython's built-in sha256: hashlib's OpenSSL import costs 2 ms of every start-up
    from _sha256 import sha256  # 3.11
except ImportError:  # pragma: no cover - other Pythons
    try:
        from _sha2 import sha256  # 3.12+
    except ImportError:
        from hashlib import sha256

from minibuild.store import entries
from minibuild.build import fsstate
from minibuild.fs.lock import FileLock
from minibuild.store.paths import StorePaths, default_root

FORMAT = 3
KEEP = 200  # memos per store; the oldest go first
# Set by shells between two identical commands; they cannot change what a build does.
_SHELL_BOOKKEEPING = frozenset({"_", "OLDPWD", "PWD", "SHLVL"})
_REF_NAME = "org.opencontainers.image.ref.name"
_PATH_MAX = 4096  # a longer input (a context dir thousands deep) cannot be stat'ed by path


# NamedTuples, not dataclasses: importing dataclasses (inspect) costs 5 ms of every start-up.
class Command(NamedTuple):
    """A `build` command line that may use a memo: its store and its memo key."""

    root: Path
    key: str
    quiet: bool = False  # learnt from the parsed flags, for replaying the output

    @property
    def path(self) -> Path:
        """Where the memo of this command lives (inside the store's cache)."""
        return memo_dir(self.root) / f"{self.key[:40]}.json"


class Step(NamedTuple):
    """One progress line of the recorded build: its header and whether it had a note."""

    number: int
    total: int
    stage: str
    text: str
    cached: bool  # a filesystem step (its rerun says CACHED); False for FROM and config steps


class Replay(NamedTuple):
    """The answer of a memo: the result to report, and the steps to show as cached."""

    digest: str  # the manifest's (what the tags point at)
    tags: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    steps: tuple[Step, ...] = ()
    quiet: bool = False
    image_id: str = ""  # the config digest: what `build` prints


def memo_dir(root: Path) -> Path:
    """The memos of a store."""
    return StorePaths.at(root).memo


def command(argv: Sequence[str], cwd: str, environ: Mapping[str, str], version: str) -> Command | None:
    """The memo key of a `minibuild [--root DIR] build ...` command; None for anything else."""
    if environ.get("MINIBUILD_MEMO") == "0":
        return None
    args, root = list(argv), None
    while args and args[0].startswith("--root"):
        if args[0] == "--root" and len(args) > 1:
            root, args = args[1], args[2:]
        elif args[0].startswith("--root="):
            root, args = args[0].removeprefix("--root="), args[1:]
        else:
            return None
    if not args or args[0] != "build" or any(_unmemoable(a) for a in args):
        return None
    if any(a.startswith(("--push", "--cache-to", "--cache-from", "--output")) for a in args):
        return None  # these reach a registry: a memo answer would skip the push or the export
    env = sorted((k, v) for k, v in environ.items() if k not in _SHELL_BOOKKEEPING)
    material = json.dumps([FORMAT, version, _code_state(), os.getuid(), cwd, list(argv), env])
    store = Path(root or environ.get("MINIBUILD_ROOT") or default_root())
    return Command(Path(os.path.abspath(store)), sha256(material.encode()).hexdigest())


# flags whose effect a replay would not repeat (files written, a pull, stdin read)
_NO_MEMO = ("-h", "--help", "--no-cache", "-", "-o", "--iidfile", "--metadata-file", "--output",
            "--pull")


def _unmemoable(arg: str) -> bool:
    """Whether a build argument keeps the command from being answered from a memo."""
    return arg in _NO_MEMO or arg.startswith(tuple(f"{f}=" for f in _NO_MEMO if f.startswith("--"))
                                             ) or (arg.startswith("-o") and len(arg) > 2)


def _code_state() -> list:
    """Size and mtime of minibuild's own files (an edited checkout is another minibuild): the
    package, each of its subpackages, and the grammar beside it in a source checkout."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    state = []
    for d in (package, *_subdirs(package), os.path.join(os.path.dirname(package), "grammar")):
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if entry.name.endswith((".py", ".lark")):
                st = entry.stat()
                state.append([entry.path, st.st_size, st.st_mtime_ns])
    return state


def _subdirs(package: str) -> list[str]:
    """The package's subpackage dirs, sorted (minibuild/build, minibuild/cli, ...)."""
    with os.scandir(package) as it:
        return sorted(e.path for e in it if e.is_dir() and not e.name.startswith(("_", ".")))


def index_hash(root: Path) -> str:
    """sha256 of a store's index.json (its tags)."""
    return sha256(StorePaths.at(root).index.read_bytes()).hexdigest()


def lookup(cmd: Command) -> Replay | None:
    """The memo's answer when every recorded input is unchanged; None otherwise (never raises
    for a missing, damaged or stale memo)."""
    try:
        data = json.loads(cmd.path.read_bytes())
        if data.get("format") != FORMAT or data.get("key") != cmd.key:
            return None
        # not while gc or fsck holds the store (nor in a store never opened: no lock file)
        lock = FileLock(StorePaths(cmd.root).gc_lock, exclusive=False, wait=False, create=False)
    except (OSError, ValueError, AttributeError):
        return None
    try:
        return _check(cmd, data)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    finally:
        lock.release()


def _check(cmd: Command, data: dict) -> Replay | None:
    for path, recorded in data["inputs"]:
        if fsstate.signature(path) != recorded:
            return None
    for path, recorded in data["trails"]:
        if fsstate.identity(path) != recorded:
            return None
    paths = StorePaths(cmd.root)
    index = paths.index.read_bytes()
    if sha256(index).hexdigest() != data["index"] or not _tagged(index, data):
        return None
    blobs = paths.blobs
    if not all((blobs / digest.removeprefix("sha256:")).is_file() for digest in data["blobs"]):
        return None
    steps = tuple(Step(*s) for s in data["steps"])
    return Replay(data["digest"], tuple(data["shown_tags"]), tuple(data["warnings"]), steps,
                  bool(data["quiet"]), data["image_id"])


def _tagged(index: bytes, data: dict) -> bool:
    """True when every tag the build wrote points at its result in this index."""
    names = {(m.get("annotations") or {}).get(_REF_NAME): m.get("digest")
             for m in json.loads(index).get("manifests") or []}
    return all(names.get(name) == data["digest"] for name in data["tags"])


def record(cmd: Command, *, started_ns: int, index_before: str, inputs: Iterable[str],
           trails: Mapping[str, list | None], blobs: Iterable[str], steps: Sequence[Step],
           digest: str, tags: Sequence[str], shown_tags: Sequence[str],
           warnings: Sequence[str], image_id: str = "") -> bool:
    """Write the memo of a successful build; False (and nothing written) when an input changed
    too recently to trust its signature or is past PATH_MAX, a traced name changed during the build, or the build
    (or another process) changed the tags it resolved."""
    from minibuild.fs.files import write_atomic

    signatures = []
    for path in sorted(set(inputs)):
        if len(os.fsencode(path)) >= _PATH_MAX:
            return False  # no memo: its check could not stat this input by path
        sig = fsstate.signature(path)
        if sig is not None and not fsstate.settled(sig, started_ns):
            return False
        signatures.append([path, sig])
    identities = []
    for path, seen in sorted(trails.items()):
        if fsstate.identity(path) != seen:
            return False
        identities.append([path, seen])
    try:
        index = StorePaths(cmd.root).index.read_bytes()
    except OSError:
        return False
    if sha256(index).hexdigest() != index_before:
        return False
    data = {"format": FORMAT, "key": cmd.key, "inputs": signatures, "trails": identities,
            "index": sha256(index).hexdigest(), "tags": list(tags), "digest": digest,
            "image_id": image_id or digest,
            "blobs": sorted(set(blobs)), "shown_tags": list(shown_tags),
            "warnings": list(warnings), "quiet": cmd.quiet,
            "steps": [[s.number, s.total, s.stage, s.text, s.cached] for s in steps]}
    if not _tagged(index, data):
        return False  # another build moved a tag meanwhile: this index does not hold our result
    cmd.path.parent.mkdir(parents=True, exist_ok=True)
    # 0600: a memo holds the steps' text and the paths the build read, which may be secrets
    write_atomic(cmd.path, json.dumps(data, separators=(",", ":")).encode(), durable=False, mode=0o600)
    entries.trim(memo_dir(cmd.root), KEEP)
    return True


def forget_all(root: Path) -> int:
    """Delete every memo of a store (with the step cache); how many there were."""
    return entries.empty(memo_dir(root))
