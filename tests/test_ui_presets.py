"""The page's presets: save the form as your preset, find it in Preset, load a settings file (kohya's too)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from lora_ext.app.context import Context, Workspace
from lora_ext.errors import LoraExtError
from lora_ext.ui import projects, train_section
from lora_ext.ui.i18n import I18n, translate_html


@pytest.fixture
def ctx(make_standalone_host, tmp_path: Path) -> Context:
    host = make_standalone_host("sd1")
    ctx = Context(lambda: host, Workspace(tmp_path / "projects", tmp_path / "tagger"), i18n=I18n())
    projects.create_project(ctx, name="猫")
    return ctx


def test_the_form_saved_as_a_preset_is_listed_and_fills_the_form_again(ctx: Context) -> None:
    form = train_section.apply_preset(ctx, preset_name="fast-test")
    form.update(cfg_rank=7, cfg_output_name="mine")
    saved = train_section.save_preset(ctx, preset_save_name="細かい", replace_preset=False, **form)
    assert "細かい" in saved["preset"]["choices"] and "value" not in saved["preset"]  # the form is not refilled
    assert Path(saved["preset_file"]).name == "細かい.toml"
    assert "Saved preset 細かい" in saved["train_status"]
    with pytest.raises(LoraExtError, match="exists already"):
        train_section.save_preset(ctx, preset_save_name="細かい", replace_preset=False, **form)
    chosen = train_section.apply_preset(ctx, preset_name="細かい")
    assert chosen["cfg_rank"] == 7 and chosen["cfg_resolution"] == 64 and chosen["cfg_output_name"] == ""


def test_a_kohya_settings_file_fills_the_fields_it_names_and_says_what_it_did_not_use(
    ctx: Context, tmp_path: Path
) -> None:
    kohya = {"network_dim": 12, "max_train_epochs": 3, "learning_rate": 2e-4, "xformers": True, "output_dir": "/x"}
    path = tmp_path / "kohya_ss.json"
    path.write_text(json.dumps(kohya), "utf-8")
    form = train_section.apply_preset(ctx, preset_name="fast-test")
    loaded = train_section.load_settings_file(
        ctx, settings_upload=SimpleNamespace(name=str(path)), project="猫", version="v1", preset="fast-test", **form
    )
    assert (loaded["cfg_rank"], loaded["cfg_epochs"], loaded["cfg_unet_lr"]) == (12, 3, 2e-4)
    assert "cfg_resolution" not in loaded  # a field the file does not name keeps what the form holds
    assert "Loaded 3 settings from kohya_ss.json" in loaded["train_status"]
    assert "Not used from the file: xformers, output_dir" in loaded["train_status"]
    assert "0 images" in loaded["plan"]
    japanese = translate_html(loaded["train_status"], "ja")
    assert "kohya_ss.json から 3 項目の設定を読み込みました" in japanese
    assert "ファイルのうち使わなかった項目: xformers, output_dir" in japanese
