"""The import arrows point one way (see ARCHITECTURE.md): a test that fails when one points up."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "minibuild"

# Lower ranks may not import higher ranks. Modules not listed are only held to the library rules.
RANK = {
    "errors": 0, "units": 0, "mounts": 0, "linux": 0, "paths": 0, "fsstate": 0, "topdir": 0, "lines": 0,
    "entries": 0, "rootpath": 1,
    "digest": 1, "instructions": 1, "whiteout": 1, "accounting": 1, "users": 1, "dockerignore": 1,
    "words": 2, "image": 2, "reference": 2, "xattrs": 2,
    "overlay": 2, "scaffold": 2, "process": 2, "channel": 2,
    "parser": 3, "snapshot": 3, "context": 3, "children": 3, "sandbox": 4,
    "unpack": 4, "copier": 4, "metadata": 4, "plan": 4, "squash": 4,
    "store": 5, "reuse": 5, "deepcheck": 5,
    "runmount": 2, "layerpath": 3, "stepmounts": 3, "mountsetup": 6,  # RUN --mount
    "cache": 6, "reachability": 6, "memo": 6, "parsecache": 6,
    "steps": 7, "views": 7,
    "engine": 8, "render": 8,
    "build": 9,
    "cli": 10,
    # images in and out, containers, maintenance
    "auth": 1, "diffview": 2, "registry": 3, "containers": 6, "staging": 6,
    "usage": 7, "runtime": 7, "archive": 7, "docker_archive": 7, "importer": 7, "transfer": 7,
    "gc": 8, "commit": 8, "fsck": 9,
    "runflags": 2, "treecopy": 2, "volumes": 6, "containermounts": 7,  # run's mounts, volumes
}
ONLY = {"lark": {"parser"}, "click": {"cli"}, "rich": {"cli", "render"}}


def module_imports(path: Path) -> set[str]:
    """Top-level names imported by one file: `minibuild.x` as `x`, third parties as themselves."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            found.add(parts[1] if parts[0] == "minibuild" and len(parts) > 1 else parts[0])
    return found


def modules() -> dict[str, Path]:
    out = {p.stem: p for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__")}
    for p in (PACKAGE / "cli").glob("*.py"):
        out[f"cli/{p.stem}"] = p
    return out


def owner(name: str) -> str:
    return "cli" if name.startswith("cli/") else name


def test_no_import_points_upward():
    upward = []
    for name, path in modules().items():
        rank = RANK.get(owner(name))
        if rank is None:
            continue
        for target in module_imports(path) & set(RANK):
            if RANK[target] > rank:
                upward.append(f"{name} -> {target}")
    assert upward == []


def test_libraries_stay_in_their_modules():
    misplaced = []
    for name, path in modules().items():
        for library, allowed in ONLY.items():
            if library in module_imports(path) and owner(name) not in allowed:
                misplaced.append(f"{name} imports {library}")
    assert misplaced == []


def test_nothing_imports_the_cli_but_the_cli():
    offenders = [name for name, path in modules().items()
                 if owner(name) != "cli" and "cli" in module_imports(path)]
    assert offenders == []


def test_the_rank_table_knows_the_core_modules():
    assert {"engine", "store", "sandbox", "snapshot", "parser"} <= set(modules())
