"""A container's mounts when it starts: its binds, volumes and tmpfs mounts as the sandbox's
mounts (the machinery of RUN --mount), host dirs made, empty volumes seeded from the image.

The sandbox makes a mount point the image lacks in the scaffold, never in the container's
upper dir, and mounts everything in the container's private mount namespace after the root
overlay, targets resolved inside the root: so `diff` and `commit` never see a volume's files
or a mount point made only for it, and nothing outlives the container.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from minibuild.layer import layerpath
from minibuild.containers.records import Container, ContainerError, Containers
from minibuild.fs.rootpath import resolve_in_root
from minibuild.containers.mountspec import MountSpec
from minibuild.sandbox.sandbox import RootFS
from minibuild.sandbox.stepmounts import Bind, StepMount, Tmpfs
from minibuild.containers.treecopy import clear_dir, copy_tree, open_dir
from minibuild.containers.volumes import Volumes, seed_marker


@dataclass(frozen=True)
class Attached:
    """What a start mounts, and the empty volumes to seed from the image first."""

    mounts: tuple[StepMount, ...]
    seeds: tuple[tuple[str, Path], ...]  # (target in the image, the volume's _data dir)


def attach(root: Path, fs: RootFS, container: Container) -> Attached:
    """The sandbox mounts of a container's specs; missing volumes are made again, a -v bind's
    missing host dir is made (docker's rule), any other missing source is a ContainerError."""
    volumes = Volumes(root)
    mounts: list[StepMount] = []
    seeds: list[tuple[str, Path]] = []
    for spec in container.mounts:
        if spec.type == "tmpfs":
            mounts.append(Tmpfs(spec.target, spec.size, mode=spec.mode, readonly=spec.readonly,
                                noexec=spec.noexec))
        elif spec.type == "bind":
            source = _bind_source(spec, (fs.upper, *fs.lowers))
            mounts.append(Bind(spec.target, source, spec.readonly, not os.path.isdir(source),
                               name=f"bind {spec.source}", host=True))
        else:
            data = volumes.data(spec.source)
            if not data.is_dir():  # its dir went away behind our back: docker makes it again
                with volumes.locked():
                    volumes.create(spec.source, anonymous=spec.anonymous)
            mounts.append(Bind(spec.target, str(data), spec.readonly, False,
                               name=f"volume {spec.source[:12] if spec.anonymous else spec.source}"))
            if not spec.nocopy and (not any(data.iterdir()) or seed_marker(data).exists()):
                seeds.append((spec.target, data))
    hostname = _hostname_file(root, fs, container)
    return Attached(tuple(mounts) + ((hostname,) if hostname else ()), tuple(seeds))


def _hostname_file(root: Path, fs: RootFS, container: Container) -> Bind | None:
    """docker's /etc/hostname: a file of the container's dir holding its hostname, bound
    over the image's (writes go to that file, never the upper dir); under a mount on /etc it
    is made in that mount, as runc does. None when the user mounts a file there, a read-only
    mount leaves no room for it, or the image has a directory there."""
    if any(m.target == "/etc/hostname" or (m.readonly and covered("/etc/hostname", (m,)))
           for m in container.mounts):
        return None
    if layerpath.resolve((fs.upper, *fs.lowers), "/etc/hostname").is_dir():
        return None
    path = Containers(root).path(container.id) / "hostname"
    path.write_text((container.hostname or container.short_id) + "\n")
    os.chmod(path, 0o644)  # write_text obeys the umask
    return Bind("/etc/hostname", str(path), False, True, name="/etc/hostname")


def _bind_source(spec: MountSpec, image: Sequence[Path]) -> str:
    """The host path to bind (symlinks on the host followed: the user named it)."""
    path = os.path.realpath(spec.source)
    if os.path.exists(path):
        return path
    if not spec.create_source:
        raise ContainerError(f"bind source path does not exist: {spec.source}")
    found = layerpath.resolve(image, spec.target)
    if found.exists and not found.is_dir():
        raise ContainerError(f"-v {spec.source}:{spec.target}: {spec.source} does not exist on "
                             f"the host, and {spec.target} is a file in the image",
                             hint="create the host file first (docker would make a directory "
                                  "there, which cannot be mounted on a file)")
    os.makedirs(path, 0o755, exist_ok=True)
    return path


def covered(path: str, specs: Sequence[MountSpec]) -> bool:
    """Whether an image path is a mount's target or lies inside one."""
    return any(path == s.target or path.startswith(s.target.rstrip("/") + "/") for s in specs)


def seed(merged: str, seeds: Sequence[tuple[str, Path]]) -> None:
    """In a child with the container's root mounted on `merged`: copy what the image has at
    each target into its volume, if the volume is still empty (docker's rule). A marker file
    lives beside _data while the copy runs: a seed cut short (Ctrl-C, SIGKILL, a full disk)
    is emptied and done again at the next start, never taken for a finished one."""
    for target, data in seeds:
        volume = open_dir(str(data))
        if volume is None:
            continue
        try:
            marker = seed_marker(data)
            if marker.exists():  # an earlier seed was cut short: its files are not the image's
                clear_dir(volume)
                marker.unlink()
            if os.listdir(volume):
                continue
            source = open_dir(resolve_in_root(merged, target))
            if source is None:  # the image has no dir there: the volume stays as made
                continue
            try:
                os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                                 0o600))
                copy_tree(source, volume)
                marker.unlink()
            finally:
                os.close(source)
        finally:
            os.close(volume)
