"""The module graph of ``lora_ext/`` has no circle and no arrow up (docs/architecture.md, "Layers"), and the
repository stands on its own (no file points to notes outside it).

Every import counts: module level, inside a function, and under ``TYPE_CHECKING`` (a circle
of type-only imports is still two modules that cannot be read one without the other).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import lora_ext

PACKAGE = Path(lora_ext.__file__).parent
# Lower layers never import higher ones. The first part of a module's name below lora_ext/ picks its layer.
LAYERS = {
    0: {"errors", "fileio", "paths", "locking"},  # the foundation: typed errors, files, safe paths, locks
    1: {
        *("config", "kohya_settings", "settings", "host", "demo", "sampling", "noise_schedule"),
        *("dataset", "tagger", "training", "formats", "loading", "grid"),
    },  # the core
    2: {"app"},  # use cases
    3: {"ui", "api", "hosts"},  # the edges
    4: {"cli", "commands", "__main__", ""},  # the entry points ("": lora_ext/__init__.py)
}


def module_names(package: Path = PACKAGE) -> dict[str, Path]:
    """``lora_ext.x.y`` → its file, for every module of the package."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imported(source: str, modules: set[str]) -> set[str]:
    """The ``lora_ext`` modules ``source`` imports anywhere (``from a.b import c`` is ``a.b.c`` when that is a
    module, else ``a.b``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            candidates = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in candidates:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != "lora_ext":
                names.add(name)
    return names


def graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    modules = module_names(package)
    return {name: imported(path.read_text(encoding="utf-8"), set(modules)) - {name} for name, path in modules.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(edges.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def layer(module: str) -> int:
    part = module.split(".")[1] if "." in module else ""
    return next(number for number, parts in LAYERS.items() if part in parts)


def arrows_up(edges: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{source} (layer {layer(source)}) imports {target} (layer {layer(target)})"
        for source, targets in edges.items()
        for target in targets
        if layer(target) > layer(source)
    )


def test_every_module_has_a_layer() -> None:
    for name in module_names():
        layer(name)  # raises StopIteration for a new top-level module or package missing from LAYERS


def test_lora_ext_has_no_import_circle() -> None:
    assert circles(graph()) == []


def test_no_import_points_up_a_layer() -> None:
    assert arrows_up(graph()) == []


@pytest.mark.parametrize(
    "edges",
    [
        {"lora_ext.training.a": {"lora_ext.training.b"}, "lora_ext.training.b": {"lora_ext.training.a"}},
        {"x.a": {"x.b"}, "x.b": {"x.c"}, "x.c": {"x.a"}, "x.d": {"x.a"}},
    ],
)
def test_a_circle_is_found(edges) -> None:
    assert len(circles(edges)) == 1


def test_type_only_and_function_imports_count(tmp_path: Path) -> None:
    package = tmp_path / "lora_ext"
    (package / "loading").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "loading" / "__init__.py").write_text("")
    (package / "loading" / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from lora_ext.loading.b import Report\n"
    )
    (package / "loading" / "b.py").write_text("def f():\n    from lora_ext.loading import a\n")
    assert circles(graph(package)) == [["lora_ext.loading.a", "lora_ext.loading.b"]]


def test_an_arrow_up_is_found() -> None:
    assert arrows_up({"lora_ext.paths": {"lora_ext.dataset.names"}, "lora_ext.dataset.names": set()}) == [
        "lora_ext.paths (layer 0) imports lora_ext.dataset.names (layer 1)"
    ]


def test_no_file_points_to_notes_outside_the_repository() -> None:
    """Facts the code relies on live in docs/, not in notes only its first authors had."""
    root = PACKAGE.parent
    outside = "shared" + "/" + "(reference|STYLE)"  # spelled apart so this file does not match itself
    pattern = re.compile(outside)
    places = [root / name for name in ("lora_ext", "scripts", "tests", "bench", "docs", "javascript")]
    files = [path for place in places if place.is_dir() for path in place.rglob("*") if path.is_file()]
    files += [root / name for name in ("README.md", "install.py", "style.css") if (root / name).is_file()]
    found = [
        f"{path.relative_to(root)}:{number}"
        for path in files
        if path.suffix in {".py", ".md", ".js", ".css", ".txt", ".toml", ".json"}
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == []
