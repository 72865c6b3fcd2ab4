"""Commands that look after the store itself: fsck, prune, df."""

from __future__ import annotations

import json
import sys
import time

import click

from minibuild.cli.app import cli, open_store
from minibuild.cli.lines import table


@cli.command()
@click.option("--repair", is_flag=True,
              help="Remove garbage and corrupt entries no valid image needs (waits for no one: "
                   "fails if another minibuild process has the store open).")
@click.option("--deep", is_flag=True,
              help="Also read every layer blob and compare it with its unpacked dir (type, mode, "
                   "owner, content, links, whiteouts...); slow: it reads every byte.")
@click.option("-v", "--verbose", is_flag=True, help="List every unreferenced entry too.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output format.")
@click.pass_context
def fsck(ctx, repair: bool, deep: bool, verbose: bool, fmt: str) -> None:
    """Re-hash every blob, follow every tag and cache entry; exit 1 if an error remains."""
    from minibuild.maintenance import fsck as checker

    store = open_store(ctx)
    removed = []
    progress = _DeepProgress() if deep else None
    if repair:
        store.lock_exclusive()  # no live build: nothing we delete can be in use
        before = checker.check(store, deep=deep, progress=progress)
        removed = checker.repair(store, before)
        report = checker.recheck(store, before)
    else:
        report = checker.check(store, deep=deep, progress=progress)
    if fmt == "json":
        click.echo(json.dumps(_as_json(report, removed), indent=2))
    else:
        _print_text(report, removed, verbose)
    ctx.exit(0 if report.ok else 1)


def _print_text(report, removed, verbose: bool) -> None:
    """Errors one per line, garbage summed up (or listed with -v), then one summary line."""
    from minibuild.text import human_size

    for finding in removed:
        if verbose or finding.severity.value == "error":
            click.echo(f"removed: {finding.where} ({finding.message})")
            _print_details(finding)
    if removed:
        click.echo(f"removed {len(removed)} entries ({human_size(sum(f.size for f in removed))})")
    for finding in report.errors:
        click.echo(finding.line())
        _print_details(finding)
    garbage = report.garbage
    if verbose:
        for finding in garbage:
            click.echo(finding.line())
    click.echo(f"checked {report.blobs} blobs, {report.tags} tags, {report.layer_dirs} layer dirs, "
               f"{report.cache_entries} cache entries: {len(report.errors)} errors, "
               f"{len(garbage)} unreferenced entries "
               f"({human_size(sum(f.size for f in garbage))})")
    if report.deep_layers is not None:
        click.echo(f"deep: compared {report.deep_layers} layer dirs with their blobs "
                   f"({human_size(report.deep_bytes)} of file content)")
    if not report.complete_roots:
        click.echo("note: some tagged image could not be read, so nothing was judged unreferenced")
    if garbage and not verbose:
        click.echo("`minibuild fsck -v` lists the unreferenced entries, `--repair` removes them")
    if any(f.deep and f.path is not None for f in report.errors):
        click.echo("`minibuild fsck --deep --repair` removes the damaged layer dirs; each is "
                   "unpacked again from its blob when next needed")


def _print_details(finding) -> None:
    """The lines under a finding (a damaged layer dir's first differing paths), indented."""
    for detail in finding.details:
        click.echo(f"    {detail}")


def _as_json(report, removed) -> dict:
    """The report as data, for scripts and tests."""

    def one(finding) -> dict:
        return {"severity": finding.severity.value, "where": finding.where,
                "message": finding.message, "path": str(finding.path) if finding.path else None,
                "size": finding.size, "details": list(finding.details)}

    return {"ok": report.ok, "blobs": report.blobs, "tags": report.tags,
            "layer_dirs": report.layer_dirs, "cache_entries": report.cache_entries,
            "complete_roots": report.complete_roots,
            "deep_layers": report.deep_layers, "deep_bytes": report.deep_bytes,
            "findings": [one(f) for f in report.findings], "removed": [one(f) for f in removed]}


