"""Container records: ROOT/containers/<id>/ holds config.json, upper/, work/, merged/ and log.

Each container gets its own thin upper dir over the image's shared, read-only layer dirs. The
process that supervises a running container holds an exclusive flock on its `lock` file for as
long as the container runs, so a record that says "running" while the lock is free belongs to a
supervisor that died (crash, SIGKILL): `status` reports it dead, whatever the JSON says.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from minibuild.store import topdir
from minibuild.store.permissions import SECRET_MODE
from minibuild.store.paths import StorePaths
from minibuild.oci.digest import Digest
from minibuild.errors import MinibuildError
from minibuild.oci.image import Descriptor, canonical_json
from minibuild.containers.mountspec import MountSpec
from minibuild.fs.files import remove_tree, write_atomic
from minibuild.fs.lock import FileLock
from minibuild.sandbox.confinement import SecurityOptions
from minibuild.sandbox.overlay import make_overlay_dirs, overlay_dirs
from minibuild.sandbox.limits import Limits
from minibuild.sandbox.network import PortForward

ID_BYTES = 32
SHORT_ID = 12
_ADJECTIVES = ("brave", "calm", "eager", "fond", "keen", "lucid", "merry", "nimble", "proud",
               "quiet", "sharp", "tender", "vivid", "witty", "zen", "bold")
_NOUNS = ("otter", "heron", "lynx", "panda", "raven", "tapir", "wombat", "yak", "gecko", "ibis",
          "koala", "lemur", "marten", "newt", "quail", "shrew")


class ContainerError(MinibuildError):
    """No such container, a name in use, or a container in the wrong state."""


_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")  # docker's container names


def now() -> str:
    """RFC 3339 UTC with microseconds (docker's style)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Container:
    """One container's record (config.json): what it runs, on which image, and its last state."""

    id: str
    name: str
    image: str  # the reference the user gave
    manifest: Descriptor  # the image it was created from (kept alive by gc)
    diff_ids: tuple[Digest, ...]  # its image's layers, base first
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    cwd: str
    user: str
    network: str
    created: str
    overrides: dict[str, Any] = field(default_factory=dict)  # what `run` changed (for commit)
    auto_remove: bool = False
    stop_signal: str = ""  # the image's STOPSIGNAL (docker's default: SIGTERM)
    mounts: tuple[MountSpec, ...] = ()  # binds, volumes (named once created) and tmpfs mounts
    hostname: str = ""  # -h; empty: the short id, as docker does
    security: SecurityOptions = SecurityOptions()  # --security-opt (exec uses it too)
    ports: tuple[PortForward, ...] = ()  # -p, forwarded into its private network
    limits: Limits = Limits()  # --memory, --pids-limit, --cpus
    userns: str = "host"  # --userns: host, or auto (its own range of ids, while it runs)
    state: str = "created"  # created | running | exited
    exit_code: int | None = None
    pid: int | None = None  # host pid of the sandbox's init (pid 1 inside)
    pid_start: int | None = None  # its start time in clock ticks: a recycled pid never matches
    started: str | None = None
    finished: str | None = None

    @property
    def short_id(self) -> str:
        """The 12-character id docker shows."""
        return self.id[:SHORT_ID]

    def to_json(self) -> dict[str, Any]:
        """The record as stored."""
        return {"id": self.id, "name": self.name, "image": self.image,
                "manifest": self.manifest.to_json(), "diff_ids": [str(d) for d in self.diff_ids],
                "argv": list(self.argv), "env": [list(kv) for kv in self.env], "cwd": self.cwd,
                "user": self.user, "network": self.network, "created": self.created,
                "overrides": self.overrides, "auto_remove": self.auto_remove,
                "stop_signal": self.stop_signal,
                "mounts": [m.to_json() for m in self.mounts], "hostname": self.hostname,
                "security": self.security.to_json(),
                "ports": [p.to_json() for p in self.ports], "userns": self.userns,
                "host_config": self.limits.to_json(),
                "state": self.state, "exit_code": self.exit_code, "pid": self.pid,
                "pid_start": self.pid_start, "started": self.started, "finished": self.finished}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Container:
        """Inverse of to_json."""
        return cls(id=d["id"], name=d["name"], image=d["image"],
                   manifest=Descriptor.from_json(d["manifest"]),
                   diff_ids=tuple(Digest.parse(x) for x in d["diff_ids"]),
                   argv=tuple(d["argv"]), env=tuple((k, v) for k, v in d["env"]), cwd=d["cwd"],
                   user=d["user"], network=d["network"], created=d["created"],
                   overrides=dict(d.get("overrides") or {}),
                   auto_remove=bool(d.get("auto_remove")),
                   stop_signal=d.get("stop_signal") or "",
                   mounts=tuple(MountSpec.from_json(m) for m in d.get("mounts") or ()),
                   hostname=d.get("hostname") or "",
                   security=SecurityOptions.from_json(d.get("security")),
                   ports=tuple(PortForward.from_json(p) for p in d.get("ports") or ()),
                   limits=Limits.from_json(d.get("host_config")), userns=d.get("userns") or "host",
                   state=d["state"], exit_code=d.get("exit_code"), pid=d.get("pid"), pid_start=d.get("pid_start"),
                   started=d.get("started"), finished=d.get("finished"))


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks), or None when pid is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    return int(fields[19])  # field 22 counted from after "pid (comm)"


