"""Every media type minibuild reads or writes: the OCI image spec's, and Docker's schema 2 ones.

One place for the strings, so a typo cannot make two modules disagree on a blob's kind.
"""

from __future__ import annotations

# OCI image spec
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
LAYER_TAR_GZIP = LAYER_TAR + "+gzip"
LAYER_TAR_ZSTD = LAYER_TAR + "+zstd"
LAYER_MEDIA_TYPES = (LAYER_TAR, LAYER_TAR_GZIP, LAYER_TAR_ZSTD)  # the ones minibuild stores
# Deprecated by the spec, still found in the wild; read like their distributable twins.
NONDISTRIBUTABLE_LAYER_TAR = "application/vnd.oci.image.layer.nondistributable.v1.tar"
NONDISTRIBUTABLE_LAYER_TAR_GZIP = NONDISTRIBUTABLE_LAYER_TAR + "+gzip"
NONDISTRIBUTABLE_LAYER_TAR_ZSTD = NONDISTRIBUTABLE_LAYER_TAR + "+zstd"

# Docker image manifest v2, schema 2 (and the schema 1 minibuild refuses)
DOCKER_MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"
DOCKER_SCHEMA1_MEDIA_TYPES = ("application/vnd.docker.distribution.manifest.v1+json",
                              "application/vnd.docker.distribution.manifest.v1+prettyjws")
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_TAR_GZIP = DOCKER_LAYER_TAR + ".gzip"
DOCKER_LAYER_TAR_ZSTD = DOCKER_LAYER_TAR + ".zstd"
DOCKER_FOREIGN_LAYER_TAR_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

# What an index may be: a pull or a load resolves either to this host's platform.
INDEX_MEDIA_TYPES = (INDEX_MEDIA_TYPE, DOCKER_MANIFEST_LIST_MEDIA_TYPE)
# Docker schema 2 layer types and their OCI names: the same bytes, so the same digests.
DOCKER_TO_OCI_LAYER = {
    DOCKER_LAYER_TAR_GZIP: LAYER_TAR_GZIP,
    DOCKER_LAYER_TAR_ZSTD: LAYER_TAR_ZSTD,
    DOCKER_LAYER_TAR: LAYER_TAR,
}
