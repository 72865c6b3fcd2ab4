"""A store made by hand for the CLI tests (no root, no build): images of small layers with
their summaries and dirs, tags or none, container records; and the CLI run in-process."""

from __future__ import annotations

import gzip
import io
import sys
import tarfile
from pathlib import Path

import pytest

from minibuild.cli import app
from minibuild.containers.records import Container, Containers
from minibuild.layer.snapshot import LayerSummary
from minibuild.oci.digest import Digest
from minibuild.oci.image import Config, History, Image, Layer
from minibuild.oci.reference import Reference
from minibuild.store.layout import Store

GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


class Hand:
    """Images and containers put into a store at `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = Store.open(root)

    def layer(self, name: str, size: int = 1000) -> Layer:
        data = name.encode().ljust(size, b".")
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        diff_id = Digest.of(raw.getvalue())
        descriptor = self.store.put_bytes(gzip.compress(raw.getvalue(), mtime=0), GZIP_LAYER)
        self.store.save_summary(diff_id, LayerSummary(((name, len(data)),), (), (), len(data)))
        self.store.layer_path(diff_id).mkdir(exist_ok=True)
        (self.store.layer_path(diff_id) / name).write_bytes(data)
        return Layer(descriptor, diff_id)

    def image(self, *layers: Layer, tags: tuple[str, ...] = (), created: str = "2024-01-01T00:00:00Z",
              labels: dict[str, str] | None = None, base: Image | None = None):
        """Store an image (on `base` if given); tag it, or keep it untagged."""
        image = base or Image(config=Config(created=created))
        for one in layers:
            image = image.append(one, History(f"COPY {one.diff_id.short} /", created=created))
        config = image.config.config
        for key, value in (labels or {}).items():
            config = config.with_label(key, value)
        image = image.with_container_config(config)
        from dataclasses import replace
        image = replace(image, config=replace(image.config, created=created))
        descriptor = self.store.write_image(image)
        for tag in tags:
            self.store.tag(Reference.parse(tag), descriptor)
        if not tags:
            self.store.add_image(descriptor)
        return descriptor, image

    def image_id(self, descriptor) -> str:
        return str(self.store.image_id(descriptor))

    def container(self, descriptor, image: Image, name: str = "", state: str = "exited",
                  argv=("sleep", "600"), created: str = "2024-02-01T00:00:00Z") -> Container:
        from dataclasses import replace

        records = Containers(self.root)
        made = records.create(Container(
            id="", name=name, image=name or "img", manifest=descriptor,
            diff_ids=image.config.diff_ids, argv=tuple(argv), env=(), cwd="/", user="",
            network="host", created=created))
        made = replace(made, state=state, exit_code=0 if state == "exited" else None)
        records.save(made)
        return made

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def hand(tmp_path):
    made = Hand(tmp_path / "store")
    yield made
    made.close()


def run_cli(monkeypatch, capsys, root: Path, *args: str) -> tuple[int, str, str]:
    """`minibuild --root ROOT args...` in-process: exit code, stdout, stderr."""
    monkeypatch.setattr(sys, "argv", ["minibuild", "--root", str(root), *args])
    with pytest.raises(SystemExit) as info:
        app.main()
    out, err = capsys.readouterr()
    return info.value.code or 0, out, err
