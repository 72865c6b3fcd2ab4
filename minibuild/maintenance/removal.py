"""`rmi`: which tags go and whether the image goes with them, by docker's rules.

Docker's rules (moby `daemon/images/image_delete.go`), with tags as the only references:
- `rmi NAME:TAG` removes that tag. When it was the image's last tag the image goes too, unless
  a container uses it: without -f that is refused ("unable to remove repository reference");
  with -f a running container's image stays as a dangling one, a stopped container's goes (the
  container keeps its layers: it is a gc root of its own).
- `rmi ID` (or a digest, or a prefix of either) removes the image with every tag; an image
  with several tags needs -f, an image a stopped container uses needs -f, an image a running
  container uses cannot be removed.
Only the index changes here; the blobs nothing needs any more go in `gc.collect` afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from minibuild.containers.records import Container, Containers
from minibuild.errors import MinibuildError
from minibuild.oci.image import Descriptor
from minibuild.store.layout import Store

SHORT = 12


class ImageConflict(MinibuildError):
    """An image cannot be removed as asked (docker's "conflict: unable to ...")."""


@dataclass(frozen=True)
class Removal:
    """What `rmi` of one name did: the tags it removed, and the image it deleted (its ID)."""

    untagged: tuple[str, ...] = ()
    deleted: str | None = None
    manifest: Descriptor | None = None  # the deleted image's


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:SHORT]


def remove_image(store: Store, records: Containers, text: str, *, force: bool) -> Removal:
    """Remove what `rmi [-f] TEXT` removes from the index (see the module's rules)."""
    found = store.find(text)
    digest = found.descriptor.digest
    names = next((i.names for i in store.images() if i.descriptor.digest == digest), ())
    image_id = str(store.image_id(found.descriptor))
    users = records.uses(digest)
    running = [c for c in users if records.status(c) == "running"]
    if found.tag is not None:
        if not force and len(names) <= 1 and users:
            raise ImageConflict(
                f'conflict: unable to remove repository reference "{text}" (must force) - '
                f"container {users[0].short_id} is using its referenced image {_short(image_id)}",
                hint="remove the container first, or use `rmi -f` (the container keeps its layers)")
        store.untag(found.tag)
        if len(names) > 1 or running:  # other tags hold it, or a running container (kept dangling)
            return Removal((found.tag,))
        return Removal((found.tag, *store.forget_image(digest)), image_id, found.descriptor)
    _check_id_removal(image_id, names, users, running, force)
    return Removal(store.forget_image(digest), image_id, found.descriptor)


def _check_id_removal(image_id: str, names: tuple[str, ...], users: list[Container],
                      running: list[Container], force: bool) -> None:
    """Refuse `rmi ID` as docker does: never under a running container, else only with -f
    for an image with several tags or one a stopped container uses."""
    prefix = f"conflict: unable to delete {_short(image_id)}"
    if running:
        raise ImageConflict(f"{prefix} (cannot be forced) - image is being used by running "
                            f"container {running[0].short_id}", hint="stop and remove it first")
    if force:
        return
    if len(names) > 1:
        raise ImageConflict(f"{prefix} (must be forced) - image is referenced in multiple "
                            "repositories", hint="remove one tag at a time, or use -f")
    if users:
        raise ImageConflict(f"{prefix} (must be forced) - image is being used by stopped "
                            f"container {users[0].short_id}", hint="remove the container first, "
                            "or use `rmi -f` (the container keeps its layers)")

