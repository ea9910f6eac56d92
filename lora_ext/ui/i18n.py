"""English and Japanese labels, following the WebUI's localisation convention.

The WebUI translates its page in the browser with ``localizations/<lang>.json``
files that map visible English text to the translation. The same table
(``labels_ja.JA``) drives both: ``localizations/ja_JP.json`` is generated from
it (a test keeps the two equal), and the standalone app translates labels in
Python, at build time and again when the user switches language.

The UI is always written in English; ``I18n.localize(blocks)`` walks the built
Blocks, records each translatable text and sets it in the chosen language.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from lora_ext.ui.labels_ja import JA

LANGUAGES: dict[str, str] = {"en": "English", "ja": "日本語"}
TABLES: dict[str, dict[str, str]] = {"en": {}, "ja": JA}
LOCALIZATION_FILE = Path(__file__).resolve().parents[2] / "localizations" / "ja_JP.json"

# Component attributes that hold visible text, per kind of component.
_TEXT_ATTRS = ("label", "info", "placeholder")
_VALUE_TEXT = ("Button", "Markdown", "UploadButton")
_HEADING = re.compile(r"^(#{1,6} |\*\*)?(.*?)(\*\*)?$", re.S)


def translate(text: str, language: str) -> str:
    """``text`` in ``language``; unchanged when there is no translation."""
    if not text or language == "en":
        return text
    table = TABLES.get(language, {})
    if text in table:
        return table[text]
    match = _HEADING.match(text)  # "### Dataset" / "**Dataset**" are translated by their words
    if match and match.group(2) in table and (match.group(1) or match.group(3)):
        return f"{match.group(1) or ''}{table[match.group(2)]}{match.group(3) or ''}"
    return text


def localization_json() -> str:
    """The content of ``localizations/ja_JP.json`` (English → Japanese), as the WebUI reads it."""
    return json.dumps(dict(sorted(JA.items())), ensure_ascii=False, indent=1) + "\n"


class I18n:
    """The app's current language and the translatable texts of the built UI."""

    def __init__(self, language: str = "en") -> None:
        self.language = language if language in LANGUAGES else "en"
        self._entries: list[tuple[Any, str, str]] = []  # (component, attribute, English text)

    def __call__(self, text: str) -> str:
        return translate(text, self.language)

    def localize(self, blocks: Any) -> None:
        """Record every translatable text of ``blocks`` and set it in the current language."""
        for block in getattr(blocks, "blocks", {}).values():
            attrs = list(_TEXT_ATTRS)
            if type(block).__name__ in _VALUE_TEXT:
                attrs.append("value")
            for attr in attrs:
                text = getattr(block, attr, None)
                if isinstance(text, str) and translate(text, "ja") != text:
                    self._entries.append((block, attr, text))
                    setattr(block, attr, translate(text, self.language))

    def switch(self, language: str) -> dict[Any, dict[str, Any]]:
        """Change language; returns ``{component: gr.update(...)}`` relabelling every recorded text."""
        import gradio as gr

        self.language = language if language in LANGUAGES else "en"
        changes: dict[Any, dict[str, Any]] = {}
        for block, attr, text in self._entries:
            changes.setdefault(block, {})[attr] = translate(text, self.language)
        # Tabs cannot be relabelled after rendering in gradio 3; everything else can.
        return {block: gr.update(**values) for block, values in changes.items() if type(block).__name__ not in ("Tab",)}

    @property
    def components(self) -> list[Any]:
        """Components that ``switch`` updates, in a fixed order (the outputs of the switch event)."""
        seen: dict[int, Any] = {}
        for block, _attr, _text in self._entries:
            if type(block).__name__ != "Tab":
                seen.setdefault(id(block), block)
        return list(seen.values())


if __name__ == "__main__":  # python -m lora_ext.ui.i18n: regenerate localizations/ja_JP.json
    LOCALIZATION_FILE.parent.mkdir(exist_ok=True)
    LOCALIZATION_FILE.write_text(localization_json(), encoding="utf-8")
    print(f"wrote {len(JA)} entries to {LOCALIZATION_FILE}")
