"""Volumes: directories the store keeps apart from every image and container layer.

A volume is ROOT/volumes/NAME/ holding `_data/` (what a container sees at the mount's
target) and `volume.json` (when it was made, its labels), as docker lays them out. An
anonymous volume (`-v /dst`, an image's VOLUME) has a random 64-hex name and docker's
`com.docker.volume.anonymous` label. A volume is in use while any container record (running
or not) names it; `ROOT/volumes/.lock` is held while a container is created with volumes and
while volumes are removed, so no removal slips between a check and a new user.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minibuild.store import topdir
from minibuild.store.paths import StorePaths
from minibuild.containers.records import Container, now
from minibuild.errors import MinibuildError
from minibuild.oci.image import canonical_json
from minibuild.containers.mountspec import VOLUME_NAME, volume_name
from minibuild.fs.files import remove_tree, write_atomic
from minibuild.fs.lock import FileLock

ANONYMOUS = "com.docker.volume.anonymous"  # docker's label for a volume made for one container
_RECORD = "volume.json"
_DATA = "_data"
_SEEDING = "seeding"  # NAME/seeding: a seed from the image began and has not finished


class VolumeError(MinibuildError):
    """No such volume, a volume in use, or a damaged one."""


@dataclass(frozen=True)
class Volume:
    """One volume of the store."""

    name: str
    created: str
    labels: tuple[tuple[str, str], ...]
    mountpoint: Path  # its _data dir

    @property
    def anonymous(self) -> bool:
        """Made for one container (-v /dst, an image's VOLUME), not named by a user."""
        return any(key == ANONYMOUS for key, _ in self.labels)

    def inspect(self) -> dict[str, Any]:
        """docker's `volume inspect` object."""
        return {"CreatedAt": self.created, "Driver": "local", "Labels": dict(self.labels) or None,
                "Mountpoint": str(self.mountpoint), "Name": self.name, "Options": None,
                "Scope": "local"}


def seed_marker(data: Path) -> Path:
    """The file that marks a volume (by its _data dir) whose seeding was cut short."""
    return data.parent / _SEEDING


def users(name: str, containers: Iterable[Container]) -> list[Container]:
    """The containers whose mounts name this volume."""
    return [c for c in containers
            if any(m.type == "volume" and m.source == name for m in c.mounts)]


class Volumes:
    """The volumes of one store root."""

    def __init__(self, root: Path) -> None:
        # absolute: inspect's Mountpoint is (docker's always is), whatever --root was given as
        self.dir = StorePaths.at(os.path.abspath(root)).volumes

    def data(self, name: str) -> Path:
        """A volume's _data dir (what containers mount)."""
        return self.dir / name / _DATA

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the volumes lock: no volume is removed (and no container takes one) meanwhile."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with FileLock(self.dir / ".lock"):
            yield

    def create(self, name: str = "", *, labels: Iterable[tuple[str, str]] = (),
               anonymous: bool = False) -> Volume:
        """A new volume (a random name when none is given); an existing name is returned as it
        is, as docker does. Hold `locked`."""
        name = volume_name(name) if name else secrets.token_hex(32)
        if (self.dir / name / _RECORD).is_file():
            return self.get(name)
        labels = tuple(sorted(dict(labels).items()))
        if anonymous:
            labels = tuple(sorted({**dict(labels), ANONYMOUS: ""}.items()))
        self.dir.mkdir(parents=True, exist_ok=True)
        topdir.spread_children(self.dir)  # each volume's files in a roomy ext4 group
        tmp = self.dir / f".new-{name}-{secrets.token_hex(4)}"
        tmp.mkdir(0o700)
        (tmp / _DATA).mkdir(0o755)
        os.chmod(tmp / _DATA, 0o755)  # mkdir obeys the umask
        write_atomic(tmp / _RECORD, canonical_json({"name": name, "created": now(),
                                                    "labels": dict(labels)}))
        try:
            os.rename(tmp, self.dir / name)
        except OSError as exc:  # a dir of that name without a record
            remove_tree(tmp)
            raise VolumeError(f"cannot create volume {name}: {exc.strerror}") from exc
        return self.get(name)

    def get(self, name: str) -> Volume:
        """A volume by name; VolumeError when there is none."""
        if not VOLUME_NAME.fullmatch(name):
            raise VolumeError(f"no such volume: {name}")
        try:
            record = json.loads((self.dir / name / _RECORD).read_text())
        except FileNotFoundError:
            raise VolumeError(f"no such volume: {name}",
                              hint="`minibuild volume ls` lists the volumes") from None
        except (OSError, ValueError) as exc:
            raise VolumeError(f"volume {name}: unreadable record ({exc})") from exc
        return Volume(name, record.get("created") or "",
                      tuple(sorted((record.get("labels") or {}).items())), self.data(name))

    def all(self) -> list[Volume]:
        """Every readable volume, by name."""
        if not self.dir.is_dir():
            return []
        found = []
        for entry in sorted(self.dir.iterdir()):
            if VOLUME_NAME.fullmatch(entry.name) and (entry / _RECORD).is_file():
                try:
                    found.append(self.get(entry.name))
                except VolumeError:
                    continue
        return found

    def remove(self, name: str, containers: Iterable[Container]) -> None:
        """Delete a volume nobody uses; VolumeError when a container does (hold `locked`)."""
        self.get(name)
        using = users(name, containers)
        if using:
            ids = ", ".join(f"{c.short_id} ({c.name})" for c in using)
            raise VolumeError(f"remove {name}: volume is in use by container {ids}",
                              hint="remove the container first (`minibuild rm -v` also removes "
                                   "its anonymous volumes)")
        trash = self.dir / f".rm-{name}-{secrets.token_hex(4)}"
        os.rename(self.dir / name, trash)  # gone from `volume ls` at once
        remove_tree(trash)

    def drop_anonymous(self, container: Container, containers: Iterable[Container]) -> list[str]:
        """Remove the anonymous volumes of a removed container that no other one uses."""
        if not any(m.type == "volume" and m.anonymous for m in container.mounts):
            return []
        others = list(containers)
        removed = []
        with self.locked():
            for mount in container.mounts:
                if mount.type == "volume" and mount.anonymous and mount.source:
                    try:
                        self.remove(mount.source, [c for c in others if c.id != container.id])
                    except VolumeError:
                        continue  # gone already, or another container took it by name
                    removed.append(mount.source)
        return removed

    def clean_leftovers(self) -> None:
        """Remove half-made and half-removed volume dirs (a killed create or rm)."""
        if not self.dir.is_dir():
            return
        with self.locked():
            for entry in self.dir.iterdir():
                if entry.name.startswith((".new-", ".rm-")):  # in progress only under the lock
                    remove_tree(entry)
