"""lora_ext/ui/compat.py on the gradio this venv runs (make test runs this file on 3.41.2 and on 4.40.0)."""

from __future__ import annotations

import asyncio

import pytest

from lora_ext.ui import compat

gr = pytest.importorskip("gradio")
OPTIONS = [("猫", "cat"), "dog"]


def _process(blocks, fn_index: int, inputs: list) -> list:
    """Run one event through gradio's own pre/postprocessing (gradio 3 keeps state in a dict)."""
    state = {} if compat.gradio_major() < 4 else None
    return asyncio.run(blocks.process_api(fn_index, inputs, state))["data"]


def test_radio_options_show_labels_and_hand_over_values_at_build_and_in_updates() -> None:
    with gr.Blocks() as blocks:
        radio = gr.Radio(compat.choices(OPTIONS), value="cat")
        button = gr.Button()
        button.click(lambda: gr.update(choices=compat.choices([("犬", "dog")]), value="dog"), None, radio)
    shown = [list(option) for option in radio.get_config()["choices"]]
    assert shown == [["猫", "cat"], ["dog", "dog"]]
    assert compat.choice_pairs(radio) == [("猫", "cat"), ("dog", "dog")]
    assert radio.preprocess("cat") == "cat"
    (update,) = _process(blocks, 0, [])
    assert [list(option) for option in update["choices"]] == [["犬", "dog"]] and update["value"] == "dog"


def test_dropdown_options_are_what_this_gradio_can_show() -> None:
    with gr.Blocks():
        dropdown = gr.Dropdown(choices=compat.choices(OPTIONS, "Dropdown"), value="cat")
    shown = [option if isinstance(option, str) else list(option) for option in dropdown.get_config()["choices"]]
    labelled = compat.gradio_major() >= 4  # gradio 3.41.2's Dropdown shows plain strings only
    assert shown == ([["猫", "cat"], ["dog", "dog"]] if labelled else ["cat", "dog"])
    assert compat.takes_labels("Dropdown") is labelled and compat.takes_labels("Radio")
    assert dropdown.preprocess("cat") == "cat"


def test_the_script_runs_on_load_on_gradio_3_and_is_in_the_head_on_gradio_4() -> None:
    with gr.Blocks(**compat.head_kwargs("window.ttLoaded = 1;")) as blocks:
        compat.run_on_load(blocks, "window.ttLoaded = 1;")
    config = blocks.get_config_file()
    scripts = [dep.get("js") for dep in config["dependencies"] if dep.get("js")]
    if compat.gradio_major() >= 4:
        assert "window.ttLoaded = 1;" in config["head"] and scripts == []
    else:
        assert len(scripts) == 1 and "window.ttLoaded = 1;" in scripts[0]


def test_an_event_takes_browser_code_on_this_gradio() -> None:
    with gr.Blocks() as blocks:
        box = gr.Textbox()
        box.change(fn=None, inputs=box, outputs=box, **compat.js_kwargs("(x) => x.trim()"))
    (dependency,) = blocks.get_config_file()["dependencies"]
    assert dependency["js"] == "(x) => x.trim()" and not dependency["backend_fn"]


def test_file_path_reads_both_kinds_of_upload(tmp_path) -> None:
    class TempFile:  # gradio 3's upload wrapper: the path is its .name
        name = str(tmp_path / "a.png")

    assert compat.file_path(TempFile()) == compat.file_path(str(tmp_path / "a.png")) == str(tmp_path / "a.png")
