"""The rows `--format` templates see, with docker's placeholder names (`.ID`, `.Repository`,
`.CreatedSince`...), and the column name each has in a `table` header.

Each row is an object, so a misspelt field is an error (as for docker's Go structs), and
`{{json .}}` gives every field, keys sorted, as docker's formatter marshals them.
"""

from __future__ import annotations

import json
from typing import Any

from minibuild.text import human_age, human_size, parse_time, shorten

IMAGE_HEADERS = {"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
                 "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
                 "Containers": "CONTAINERS", "SharedSize": "SHARED SIZE",
                 "UniqueSize": "UNIQUE SIZE", "VirtualSize": "VIRTUAL SIZE"}
CONTAINER_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
                     "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Ports": "PORTS",
                     "State": "STATE", "Status": "STATUS", "Size": "SIZE", "Names": "NAMES",
                     "Labels": "LABELS", "Label": "LABEL", "Mounts": "MOUNTS",
                     "Networks": "NETWORKS", "LocalVolumes": "LOCAL VOLUMES"}
HISTORY_HEADERS = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
                   "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT"}
VOLUME_HEADERS = {"Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE",
                  "Mountpoint": "MOUNTPOINT", "Labels": "LABELS", "Label": "LABEL",
                  "Links": "LINKS", "Size": "SIZE"}


def go_time(text: str | None) -> str:
    """A timestamp as Go's time.Time prints it: `2024-01-02 15:04:05 +0000 UTC`."""
    moment = parse_time(text)
    return moment.strftime("%Y-%m-%d %H:%M:%S +0000 UTC") if moment else ""


def short_id(digest: str, no_trunc: bool) -> str:
    """docker's ID column: 12 hex digits, or the whole `sha256:...` with --no-trunc."""
    return digest if no_trunc else digest.removeprefix("sha256:")[:12]


class Row:
    """A row: `FIELDS` are its placeholders; `to_json` is `{{json .}}`."""

    FIELDS: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Every placeholder's value, keys sorted (docker's formatter marshals a map)."""
        return {name: getattr(self, name) for name in sorted(self.FIELDS)}


class ImageRow(Row):
    """One line of `images`: an image under one of its tags (or `<none>`)."""

    FIELDS = tuple(IMAGE_HEADERS)

    def __init__(self, entry, name: str | None, *, no_trunc: bool = False,
                 containers: int | None = None) -> None:
        from minibuild.oci.reference import Reference

        self.entry = entry
        self.ref = Reference.parse(name) if name else None
        self.no_trunc = no_trunc
        self.count = containers

    ID = property(lambda self: short_id(self.entry.image_id, self.no_trunc), doc="IMAGE ID")
    Repository = property(lambda self: self.ref.name if self.ref else "<none>", doc="REPOSITORY")
    Tag = property(lambda self: (self.ref.tag or "<none>") if self.ref else "<none>", doc="TAG")
    Digest = property(lambda self: self.entry.digest, doc="the manifest digest")
    CreatedSince = property(lambda self: human_age(self.entry.created), doc="CREATED")
    CreatedAt = property(lambda self: go_time(self.entry.created), doc="CREATED AT")
    Size = property(lambda self: human_size(self.entry.size), doc="SIZE")
    VirtualSize = Size
    SharedSize = property(lambda self: "N/A", doc="not computed by `images` (see `df -v`)")
    UniqueSize = SharedSize
    Containers = property(lambda self: "N/A" if self.count is None else str(self.count),
                          doc="containers using it")


class ContainerRow(Row):
    """One line of `ps`."""

    FIELDS = tuple(k for k in CONTAINER_HEADERS if k != "Label")

    def __init__(self, container, state: str, status: str, *, no_trunc: bool = False) -> None:
        self.container = container
        self.State = state
        self.Status = status
        self.no_trunc = no_trunc

    ID = property(lambda self: self.container.id if self.no_trunc else self.container.short_id)
    Image = property(lambda self: self.container.image, doc="the image as it was named")
    Names = property(lambda self: self.container.name, doc="NAMES")
    CreatedAt = property(lambda self: go_time(self.container.created), doc="CREATED AT")
    RunningFor = property(lambda self: human_age(self.container.created), doc="CREATED")
    Ports = property(lambda self: "", doc="no port is ever mapped")
    Size = property(lambda self: "N/A", doc="not measured by `ps` (see `df -v`)")
    Labels = property(lambda self: "", doc="containers carry no labels yet")
    Networks = property(lambda self: self.container.network, doc="host or none")
    Mounts = property(lambda self: ",".join(m.source for m in self.container.mounts
                                            if m.type == "volume"), doc="volume names")
    LocalVolumes = property(lambda self: str(sum(1 for m in self.container.mounts
                                                 if m.type == "volume")))

    @property
    def Command(self) -> str:  # noqa: N802 - docker's placeholder name
        """The command, quoted (cut to 20 characters unless --no-trunc), as docker shows it."""
        text = " ".join(self.container.argv)
        if not self.no_trunc and len(text) > 20:
            text = text[:19] + "…"
        return json.dumps(text, ensure_ascii=False)

    def Label(self, name: str) -> str:  # noqa: N802 - docker's placeholder name
        """The value of one label (containers carry none yet)."""
        return ""


class HistoryEntry(Row):
    """One line of `history --format`: docker's fields over a history row."""

    FIELDS = tuple(HISTORY_HEADERS)

    def __init__(self, row, image_id: str | None, *, no_trunc: bool = False) -> None:
        self.row = row
        self.image_id = image_id
        self.no_trunc = no_trunc

    ID = property(lambda self: short_id(self.image_id, self.no_trunc) if self.image_id
                  else "<missing>", doc="the image's ID on its newest entry (as BuildKit's)")
    CreatedSince = property(lambda self: human_age(self.row.created), doc="CREATED")
    CreatedAt = property(lambda self: go_time(self.row.created), doc="CREATED AT")
    CreatedBy = property(lambda self: self.row.created_by if self.no_trunc
                         else shorten(self.row.created_by, 45), doc="CREATED BY")
    Size = property(lambda self: human_size(self.row.size), doc="SIZE")
    Comment = property(lambda self: self.row.comment or "", doc="COMMENT")


class VolumeRow(Row):
    """One line of `volume ls`."""

    FIELDS = tuple(k for k in VOLUME_HEADERS if k != "Label")

    def __init__(self, volume) -> None:
        self.volume = volume

    Name = property(lambda self: self.volume.name, doc="VOLUME NAME")
    Driver = property(lambda self: "local", doc="DRIVER")
    Scope = property(lambda self: "local", doc="SCOPE")
    Mountpoint = property(lambda self: str(self.volume.mountpoint), doc="MOUNTPOINT")
    Labels = property(lambda self: ",".join(f"{k}={v}" for k, v in self.volume.labels))
    Links = property(lambda self: "N/A", doc="LINKS")
    Size = property(lambda self: "N/A", doc="SIZE")

    def Label(self, name: str) -> str:  # noqa: N802 - docker's placeholder name
        """The value of one label."""
        return dict(self.volume.labels).get(name, "")
