"""Where an image name is fetched from: podman's `registries.conf` (v2 TOML, and v1's lists) and
docker's `daemon.json`, files users already have.

- `--registries-conf PATH` (or MINIBUILD_REGISTRIES_CONF) names the one file to read: a `.json`
  file is a daemon.json, anything else registries.conf. Without it minibuild reads
  `$XDG_CONFIG_HOME/containers/registries.conf` (~/.config), else `/etc/containers/registries.conf`
  (podman's order: the user's file replaces the system's), and docker's `daemon.json` from
  `$XDG_CONFIG_HOME/docker/`, else `/etc/docker/`.
- Drop-ins, as containers/image reads them (pkg/sysregistriesv2): every `*.conf` in
  `registries.conf.d/` beside the file read (the system's directory, then the user's; only the
  user's when the user's own registries.conf is the one read), in name order, each v2 only. A
  drop-in's `[[registry]]` replaces the table with the same prefix; its
  `unqualified-search-registries`, `short-name-mode` and each `[aliases]` entry replace earlier
  ones (an alias set to "" removes it). The machine-written `short-name-aliases.conf`
  (`/var/cache/containers/` for root, else `$XDG_CACHE_HOME/containers/`) comes last and wins.
  An explicit `--registries-conf` file is read alone.
- Short names (no registry): an `[aliases]` entry names the one place to pull from; else the
  `unqualified-search-registries` in order, docker.io when the files name none (docker's rule).
  minibuild never prompts, so `short-name-mode = "enforcing"` with several search registries is
  the documented no-TTY error; `permissive` (the default) and `disabled` try them all in order.
- A `[[registry]]` table applies to names starting with its `prefix` (longest match; `*.host`
  matches sub-domains); `location` replaces the prefix; its `[[registry.mirror]]`s are tried in
  order before the location, for pulls only (`mirror-by-digest-only`: digests only); `insecure`
  allows plain http; `blocked` refuses pulls. Docker Hub's implied `library/` is part of the
  name here, as in containers/image: `prefix = "docker.io/library/debian"`.
- daemon.json's `registry-mirrors` (URLs; `http://` ones are insecure) mirror `docker.io`, and its
  `insecure-registries` (hosts; CIDR ranges are skipped) allow plain http to those hosts.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from minibuild.errors import MinibuildError
from minibuild.oci.reference import DOCKER_HUB, Reference, names_registry

ENV = "MINIBUILD_REGISTRIES_CONF"
SYSTEM_DIR = Path("/etc/containers")
SHORT_NAME_MODES = ("enforcing", "permissive", "disabled")


class RegistryConfigError(MinibuildError):
    """A registries.conf or daemon.json that cannot be read or makes no sense."""


@dataclass(frozen=True)
class Endpoint:
    """One place to ask for a repository: host, repository there, plain http or not."""

    host: str
    repository: str
    insecure: bool = False
    mirror: bool = False

    @property
    def label(self) -> str:
        """How messages name it: `127.0.0.1:5000 (mirror)`, `docker.io`."""
        return f"{self.host} (mirror)" if self.mirror else self.host


@dataclass(frozen=True)
class Mirror:
    """A `[[registry.mirror]]` table (or a daemon.json registry-mirrors URL)."""

    location: str
    insecure: bool = False


@dataclass(frozen=True)
class RegistryEntry:
    """A `[[registry]]` table."""

    prefix: str
    location: str
    insecure: bool = False
    blocked: bool = False
    mirrors: tuple[Mirror, ...] = ()
    mirror_by_digest_only: bool = False

    def matches(self, full: str) -> bool:
        """Whether a fully qualified name (`host/repo`) falls under this prefix."""
        if self.prefix.startswith("*."):
            host = full.split("/", 1)[0]
            return host.endswith(self.prefix[1:])
        return full == self.prefix or full.startswith(self.prefix + "/")

    def relocate(self, location: str, full: str) -> tuple[str, str]:
        """(host, repository) of `full` with this prefix replaced by `location` (a wildcard
        prefix, or no location, leaves the name as it is)."""
        name = full if self.prefix.startswith("*.") or not location else location + full[len(self.prefix):]
        host, _, repository = name.partition("/")
        return host, repository


@dataclass(frozen=True)
class RegistryConfig:
    """Mirrors, insecure and blocked registries, search registries; empty: docker's defaults."""

    entries: tuple[RegistryEntry, ...] = ()
    search: tuple[str, ...] = (DOCKER_HUB,)
    insecure_hosts: frozenset[str] = frozenset()
    sources: tuple[str, ...] = field(default=(), compare=False)  # the files read, for messages
    aliases: tuple[tuple[str, str], ...] = ()  # short name → fully qualified repository
    short_name_mode: str = "permissive"

    def candidates(self, ref: Reference) -> list[Reference]:
        """The fully qualified names to try for `ref`: itself when it names a registry, its alias
        when it has one, else one per search registry, in order (containers/image's rules)."""
        if names_registry(ref.name):
            return [ref.normalized()]
        alias = dict(self.aliases).get(ref.name)
        if alias:
            return [Reference(alias, ref.tag, ref.digest).normalized()]
        if self.short_name_mode == "enforcing" and len(self.search) > 1:
            raise RegistryConfigError(
                f"short name {ref.name!r} could come from {', '.join(self.search)} and short-name-mode "
                f"is enforcing ({', '.join(self.sources)}); minibuild never prompts: write the full "
                "name, or add an [aliases] entry for it")
        return [Reference(f"{registry}/{ref.name}", ref.tag, ref.digest).normalized()
                for registry in self.search]

    def entry(self, ref: Reference) -> RegistryEntry | None:
        """The `[[registry]]` table with the longest prefix matching `ref`, if any."""
        full = f"{ref.domain}/{ref.path}"
        found = [e for e in self.entries if e.matches(full)]
        return max(found, key=lambda e: len(e.prefix), default=None)

    def blocked(self, ref: Reference) -> bool:
        """Whether pulls of `ref` are refused."""
        found = self.entry(ref)
        return found is not None and found.blocked

    def pull_endpoints(self, ref: Reference) -> list[Endpoint]:
        """Where to pull `ref` from: its mirrors in order, then its (relocated) registry."""
        full = f"{ref.domain}/{ref.path}"
        found = self.entry(ref)
        if found is None:
            return [Endpoint(ref.domain, ref.path, self.is_insecure(ref.domain))]
        out = []
        if ref.digest is not None or not found.mirror_by_digest_only:
            for mirror in found.mirrors:
                host, repository = found.relocate(mirror.location, full)
                out.append(Endpoint(host, repository, mirror.insecure or self.is_insecure(host), True))
        host, repository = found.relocate(found.location, full)
        out.append(Endpoint(host, repository, found.insecure or self.is_insecure(host)))
        return out

    def push_endpoint(self, ref: Reference) -> Endpoint:
        """Where a push of `ref` goes: its registry itself (mirrors are for pulls only, and so,
        as in containers/image, is relocation); insecure as the config says."""
        found = self.entry(ref)
        insecure = self.is_insecure(ref.domain) or (found is not None and found.insecure)
        return Endpoint(ref.domain, ref.path, insecure)

    def is_insecure(self, host: str) -> bool:
        """Whether the config allows plain http to `host`: listed as insecure, or the host of an
        insecure table (a host-wide prefix or its location) or of an insecure mirror."""
        if host in self.insecure_hosts:
            return True
        for e in self.entries:
            whole_host = "/" not in e.prefix and e.matches(f"{host}/_")
            if e.insecure and (whole_host or e.location.split("/")[0] == host):
                return True
            if any(m.insecure and m.location.split("/")[0] == host for m in e.mirrors):
                return True
        return False


