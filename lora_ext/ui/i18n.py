"""English and Japanese text, following the WebUI's localisation convention.

The WebUI translates its page in the browser with ``localizations/<lang>.json``
files that map visible English text to the translation. The same tables drive
both: ``localizations/ja_JP.json`` is generated from them (a test keeps the two
equal), and the Python side translates in the page's language, at build time and
again when the user switches language (standalone app) or from the WebUI's
"Localization" setting (``I18n(follow=…)``).

Two tables: ``labels_ja.JA`` holds fixed texts (labels, buttons, radio options);
``messages_ja.MESSAGES`` holds status-line templates with ``{name}`` placeholders
(``{name!t}``: the value is itself translated, e.g. a nested message). The code
builds every line in English; ``translate`` matches a finished line against the
templates and renders it in the chosen language. Lines made of parts joined by
`` · `` are translated part by part. The edge (``ui/common.py``) translates every
status line a handler returns, so the app layer stays language-agnostic.

The UI is always written in English; ``I18n.localize(blocks)`` walks the built
Blocks, records each translatable text and sets it in the chosen language.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lora_ext.ui import compat
from lora_ext.ui.labels_ja import GRADIO_JA, JA
from lora_ext.ui.messages_ja import MESSAGES

LANGUAGES: dict[str, str] = {"en": "English", "ja": "日本語"}
TABLES: dict[str, dict[str, str]] = {"en": {}, "ja": JA}
TEMPLATES: dict[str, dict[str, str]] = {"en": {}, "ja": MESSAGES}
LOCALIZATION_FILE = Path(__file__).resolve().parents[2] / "localizations" / "ja_JP.json"

# Component attributes that hold visible text, per kind of component.
_TEXT_ATTRS = ("label", "info", "placeholder")
_VALUE_TEXT = ("Button", "Markdown", "UploadButton")
_CHOICE_TEXT = ("Radio",)  # option labels are shown, values stay English (configs and the CLI use them)
# A plot's axis and legend titles (``compat.plot_titles``); gradio 3 draws the chart on the server from the
# component's own attributes, so a switch sets them there (the next value drawn has them).
_PLOT_TEXT = ("x_title", "y_title", "color_legend_title", "color_title")
_PLOTS = ("LinePlot", "ScatterPlot", "BarPlot")
_HEADING = re.compile(r"^(#{1,6} |\*\*)?(.*?)(\*\*)?$", re.S)
_PLACEHOLDER = re.compile(r"\{(\w+)(!t)?\}")
_PART_SEPARATORS = (" · ", "; ")
# Our status markup (``ui.common.message``, ``progress_html``, the reports): the edge finds the lines in it.
# Headings, paragraphs and summaries are always ours; other elements only with one of these classes
# (a tag chip or a file name is never translated).
_ELEMENT = re.compile(r"(<(div|p|th|td|li|summary|span)(\s[^>]*)?>)([^<]*)(</\2>)")
_ALWAYS = ("p", "th", "summary")
_TEXT_CLASSES = re.compile(r"\btt-(?:msg|progress-text|hint|empty|more|why|notice)\b")


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
    hinted = _with_hint(text, language)
    if hinted is not None:
        return hinted
    templated = _from_template(text, language)
    if templated is not None:
        return templated
    for separator in _PART_SEPARATORS:
        if separator in text:
            parts = [translate(part, language) for part in text.split(separator)]
            return _joined(separator, language).join(parts)
    return text


def _with_hint(text: str, language: str) -> str | None:
    """An error's one line, ``message (hint)``, as its two lines translated, when the hint is a fixed entry
    (most hints are) and the message has one too.

    Tried before the templates: one with a value at its end ("{folder} has no {names}") would otherwise
    take another message's hint in as that value. A parenthesis that is no fixed entry ("(sampler step
    5/20)") is left to the templates."""
    if not text.endswith(")"):
        return None
    depth = 0
    for start in range(len(text) - 1, 0, -1):
        depth += {")": 1, "(": -1}.get(text[start], 0)
        if depth == 0:
            break
    if depth != 0 or text[start - 1] != " ":
        return None
    message, hint = text[: start - 1], text[start + 1 : -1]
    if hint not in TEMPLATES.get(language, {}) and hint not in TABLES.get(language, {}):
        return None
    parts = translate(message, language), translate(hint, language)
    combined = TEMPLATES.get(language, {}).get("{message!t} ({hint!t})")
    if combined is None or parts[0] == message or parts[1] == hint:
        return None
    return _render(combined, {"message": parts[0], "hint": parts[1]})


def translate_html(markup: str, language: str) -> str:
    """Every status line (``message``/``progress_html`` markup) in ``markup`` translated; the rest as it is."""
    if language == "en" or "<" not in markup:
        return markup

    def line(match: re.Match[str]) -> str:
        opening, tag, attrs, text, closing = match.groups()
        if tag not in _ALWAYS and not _TEXT_CLASSES.search(attrs or ""):
            return match.group(0)
        english = html.unescape(text)
        translated = translate(english, language)
        return match.group(0) if translated == english else opening + html.escape(translated) + closing

    return _ELEMENT.sub(line, markup)


def _joined(separator: str, language: str) -> str:
    return "；" if separator == "; " and language == "ja" else separator


def _pattern(template: str) -> str:
    """The regular expression matching a line built from ``template``.

    A placeholder matches any text but never across `` · `` (such lines are translated part by part):
    as little as it can, except a nested line (``!t``), which takes as much (``undo: {label!t}``)."""
    out, last = [], 0
    for match in _PLACEHOLDER.finditer(template):
        lazy = "" if match.group(2) else "?"  # a nested line takes what it can (it ends the sentence)
        out += [re.escape(template[last : match.start()]), f"(?P<{match.group(1)}>(?:(?! · ).)+{lazy})"]
        last = match.end()
    return "".join(out) + re.escape(template[last:])


