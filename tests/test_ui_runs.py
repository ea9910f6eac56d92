"""The page's side of runs: Resume shows what differs and fills the form with the run's settings; the Result
section lists one entry per run and shows one run's files at a time; both in English and Japanese."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from lora_ext.app.context import Context, Workspace
from lora_ext.ui import dataset_section, live, projects, result_section, train_section
from lora_ext.ui.i18n import I18n, translate_html
from lora_ext.ui.projects import selection_key


@pytest.fixture
def ctx(make_standalone_host, tmp_path: Path) -> Context:
    host = make_standalone_host("sd1")
    ctx = Context(lambda: host, Workspace(tmp_path / "projects", tmp_path / "tagger"), i18n=I18n())
    projects.create_project(ctx, name="猫")
    drop = tmp_path / "drop"
    drop.mkdir()
    for name, colour in (("red.png", (220, 30, 30)), ("blue.png", (30, 30, 220))):
        Image.new("RGB", (64, 64), colour).save(drop / name)
        (drop / name).with_suffix(".txt").write_text(name[:-4], encoding="utf-8")
    files = [SimpleNamespace(name=str(path)) for path in sorted(drop.iterdir())]
    dataset_section.add_files(ctx, project="猫", version="v1", files=files, target_folder="")
    return ctx


def _form(ctx: Context, **changes) -> dict:
    values = train_section.apply_preset(ctx, preset_name="fast-test")
    values.update(cfg_sample_prompts="", cfg_output_name="")
    values.update({f"cfg_{name}": value for name, value in changes.items()})
    return values


def _finished(ctx: Context, started: dict) -> dict:
    assert ctx.jobs.current.finished_event.wait(300)
    return live.poll(ctx, selection=selection_key("猫", "v1"), job_seen=started["job_seen"])


def _cancelled_at(ctx: Context, step: int, form: dict) -> None:
    host = ctx.host
    reached = threading.Event()
    report = host.report_progress

    def cancel(done: int, total: int, text: str) -> None:
        report(done, total, text)
        if done == step and not reached.is_set():
            reached.set()
            train_section.cancel_training(ctx)

    host.report_progress = cancel
    try:
        shown = _finished(ctx, train_section.start_training(ctx, project="猫", version="v1", **form))
    finally:
        host.report_progress = report
    assert "Cancelled at step 2" in shown["train_progress"]


def test_resume_on_the_page_says_what_differs_and_shows_the_run_s_settings(ctx: Context) -> None:
    _cancelled_at(ctx, 2, _form(ctx, max_steps=4, rank=4))
    settings_file = ctx.version("猫", "v1").config / "train.toml"
    before = settings_file.read_bytes()
    edited = _form(ctx, max_steps=1, rank=8, output_name="")  # the form as another project left it
    resumed = train_section.resume_training(ctx, project="猫", version="v1", **edited)
    status = resumed["train_status"]
    assert "Resuming 猫_v1 with the settings it started with, not the form&#x27;s:" in status
    assert "max_steps 1 → 4" in status and "rank 8 → 4" in status
    assert resumed["cfg_max_steps"] == 4 and resumed["cfg_rank"] == 4  # the form now shows what runs
    assert "cfg_output_name" not in resumed  # the run keeps its own name; the field stays as typed
    japanese = translate_html(status, "ja")
    assert "猫_v1 をフォームの設定ではなく開始時の設定で再開します" in japanese and "Resuming" not in japanese
    assert "Finished: 4 steps" in _finished(ctx, resumed)["train_progress"]
    assert settings_file.read_bytes() == before


def test_the_result_section_lists_each_run_and_shows_one_run_s_files(ctx: Context) -> None:
    for steps in (1, 2):
        started = train_section.start_training(
            ctx, project="猫", version="v1", **_form(ctx, max_steps=steps, save_every_n_steps=1)
        )
        shown = _finished(ctx, started)
    assert "猫_v1 is kept from an earlier run: this run saves as 猫_v1-2" in started["train_status"]
    runs_table, files = shown["result_runs"], shown["result_files"]
    assert runs_table["headers"] == ["Run", "Started", "Status", "Steps", "Settings", "Files"]
    assert [row[0] for row in runs_table["data"]] == ["猫_v1-2", "猫_v1"]
    assert [row[2:4] for row in runs_table["data"]] == [["finished", "2/2"], ["finished", "1/1"]]
    assert "2 steps" in runs_table["data"][0][4] and "seed" in runs_table["data"][0][4]
    assert shown["result_name"] == "猫_v1-2" and shown["lora_token"] == "<lora:猫_v1-2:0.8>"
    assert [row[0] for row in files["data"]] == ["猫_v1-2-step00000001.safetensors", "猫_v1-2.safetensors"]

    older = result_section.select_run(ctx, "猫", "v1", evt=SimpleNamespace(index=[1, 0]))
    assert older["result_name"] == "猫_v1" and [row[0] for row in older["result_files"]["data"]] == [
        "猫_v1.safetensors"
    ]
    ctx.i18n.switch("ja")
    japanese = result_section.refresh(ctx, "猫", "v1")["result_runs"]
    assert japanese["headers"][:3] == ["学習", "開始", "状態"] and japanese["data"][0][2] == "完了"
    assert "2 ステップ" in japanese["data"][0][4] and "シード" in japanese["data"][0][4]
