"""OCI image values: Descriptor, Manifest, Config, History, Image; canonical JSON."""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field, replace
from typing import Any

from minibuild.oci.digest import Digest
from minibuild.oci.mediatypes import DOCKER_TO_OCI_LAYER, MANIFEST_MEDIA_TYPE

REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"

_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
                  "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def host_architecture() -> str:
    """The GOARCH name of this machine (what OCI configs and registries use)."""
    machine = platform.machine()
    return _ARCHITECTURES.get(machine, machine)


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: the same value always gives the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Descriptor:
    """A pointer to a blob: media type, digest and size (plus annotations)."""

    media_type: str
    digest: Digest
    size: int
    annotations: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The descriptor as OCI JSON."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Descriptor:
        """Read an OCI descriptor object."""
        return cls(
            media_type=data["mediaType"],
            digest=Digest.parse(data["digest"]),
            size=int(data["size"]),
            annotations=tuple(sorted((data.get("annotations") or {}).items())),
        )

    def annotation(self, key: str) -> str | None:
        """The value of one annotation, or None."""
        return dict(self.annotations).get(key)


@dataclass(frozen=True)
class History:
    """One history entry: the instruction that made a layer (or changed only metadata)."""

    created_by: str
    created: str | None = None
    empty_layer: bool = False
    comment: str | None = None
    author: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The entry as OCI JSON (absent fields left out)."""
        out: dict[str, Any] = {"created_by": self.created_by}
        if self.created is not None:
            out["created"] = self.created
        if self.empty_layer:
            out["empty_layer"] = True
        if self.comment:
            out["comment"] = self.comment
        if self.author:
            out["author"] = self.author
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> History:
        """Read an OCI history entry."""
        return cls(
            created_by=data.get("created_by", ""),
            created=data.get("created"),
            empty_layer=bool(data.get("empty_layer", False)),
            comment=data.get("comment"),
            author=data.get("author"),
        )


# Container config keys in the order docker prints them; values are plain JSON.
_CONTAINER_KEYS = ("User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir",
                   "Labels", "StopSignal", "Healthcheck", "Shell", "OnBuild")


@dataclass(frozen=True)
class ContainerConfig:
    """The `config` object of an image config: how a container of the image starts."""

    env: tuple[str, ...] = ()
    cmd: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    working_dir: str = ""
    user: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    stop_signal: str = ""
    healthcheck: tuple[tuple[str, Any], ...] | None = None
    shell: tuple[str, ...] | None = None
    onbuild: tuple[str, ...] = ()

    def env_dict(self) -> dict[str, str]:
        """Env as an ordered mapping (a later duplicate wins)."""
        out: dict[str, str] = {}
        for item in self.env:
            key, _, value = item.partition("=")
            out[key] = value
        return out

    def with_env(self, key: str, value: str) -> ContainerConfig:
        """A copy with one variable set (replacing in place, else appended)."""
        items = [item for item in self.env]
        for i, item in enumerate(items):
            if item.partition("=")[0] == key:
                items[i] = f"{key}={value}"
                break
        else:
            items.append(f"{key}={value}")
        return replace(self, env=tuple(items))

    def with_label(self, key: str, value: str) -> ContainerConfig:
        """A copy with one label set."""
        labels = dict(self.labels)
        labels[key] = value
        return replace(self, labels=tuple(sorted(labels.items())))

    def to_json(self) -> dict[str, Any]:
        """The config object as OCI JSON, empty fields left out."""
        values: dict[str, Any] = {
            "User": self.user or None,
            "ExposedPorts": {p: {} for p in self.exposed_ports} or None,
            "Env": list(self.env) or None,
            "Entrypoint": list(self.entrypoint) if self.entrypoint is not None else None,
            "Cmd": list(self.cmd) if self.cmd is not None else None,
            "Volumes": {v: {} for v in self.volumes} or None,
            "WorkingDir": self.working_dir or None,
            "Labels": dict(self.labels) or None,
            "StopSignal": self.stop_signal or None,
            "Healthcheck": dict(self.healthcheck) if self.healthcheck is not None else None,
            "Shell": list(self.shell) if self.shell is not None else None,
            "OnBuild": list(self.onbuild) or None,
        }
        return {k: values[k] for k in _CONTAINER_KEYS if values[k] is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> ContainerConfig:
        """Read the config object of an image config (missing or null means empty)."""
        data = data or {}

        def seq(key: str) -> tuple[str, ...] | None:
            value = data.get(key)
            return tuple(value) if value is not None else None

        return cls(
            env=tuple(data.get("Env") or ()),
            cmd=seq("Cmd"),
            entrypoint=seq("Entrypoint"),
            working_dir=data.get("WorkingDir") or "",
            user=data.get("User") or "",
            labels=tuple(sorted((data.get("Labels") or {}).items())),
            exposed_ports=tuple(sorted(data.get("ExposedPorts") or {})),
            volumes=tuple(sorted(data.get("Volumes") or {})),
            stop_signal=data.get("StopSignal") or "",
            healthcheck=tuple(sorted(data["Healthcheck"].items())) if data.get("Healthcheck") else None,
            shell=seq("Shell"),
            onbuild=tuple(data.get("OnBuild") or ()),
        )


@dataclass(frozen=True)
class Config:
    """An OCI image config: platform, container config, layer DiffIDs and history."""

    architecture: str = field(default_factory=host_architecture)
    os: str = "linux"
    created: str | None = None
    author: str | None = None
    config: ContainerConfig = ContainerConfig()
    diff_ids: tuple[Digest, ...] = ()
    history: tuple[History, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The config as OCI JSON."""
        out: dict[str, Any] = {
            "architecture": self.architecture,
            "os": self.os,
            "config": self.config.to_json(),
            "rootfs": {"type": "layers", "diff_ids": [str(d) for d in self.diff_ids]},
            "history": [h.to_json() for h in self.history],
        }
        if self.created is not None:
            out["created"] = self.created
        if self.author is not None:
            out["author"] = self.author
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Config:
        """Read an OCI (or docker) image config."""
        rootfs = data.get("rootfs") or {}
        return cls(
            architecture=data.get("architecture", host_architecture()),
            os=data.get("os", "linux"),
            created=data.get("created"),
            author=data.get("author"),
            config=ContainerConfig.from_json(data.get("config")),
            diff_ids=tuple(Digest.parse(d) for d in rootfs.get("diff_ids") or ()),
            history=tuple(History.from_json(h) for h in data.get("history") or ()),
        )

    def layer_history(self) -> list[tuple[History, int | None]]:
        """Each history entry with the index of the layer it made (None for empty_layer)."""
        out: list[tuple[History, int | None]] = []
        layer = 0
        for entry in self.history:
            if entry.empty_layer:
                out.append((entry, None))
            else:
                out.append((entry, layer))
                layer += 1
        return out


