"""A build cache kept in an ordinary OCI registry (`--cache-to/--cache-from type=registry,ref=REPO`).

The shape is buildah's, which suits minibuild's keys: each filesystem step's cache key (a chained
sha256 with no host path in it) becomes a tag `REPO:<key>` of an ordinary OCI image holding that
step's layer (none for a step that changed nothing) and a config whose one history entry is the
step's. Any registry stores it, `skopeo inspect` reads it, and garbage collection is the
registry's: deleting tags deletes entries (every tag of the repository is a cache key; delete by
age, e.g. with `skopeo delete` or the registry's API, then run the registry's own GC).

Import asks each `--cache-from` repository in order for `REPO:<key>`; a hit goes through pull's
checks (blob digests, the layer's DiffID against the config) before the step reuses it. Export
HEADs `REPO:<key>` first and only adds tags that are missing: several runners exporting at once
only ever add entries (two racing on one key write equivalent entries; no other key is touched).
Layers the registry has are skipped, or mounted from the image's own repository, never uploaded
again. BuildKit's cache manifest (`...buildkit.cacheconfig.v0`) would put every key of a
build behind one tag that each export rewrites: concurrent exports would lose each other's keys.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from minibuild.errors import MinibuildError
from minibuild.oci.digest import Digest
from minibuild.oci.image import Descriptor, History, Image, Layer, canonical_json
from minibuild.oci.mediatypes import CONFIG_MEDIA_TYPE, MANIFEST_MEDIA_TYPE
from minibuild.oci.reference import Reference
from minibuild.store.layout import Store
from minibuild.transfer.progress import QuietProgress
from minibuild.transfer.push import push_blob
from minibuild.transfer.registry import Client, RegistryError, Remote
from minibuild.transfer.registryconf import RegistryConfig
from minibuild.transfer.remote import pull_untagged


class CacheSpecError(MinibuildError):
    """A --cache-to / --cache-from value that minibuild cannot use."""


@dataclass(frozen=True)
class CacheSpec:
    """`type=registry,ref=HOST/REPO[,mode=min|max]`: where a registry cache lives."""

    repository: str  # HOST/REPO, no tag
    mode: str = "min"

    @classmethod
    def parse(cls, text: str) -> CacheSpec:
        """Parse BuildKit's spelling (a bare `HOST/REPO` is taken as `type=registry,ref=`)."""
        fields = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
        if "=" not in text:
            fields = {"type": "registry", "ref": text}
        if fields.get("type", "registry") != "registry":
            raise CacheSpecError(f"cache {text!r}: only type=registry is supported")
        ref_text, mode = fields.get("ref", ""), fields.get("mode", "min")
        if mode not in ("min", "max"):
            raise CacheSpecError(f"cache {text!r}: mode is min or max")
        try:
            ref = Reference.parse(ref_text)
        except MinibuildError:
            raise CacheSpecError(f"cache {text!r}: ref=HOST/REPO is needed") from None
        if ref.digest is not None or ":" in ref_text.rsplit("/", 1)[-1]:
            raise CacheSpecError(f"cache {text!r}: ref names a repository, without a tag (the "
                                 "step keys are the tags)")
        return cls(ref.name, mode)


@dataclass
class RegistryCache:
    """The registries a build imports steps from and exports them to, one client per host."""

    store: Store
    sources: tuple[CacheSpec, ...] = ()
    target: CacheSpec | None = None
    registries: RegistryConfig = field(default_factory=RegistryConfig)
    insecure: bool = False
    _clients: dict[str, Client] = field(default_factory=dict)
    _wanted: set[str] = field(default_factory=set)

    def fetch(self, key: str) -> tuple[Layer | None, History] | None:
        """The step `key` from the first `--cache-from` that has it, pulled and checked; None
        when none has it (a registry that cannot be reached counts as a miss)."""
        for spec in self.sources:
            remote = self._remote(spec, key)
            try:
                descriptor = pull_untagged(self.store, remote, self._insecure(remote), QuietProgress(),
                                        self._client(remote))
            except RegistryError:
                continue
            image = self.store.load_image(descriptor)
            if len(image.config.history) != 1 or len(image.layers) > 1:
                continue  # not an entry minibuild wrote
            return (image.layers[0] if image.layers else None), image.config.history[0]
        return None

    def export(self, entries: list[tuple[str, Layer | None, History]]) -> tuple[int, int]:
        """Add `REPO:<key>` for each entry the target lacks; (added, already there)."""
        added = present = 0
        for key, layer, history in entries:
            remote = self._remote(self.target, key)
            client = self._client(remote)
            if client.has_manifest(remote.repository, key):
                present += 1
                continue
            self._put_entry(client, remote, key, layer, history)
            added += 1
        return added, present

    def close(self) -> None:
        """Close every connection pool."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def _put_entry(self, client: Client, remote: Remote, key: str, layer: Layer | None,
                   history: History) -> None:
        image = Image().append(layer, history)
        config_data = image.config_bytes()
        config = Descriptor(CONFIG_MEDIA_TYPE, Digest.of(config_data), len(config_data))
        if not client.has_blob(remote.repository, config.digest):
            client.upload_blob(remote.repository, config.digest, config.size, lambda: io.BytesIO(config_data))
        if layer is not None:
            push_blob(self.store, client, remote, layer.descriptor,
                       self.store.blob_path(layer.descriptor.digest), QuietProgress(), 64 << 20)
        manifest = canonical_json(image.manifest(config).to_json())
        client.put_manifest(remote.repository, key, manifest, MANIFEST_MEDIA_TYPE)

    def _remote(self, spec: CacheSpec, key: str) -> Remote:
        ref = Reference(spec.repository, key).normalized()
        return Remote(ref.domain, ref.path, ref)

    def _insecure(self, remote: Remote) -> bool:
        return self.insecure or self.registries.push_endpoint(remote.reference).insecure

    def _client(self, remote: Remote) -> Client:
        """One client per host (its token serves every key), asking for push where it exports;
        few retries: an unreachable cache is a miss, not a reason to wait."""
        if remote.host not in self._clients:
            self._clients[remote.host] = Client(remote.host, insecure=self._insecure(remote), retries=1)
        client = self._clients[remote.host]
        if f"{remote.host}/{remote.repository}" not in self._wanted:
            self._wanted.add(f"{remote.host}/{remote.repository}")
            target = Reference(self.target.repository).normalized() if self.target else None
            exporting = target is not None and (target.domain, target.path) == (remote.host, remote.repository)
            client.want(remote.repository, "pull,push" if exporting else "pull")
        return client