class Containers:
    """The container records of one store root."""

    def __init__(self, root: Path) -> None:
        self.dir = StorePaths.at(root).containers

    def path(self, container_id: str) -> Path:
        """A container's directory."""
        return self.dir / container_id

    def dirs(self, container_id: str) -> tuple[Path, Path, Path]:
        """Its overlay upper, work and merged dirs."""
        return overlay_dirs(self.path(container_id))

    def log_path(self, container_id: str) -> Path:
        """Where a detached container's stdout and stderr go."""
        return self.path(container_id) / "log"

    # -- records ---------------------------------------------------------------------------------

    def create(self, container: Container) -> Container:
        """Make the container's dirs and record; a fresh id, and a name unless one was given."""
        self.dir.mkdir(parents=True, exist_ok=True)
        topdir.spread_children(self.dir)  # each container's upper dir in a roomy ext4 group
        with self._names_lock():
            name = container.name or self._free_name()
            if any(c.name == name for c in self.all()):
                raise ContainerError(f"the container name {name!r} is already in use",
                                     hint=f"`minibuild rm {name}` removes that container")
            container = replace(container, id=secrets.token_hex(ID_BYTES), name=name)
            tmp = self.dir / f".new-{container.id}"
            tmp.mkdir()
            make_overlay_dirs(tmp)
            write_atomic(tmp / "config.json", canonical_json(container.to_json()), mode=SECRET_MODE)
            os.rename(tmp, self.path(container.id))
        return container

    def save(self, container: Container) -> None:
        """Replace a record atomically (a reader sees the old or the new one)."""
        write_atomic(self.path(container.id) / "config.json", canonical_json(container.to_json()),
                     mode=SECRET_MODE)  # its env holds the -e values

    def load(self, container_id: str) -> Container:
        """A record by full id."""
        try:
            data = json.loads((self.path(container_id) / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise ContainerError(f"container {container_id[:SHORT_ID]}: unreadable record "
                                 f"({exc})") from exc
        return Container.from_json(data)

    def all(self) -> list[Container]:
        """Every readable record, oldest first."""
        if not self.dir.is_dir():
            return []
        found = []
        for entry in sorted(self.dir.iterdir()):
            if entry.name.startswith(".") or not (entry / "config.json").is_file():
                continue
            try:
                found.append(self.load(entry.name))
            except ContainerError:
                continue
        return sorted(found, key=lambda c: c.created)

    def find(self, text: str) -> Container:
        """A container by name, full id or unique id prefix."""
        every = self.all()
        for container in every:
            if text in (container.name, container.id):
                return container
        matches = [c for c in every if len(text) >= 3 and c.id.startswith(text)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise ContainerError(f"container id prefix {text!r} is ambiguous")
        raise ContainerError(f"no such container: {text}",
                             hint="`minibuild ps -a` lists the containers")

    def rename(self, container: Container, name: str) -> Container:
        """Give a container another name nobody else uses (its supervisor keeps it)."""
        if not _NAME.fullmatch(name):
            raise ContainerError(f"invalid container name {name!r}",
                                 hint="only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        with self._names_lock():
            if any(c.name == name and c.id != container.id for c in self.all()):
                raise ContainerError(f"the container name {name!r} is already in use")
            renamed = replace(self.load(container.id), name=name)
            self.save(renamed)
        return renamed

    def remove(self, container_id: str) -> None:
        """Delete the record and the container's dirs: its writes are gone."""

        base = self.path(container_id)
        trash = self.dir / f".rm-{container_id}-{secrets.token_hex(4)}"
        try:
            os.rename(base, trash)  # gone from `ps` at once, even if the deletion is cut short
        except FileNotFoundError:
            return
        remove_tree(trash)

    def clean_leftovers(self) -> None:
        """Remove half-created and half-removed container dirs (a killed create or rm)."""

        if not self.dir.is_dir():
            return
        with self._names_lock():  # a `.new-` dir is only in progress while its creator holds it
            for entry in self.dir.iterdir():
                if entry.name.startswith((".new-", ".rm-")):
                    remove_tree(entry)  # tolerant: a `.rm-` may be going away concurrently

    def _free_name(self) -> str:
        """A docker-style adjective_noun name nobody uses yet."""
        used = {c.name for c in self.all()}
        for _ in range(100):
            name = f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_NOUNS)}"
            if name not in used:
                return name
        return f"container_{secrets.token_hex(4)}"

    def _names_lock(self) -> FileLock:
        return FileLock(self.dir / ".names.lock")

    # -- liveness --------------------------------------------------------------------------------

    def supervise(self, container_id: str) -> FileLock:
        """Take the container's supervisor lock (held while it runs); ContainerError if taken."""
        try:
            return FileLock(self.path(container_id) / "lock", wait=False)
        except BlockingIOError:
            raise ContainerError(f"container {container_id[:SHORT_ID]} is already running") from None

    def supervised(self, container_id: str) -> bool:
        """Whether a live process holds the container's supervisor lock."""
        try:
            FileLock(self.path(container_id) / "lock", wait=False).release()
        except BlockingIOError:
            return True
        except FileNotFoundError:
            return False
        return False

    def status(self, container: Container) -> str:
        """created, running, exited, or dead (a 'running' record whose supervisor is gone)."""
        if container.state != "running":
            return container.state
        if not self.supervised(container.id):
            return "dead"
        if container.pid is None or process_start_time(container.pid) != container.pid_start:
            return "dead"
        return "running"

    def wait_unsupervised(self, container_id: str, seconds: float) -> bool:
        """Wait until nobody supervises the container; False on timeout."""
        deadline = time.monotonic() + seconds
        while self.supervised(container_id):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def uses(self, manifest: Digest) -> list[Container]:
        """The containers created from this image manifest."""
        return [c for c in self.all() if c.manifest.digest == manifest]

    def __iter__(self) -> Iterator[Container]:
        return iter(self.all())


def scrub_scaffolds(container_dir: Path) -> None:
    """Remove sandbox scaffold dirs a killed supervisor left in the container's dir."""
    for entry in container_dir.glob(".minibuild-scaffold-*"):
        remove_tree(entry, ignore_errors=True)
