"""The use-case layer (``lora_ext/app``): Gradio-free, shared by the page and the REST API, which never import
each other; and UI sections never import each other both ways."""

from __future__ import annotations

import ast
from pathlib import Path

import lora_ext

PACKAGE = Path(lora_ext.__file__).parent


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, function-local imports included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _forbidden(path: Path, prefixes: tuple[str, ...]) -> list[str]:
    return sorted(name for name in _imports(path) if name.startswith(prefixes))


def test_the_app_layer_imports_neither_gradio_nor_the_ui_nor_the_api() -> None:
    files = sorted((PACKAGE / "app").glob("*.py"))
    assert {path.stem for path in files} >= {"context", "jobs", "training", "tagging", "results", "train_settings"}
    for path in files:
        assert _forbidden(path, ("gradio", "lora_ext.ui", "lora_ext.api", "modules", "launch")) == [], path.name


def test_the_rest_api_does_not_import_the_ui() -> None:
    assert _forbidden(PACKAGE / "api.py", ("gradio", "lora_ext.ui")) == []


def test_no_two_ui_sections_import_each_other() -> None:
    sections = {path.stem: path for path in (PACKAGE / "ui").glob("*_section.py")}
    uses = {
        name: {other for other in sections if other != name and any(other in item for item in _imports(path))}
        for name, path in sections.items()
    }
    cycles = sorted((a, b) for a in uses for b in uses[a] if a in uses[b] and a < b)
    assert cycles == []


def test_the_api_routes_are_module_level_and_take_the_context_from_a_dependency() -> None:
    from lora_ext import api

    paths = {route.path for route in api.routes.routes}
    assert {"/projects", "/projects/{project}/versions/{version}/train", "/jobs/current"} <= paths
