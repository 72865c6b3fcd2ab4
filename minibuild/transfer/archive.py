"""Image archives in: `load` reads an OCI-layout tar or a docker archive, whichever it is.

The tar is read once (archivetar.py: every member checked, every blob staged); its metadata
says the format (oci_archive.py, docker_archive.py); nothing reaches the store before every
image in the archive checks out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

from minibuild.oci.image import Descriptor
from minibuild.oci.reference import Reference
from minibuild.store.layout import Store
from minibuild.store.staging import Staging
from minibuild.transfer import docker_archive, oci_archive
from minibuild.transfer.archivetar import ArchiveError, read_members


@dataclass(frozen=True)
class Loaded:
    """An image taken from an archive: its manifest descriptor, the tags it came with, and
    the images those tags named before (now without that tag)."""

    descriptor: Descriptor
    tags: tuple[Reference, ...]
    replaced: tuple[tuple[Reference, Descriptor], ...] = ()


def load(store: Store, stream: BinaryIO, source: str) -> list[Loaded]:
    """Load every image of an OCI-layout tar or docker archive; the store changes only on success."""
    staging = Staging(store)
    try:
        members = read_members(stream, staging, source)
        if "manifest.json" in members.metadata:
            found = docker_archive.images(members, staging)
        elif "index.json" in members.metadata:
            found = oci_archive.images(members, staging)
        else:
            raise ArchiveError(f"{source} is neither an OCI layout nor a docker archive "
                               "(no index.json or manifest.json)")
        checked = [(staging.check_image(desc), tags) for desc, tags in found]
        staging.commit(image for image, _ in checked)
    except BaseException:
        staging.abort()
        raise
    loaded = []
    for staged, tags in checked:
        replaced = []
        for tag in tags:
            old = store.tag(tag, staged.descriptor)
            if old is not None:
                replaced.append((tag, old))
        if not tags:
            store.add_image(staged.descriptor)  # kept untagged, as docker loads it
        loaded.append(Loaded(staged.descriptor, tags, tuple(replaced)))
    return loaded