@dataclass(frozen=True)
class Manifest:
    """An OCI image manifest: the config descriptor and the layer descriptors, base first."""

    config: Descriptor
    layers: tuple[Descriptor, ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The manifest as OCI JSON."""
        out: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": self.config.to_json(),
            "layers": [layer.to_json() for layer in self.layers],
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        """Read an OCI (or docker schema 2) image manifest."""
        return cls(
            config=Descriptor.from_json(data["config"]),
            layers=tuple(Descriptor.from_json(d) for d in data.get("layers") or ()),
            annotations=tuple(sorted((data.get("annotations") or {}).items())),
        )


@dataclass(frozen=True)
class Layer:
    """A layer of an image: its blob descriptor and the DiffID of its uncompressed tar."""

    descriptor: Descriptor
    diff_id: Digest


@dataclass(frozen=True)
class Image:
    """An image being built or read: config plus its layers (base first)."""

    config: Config = Config()
    layers: tuple[Layer, ...] = ()

    def append(self, layer: Layer | None, history: History) -> Image:
        """A new image with one more history entry and, unless None, one more layer."""
        config = self.config
        if layer is None:
            history = replace(history, empty_layer=True)
            config = replace(config, history=config.history + (history,))
            return replace(self, config=config)
        history = replace(history, empty_layer=False)
        config = replace(config, diff_ids=config.diff_ids + (layer.diff_id,),
                         history=config.history + (history,))
        return Image(config=config, layers=self.layers + (layer,))

    def with_container_config(self, container: ContainerConfig) -> Image:
        """A new image whose container config is replaced."""
        return replace(self, config=replace(self.config, config=container))

    def manifest(self, config_descriptor: Descriptor) -> Manifest:
        """The OCI manifest of this image once its config blob is stored (layers of a Docker
        base get their OCI media type names, so one manifest never mixes the two)."""
        layers = tuple(replace(l.descriptor, media_type=DOCKER_TO_OCI_LAYER.get(
            l.descriptor.media_type, l.descriptor.media_type)) for l in self.layers)
        return Manifest(config=config_descriptor, layers=layers)

    def config_bytes(self) -> bytes:
        """The canonical JSON bytes of the config."""
        return canonical_json(self.config.to_json())
