"""The rules an image's manifest and config keep with each other, written once: staging refuses
an image that breaks one (load, pull, import), and fsck reports a stored image that does, so
what the gate lets in is never what fsck then calls broken.

Docker schema 2 names its config and layer media types differently; the bytes are the same, so
both spellings are accepted.
"""

from __future__ import annotations

from minibuild.oci.image import Config, Manifest
from minibuild.oci.mediatypes import (CONFIG_MEDIA_TYPE, DOCKER_CONFIG_MEDIA_TYPE, DOCKER_TO_OCI_LAYER,
                                      LAYER_MEDIA_TYPES)

CONFIG_MEDIA_TYPES = (CONFIG_MEDIA_TYPE, DOCKER_CONFIG_MEDIA_TYPE)
KNOWN_LAYER_MEDIA_TYPES = (*LAYER_MEDIA_TYPES, *DOCKER_TO_OCI_LAYER)


def config_problems(manifest: Manifest, config: Config) -> list[str]:
    """What is wrong between a manifest and its config: the config's media type, and the counts of
    layers, DiffIDs and non-empty history entries that must agree."""
    out = []
    if manifest.config.media_type not in CONFIG_MEDIA_TYPES:
        out.append(f"config media type {manifest.config.media_type!r} is not {CONFIG_MEDIA_TYPE}")
    if len(manifest.layers) != len(config.diff_ids):
        out.append(f"{len(manifest.layers)} layers but {len(config.diff_ids)} diff_ids")
    made = sum(1 for h in config.history if not h.empty_layer)
    if config.history and made != len(config.diff_ids):
        out.append(f"{made} non-empty history entries but {len(config.diff_ids)} diff_ids")
    return out


def layer_type_problem(media_type: str) -> str | None:
    """Why a layer's media type is refused (one unpack cannot read), or None."""
    if media_type in KNOWN_LAYER_MEDIA_TYPES:
        return None
    return f"unknown layer media type {media_type!r}"
