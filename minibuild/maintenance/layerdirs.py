"""`fsck --deep`: every unpacked layer dir some root names, read against its intact blob.

A dir that differs from its blob is an error `repair` may remove (it is unpacked again when
next needed), unless a running container has it as an overlay lower: then it stays, and the
finding says which containers to stop first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from minibuild.errors import LayerError
from minibuild.layer.deepcheck import Comparison, compare_layer
from minibuild.maintenance.findings import Finding, Scan, Severity, size_of
from minibuild.oci.image import Layer

_BUFSIZE = 1 << 20
_SHOWN = 5  # differing paths listed per layer dir


class DeepProgress(Protocol):
    """What the deep check tells as it goes (the CLI prints it on stderr)."""

    def begin(self, index: int, total: int, layer: Layer) -> None:
        """Layer `index` of `total` (from 1) starts."""

    def end(self, comparison: Comparison | None) -> None:
        """It is done (None: it could not be compared; the finding says why)."""


def container_layers(scan: Scan) -> None:
    """The layers of containers' images (tagged or not): their dirs are in use too."""
    from minibuild.containers.records import Containers

    containers = Containers(scan.store.root)
    for container in containers.all():
        try:
            image = scan.store.load_image(container.manifest)
        except Exception:  # noqa: BLE001 - an unreadable image: its dirs are judged by nothing
            continue
        running = containers.status(container) == "running"
        for layer in image.layers:
            scan.layer(layer)
            if running:
                name = scan.store.layer_path(layer.diff_id).name
                scan.running.setdefault(name, []).append(container.name)


def deep_check(scan: Scan, progress: DeepProgress | None) -> tuple[int, int]:
    """Compare every layer dir some root names with its intact blob; (dirs compared, bytes read).

    Dirs no root names are garbage already; a needed dir whose blob is missing or corrupt is
    reported by the blob checks (there is nothing to compare it with).
    """
    dirs = [path for path in sorted(scan.store.paths.layers.iterdir())
            if path.name in scan.layers and path.is_dir() and not path.is_symlink()]
    total_bytes = 0
    for index, path in enumerate(dirs, 1):
        layer = scan.layers[path.name]
        if progress is not None:
            progress.begin(index, len(dirs), layer)
        comparison = _compare(scan, layer, path)
        scan.compared.add(layer)
        if progress is not None:
            progress.end(comparison)
        if comparison is not None:
            total_bytes += comparison.content_bytes
    return len(dirs), total_bytes


def _compare(scan: Scan, layer: Layer, path: Path) -> Comparison | None:
    """One layer dir against its blob; findings for what differs."""
    where = f"layer {layer.diff_id}"
    digest = layer.descriptor.digest
    try:
        with open(scan.store.blob_path(digest), "rb", buffering=_BUFSIZE) as blob:
            comparison = compare_layer(blob, layer.descriptor.media_type, path, limit=_SHOWN)
    except LayerError as exc:
        scan.findings.append(Finding(Severity.ERROR, where, f"blob {digest} is not a layer unpack "
                                     f"accepts ({exc.message}), so layers/{path.name} cannot "
                                     "have come from it", deep=True))
        return None
    except OSError as exc:  # an I/O error is worth a finding, not a crash; nothing is removed
        scan.findings.append(Finding(Severity.ERROR, where, f"cannot compare layers/{path.name} "
                                     f"with blob {digest}: {exc}", deep=True))
        return None
    if comparison.diff_id != layer.diff_id:
        scan.findings.append(Finding(Severity.ERROR, where, f"blob {digest} holds the tar of "
                                     f"{comparison.diff_id}, not of this DiffID", deep=True))
    if not comparison.ok:
        details = tuple(d.line() for d in comparison.differences)
        if comparison.count > len(details):
            details += (f"... and {comparison.count - len(details)} more",)
        message = (f"unpacked dir layers/{path.name} differs from its blob in {comparison.count} "
                   "path(s)")
        removable: Path | None = path
        users = scan.running.get(path.name)
        if users:  # a running container's overlay has it as a lower dir: removing it would
            # empty the container's files as it runs, and the container would not see a new one
            message += (f"; not removed: running container(s) {', '.join(sorted(users))} use it "
                        "(stop them, then repair)")
            removable = None
        scan.findings.append(Finding(Severity.ERROR, where, message, removable,
                                     size_of(removable), details, deep=True))
    return comparison
