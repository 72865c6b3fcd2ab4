"""fsck's check of DiffIDs: every layer a root names must be a blob whose tar hashes to the
DiffID its image config claims. Else `run` (which mounts the dir of the claimed DiffID) and
`save`/`inspect` (which show the blob) disagree about what the image is (issue 13, finding 8).

The store records which blob gave which DiffID (`LayerDirs.verified`): a recorded claim is
trusted, except by the deep check, which trusts nothing. Any other claim is checked by reading
its blob through, decompressing it, and one that holds is recorded for next time. The deep check
reads the blob of every unpacked dir it compares already: those claims are left to it.
"""

from __future__ import annotations

from minibuild.errors import LayerError
from minibuild.maintenance.findings import Scan
from minibuild.oci.image import Layer


def check_diff_ids(scan: Scan, *, deep: bool) -> int:
    """Check every layer claim the scan collected; the number of blobs read through."""
    read = 0
    for layer, wheres in scan.claims.items():
        if layer in scan.compared or (not deep and scan.store.layer_dirs.verified(layer)):
            continue
        read += 1
        _check(scan, layer, wheres or [f"layer {layer.diff_id}"])
    return read


def _check(scan: Scan, layer: Layer, wheres: list[str]) -> None:
    """Read one blob through and compare its DiffID with the claim."""
    digest = layer.descriptor.digest
    try:
        diff_id, _ = scan.store.layer_dirs.read_through(layer)
    except LayerError as exc:
        scan.error(wheres[0], f"blob {digest} is not a layer unpack accepts ({exc.message})")
        return
    except OSError as exc:  # an I/O error is worth a finding, not a crash
        scan.error(wheres[0], f"cannot read blob {digest}: {exc}")
        return
    if diff_id == layer.diff_id:
        scan.store.layer_dirs.note_verified(layer)
        return
    also = f" (also named by {', '.join(wheres[1:])})" if len(wheres) > 1 else ""
    scan.error(wheres[0], f"blob {digest} decompresses to DiffID {diff_id}, not the {layer.diff_id} "
                          f"the image config claims{also}")