# -- reading ---------------------------------------------------------------------------------


def load(path: str | os.PathLike | None = None) -> RegistryConfig:
    """The config from `path` (or $MINIBUILD_REGISTRIES_CONF), else from the usual places."""
    chosen = path or os.environ.get(ENV)
    if chosen:
        chosen = Path(chosen)
        if not chosen.exists():
            raise RegistryConfigError(f"registries config {chosen} does not exist")
        return from_daemon_json(chosen) if chosen.suffix == ".json" else from_registries_conf(chosen)
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    config = _from_places(xdg / "containers", SYSTEM_DIR)
    for candidate in (xdg / "docker" / "daemon.json", Path("/etc/docker/daemon.json")):
        if candidate.is_file():
            return merge(config, from_daemon_json(candidate))
    return config


def _from_places(user: Path, system: Path) -> RegistryConfig:
    """registries.conf (the user's replaces the system's), its drop-ins, the alias cache."""
    if (user / "registries.conf").is_file():
        main, dirs = user / "registries.conf", [user / "registries.conf.d"]
    else:
        main, dirs = system / "registries.conf", [system / "registries.conf.d", user / "registries.conf.d"]
    partial = _parse(main) if main.is_file() else _Partial()
    for drop_in in drop_ins(dirs):
        partial.update(_parse(drop_in, drop_in=True))
    cache = short_name_aliases_file()
    if cache.is_file():
        partial.update(_parse(cache, aliases_only=True))
    return partial.finish()


