"""`commit`: a container's upper dir becomes a new layer on its image, like a build step's.

The upper dir is snapshotted with the build's own code (snapshot.write_layer into a blob), and
the layer dir is unpacked from that blob: the live container keeps its upper dir untouched.
"""

from __future__ import annotations

from dataclasses import replace

from minibuild.containers.records import Container, Containers, now
from minibuild.oci.image import ContainerConfig, Descriptor, History, Image, Layer
from minibuild.containers.signals import Paused
from minibuild.layer.compression import Compression
from minibuild.layer.snapshot import is_empty, write_layer


def committed_config(config: ContainerConfig, container: Container) -> ContainerConfig:
    """The image's config with what `run` changed (as docker's commit keeps it)."""
    changes = container.overrides
    if "entrypoint" in changes:
        entry = changes["entrypoint"]
        config = replace(config, entrypoint=(entry,) if entry else None,
                         cmd=tuple(changes.get("cmd") or ()) or None)
    elif changes.get("cmd"):
        config = replace(config, cmd=tuple(changes["cmd"]))
    if changes.get("env"):
        config = replace(config, env=tuple(f"{k}={v}" for k, v in container.env))
    if changes.get("workdir"):
        config = replace(config, working_dir=changes["workdir"])
    if "user" in changes:
        config = replace(config, user=changes["user"])
    return config


def snapshot_upper(store, containers: Containers, container: Container, *, pause: bool,
                   compression: Compression) -> Layer | None:
    """The container's upper dir as a stored, unpacked layer; None when it changed nothing."""
    upper = containers.dirs(container.id)[0]
    with Paused(containers, container, pause):
        if is_empty(upper):
            return None
        with store.blob_writer() as writer:
            written = write_layer(upper, writer, compression=compression)
            digest, size = writer.commit()
    store.save_summary(written.diff_id, written.summary, {digest: written.media_type})
    layer = Layer(Descriptor(written.media_type, digest, size), written.diff_id)
    store.ensure_layer(layer)  # unpacked from the blob, verified against the DiffID
    return layer


def commit_container(store, containers: Containers, container: Container, *,
                     message: str | None, author: str | None, pause: bool,
                     compression: Compression) -> Descriptor:
    """Store the new image (container's image + one layer + one history entry); its manifest."""
    image: Image = store.load_image(container.manifest)
    layer = snapshot_upper(store, containers, container, pause=pause, compression=compression)
    created = now()
    history = History(created_by=" ".join(container.argv), created=created, comment=message,
                      author=author)
    image = image.with_container_config(committed_config(image.config.config, container))
    image = image.append(layer, history)
    image = replace(image, config=replace(image.config, created=created,
                                          author=author or image.config.author))
    return store.write_image(image)
