"""The page's Export (in the Dataset section): a zip offered for download, or a kohya folder; both languages."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from PIL import Image

from lora_ext.app.context import Context, Workspace
from lora_ext.errors import LoraExtError
from lora_ext.ui import export_section, projects
from lora_ext.ui.i18n import I18n, translate_html


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    ctx = Context(lambda: None, Workspace(tmp_path / "projects", tmp_path / "tagger"), i18n=I18n())
    projects.create_project(ctx, name="猫")
    dataset = ctx.version("猫", "v1").dataset
    Image.new("RGB", (8, 8)).save(dataset / "a.png")
    (dataset / "a.txt").write_text("cat", encoding="utf-8")
    return ctx


def test_export_offers_the_zip_and_says_where_it_went(ctx: Context) -> None:
    shown = export_section.export(ctx, "猫", "v1", export_format="zip", export_repeats=4, export_name="")
    with zipfile.ZipFile(shown["export_file"]) as archive:
        assert sorted(archive.namelist()) == ["4_猫/a.png", "4_猫/a.txt"]
    assert "Exported 1 images and 1 captions to" in shown["export_status"]
    assert "画像 1 枚とキャプション 1 件を" in translate_html(shown["export_status"], "ja")
    folder = export_section.export(ctx, "猫", "v1", export_format="folder", export_repeats=0, export_name="mine")
    assert folder["export_file"] is None and "(10_mine)" in folder["export_status"]


def test_an_empty_dataset_is_one_line_in_either_language(ctx: Context) -> None:
    projects.create_project(ctx, name="空")
    with pytest.raises(LoraExtError) as refused:
        export_section.export(ctx, "空", "v1", export_format="zip", export_repeats=0, export_name="")
    line = refused.value.one_line()
    assert line == "The dataset has no images to export. (add images first)"
    assert I18n("ja")(line) == "データセットにエクスポートする画像がありません。（先に画像を追加してください）"
