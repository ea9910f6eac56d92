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
UNTRANSLATED = {"## Train Tools", "Train Tools", "mychar"}


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


def _texts(app) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for block in app.blocks.values():
        attrs = list(i18n._TEXT_ATTRS) + (["value"] if type(block).__name__ in i18n._VALUE_TEXT else [])
        for attr in attrs:
            text = getattr(block, attr, None)
            if isinstance(text, str) and text:
                found.setdefault(text, []).append(f"{type(block).__name__}.{attr}")
    return found


def test_every_visible_text_of_the_app_is_in_the_table(app) -> None:
    texts = _texts(app())
    missing = [
        text
        for text in texts
        if text not in UNTRANSLATED and not text.startswith("**Model:**") and i18n.translate(text, "ja") == text
    ]
    assert not missing, missing


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
    back = switch_language(ctx, "English")
    assert back[ui["project"]]["label"] == "Project" and back[ui["start_training"]]["value"] == "Start training"


def test_tagging_form_starts_on_skip_and_the_small_v3_model(app) -> None:
    from lora_ext.tagger.models import DEFAULT_MODEL

    _ctx, ui = app().train_tools
    assert ui["existing"].value == "skip"  # as the CLI, the REST API and the README
    assert ui["tag_model"].value == DEFAULT_MODEL
