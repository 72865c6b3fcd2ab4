"""Content digests (`sha256:<hex>`) as typed values, parsed once at the edge."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from minibuild.errors import ReferenceError_

_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, order=True)
class Digest:
    """A sha256 digest: of a blob (Digest) or of an uncompressed layer tar (DiffID)."""

    hex: str

    @property
    def algorithm(self) -> str:
        """Always `sha256`: the only algorithm minibuild writes."""
        return "sha256"

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse `sha256:<64 hex>`; raise ReferenceError_ otherwise."""
        algorithm, _, hexpart = text.partition(":")
        if algorithm != "sha256" or not _HEX.match(hexpart):
            raise ReferenceError_(f"invalid digest {text!r} (want sha256:<64 hex digits>)")
        return cls(hexpart)

    @classmethod
    def of(cls, data: bytes) -> Digest:
        """The digest of some bytes."""
        return cls(hashlib.sha256(data).hexdigest())

    @classmethod
    def from_hash(cls, h: "hashlib._Hash") -> Digest:
        """The digest held by a finished hashlib sha256 object."""
        return cls(h.hexdigest())

    @property
    def short(self) -> str:
        """The first 12 hex digits, as docker shows ids."""
        return self.hex[:12]

    def __str__(self) -> str:
        return f"sha256:{self.hex}"


def chain_ids(diff_ids: list[Digest]) -> list[Digest]:
    """ChainID(L0..Ln) for every n: sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln))."""
    out: list[Digest] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            out.append(Digest.of(f"{out[-1]} {diff_id}".encode()))
    return out
