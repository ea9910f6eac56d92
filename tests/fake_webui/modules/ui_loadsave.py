"""Fake ``modules.ui_loadsave``: the WebUI's saved defaults for every tab's components (``ui-config.json``).

What A1111 1.10 and Forge do at start, as far as our tab meets it: each input component inside a tab is keyed by
the tab's id and the component's label, ``"<tab id>/<label>/value"`` (the key has no elem_id). The first
component with a key writes its value into the settings when the file has none yet; every component with that
key then takes the settings' value (a Radio or a Dropdown only if it is one of its choices). So two inputs with
the same label in one tab share one default: the second shows the first one's value, on the first start already;
and from the second start on, every input shows the value it had at the first start. A component with the
attribute ``do_not_save_to_config`` set is left out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _choices(component: Any) -> list:
    return [choice[0] if isinstance(choice, list | tuple) else choice for choice in component.choices or []]


class UiLoadsave:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        path = Path(filename)
        self.ui_settings: dict[str, Any] = json.loads(path.read_text("utf-8")) if path.is_file() else {}

    def add_block(self, block: Any, path: str = "") -> None:
        import gradio as gr

        if hasattr(block, "children"):
            for child in block.children:
                self.add_block(child, path)
            return
        kinds = (gr.Slider, gr.Radio, gr.Checkbox, gr.Textbox, gr.Number, gr.Dropdown)
        if type(block) not in kinds or getattr(block, "label", None) is None:
            return
        if getattr(block, "do_not_save_to_config", False):
            return
        key = f"{path}/{block.label}/value"
        saved = self.ui_settings.get(key)
        if saved is None:
            self.ui_settings[key] = block.value
            return
        if isinstance(block, gr.Radio | gr.Dropdown) and saved not in _choices(block):
            return
        if isinstance(block, gr.Textbox):
            saved = str(saved)
        elif isinstance(block, gr.Number):
            saved = float(saved)
        block.value = saved

    def dump_defaults(self) -> None:
        Path(self.filename).write_text(json.dumps(self.ui_settings, indent=4, ensure_ascii=False), "utf-8")
