"""Commands about images: history, images, layers, tag, rmi, parse (build: building.py; inspect:
inspection.py)."""

from __future__ import annotations

import json

import click

from minibuild.cli.app import cli, container_records, open_store, report_error


FORMAT_HELP = ("table (default), json, or a Go template as docker takes: '{{.ID}}', "
               "'table {{.ID}}\\t{{.Size}}', '{{json .}}'.")


@cli.command()
@click.option("--no-trunc", is_flag=True, help="Do not truncate output.")
@click.option("-q", "--quiet", is_flag=True, help="Only the image IDs (docker's: the image's ID on "
              "its newest entry, <missing> on the others).")
@click.option("--format", "fmt", default="table", show_default=True, help=FORMAT_HELP)
@click.argument("image")
@click.pass_context
def history(ctx, no_trunc, quiet, fmt, image) -> None:
    """Show the layers of an image, the instruction that made each, and wasted space."""
    from minibuild.cli import formatting, rows as docker_rows, views

    store = open_store(ctx)
    _, descriptor = store.resolve(image)
    rows = views.history_rows(store, store.load_image(descriptor))
    if fmt == "json":
        click.echo(json.dumps([r.to_json() for r in reversed(rows)], indent=2))
        return
    if quiet or fmt != "table":
        image_id = str(store.image_id(descriptor))
        entries = [docker_rows.HistoryEntry(r, image_id if i == 0 else None, no_trunc=no_trunc)
                   for i, r in enumerate(reversed(rows))]
        click.echo(formatting.render("{{.ID}}" if quiet else fmt, entries,
                                     docker_rows.HISTORY_HEADERS), nl=False)
        return
    from minibuild.cli import render

    click.echo(render.history_table(rows, no_trunc=no_trunc), nl=False)


_IMAGES_TABLE = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
_IMAGES_DIGESTS = ("table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}"
                   "\t{{.Size}}")


@cli.command()
@click.option("-a", "--all", "show_all", is_flag=True,
              help="Show all images (default hides intermediate ones: untagged images another "
                   "image is built on).")
@click.option("--digests", is_flag=True, help="Show the DIGEST column (the manifest digest).")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="dangling=true|false, reference=PATTERN, label=KEY[=VALUE], before=IMAGE, "
                   "since=IMAGE (repeatable).")
@click.option("--format", "fmt", default="table", show_default=True, help=FORMAT_HELP)
@click.option("--no-trunc", is_flag=True, help="Show whole IDs.")
@click.option("-q", "--quiet", is_flag=True, help="Only the image IDs.")
@click.argument("reference", required=False)
@click.pass_context
def images(ctx, show_all, digests, filters, fmt, no_trunc, quiet, reference) -> None:
    """List images: one line per tag, `<none>` for an untagged one (IMAGE ID: config digest)."""
    from minibuild.cli import filters as image_filters, formatting, rows as docker_rows, views

    store = open_store(ctx)
    wanted = image_filters.parse(filters, image_filters.IMAGE_KEYS)
    if reference:
        wanted.setdefault("reference", []).append(reference)
    chosen = image_filters.image_rows(views.image_entries(store), wanted,
                                      lambda text: views.created_of(store, text),
                                      show_all=show_all)
    if fmt == "json" and not quiet:
        click.echo(json.dumps([views.image_json(entry, name) for entry, name in chosen], indent=2))
        return
    shown = [docker_rows.ImageRow(entry, name, no_trunc=no_trunc) for entry, name in chosen]
    template = "{{.ID}}" if quiet else fmt if fmt != "table" else (
        _IMAGES_DIGESTS if digests else _IMAGES_TABLE)
    click.echo(formatting.render(template, shown, docker_rows.IMAGE_HEADERS), nl=False)


@cli.command()
@click.argument("source")
@click.argument("target")
@click.pass_context
def tag(ctx, source, target) -> None:
    """Give an image another name: tag SOURCE TARGET."""
    from minibuild.oci.reference import Reference

    store = open_store(ctx)
    ref = Reference.parse(target)
    _, descriptor = store.resolve(source)
    store.tag(ref, descriptor)


@cli.command()
@click.option("-f", "--file", "buildfile", type=click.Path(dir_okay=False), default="Buildfile",
              show_default=True)
def parse(buildfile) -> None:
    """Print the parsed instructions of a Buildfile as JSON."""
    from minibuild.cli.dump import dump
    from minibuild.dockerfile import parser

    click.echo(json.dumps(dump(parser.parse_file(buildfile)), indent=2))


@cli.command()
@click.option("-f", "--force", is_flag=True,
              help="Remove an image with several tags, or one a stopped container uses.")
@click.argument("images", nargs=-1, required=True)
@click.pass_context
def rmi(ctx, force, images) -> None:
    """Remove images (by name, ID or digest): the tags asked for, then what nothing else holds."""
    from minibuild.errors import MinibuildError
    from minibuild.maintenance.removal import remove_image

    store = open_store(ctx)
    records = container_records(ctx)
    failed, layers = False, set()
    for text in images:  # as docker: one failure does not stop the others
        try:
            removal = remove_image(store, records, text, force=force)
        except MinibuildError as exc:
            report_error(exc)
            failed = True
            continue
        for name in removal.untagged:
            click.echo(f"Untagged: {name}")
        if removal.deleted:
            click.echo(f"Deleted: {removal.deleted}")
            layers |= _layer_blobs(store, removal.manifest)
    _collect_after_rmi(store, layers)
    if failed:
        ctx.exit(1)


def _layer_blobs(store, manifest) -> set[str]:
    """The layer blobs of a removed image (still stored until gc runs)."""
    try:
        return {str(layer.descriptor.digest) for layer in store.load_image(manifest).layers}
    except Exception:  # noqa: BLE001 - only for the report: gc judges what goes
        return set()


def _collect_after_rmi(store, layers: set[str]) -> None:
    """Delete the blobs nothing needs any more; name the removed images' layers among them."""
    from minibuild.errors import StoreError
    from minibuild.maintenance import gc

    try:
        collected = gc.collect(store)
    except StoreError as exc:
        click.echo(f"note: blobs not deleted yet ({exc}); `minibuild prune` frees them later",
                   err=True)
        return
    for digest in collected.blobs:
        if digest in layers:
            click.echo(f"Deleted: {digest}")


@cli.command()
@click.option("--files", is_flag=True, help="List each layer's entries, whiteouts included.")
@click.argument("image")
@click.pass_context
def layers(ctx, files, image) -> None:
    """Each layer of an image, base first, with its sizes; wasted bytes per path."""
    from minibuild.cli import render
    from minibuild.cli.views import history_rows

    store = open_store(ctx)
    loaded = store.load_image(store.resolve(image)[1])
    rows = [r for r in history_rows(store, loaded) if r.layer is not None]
    click.echo(render.layers_table(rows))
    if files:
        for row, layer in zip(rows, loaded.layers):
            click.echo(f"\nlayer {row.layer} {row.diff_id}:")
            for line in render.layer_entries(store.layer_summary(layer), row):
                click.echo("  " + line)
    click.echo(render.layers_waste(rows))
