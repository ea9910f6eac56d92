"""The import rules of docs/architecture.md as a static test: an AST walk over ``lora_ext/`` that sees every
import, function-local ones included (an import-time test cannot see those until the function runs)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lora_ext

PACKAGE = Path(lora_ext.__file__).parent
# The WebUI adapters: the only modules that may import the WebUI's own ``modules`` and ``launch`` (and Forge's
# ``backend`` / ``modules_forge``).
WEBUI_ADAPTERS = {
    "hosts/a1111.py",
    "hosts/a1111_loader.py",
    "hosts/webui.py",
    "hosts/detect.py",
    "hosts/forge.py",
    "hosts/forge_loader.py",
    "hosts/neo.py",
}
WEBUI_PACKAGES = ("modules", "launch", "backend", "modules_forge")
# The one place outside ui/ that builds gradio components: the WebUI's settings page wants them.
GRADIO_OUTSIDE_UI = {("hosts/webui.py", "register_settings")}
# The standalone app's CLI entry starts the page, as scripts/ does in the WebUI.
UI_ENTRY_POINTS = {"commands/ui.py"}


def imports_of(source: str) -> list[tuple[tuple[str, ...], str | None]]:
    """(the modules one import statement may bring in, enclosing function or None) for each import in ``source``."""
    found: list[tuple[tuple[str, ...], str | None]] = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, function or child.name)
                continue
            if isinstance(child, ast.Import):
                found.extend(((alias.name,), function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                names = (child.module, *(f"{child.module}.{alias.name}" for alias in child.names))
                found.append((names, function))
            visit(child, function)

    visit(ast.parse(source), None)
    return found


def _is(names: tuple[str, ...], *packages: str) -> bool:
    return any(name == package or name.startswith(package + ".") for name in names for package in packages)


def violations(relative: str, source: str) -> list[str]:
    """The import rules ``relative`` (a path below lora_ext/) breaks."""
    broken: list[str] = []
    in_ui = relative.startswith("ui/")
    for names, function in imports_of(source):
        name = names[0]
        where = f"{relative}{f':{function}()' if function else ''} imports {name}"
        if _is(names, *WEBUI_PACKAGES) and relative not in WEBUI_ADAPTERS:
            broken.append(f"{where}: only the WebUI adapters in hosts/ may import the WebUI")
        if _is(names, "gradio") and not in_ui and (relative, function) not in GRADIO_OUTSIDE_UI:
            broken.append(f"{where}: gradio belongs to ui/")
        if _is(names, "lora_ext.ui") and not in_ui and relative not in UI_ENTRY_POINTS:
            broken.append(f"{where}: only ui/ (and the ui command) may import the UI")
        if _is(names, "lora_ext.hosts") and in_ui:
            broken.append(f"{where}: the UI is handed a host, it never imports one")
    return broken


def test_lora_ext_keeps_its_import_rules() -> None:
    broken = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        broken += violations(relative, path.read_text(encoding="utf-8"))
    assert broken == []


@pytest.mark.parametrize(
    ("relative", "source"),
    [
        ("training/run.py", "def f():\n    from modules import shared\n"),
        ("formats/lora.py", "import launch\n"),
        ("training/inject.py", "def f():\n    from backend import memory_management\n"),
        ("app/jobs.py", "def f():\n    import gradio as gr\n"),
        ("hosts/webui.py", "def other():\n    import gradio\n"),
        ("api.py", "def f():\n    from lora_ext.ui.tagger_section import form_defaults\n"),
        ("ui/train_section.py", "def f():\n    from lora_ext.hosts.a1111 import A1111Host\n"),
        ("loading/loader.py", "def f():\n    from lora_ext import ui\n"),
    ],
)
def test_a_forbidden_import_inside_a_function_is_caught(relative: str, source: str) -> None:
    assert len(violations(relative, source)) == 1


def test_the_allowed_places_pass() -> None:
    assert violations("hosts/webui.py", "def register_settings():\n    import gradio as gr\n") == []
    assert violations("hosts/a1111.py", "from modules import shared\n") == []
    assert violations("hosts/forge.py", "def f():\n    from backend import memory_management\n") == []
    assert violations("ui/app.py", "import gradio\nfrom lora_ext.app import training\n") == []