def drop_ins(directories: list[Path]) -> list[Path]:
    """The `*.conf` files directly in each directory, directory by directory, in name order."""
    found = []
    for directory in directories:
        try:
            found += sorted(p for p in directory.iterdir() if p.name.endswith(".conf") and p.is_file())
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise RegistryConfigError(f"cannot read {directory}: {exc}") from None
    return found


def short_name_aliases_file() -> Path:
    """Where podman records the aliases users picked: /var/cache for root, else $XDG_CACHE_HOME."""
    if os.geteuid() == 0:
        return Path("/var/cache/containers/short-name-aliases.conf")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "containers" / "short-name-aliases.conf"


def from_registries_conf(path: Path) -> RegistryConfig:
    """Parse a registries.conf (v2 tables, or v1's [registries.search/insecure/block] lists)."""
    return _parse(path).finish()


@dataclass
class _Partial:
    """What one file says; None and missing keys say nothing, so a later file leaves them be."""

    entries: dict[str, RegistryEntry] = field(default_factory=dict)
    search: tuple[str, ...] | None = None
    insecure: frozenset[str] = frozenset()
    mode: str | None = None
    aliases: dict[str, str] = field(default_factory=dict)
    sources: tuple[str, ...] = ()

    def update(self, later: _Partial) -> None:
        """containers/image's merge: tables by prefix, lists and the mode whole, aliases by name."""
        self.entries.update(later.entries)
        self.search = later.search if later.search is not None else self.search
        self.mode = later.mode or self.mode
        self.aliases.update(later.aliases)
        self.insecure |= later.insecure
        self.sources += later.sources

    def finish(self) -> RegistryConfig:
        """The config these files make, with the defaults for what none of them said."""
        aliases = tuple(sorted((name, value) for name, value in self.aliases.items() if value))
        return RegistryConfig(tuple(self.entries.values()), self.search or (DOCKER_HUB,), self.insecure,
                              self.sources, aliases, self.mode or "permissive")


def _parse(path: Path, drop_in: bool = False, aliases_only: bool = False) -> _Partial:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RegistryConfigError(f"cannot read registries config {path}: {exc}") from None
    try:
        if aliases_only:
            return _Partial(aliases=_aliases(data), sources=(str(path),))
        if drop_in and "registries" in data:
            raise ValueError("a drop-in must use the v2 format ([[registry]] tables), not [registries.*]")
        return _partial(data, path)
    except (AttributeError, TypeError, ValueError) as exc:
        raise RegistryConfigError(f"registries config {path}: {exc}") from None


