"""`inspect`: images and containers as docker shows them (`docker image inspect`, `docker
container inspect`), plus a few fields of our own where docker has none to give.

Images: `Id` (the config digest), `RepoTags`, `RepoDigests` (`name@<manifest digest>` per
repository), `Parent`, `Comment`, `Created`, `Author`, `Config` (the config's `config`),
`Architecture`, `Variant`, `Os`, `Size` (file content of every layer), `GraphDriver` (the
layer dirs), `RootFS` (DiffIDs), `Metadata`; `Descriptor` (the manifest's, as docker with
containerd shows it), `History` (as podman shows it) and `Manifest` (the manifest itself).
Containers: `Id`, `Created`, `Path`, `Args`, `State`, `Image` (its image's ID), `Name`,
`LogPath`, `HostConfig`, `GraphDriver`, `Mounts`, `Config`.
"""

from __future__ import annotations

import json
from typing import Any

import click

from minibuild.cli.app import cli, container_records, open_store, report_error

ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time, as docker prints a time never set


def image_object(store, descriptor, names: tuple[str, ...]) -> dict[str, Any]:
    """docker's `image inspect` object for one stored image."""
    manifest = store.read_json(descriptor.digest)
    image_id = manifest["config"]["digest"]
    config = store.read_json(_digest(image_id))
    image = store.load_image(descriptor)
    history = config.get("history") or []
    repos = dict.fromkeys(name.rsplit(":", 1)[0] for name in names)
    lowers = [str(store.layer_path(layer.diff_id)) for layer in reversed(image.layers)]
    return {
        "Id": image_id, "RepoTags": list(names),
        "RepoDigests": [f"{repo}@{descriptor.digest}" for repo in repos],
        "Parent": "", "Comment": (history[-1].get("comment") or "") if history else "",
        "Created": config.get("created") or ZERO_TIME, "DockerVersion": "",
        "Author": config.get("author") or "", "Config": config.get("config") or {},
        "Architecture": config.get("architecture") or "", "Variant": config.get("variant") or "",
        "Os": config.get("os") or "",
        "Size": sum(store.layer_summary(layer).content_size for layer in image.layers),
        "GraphDriver": {"Name": "overlay", "Data": {"LowerDir": ":".join(lowers)}},
        "RootFS": {"Type": "layers", "Layers": list(config.get("rootfs", {}).get("diff_ids", []))},
        "Metadata": {"LastTagTime": ZERO_TIME},
        "Descriptor": {"mediaType": descriptor.media_type, "digest": str(descriptor.digest),
                       "size": descriptor.size},
        "History": history, "Manifest": manifest,
    }


def _digest(text: str):
    from minibuild.oci.digest import Digest

    return Digest.parse(text)


def container_object(root, records, container, image_id: str) -> dict[str, Any]:
    """docker's `container inspect` object for one container record."""
    from minibuild.containers import runtime

    state = records.status(container)
    fs = runtime.rootfs(root, container)
    env = [f"{k}={v}" for k, v in container.env]
    return {
        "Id": container.id, "Created": container.created,
        "Path": container.argv[0] if container.argv else "", "Args": list(container.argv[1:]),
        "State": {"Status": state, "Running": state == "running", "Paused": False,
                  "Restarting": False, "OOMKilled": False, "Dead": state == "dead",
                  "Pid": container.pid if state == "running" else 0,
                  "ExitCode": container.exit_code or 0, "Error": "",
                  "StartedAt": container.started or ZERO_TIME,
                  "FinishedAt": container.finished or ZERO_TIME},
        "Image": image_id, "LogPath": str(records.log_path(container.id)),
        "Name": "/" + container.name, "RestartCount": 0, "Driver": "overlay", "Platform": "linux",
        "HostConfig": {"NetworkMode": container.network, "AutoRemove": container.auto_remove},
        "GraphDriver": {"Name": "overlay", "Data": {
            "LowerDir": ":".join(map(str, fs.lowers)), "UpperDir": str(fs.upper),
            "WorkDir": str(fs.work), "MergedDir": str(fs.merged)}},
        "Mounts": [_mount(m) for m in container.mounts],
        "Config": {"Hostname": container.hostname or container.short_id,
                   "User": container.user, "Env": env, "Cmd": list(container.argv),
                   "Image": container.image, "WorkingDir": container.cwd,
                   "Entrypoint": None, "Labels": {},
                   "StopSignal": container.stop_signal or "SIGTERM"},
    }


def _mount(spec) -> dict[str, Any]:
    """One entry of docker's `Mounts`."""
    out = {"Type": spec.type, "Source": spec.source, "Destination": spec.target,
           "Mode": "ro" if spec.readonly else "", "RW": not spec.readonly,
           "Propagation": "rprivate" if spec.type == "bind" else ""}
    if spec.type == "volume":
        out = {"Type": "volume", "Name": spec.source, **out, "Driver": "local"}
    return out


@cli.command()
@click.option("-f", "--format", "fmt", default=None,
              help="A Go template, as docker's: '{{.Id}}', '{{json .Config.Env}}', "
                   "'{{range .RepoTags}}{{println .}}{{end}}'.")
@click.option("--type", "kind", type=click.Choice(["image", "container"]), default=None,
              help="Look for an image or a container only (default: a container first, as "
                   "docker does, then an image).")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def inspect(ctx, fmt, kind, names) -> None:
    """Show images or containers as JSON (docker's shape), or through a Go template."""
    from minibuild.cli import formatting

    found, failed = [], False
    stores: list = []  # opened once, on the first image
    for text in names:
        try:
            found.append(_lookup(ctx, stores, text, kind))
        except click.ClickException:
            raise
        except Exception as exc:  # noqa: BLE001 - MinibuildError: reported, the others go on
            from minibuild.errors import MinibuildError

            if not isinstance(exc, MinibuildError):
                raise
            report_error(exc)
            failed = True
    if fmt is None:
        click.echo(json.dumps(found, indent=4))
    else:
        for obj in found:
            click.echo(formatting.render_one(fmt, obj), nl=False)
    if failed:
        ctx.exit(1)


def _lookup(ctx, stores: list, text: str, kind: str | None) -> dict[str, Any]:
    """The inspect object `text` names: a container first (unless --type image), then an image."""
    from minibuild.errors import ImageNotFound, MinibuildError

    if kind != "image":
        records = container_records(ctx)
        try:
            container = records.find(text)
        except MinibuildError:
            if kind == "container":
                raise
        else:
            return container_object(records.dir.parent, records, container,
                                    _container_image_id(_store(ctx, stores), container))
    store = _store(ctx, stores)
    try:
        found = store.find(text)
    except ImageNotFound:
        if kind is None:
            raise ImageNotFound(f"no such object: {text}",
                                hint="`minibuild images -a` and `minibuild ps -a` list them") from None
        raise
    names = next((i.names for i in store.images() if i.descriptor.digest == found.descriptor.digest),
                 ())
    return image_object(store, found.descriptor, names)


def _store(ctx, stores: list):
    """The store, opened on first use."""
    if not stores:
        stores.append(open_store(ctx))
    return stores[0]


def _container_image_id(store, container) -> str:
    """The ID of the image a container was made from (its manifest digest if unreadable)."""
    try:
        return str(store.image_id(container.manifest))
    except Exception:  # noqa: BLE001 - a damaged image does not hide its container
        return str(container.manifest.digest)
