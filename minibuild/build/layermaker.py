"""The one place that turns a step's writes into a layer: mount the image's layers under a
fresh upper dir, run the step, snapshot the upper dir into the store; and `--squash`."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

from minibuild.build.ports import BuildStore, Reporter
from minibuild.build.steps import FsStep
from minibuild.layer.compression import Compression
from minibuild.layer.emptylayer import write_empty_layer
from minibuild.layer.snapshot import is_empty, write_layer
from minibuild.oci.image import Descriptor, Image, Layer
from minibuild.sandbox.sandbox import RootFS
from minibuild.fs.files import remove_tree
from minibuild.sandbox.overlay import make_overlay_dirs
from minibuild.text import human_size


class Meter:
    """A blob sink that counts what passes through and reports it as the step's phase
    (`snapshot 12MB written, 40MB/s`), at most every `every` seconds: what TTY progress shows
    while a big COPY or RUN result is being stored."""

    def __init__(self, sink, report: Callable[[str], None], *, every: float = 0.25,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.sink, self.report, self.every, self.clock = sink, report, every, clock
        self.written = 0
        self.started = self._reported = clock()

    def write(self, data: bytes) -> int:
        """Pass `data` on; report the bytes so far when the last report is old enough."""
        count = self.sink.write(data)
        self.written += len(data)
        now = self.clock()
        if now - self._reported >= self.every:
            self._reported = now
            self.report(f"snapshot {human_size(self.written)} written, "
                        f"{human_size(int(self.written / (now - self.started)))}/s")
        return count

    def rate_note(self, content: int) -> str:
        """`, 40MB/s` (the layer's content per second of snapshot) when it took long enough
        to say; else ""."""
        seconds = self.clock() - self.started
        return f", {human_size(int(content / seconds))}/s" if seconds >= 0.1 else ""


class LayerMaker:
    """Runs filesystem steps on scratch overlays of the store and stores what they wrote."""

    def __init__(self, store: BuildStore, reporter: Reporter, compression: Compression,
                 clamp_mtime: int | None) -> None:
        self.store = store
        self.reporter = reporter
        self.compression = compression
        self.clamp_mtime = clamp_mtime  # SOURCE_DATE_EPOCH

    def run(self, image: Image, step: FsStep, previous: Path | None = None) -> tuple[Layer | None, str]:
        """Mount the image's layers under a fresh upper dir, run, and snapshot the upper dir;
        the layer (None for no change) and a note for the progress line.

        With `previous` (the layer dir the same COPY made last) the step starts from that
        layer's unchanged files."""
        scratch = self.store.scratch("step")
        try:
            dirs = make_overlay_dirs(scratch)
            lowers = tuple(self.store.ensure_layer(layer) for layer in reversed(image.layers))
            with step.meter.watching(self.reporter.phase) if step.meter else nullcontext():
                reused = self._execute(step, RootFS(lowers, *dirs), previous)
            if step.verify is not None:
                step.verify()
            self.reporter.phase("snapshot")
            layer, note = self.snapshot(dirs[0], keep_empty=step.layer_when_unchanged)
            copied = step.meter.note() if step.meter else ""
            note = f"{copied}; {note}" if copied else note
            return layer, f"{note}, {reused} files reused" if reused else note
        finally:
            remove_tree(scratch)

    @staticmethod
    def _execute(step: FsStep, rootfs: RootFS, previous: Path | None) -> int:
        """Run the step (from `previous`'s unchanged files when given); the files reused."""
        if previous is None:
            step.execute(rootfs)
            return 0
        return step.reuse.execute(rootfs, previous)

    def snapshot(self, upper: Path, keep_empty: bool = False) -> tuple[Layer | None, str]:
        """The upper dir as a stored layer. When the step changed nothing: BuildKit's empty
        layer if `keep_empty` (see emptylayer.py), else None."""
        empty = is_empty(upper)
        if empty and not keep_empty:
            return None, "no changes"
        with self.store.blob_writer() as writer:
            meter = Meter(writer, self.reporter.phase)
            if empty:
                written = write_empty_layer(meter, self.compression)
            else:
                written = write_layer(upper, meter, compression=self.compression,
                                      clamp_mtime=self.clamp_mtime)
            digest, size = writer.commit()
        self.store.save_summary(written.diff_id, written.summary, {digest: written.media_type})
        self.store.adopt_layer(written.diff_id, upper)
        layer = Layer(Descriptor(written.media_type, digest, size), written.diff_id)
        if empty:
            return layer, "no changes: an empty layer"
        content = written.summary.content_size
        return layer, f"{human_size(content)} in layer {layer.diff_id.short}{meter.rate_note(content)}"

    def squash(self, image: Image, base: Image) -> Image:
        """The layers `image` added to `base`, merged into one (the base's layers stay shared).

        History keeps one entry per instruction; all but the last are marked empty_layer.
        """
        from minibuild.layer.squash import squash_layers

        added = image.layers[len(base.layers):]
        entries = image.config.history[len(base.config.history):]
        if len(added) <= 1 or not entries:
            return image
        self.reporter.phase("squash")
        scratch = self.store.scratch("squash")
        try:
            merged = scratch / "layer"
            merged.mkdir()
            squash_layers([self.store.ensure_layer(l) for l in added],
                          [self.store.ensure_layer(l) for l in reversed(base.layers)], merged)
            layer, _ = self.snapshot(merged)
        finally:
            remove_tree(scratch)
        squashed = replace(base, config=replace(image.config, diff_ids=base.config.diff_ids,
                                                history=base.config.history))
        for entry in entries[:-1]:
            squashed = squashed.append(None, entry)
        return squashed.append(layer, entries[-1])
