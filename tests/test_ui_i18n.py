"""English and Japanese labels: one table, the WebUI's localisation file, and the standalone language switch."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from lora_ext.config import TrainConfig
from lora_ext.ui import i18n
from lora_ext.ui.labels_ja import GRADIO_JA, JA
from lora_ext.ui.messages_ja import MESSAGES
from lora_ext.ui.train_fields import LABELS

# Visible text that stays as it is in every language: names, examples and text built from live data.
UNTRANSLATED = {"## Train Tools", "Train Tools", "mychar", "English", "日本語", "AutoV2", "SHA-256"}


def test_webui_localization_file_is_generated_from_the_table() -> None:
    assert i18n.LOCALIZATION_FILE.read_text("utf-8") == i18n.localization_json()
    shipped = json.loads(i18n.LOCALIZATION_FILE.read_text("utf-8"))
    # Every label, the texts gradio draws itself, and every fixed status line (templated ones are rendered in Python).
    assert JA.items() <= shipped.items() and GRADIO_JA.items() <= shipped.items()
    assert shipped["Nothing is running."] == MESSAGES["Nothing is running."]
    assert not any("{" in english for english in shipped if english in MESSAGES)


def test_every_training_label_and_help_text_has_a_japanese_translation() -> None:
    missing = [label for label in LABELS.values() if label not in JA]
    missing += [spec.metadata["help"] for spec in fields(TrainConfig) if spec.name != "dataset_dir"]
    missing = [text for text in missing if text not in JA]
    assert not missing, missing


def test_headings_are_translated_by_their_words() -> None:
    assert i18n.translate("### Dataset", "ja") == "### データセット"
    assert i18n.translate("**Basic**", "ja") == "**基本**"
    assert i18n.translate("Dataset", "en") == "Dataset"
    assert i18n.translate("no such text", "ja") == "no such text"


@pytest.fixture
def app(make_standalone_host, tmp_path: Path):
    from lora_ext.app.context import Workspace
    from lora_ext.ui.app import build_app

    def make(language: str = "en"):
        host = make_standalone_host("sd1")
        return build_app(host, language=language, workspace=Workspace(tmp_path / "projects", tmp_path / "tagger"))

    return make


def _texts(blocks) -> dict[str, list[str]]:
    """Every text the built page shows: labels, help, placeholders, buttons, Markdown, radio options,
    table headers and the status lines already in HTML components. (Dropdown choices are names: projects,
    versions, tagger models, presets, optimizers; their values are what configs and the CLI use.)"""
    found: dict[str, list[str]] = {}

    def add(text: object, where: str) -> None:
        if isinstance(text, str) and text:
            found.setdefault(text, []).append(where)

    for block in blocks.blocks.values():
        kind = type(block).__name__
        attrs = list(i18n._TEXT_ATTRS) + (["value"] if kind in i18n._VALUE_TEXT else [])
        for attr in attrs:
            add(getattr(block, attr, None), f"{kind}.{attr}")
        for name, _value in block.choices if kind == "Radio" else []:
            add(name, "Radio.choices")
        if kind == "Dataframe":
            for header in block.headers or []:
                add(header, "Dataframe.headers")
        if kind == "HTML" and isinstance(block.value, str) and i18n._ELEMENT.search(block.value):
            add(block.value, "HTML.value")
    return found


def _missing(texts: dict[str, list[str]]) -> list[str]:
    def untranslated(text: str) -> bool:
        if text.startswith("<"):
            return i18n.translate_html(text, "ja") == text
        return i18n.translate(text, "ja") == text

    return sorted(
        f"{text!r} ({', '.join(sorted(set(where)))})"
        for text, where in texts.items()
        if text not in UNTRANSLATED and untranslated(text)
    )


def test_every_visible_text_of_the_app_and_the_webui_tab_is_in_the_tables(app, make_standalone_host, tmp_path) -> None:
    from lora_ext.app.context import Workspace
    from lora_ext.ui.tab import build_tab, create_context

    texts = _texts(app())
    host = make_standalone_host("sd1")
    context = create_context(lambda: host, Workspace(tmp_path / "webui-projects", tmp_path / "tagger"))
    for text, where in _texts(build_tab(lambda: host, context)).items():
        texts.setdefault(text, []).extend(f"tab {place}" for place in where)
    missing = _missing(texts)
    assert not missing, missing


def test_radio_options_are_shown_in_japanese_and_keep_their_english_values(app) -> None:
    ctx, ui = app("ja").train_tools
    assert ("スキップ", "skip") in ui["existing"].choices and ui["existing"].value == "skip"
    assert [value for _name, value in ui["positive_logic"].choices] == ["AND", "OR", "NONE"]
    assert ui["sort_key"].choices[1] == ("出現回数順", "frequency")
    assert ui["loss_plot"].label == "損失"
    assert ui["model_line"].value.startswith("**モデル:**")
    updates = ctx.i18n.switch("en")
    assert updates[ui["existing"]]["choices"][0] == ("skip", "skip")


def test_status_lines_and_errors_reach_the_page_in_its_language(app) -> None:
    from lora_ext.ui import projects
    from lora_ext.ui.common import bind

    ctx, ui = app("ja").train_tools
    outputs = ui.pick("project", "version", "selection", "first_step", "name", "project_status")
    create = bind(projects.create_project, ["name"], outputs, ctx, status=ui["project_status"])
    shown = create("猫")
    assert "プロジェクト 猫 を作成しました" in shown[ui["project_status"]]
    failed = create("   ")  # an empty name: one line in the status area, in Japanese
    assert "が空です" in failed[ui["project_status"]] and "tt-msg-error" in failed[ui["project_status"]]
    ctx.i18n.switch("en")
    assert "Created project 犬" in create("犬")[ui["project_status"]]


def test_the_webui_tab_follows_the_webui_localization_setting(tmp_path) -> None:
    from lora_ext.app.context import Workspace
    from lora_ext.ui.tab import create_context

    chosen = {"localization": "ja_JP"}
    workspace = Workspace(tmp_path / "projects", tmp_path / "tagger", lambda key, default: chosen.get(key, default))
    ctx = create_context(lambda: None, workspace)
    assert ctx.i18n.language == "ja" and ctx.tr("Nothing is running.") == "実行中のものはありません。"
    chosen["localization"] = "None"  # read on each use
    assert ctx.i18n.language == "en" and ctx.tr("Nothing is running.") == "Nothing is running."


def test_app_built_in_japanese_shows_japanese_labels(app) -> None:
    ctx, ui = app("ja").train_tools
    assert ui["project"].label == "プロジェクト"
    assert ui["create_project"].value == "プロジェクトを作成"
    assert ui["cfg_unet_lr"].info == "UNet の LoRA の学習率。"


def test_language_switch_relabels_everything_and_back(app) -> None:
    from lora_ext.ui.app import switch_language

    ctx, ui = app("en").train_tools
    updates = switch_language(ctx, "日本語")
    assert updates[ui["project"]]["label"] == "プロジェクト"
    assert updates[ui["start_training"]]["value"] == "学習開始"
    assert updates[ui["cfg_rank"]]["info"] == "LoRA のランク（network_dim）。"
    assert set(updates) == set(ctx.i18n.components)
    from lora_ext.ui.app import reopened_language

    reopened = reopened_language(ctx, ui, built="en")  # a reload of the page built in English reopens in Japanese
    assert reopened[ui["language"]]["value"] == "日本語" and reopened[ui["project"]]["label"] == "プロジェクト"
    back = switch_language(ctx, "English")
    assert back[ui["project"]]["label"] == "Project" and back[ui["start_training"]]["value"] == "Start training"


def test_tagging_form_starts_on_skip_and_the_small_v3_model(app) -> None:
    from lora_ext.tagger.models import DEFAULT_MODEL

    _ctx, ui = app().train_tools
    assert ui["existing"].value == "skip"  # as the CLI, the REST API and the README
    assert ui["tag_model"].value == DEFAULT_MODEL
