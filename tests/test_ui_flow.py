"""The tab's handlers called as plain functions of named values, through the whole flow on a tiny host."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from ui_fixtures import write_images, write_tagger

from lora_ext.app.context import Context, Workspace
from lora_ext.errors import DatasetError, LoraExtError
from lora_ext.ui import (
    confidence_bars,
    dataset_section,
    editor_section,
    live,
    projects,
    result_section,
    tagger_section,
    train_section,
)
from lora_ext.ui.i18n import I18n
from lora_ext.ui.projects import selection_key

NO_FILTER = {"filter_positive": "", "positive_logic": "AND", "filter_negative": "", "negative_logic": "OR"}
TAG_OPTIONS = {
    "general_threshold": 0.35,
    "character_threshold": 0.85,
    "general_mcut": False,
    "character_mcut": False,
    "exclude": "",
    "trigger_tags": "",
    "max_tags": 0,
    "rating": "off",
    "characters_first": False,
}


@pytest.fixture
def ctx(make_standalone_host, tmp_path: Path) -> Context:
    host = make_standalone_host("sd1")
    workspace = Workspace(tmp_path / "projects", tmp_path / "tagger")
    write_tagger(workspace.tagger_dir)
    return Context(lambda: host, workspace, i18n=I18n())


def _finished(ctx: Context, started: dict, project: str = "猫", version: str = "v1") -> dict:
    """What the page shows once the job ``started`` began has ended: the poll after it finished."""
    assert started["job_seen"].endswith(":running")
    assert ctx.jobs.current.finished_event.wait(600)
    return live.poll(ctx, selection=selection_key(project, version), job_seen=started["job_seen"])


def _value(update):
    return update["value"] if isinstance(update, dict) else update


def test_project_with_japanese_name_is_created_and_selected(ctx: Context) -> None:
    out = projects.create_project(ctx, name="猫のテスト")
    assert _value(out["project"]) == "猫のテスト" and _value(out["version"]) == "v1"
    assert out["project"]["choices"] == ["猫のテスト"]


def test_bad_project_name_is_one_clear_error(ctx: Context) -> None:
    with pytest.raises(DatasetError, match="path separator"):
        projects.create_project(ctx, name="a/b")


def test_delete_asks_first_then_moves_to_trash(ctx: Context) -> None:
    projects.create_project(ctx, name="old")
    asked = projects.ask_delete(ctx, "project", "old", "v1")
    assert asked["confirm_row"]["visible"] is True and asked["delete_target"] == "project:old"
    assert ctx.store.list_projects() == ["old"]  # nothing happens before the confirmation
    done = projects.confirm_delete(ctx, delete_target="project:old", project="old", version="v1")
    assert ctx.store.list_projects() == [] and ctx.store.list_trash()
    assert done["confirm_row"]["visible"] is False


def test_rename_duplicate_and_versions(ctx: Context) -> None:
    projects.create_project(ctx, name="a")
    projects.rename_project(ctx, project="a", name="b")
    projects.duplicate_project(ctx, project="b", name="c")
    out = projects.create_version(ctx, project="c", name="v2")
    assert ctx.store.list_projects() == ["b", "c"] and _value(out["version"]) == "v2"
    projects.duplicate_version(ctx, project="c", version="v2", name="v3")
    projects.rename_version(ctx, project="c", version="v3", name="final")
    assert ctx.store.list_versions("c") == ["final", "v1", "v2"]


def test_ingest_reports_the_broken_image(ctx: Context, tmp_path: Path) -> None:
    projects.create_project(ctx, name="猫")
    files = [SimpleNamespace(name=str(path)) for path in write_images(tmp_path / "drop")]
    out = dataset_section.add_files(ctx, project="猫", version="v1", files=files, target_folder="")
    assert "2 image(s) added, 1 skipped" in out["dataset_status"]
    assert "image(s) added" not in out["report"]  # the counts are said once, in the status line
    assert "broken.png" in out["report"] and "Skipped" in out["report"]
    assert str(tmp_path) not in out["report"]  # upload temp paths are shown by file name
    assert len(out["gallery"]) == 2


def test_dropped_folder_keeps_its_repeat_folder(tmp_path: Path) -> None:
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    marked = uploads / f"mychar{dataset_section.PATH_MARK}10_cat{dataset_section.PATH_MARK}a.png"
    write_images(tmp_path / "src")[0].rename(marked)
    sources, names = dataset_section.rebuild_folders([str(marked)], tmp_path / "staging")
    assert sources == [str(tmp_path / "staging" / "mychar")]
    assert (tmp_path / "staging" / "mychar" / "10_cat" / "a.png").is_file() and names[sources[0]] == "mychar"


def test_uploaded_names_come_back_as_the_user_named_them_and_the_first_duplicate_stays(
    ctx: Context, tmp_path: Path
) -> None:
    projects.create_project(ctx, name="猫")
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    red, _blue, _broken = write_images(tmp_path / "src")
    # What javascript/train_tools.js sends for "coffee (1).png" and "coffee.png" (the same picture), in drop order.
    first = uploads / "coffee __ttc28__1__ttc29__.png"
    second = uploads / "coffee.png"
    first.write_bytes(red.read_bytes())
    second.write_bytes(red.read_bytes())
    files = [SimpleNamespace(name=str(path)) for path in (first, second)]
    out = dataset_section.add_files(ctx, project="猫", version="v1", files=files, target_folder="")
    dataset = ctx.version("猫", "v1").dataset
    assert sorted(path.name for path in dataset.glob("*.png")) == ["coffee (1).png"]
    assert "coffee.png" in out["report"] and "duplicate of" in out["report"]
    assert "__ttc" not in out["report"] and "renamed" not in out["report"]


def test_an_escaped_name_that_would_leave_its_folder_is_taken_as_it_came(tmp_path: Path) -> None:
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    sneaky = uploads / "__ttc2e____ttc2e____ttc2f__x.png"  # "../x.png" once decoded
    sneaky.write_bytes(b"x")
    sources, _names = dataset_section.rebuild_folders([str(sneaky)], tmp_path / "staging")
    assert sources == [str(sneaky)] and not (tmp_path / "staging").exists()
    assert dataset_section.decode_upload_name("a__ttc3042__b") == "aあb"


def _tagged(ctx: Context, tmp_path: Path) -> None:
    projects.create_project(ctx, name="猫")
    files = [SimpleNamespace(name=str(path)) for path in write_images(tmp_path / "drop")]
    dataset_section.add_files(ctx, project="猫", version="v1", files=files, target_folder="")
    started = tagger_section.run_tagging(
        ctx, project="猫", version="v1", model="tiny-tagger", existing="overwrite", batch_size=8, **TAG_OPTIONS
    )
    assert "Auto-tagging finished" in _finished(ctx, started)["tag_progress"]


def test_auto_tag_then_remove_a_tag_and_undo(ctx: Context, tmp_path: Path) -> None:
    _tagged(ctx, tmp_path)
    view = editor_section.view(ctx, "猫", "v1")
    assert 'data-tag="red theme"' in view["chips"] and 'data-tag="blue theme"' in view["chips"]
    removed = editor_section.remove_tags(ctx, project="猫", version="v1", tags_text="red theme", **NO_FILTER)
    assert 'data-tag="red theme"' not in removed["chips"] and "1 unsaved" in removed["editor_state"]
    undone = editor_section.undo(ctx, project="猫", version="v1", **NO_FILTER)
    assert 'data-tag="red theme"' in undone["chips"] and "saved" in undone["editor_state"]


def test_batch_edit_touches_only_filtered_images_and_saves(ctx: Context, tmp_path: Path) -> None:
    _tagged(ctx, tmp_path)
    shown = {**NO_FILTER, "filter_positive": "red theme"}
    out = editor_section.add_tags(ctx, project="猫", version="v1", tags_text="mychar", position="prepend", **shown)
    assert len(out["gallery"]) == 1 and out["gallery"][0][1].startswith("red.png · mychar, ")
    saved = editor_section.save(ctx, project="猫", version="v1", overwrite=False, **shown)
    assert "saved 1 caption(s)" in saved["editor_state"]
    dataset = ctx.version("猫", "v1").dataset
    assert (dataset / "red.txt").read_text("utf-8").startswith("mychar, ")
    assert not (dataset / "blue.txt").read_text("utf-8").startswith("mychar")


def test_tagging_refuses_while_edits_are_unsaved(ctx: Context, tmp_path: Path) -> None:
    _tagged(ctx, tmp_path)
    editor_section.remove_tags(ctx, project="猫", version="v1", tags_text="1girl", **NO_FILTER)
    with pytest.raises(DatasetError, match="unsaved"):
        tagger_section.run_tagging(
            ctx, project="猫", version="v1", model="tiny-tagger", existing="overwrite", batch_size=8, **TAG_OPTIONS
        )


def test_selecting_an_image_shows_its_caption_and_confidences(ctx: Context, tmp_path: Path) -> None:
    _tagged(ctx, tmp_path)
    tagger_section.unload_tagger(ctx)
    click = SimpleNamespace(index=1)
    out = editor_section.select_image(ctx, project="猫", version="v1", evt=click, tag_model="tiny-tagger", **NO_FILTER)
    assert out["selected_key"] == "red.png" and "red theme" in out["caption"]
    assert 'data-tag="red theme"' in out["confidences"]  # loaded from disk on click
    assert out["caption_base"] == out["caption"]  # the box remembers what it was loaded from
    tagger_section.unload_tagger(ctx)
    remote = "wd-vit-tagger-v3"  # not on disk: a click never starts a download
    out = editor_section.select_image(ctx, project="猫", version="v1", evt=click, tag_model=remote, **NO_FILTER)
    assert out["confidences"] == confidence_bars.EMPTY and out["confidence_scores"] is None and out["caption"]


def _select_red(ctx: Context) -> dict:
    """Click red.png in the gallery (blue.png comes first); the box as the page then holds it."""
    out = editor_section.select_image(ctx, project="猫", version="v1", evt=SimpleNamespace(index=1), **NO_FILTER)
    assert out["selected_key"] == "red.png"
    return {name: out[name] for name in editor_section.BOX_NAMES}


def test_batch_replace_undo_and_redo_refresh_the_caption_box(ctx: Context, tmp_path: Path) -> None:
    _tagged(ctx, tmp_path)
    box = _select_red(ctx)
    assert "red theme" in box["caption"]
    edit = {"search": "red theme", "replacement": "crimson", "regex": False, "scope": "each"}
    out = editor_section.replace(ctx, project="猫", version="v1", **edit, **box, **NO_FILTER)
    assert "crimson" in out["caption"] and "red theme" not in out["caption"]
    assert out["caption_base"] == out["caption"] and out["selected_key"] == "red.png"
    box = {name: out[name] for name in editor_section.BOX_NAMES}
    undone = editor_section.undo(ctx, project="猫", version="v1", **box, **NO_FILTER)
    assert "red theme" in undone["caption"] and undone["caption_base"] == undone["caption"]
    box = {name: undone[name] for name in editor_section.BOX_NAMES}
    redone = editor_section.redo(ctx, project="猫", version="v1", **box, **NO_FILTER)
    assert "crimson" in redone["caption"] and "red theme" not in redone["caption"]


def test_apply_caption_on_a_stale_box_asks_first_and_changes_nothing(ctx: Context, tmp_path: Path) -> None:
    _tagged(ctx, tmp_path)
    stale = _select_red(ctx)  # the box as a page holds it when a batch edit did not refresh it (another tab)
    edit = {"search": "red theme", "replacement": "crimson", "regex": False, "scope": "each"}
    editor_section.replace(ctx, project="猫", version="v1", **edit, **NO_FILTER)
    editor = ctx.session("猫", "v1").editor
    after_replace = editor.table
    asked = editor_section.set_caption(ctx, project="猫", version="v1", **stale, **NO_FILTER)
    assert "changed since" in asked["caption_note"] and "crimson" in asked["caption_note"]
    assert "caption" not in asked  # the box keeps the user's text
    assert editor.table is after_replace and "red theme" not in editor.table.tags("red.png")
    # A second press, now that the user was told, applies the box's text.
    confirmed = {**stale, "caption_base": asked["caption_base"]}
    applied = editor_section.set_caption(ctx, project="猫", version="v1", **confirmed, **NO_FILTER)
    assert "red theme" in editor.table.tags("red.png") and applied["caption_note"] == ""


def test_typing_in_the_box_survives_a_batch_edit_and_apply_then_asks(ctx: Context, tmp_path: Path) -> None:
    _tagged(ctx, tmp_path)
    box = _select_red(ctx)
    typed = {**box, "caption": box["caption"] + ", my typing"}
    edit = {"search": "red theme", "replacement": "crimson", "regex": False, "scope": "each"}
    out = editor_section.replace(ctx, project="猫", version="v1", **edit, **typed, **NO_FILTER)
    assert out["caption"] == typed["caption"] and out["caption_base"] == box["caption"]
    assert "not applied" in out["caption_note"]
    kept = {name: out[name] for name in editor_section.BOX_NAMES}
    asked = editor_section.set_caption(ctx, project="猫", version="v1", **kept, **NO_FILTER)
    assert "changed since" in asked["caption_note"]
    assert "my typing" not in ctx.session("猫", "v1").editor.table.tags("red.png")


def test_a_hidden_tag_stays_as_a_struck_through_chip(ctx: Context, tmp_path: Path) -> None:
    _tagged(ctx, tmp_path)
    hidden = {**NO_FILTER, "filter_negative": "red theme"}  # what Shift+click on its chip sends
    out = editor_section.apply_filter(ctx, project="猫", version="v1", **hidden)
    assert len(out["gallery"]) == 1
    chip = 'class="tt-chip tt-chip-off tt-chip-hidden" data-tag="red theme" data-hidden="1"'
    assert chip in out["chips"]
    assert (
        'data-tag="red theme" data-hidden="1" title="hidden: click to show again">red theme<span class="tt-count">1<'
        in (out["chips"])
    )


def test_refresh_of_tagger_models_keeps_the_selection_and_lists_a_new_folder(ctx: Context, tmp_path: Path) -> None:
    write_tagger(ctx.workspace.tagger_dir, "another-tagger")
    out = tagger_section.refresh_models(ctx, model="tiny-tagger")
    assert out["tag_model"]["value"] == "tiny-tagger"
    assert out["tag_model"]["choices"][:2] == ["another-tagger", "tiny-tagger"]
    assert "2 model folder(s)" in out["tag_report"]
    remote = tagger_section.refresh_models(ctx, model="wd-vit-tagger-v3")
    assert remote["tag_model"]["value"] == "wd-vit-tagger-v3"
    shutil.rmtree(ctx.workspace.tagger_dir / "tiny-tagger")
    gone = tagger_section.refresh_models(ctx, model="tiny-tagger")
    assert gone["tag_model"]["value"] == "another-tagger" and "tiny-tagger" not in gone["tag_model"]["choices"]
    assert "tiny-tagger is no longer there, so another-tagger is selected" in gone["tag_report"]


def _line_in_row(bars: str, tag: str) -> str:
    row = bars.split(f'data-tag="{tag}"', 1)[1].split('<div class="tt-conf-row', 1)[0]
    return row


def test_the_threshold_is_a_line_on_the_confidence_bars(ctx: Context, tmp_path: Path) -> None:
    scores = [("red theme", "general", 0.9), ("mychar", "character", 0.5), ("general", "rating", 0.8)]
    bars = confidence_bars.bars_html(scores, 0.35, 0.85)
    assert 'class="tt-conf-line" style="left:35.0%"' in _line_in_row(bars, "red theme")
    assert 'style="width:90.0%"' in _line_in_row(bars, "red theme")
    assert 'class="tt-conf-line" style="left:85.0%"' in _line_in_row(bars, "mychar")
    assert '<div class="tt-conf-row tt-conf-below" data-tag="mychar"' in bars  # under its threshold: dimmed
    assert "tt-conf-line" not in _line_in_row(bars, "general")  # ratings have no threshold
    # Through the handlers: the General threshold is an input of the click, and moving it redraws the line.
    _tagged(ctx, tmp_path)
    click = SimpleNamespace(index=1)
    out = editor_section.select_image(
        ctx, project="猫", version="v1", evt=click, general_threshold=0.4, character_threshold=0.85, **NO_FILTER
    )
    assert 'class="tt-conf-line" style="left:40.0%"' in _line_in_row(out["confidences"], "red theme")
    moved = editor_section.render_confidences(ctx, out["confidence_scores"], 0.6, 0.85)
    assert 'class="tt-conf-line" style="left:60.0%"' in _line_in_row(moved["confidences"], "red theme")


def test_missing_tagger_model_is_a_one_line_error(ctx: Context, tmp_path: Path) -> None:
    projects.create_project(ctx, name="x")
    started = tagger_section.run_tagging(
        ctx, project="x", version="v1", model="no-such-folder", existing="skip", batch_size=1, **TAG_OPTIONS
    )
    shown = _finished(ctx, started, "x")
    assert "unknown tagger model" in shown["tag_status"] and "tt-msg-error" in shown["tag_status"]


def test_train_then_results_list_the_file_with_hash(ctx: Context, tmp_path: Path) -> None:
    _tagged(ctx, tmp_path)
    values = train_section.apply_preset(ctx, preset_name="fast-test")
    values.update(cfg_max_steps=2, cfg_output_name="", cfg_sample_prompts="")
    plan = train_section.plan(ctx, project="猫", version="v1", **values)
    assert "max steps 2" in plan["plan"]
    final = _finished(ctx, train_section.start_training(ctx, project="猫", version="v1", **values))
    assert "Finished: 2 steps" in final["train_progress"]
    assert final["result_name"] == "猫_v1" and final["lora_token"] == "<lora:猫_v1:0.8>"
    assert final["result_files"]["headers"] == ["File", "Saved at", "Size", "AutoV2", "SHA-256"]
    (row,) = final["result_files"]["data"]
    assert row[0] == "猫_v1.safetensors" and len(row[3]) == 10
    assert (ctx.host.lora_dir / "猫_v1.safetensors").is_file()
    assert ctx.version("猫", "v1").config.joinpath("train.toml").is_file()
    assert result_section.refresh(ctx, "猫", "v1")["result_name"] == "猫_v1"  # remembered in the manifest


def test_the_file_table_keeps_its_headers_when_empty_and_in_japanese(ctx: Context) -> None:
    empty = result_section.refresh(ctx, None, None)["result_files"]
    assert empty["headers"] == ["File", "Saved at", "Size", "AutoV2", "SHA-256"] and len(empty["data"][0]) == 5
    ctx.i18n.switch("ja")
    assert result_section.refresh(ctx, None, None)["result_files"]["headers"][:3] == ["ファイル", "保存時点", "サイズ"]


def test_training_refuses_when_the_host_cannot_train(ctx: Context, tmp_path: Path) -> None:
    from lora_ext.host import HostCapabilities

    projects.create_project(ctx, name="p")
    host = ctx.host
    host.capabilities = lambda: HostCapabilities(can_train=False, reasons=["the WebUI runs with --lowvram"])
    assert "--lowvram" in train_section.capabilities_html(ctx)
    values = train_section.apply_preset(ctx, preset_name="fast-test")
    with pytest.raises(LoraExtError, match="--lowvram"):
        train_section.start_training(ctx, project="p", version="v1", **values)


def test_cancel_stops_training_after_the_current_step(ctx: Context, tmp_path: Path) -> None:
    _tagged(ctx, tmp_path)
    values = train_section.apply_preset(ctx, preset_name="fast-test")
    values.update(cfg_max_steps=500, cfg_sample_prompts="")
    started = train_section.start_training(ctx, project="猫", version="v1", **values)
    shown = live.poll(ctx, selection=selection_key("猫", "v1"), job_seen=started["job_seen"])
    while "Training: step" not in shown["train_progress"]:
        assert not ctx.jobs.current.finished_event.wait(0.2)
        shown = live.poll(ctx, selection=selection_key("猫", "v1"), job_seen=started["job_seen"])
    cancelled = train_section.cancel_training(ctx)
    assert "Stopping" in cancelled["train_status"]
    assert "Cancelled at step" in _finished(ctx, started)["train_progress"]
    assert not (ctx.host.lora_dir / "猫_v1.safetensors").exists()


def test_the_advanced_settings_are_in_titled_groups_that_hold_every_field_once() -> None:
    from lora_ext.ui import train_fields
    from lora_ext.ui.i18n import translate

    groups = train_fields.advanced_groups()
    grouped = [name for _title, names in groups for name in names]
    assert sorted(grouped) == sorted(train_fields.advanced_fields()) and len(grouped) == len(set(grouped))
    assert train_fields.OTHER_GROUP not in [title for title, _names in groups]  # a new field gets its group
    assert len(groups) >= 6 and all(len(names) <= 10 for _title, names in groups)
    assert all(translate(title, "ja") != title for title, _names in groups)


def test_the_generate_prompt_follows_the_selected_versions_lora() -> None:
    from lora_ext.ui.app import DEFAULT_PROMPT, prompt_with_token

    assert "<lora:" not in DEFAULT_PROMPT  # no token naming a LoRA that does not exist
    first = prompt_with_token(DEFAULT_PROMPT, "", "<lora:猫_v1:0.8>")
    assert first == "1girl <lora:猫_v1:0.8>"
    typed = prompt_with_token(f"{first}, smile <lora:other:0.5>", "<lora:猫_v1:0.8>", "<lora:犬_v1:0.8>")
    assert typed == "1girl, smile <lora:other:0.5> <lora:犬_v1:0.8>"  # the user's own token stays
    assert prompt_with_token(first, "<lora:猫_v1:0.8>", "") == "1girl"  # a version without a LoRA: no token