class _DeepProgress:
    """One line per layer on stderr as the deep check goes (on a terminal, begun before it runs)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.head = ""
        self.started = 0.0

    def begin(self, index: int, total: int, layer) -> None:
        """A layer starts: on a terminal, say which while it is read."""
        from minibuild.text import human_size

        self.started = time.monotonic()
        self.head = (f"deep {index}/{total}: layer {layer.diff_id.short} "
                     f"({human_size(layer.descriptor.size)} blob)")
        if self.tty:
            click.echo(f"{self.head} ...", err=True, nl=False)

    def end(self, comparison) -> None:
        """It is done: its outcome, size and time."""
        from minibuild.text import human_size

        seconds = time.monotonic() - self.started
        if comparison is None:
            outcome = "not compared (see the error below)"
        else:
            state = "ok" if comparison.ok else f"{comparison.count} path(s) differ"
            outcome = (f"{state} ({comparison.entries} entries, "
                       f"{human_size(comparison.content_bytes)})")
        prefix = "\r\x1b[K" if self.tty else ""
        click.echo(f"{prefix}{self.head}: {outcome} in {seconds:.2f} s", err=True)


@cli.command()
@click.option("--cache", "drop_cache", is_flag=True,
              help="Also drop the build cache (every step key, and the layers only it kept).")
@click.option("--volumes", "drop_volumes", is_flag=True,
              help="Also remove the anonymous volumes no container uses (volumes stay otherwise).")
@click.option("-a", "--all", "everything", is_flag=True,
              help="Every image no container uses, tagged or not (as `image prune -a`).")
@click.option("-f", "--force", is_flag=True,
              help="Accepted for docker's muscle memory: this prune never asks.")
@click.pass_context
def prune(ctx, drop_cache, drop_volumes, everything, force) -> None:
    """Delete dangling images (no tag, no container; -a: every image no container uses), then
    the blobs, unpacked layers and summaries no image, container or cache entry needs."""
    from minibuild.maintenance import gc
    from minibuild.cli.volumes import prune_volumes
    from minibuild.text import human_size

    store = open_store(ctx)
    collected = gc.collect(store, drop_cache=drop_cache, dangling=True, unused=everything)
    removed = prune_volumes(store.root, everything=False) if drop_volumes else []
    echo_deleted_images(collected)
    click.echo(f"Deleted {len(collected.blobs)} blobs, {len(collected.layer_dirs)} layer dirs, "
               f"{collected.summaries} layer summaries, {collected.cache_entries} cache entries"
               + (f", {len(removed)} volumes" if drop_volumes else ""))
    freed = collected.freed + sum(size for _, size in removed)
    click.echo(f"Total reclaimed space: {human_size(freed)}")


@cli.command()
@click.option("-v", "--verbose", is_flag=True, help="Per image, container and layer.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@click.pass_context
def df(ctx, verbose, fmt) -> None:
    """Disk usage: images, containers, volumes, layers, build caches (bytes counted once)."""
    from dataclasses import asdict

    from minibuild.maintenance import inventory

    figures = inventory.measure(open_store(ctx))
    if fmt == "json":
        click.echo(json.dumps(asdict(figures), indent=2))
        return
    click.echo(_df_summary(figures))
    if verbose:
        click.echo(_df_verbose(figures))


def _df_summary(figures) -> str:
    from minibuild.text import human_size as hs

    rows = []
    for r in figures.rows:
        pct = f" ({100 * r.reclaimable // r.size}%)" if r.size else ""
        rows.append((r.kind, str(r.total), str(r.active), hs(r.size), hs(r.shared), hs(r.unique),
                     hs(r.reclaimable) + pct))
    summary = table(("TYPE", "TOTAL", "ACTIVE", "SIZE", "SHARED", "UNIQUE", "RECLAIMABLE"), rows)
    return summary + (f"\nTotal on disk (blobs, layer dirs, containers, volumes, cache mounts): "
                    f"{hs(figures.total)}")


def _df_verbose(figures) -> str:
    from minibuild.text import human_size as hs

    images = [(", ".join(i.names) or "<none>", (i.image_id or i.digest)[7:19], hs(i.size), hs(i.shared),
               hs(i.unique), str(i.containers)) for i in figures.images]
    containers = [(c.id[:12], c.image, hs(c.size), "running" if c.running else "stopped", c.name)
                  for c in figures.containers]
    layers = [(l.key.removeprefix("sha256:")[:12] if l.key.startswith("sha256:") else l.key,
               hs(l.size), str(l.images), str(l.containers), "yes" if l.cached else "no",
               "yes" if l.referenced else "no") for l in figures.layers]
    volumes = [(v.name, str(v.links), hs(v.size)) for v in figures.volumes]
    mounts = [(m.dir, hs(m.size), "yes" if m.in_use else "no") for m in figures.cache_mounts]
    return "\n".join([
        "\nImages space usage:\n",
        table(("IMAGE", "IMAGE ID", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "CONTAINERS"), images),
        "\nContainers space usage:\n",
        table(("CONTAINER ID", "IMAGE", "SIZE", "STATUS", "NAMES"), containers),
        "\nLocal Volumes space usage:\n",
        table(("VOLUME NAME", "LINKS", "SIZE"), volumes),
        "\nLayers space usage (blob + unpacked dir):\n",
        table(("LAYER", "SIZE", "IMAGES", "CONTAINERS", "CACHED", "REFERENCED"), layers),
        "\nRUN cache mounts space usage (ROOT/cache/mounts):\n",
        table(("CACHE DIR", "SIZE", "IN USE"), mounts)])


def echo_deleted_images(collected) -> None:
    """docker's "Deleted Images:" block of a prune (nothing when no image went)."""
    if collected.images:
        click.echo("Deleted Images:")
        for name in collected.untagged:
            click.echo(f"untagged: {name}")
        for image_id in collected.images:
            click.echo(f"deleted: {image_id}")
        click.echo()
