"""The tagger's confidences for one image as bars, with the tagging threshold drawn as a line across them.

Pure HTML (no Gradio): a ``gr.Label`` cannot draw a line, so the editor shows this in a ``gr.HTML``.
Styles are in ``style.css`` (``.tt-conf*``, scoped under ``#train_tools``).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence

Scores = Sequence[tuple[str, str, float]]  # (tag, category, confidence), most confident first

EMPTY = '<div class="tt-conf tt-empty" id="train_tools_confidences_body">No tagger loaded: no confidences.</div>'


def _percent(value: float) -> str:
    return f"{max(0.0, min(1.0, float(value))) * 100:.1f}%"


def _threshold(category: str, general: float | None, character: float | None) -> float | None:
    """The line for a tag's category: general tags use the General threshold, characters the Character one."""
    if category == "character":
        return character
    if category == "general":
        return general
    return None  # rating tags are chosen by rank, not by a threshold


def _same(text: str) -> str:
    return text


def bars_html(
    scores: Scores | None,
    general_threshold: float | None,
    character_threshold: float | None = None,
    translate: Callable[[str], str] = _same,
) -> str:
    """One row per tag: name, a bar as long as its confidence, the threshold as a line, the value.

    A tag under its threshold (one tagging would not write) is dimmed. ``translate`` renders the category
    names and the line's tooltip in the page's language (the tags themselves stay as the tagger wrote them).
    """
    if not scores:
        return EMPTY
    rows = []
    for tag, category, confidence in scores:
        line = _threshold(category, general_threshold, character_threshold)
        below = line is not None and confidence <= line  # tagging keeps a tag only when it is over (strict >)
        marker = ""
        if line is not None:
            tooltip = translate(f"{category} threshold {float(line):.2f}")
            marker = f'<span class="tt-conf-line" style="left:{_percent(line)}" title="{html.escape(tooltip)}"></span>'
        rows.append(
            f'<div class="tt-conf-row{" tt-conf-below" if below else ""}" data-tag="{html.escape(tag, quote=True)}">'
            f'<span class="tt-conf-name">{html.escape(tag)} <span class="tt-conf-cat">{html.escape(translate(category))}</span>'
            f'</span><span class="tt-conf-track"><span class="tt-conf-bar" style="width:{_percent(confidence)}">'
            f"</span>{marker}</span>"
            f'<span class="tt-conf-value">{float(confidence):.2f}</span></div>'
        )
    return f'<div class="tt-conf" id="train_tools_confidences_body">{"".join(rows)}</div>'