def _partial(data: dict, path: Path) -> _Partial:
    entries = [_entry(table) for table in data.get("registry") or []]
    search = data.get("unqualified-search-registries")
    v1 = data.get("registries") or {}
    if not search and (v1.get("search") or {}).get("registries"):
        search = v1["search"]["registries"]
    search = tuple(str(h) for h in search) if search is not None else None
    insecure = frozenset(str(h) for h in (v1.get("insecure") or {}).get("registries") or ())
    entries += [RegistryEntry(str(h), str(h), blocked=True) for h in (v1.get("block") or {}).get("registries") or ()]
    mode = data.get("short-name-mode") or None
    if mode is not None and mode not in SHORT_NAME_MODES:
        raise ValueError(f"short-name-mode {mode!r} is not one of {', '.join(SHORT_NAME_MODES)}")
    return _Partial({e.prefix: e for e in entries}, search, insecure, mode, _aliases(data), (str(path),))


def _aliases(data: dict) -> dict[str, str]:
    """The `[aliases]` table: short names (no registry, tag or digest) → fully qualified names."""
    out = {}
    for name, value in (data.get("aliases") or {}).items():
        value = str(value)
        if names_registry(name) or not _bare(name):
            raise ValueError(f"alias {name!r}: an alias is a short name, without registry, tag or digest")
        if value and (not names_registry(value) or not _bare(value)):
            raise ValueError(f"alias {name!r} = {value!r}: the value must name a registry, without tag or digest")
        out[name] = _hub(value)
    return out


def _bare(name: str) -> bool:
    """A valid repository name with no tag and no digest."""
    try:
        return Reference.parse(name).name == name
    except MinibuildError:
        return False


def _entry(table: dict) -> RegistryEntry:
    if not isinstance(table, dict):
        raise ValueError("each [[registry]] must be a table")
    location = str(table.get("location") or "").rstrip("/")
    prefix = str(table.get("prefix") or location).rstrip("/")
    if not prefix:
        raise ValueError("a [[registry]] needs a prefix or a location")
    mirrors = tuple(Mirror(str(m["location"]).rstrip("/"), bool(m.get("insecure", False)))
                    for m in table.get("mirror") or [])
    return RegistryEntry(_hub(prefix), _hub(location) if location else "", bool(table.get("insecure", False)),
                         bool(table.get("blocked", False)), mirrors, bool(table.get("mirror-by-digest-only", False)))


def _hub(name: str) -> str:
    """`index.docker.io/...` is `docker.io/...` here too."""
    host, slash, rest = name.partition("/")
    return f"{DOCKER_HUB}{slash}{rest}" if host == "index.docker.io" else name


def from_daemon_json(path: Path) -> RegistryConfig:
    """docker's daemon.json: `registry-mirrors` for docker.io, `insecure-registries` hosts."""
    try:
        data = json.loads(path.read_text())
        mirrors = tuple(_mirror(str(url)) for url in data.get("registry-mirrors") or [])
        insecure = frozenset(str(h) for h in data.get("insecure-registries") or [] if "/" not in str(h))
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        raise RegistryConfigError(f"cannot read {path}: {exc}") from None
    entries = (RegistryEntry(DOCKER_HUB, DOCKER_HUB, mirrors=mirrors),) if mirrors else ()
    return RegistryConfig(entries, (DOCKER_HUB,), insecure, (str(path),))


def _mirror(url: str) -> Mirror:
    """`https://mirror.example/` → mirror.example; `http://` means plain http."""
    insecure = url.startswith("http://")
    host = url.split("://", 1)[-1].rstrip("/")
    return Mirror(host, insecure)


def merge(conf: RegistryConfig, daemon: RegistryConfig) -> RegistryConfig:
    """registries.conf first; daemon.json's docker.io mirrors where registries.conf has no
    docker.io table of its own, and its insecure hosts added."""
    entries = conf.entries
    if not any(e.prefix == DOCKER_HUB for e in entries):
        entries += daemon.entries
    return RegistryConfig(entries, conf.search, conf.insecure_hosts | daemon.insecure_hosts,
                          conf.sources + daemon.sources, conf.aliases, conf.short_name_mode)