def _literal_size(template: str) -> int:
    return len(_PLACEHOLDER.sub("", template))


def _from_template(text: str, language: str) -> str | None:
    """``text`` rendered from the most specific matching template, or None when none matches."""
    templates = TEMPLATES.get(language, {})
    for english in sorted(templates, key=_literal_size, reverse=True):
        match = re.fullmatch(_pattern(english), text, re.S)
        if match is None:
            continue
        nested = {name for name, flag in _PLACEHOLDER.findall(english) if flag}
        values = {
            name: translate(value, language) if name in nested else value for name, value in match.groupdict().items()
        }
        if nested and not re.search(r"[A-Za-z]", _PLACEHOLDER.sub("", english)):
            # A pure combinator ("{message!t} ({hint!t})") applies only when it translated something.
            if all(values[name] == match.group(name) for name in nested):
                continue
        return _render(templates[english], values)
    return None


def _render(template: str, values: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda found: values[found.group(1)], template)


def localization_json() -> str:
    """The content of ``localizations/ja_JP.json`` (English → Japanese), as the WebUI reads it.

    Fixed texts only: the WebUI matches whole text nodes, so templated lines are
    rendered server-side (``I18n(follow=…)`` reads the WebUI's Localization setting).
    """
    fixed = {english: japanese for english, japanese in MESSAGES.items() if not _PLACEHOLDER.search(english)}
    return json.dumps(dict(sorted({**fixed, **GRADIO_JA, **JA}.items())), ensure_ascii=False, indent=1) + "\n"


def webui_language(localization: Any) -> str:
    """Our language code for the WebUI's "Localization" setting (``ja_JP`` → ``ja``; anything else: English)."""
    return "ja" if str(localization or "").lower().startswith("ja") else "en"


class I18n:
    """The page's current language and the translatable texts of the built UI.

    ``follow`` (WebUI): a function returning the current language code, read on each use.
    """

    def __init__(self, language: str = "en", follow: Callable[[], str] | None = None) -> None:
        self._language = language if language in LANGUAGES else "en"
        self._follow = follow
        self._entries: list[tuple[Any, str, Any]] = []  # (component, attribute, English text or choices)

    @property
    def language(self) -> str:
        if self._follow is not None:
            chosen = self._follow()
            return chosen if chosen in LANGUAGES else "en"
        return self._language

    def __call__(self, text: str) -> str:
        return translate(text, self.language)

    def status(self, value: Any) -> Any:
        """A handler's output with its status lines in the current language (other values unchanged)."""
        language = self.language
        if language == "en":
            return value
        if isinstance(value, str):
            return translate_html(value, language)
        if isinstance(value, dict) and isinstance(value.get("value"), str) and value.get("__type__") == "update":
            return {**value, "value": translate_html(value["value"], language)}
        return value

    def localize(self, blocks: Any) -> None:
        """Record every translatable text of ``blocks`` and set it in the current language."""
        language = self.language
        for block in getattr(blocks, "blocks", {}).values():
            kind = type(block).__name__
            attrs = list(_TEXT_ATTRS) + (["value"] if kind in _VALUE_TEXT else [])
            attrs += list(_PLOT_TEXT) if kind in _PLOTS else []
            for attr in attrs:
                text = getattr(block, attr, None)
                if isinstance(text, str) and translate(text, "ja") != text:
                    self._entries.append((block, attr, text))
                    setattr(block, attr, translate(text, language))
            if kind == "HTML" and isinstance(block.value, str):
                block.value = translate_html(block.value, language)  # shown once; later lines come from handlers
            if kind in _CHOICE_TEXT and block.choices:
                choices = [tuple(choice) for choice in block.choices]
                if any(translate(name, "ja") != name for name, _value in choices):
                    self._entries.append((block, "choices", choices))
                    block.choices = _choices(choices, language)

    def switch(self, language: str) -> dict[Any, dict[str, Any]]:
        """Change language; returns ``{component: gr.update(...)}`` relabelling every recorded text."""
        import gradio as gr

        self._language = language if language in LANGUAGES else "en"
        changes: dict[Any, dict[str, Any]] = {}
        for block, attr, text in self._entries:
            value = _choices(text, self._language) if attr == "choices" else translate(text, self._language)
            if attr in _PLOT_TEXT and compat.plots_drawn_on_server():
                setattr(block, attr, value)
                continue
            changes.setdefault(block, {})[attr] = value
        # Tabs cannot be relabelled after rendering in gradio 3 (javascript/train_tools.js relabels their buttons).
        return {block: gr.update(**values) for block, values in changes.items() if type(block).__name__ not in ("Tab",)}

    @property
    def components(self) -> list[Any]:
        """Components that ``switch`` updates, in a fixed order (the outputs of the switch event)."""
        seen: dict[int, Any] = {}
        for block, _attr, _text in self._entries:
            if type(block).__name__ != "Tab":
                seen.setdefault(id(block), block)
        return list(seen.values())


def _choices(choices: list[tuple[str, Any]], language: str) -> list[tuple[str, Any]]:
    """``(shown label, value)`` pairs: the label in ``language``, the value as it is (English)."""
    return [(translate(name, language), value) for name, value in choices]


if __name__ == "__main__":  # python -m lora_ext.ui.i18n: regenerate localizations/ja_JP.json
    LOCALIZATION_FILE.parent.mkdir(exist_ok=True)
    LOCALIZATION_FILE.write_text(localization_json(), encoding="utf-8")
    print(f"wrote {len(json.loads(localization_json()))} entries to {LOCALIZATION_FILE}")
