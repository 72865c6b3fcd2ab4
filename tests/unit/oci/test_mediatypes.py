"""Media types: the spec's strings, held in one module and nowhere else in the code."""

from __future__ import annotations

from pathlib import Path

from minibuild.oci import mediatypes

ROOT = Path(__file__).resolve().parents[3]


def test_the_oci_strings_are_the_specs():
    assert mediatypes.MANIFEST_MEDIA_TYPE == "application/vnd.oci.image.manifest.v1+json"
    assert mediatypes.INDEX_MEDIA_TYPE == "application/vnd.oci.image.index.v1+json"
    assert mediatypes.CONFIG_MEDIA_TYPE == "application/vnd.oci.image.config.v1+json"
    assert mediatypes.LAYER_MEDIA_TYPES == ("application/vnd.oci.image.layer.v1.tar",
                                            "application/vnd.oci.image.layer.v1.tar+gzip",
                                            "application/vnd.oci.image.layer.v1.tar+zstd")
    assert mediatypes.NONDISTRIBUTABLE_LAYER_TAR_ZSTD == (
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd")


def test_the_docker_strings_are_dockers():
    assert mediatypes.DOCKER_LAYER_TAR_GZIP == "application/vnd.docker.image.rootfs.diff.tar.gzip"
    assert mediatypes.DOCKER_MANIFEST_LIST_MEDIA_TYPE == (
        "application/vnd.docker.distribution.manifest.list.v2+json")
    assert mediatypes.INDEX_MEDIA_TYPES == (mediatypes.INDEX_MEDIA_TYPE,
                                            mediatypes.DOCKER_MANIFEST_LIST_MEDIA_TYPE)


def test_docker_layers_map_to_oci_layers_of_the_same_compression():
    for docker, oci in mediatypes.DOCKER_TO_OCI_LAYER.items():
        assert oci in mediatypes.LAYER_MEDIA_TYPES
        assert docker.rsplit("tar", 1)[1].lstrip(".") == oci.rsplit("tar", 1)[1].lstrip("+")


def test_no_other_module_spells_a_media_type():
    spelled = [str(p.relative_to(ROOT)) for p in (ROOT / "minibuild").rglob("*.py")
               if "application/vnd." in p.read_text() and p.name != "mediatypes.py"]
    assert spelled == []
