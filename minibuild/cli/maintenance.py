"""Commands that look after the store itself: fsck."""

from __future__ import annotations

import json

import click

from minibuild.cli import cli, open_store


@cli.command()
@click.option("--repair", is_flag=True,
              help="Remove garbage and corrupt entries no valid image needs (waits for no one: "
                   "fails if another minibuild process has the store open).")
@click.option("-v", "--verbose", is_flag=True, help="List every unreferenced entry too.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output format.")
@click.pass_context
def fsck(ctx, repair: bool, verbose: bool, fmt: str) -> None:
    """Re-hash every blob, follow every tag and cache entry; exit 1 if an error remains."""
    from minibuild import fsck as checker

    store = open_store(ctx)
    removed = []
    if repair:
        store.lock_exclusive()  # no live build: nothing we delete can be in use
        removed = checker.repair(store, checker.check(store))
    report = checker.check(store)
    if fmt == "json":
        click.echo(json.dumps(_as_json(report, removed), indent=2))
    else:
        _print_text(report, removed, verbose)
    ctx.exit(0 if report.ok else 1)


def _print_text(report, removed, verbose: bool) -> None:
    """Errors one per line, garbage summed up (or listed with -v), then one summary line."""
    from minibuild.units import human_size

    for finding in removed:
        if verbose or finding.severity.value == "error":
            click.echo(f"removed: {finding.where} ({finding.message})")
    if removed:
        click.echo(f"removed {len(removed)} entries ({human_size(sum(f.size for f in removed))})")
    for finding in report.errors:
        click.echo(finding.line())
    garbage = report.garbage
    if verbose:
        for finding in garbage:
            click.echo(finding.line())
    click.echo(f"checked {report.blobs} blobs, {report.tags} tags, {report.layer_dirs} layer dirs, "
               f"{report.cache_entries} cache entries: {len(report.errors)} errors, "
               f"{len(garbage)} unreferenced entries "
               f"({human_size(sum(f.size for f in garbage))})")
    if not report.complete_roots:
        click.echo("note: some tagged image could not be read, so nothing was judged unreferenced")
    if garbage and not verbose:
        click.echo("`minibuild fsck -v` lists the unreferenced entries, `--repair` removes them")


def _as_json(report, removed) -> dict:
    """The report as data, for scripts and tests."""

    def one(finding) -> dict:
        return {"severity": finding.severity.value, "where": finding.where,
                "message": finding.message, "path": str(finding.path) if finding.path else None,
                "size": finding.size}

    return {"ok": report.ok, "blobs": report.blobs, "tags": report.tags,
            "layer_dirs": report.layer_dirs, "cache_entries": report.cache_entries,
            "complete_roots": report.complete_roots,
            "findings": [one(f) for f in report.findings], "removed": [one(f) for f in removed]}
