"""tests/ui_tests.txt lists every UI test file: `make test-g4` runs exactly those again on gradio 4.40.0."""

from __future__ import annotations

from pathlib import Path

from test_import_rules import imports_of

TESTS = Path(__file__).resolve().parent
APP_COMMAND = '"lora_ext", ' + '"ui"'  # as the tests spell the subprocess command (split: not this file)


def listed() -> list[str]:
    lines = (TESTS / "ui_tests.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def is_ui_test(source: str) -> bool:
    """Imports gradio or lora_ext.ui, or starts the standalone app (``python -m lora_ext ui``)."""
    modules = [name for names, _function in imports_of(source) for name in names]
    touches = any(name.split(".")[0] == "gradio" or name.startswith("lora_ext.ui") for name in modules)
    return touches or APP_COMMAND in source


def test_every_ui_test_file_is_listed_and_every_listed_file_exists() -> None:
    ui_files = {f"tests/{path.name}" for path in TESTS.glob("test_*.py") if is_ui_test(path.read_text("utf-8"))}
    assert sorted(ui_files - set(listed())) == [], "add these to tests/ui_tests.txt"
    assert [name for name in listed() if not (TESTS.parent / name).is_file()] == []
    assert len(listed()) == len(set(listed()))
