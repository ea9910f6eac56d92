"""Picking the best epoch from the page, the REST API and the CLI: a 6-epoch run on the demo model's
architecture gives a labelled grid, a validation loss per epoch (metadata and run folder) and a suggested
epoch by the stated rule; *Keep this epoch* keeps the old final file; the grid survives a reload."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image
from safetensors import safe_open
from ui_fixtures import selection_shown, write_images

from lora_ext.app import grid, runs
from lora_ext.app.context import Context, Workspace
from lora_ext.grid.render import GRID_JSON
from lora_ext.loading.loader import NetworkLoader
from lora_ext.training.validation import TOLERANCE
from lora_ext.ui import dataset_section, live, projects, result_section, train_section
from lora_ext.ui.i18n import I18n
from lora_ext.ui.projects import selection_key

PROJECT, VERSION, NAME = "猫", "v1", "猫_v1"


@pytest.fixture
def ctx(make_standalone_host, tmp_path: Path) -> Context:
    host = make_standalone_host("sd1")  # the demo model's architecture (lora_ext.demo), with our loader
    NetworkLoader.for_host(host)
    return Context(lambda: host, Workspace(tmp_path / "projects", tmp_path / "tagger"), i18n=I18n())


def _trained(ctx: Context, tmp_path: Path, epochs: int = 6) -> dict:
    projects.create_project(ctx, name=PROJECT)
    files = [SimpleNamespace(name=str(path)) for path in write_images(tmp_path / "drop")]
    dataset_section.add_files(ctx, project=PROJECT, version=VERSION, files=files, target_folder="")
    values = train_section.apply_preset(ctx, preset_name="fast-test")
    values.update(cfg_max_steps=0, cfg_epochs=epochs, cfg_save_every_n_epochs=1, cfg_sample_prompts="")
    values.update(cfg_trigger_word="tt_cat", cfg_unet_lr=1e-2)
    started = train_section.start_training(ctx, project=PROJECT, version=VERSION, **values)
    assert ctx.jobs.current.finished_event.wait(600) and ctx.jobs.current.error is None
    return live.poll(ctx, selection=selection_key(PROJECT, VERSION), job_seen=started["job_seen"])


def _expected_suggestion(points: list[dict]) -> dict:
    """The stated rule, written out: the earliest file within the tolerance of the lowest validation loss."""
    lowest = min(point["loss"] for point in points)
    return next(point for point in points if point["loss"] <= lowest + TOLERANCE * abs(lowest))


def test_a_six_epoch_run_gives_a_grid_validation_per_epoch_and_the_suggested_epoch(ctx, tmp_path) -> None:
    shown = _trained(ctx, tmp_path)
    host = ctx.host
    # validation per epoch: in the run folder and in each file's metadata
    work_dir = ctx.version(PROJECT, VERSION).run_dir(NAME)
    history = json.loads((work_dir / "validation.json").read_text(encoding="utf-8"))
    points = history["points"]
    assert [point["epoch"] for point in points] == [1, 2, 3, 4, 5, 6]
    for point in points[:-1]:
        with safe_open(str(host.lora_dir / f"{NAME}-{point['epoch']:06d}.safetensors"), "pt") as handle:
            assert float(handle.metadata()["train_tools_validation_loss"]) == pytest.approx(point["loss"], rel=1e-5)
    # the page: the chart, the suggestion by the rule, the file Keep offers, the grid form from the training
    expected = _expected_suggestion(points)
    assert f"Suggested: epoch {expected['epoch']} — " in shown["epoch_summary"] or (
        expected["epoch"] == 6 and "Suggested: final — " in shown["epoch_summary"]
    )
    assert "training images (none held out)" in shown["epoch_summary"]
    assert set(shown["validation_plot"]["series"]) == {"validation", "training"}
    assert len(shown["validation_plot"]) == 12
    assert shown["compare_size"] == 64 and shown["compare_prompt"].startswith("tt_cat")
    assert shown["compare_steps"] == 8  # nothing timed at 64 px yet: the CPU's default
    assert "6 files × 4 weights" in shown["grid_estimate"] and "19 images × 8 steps" in shown["grid_estimate"]
    # the grid, rendered as a job the page follows
    form = dict(compare_negative="", compare_seed=7, compare_steps=2, compare_size=64, compare_weights="0, 1")
    started = result_section.compare(ctx, PROJECT, VERSION, result_name="", compare_prompt="tt_cat, toy", **form)
    job = ctx.jobs.current
    assert job.finished_event.wait(600) and job.error is None
    done = live.poll(ctx, selection=selection_key(PROJECT, VERSION), job_seen=started["job_seen"])
    assert "Grid of 6 × 2: 7 images in" in done["compare_progress"] and len(done["compare_gallery"]) == 12
    with Image.open(done["grid_image"]) as image:
        assert image.height > 6 * 128 and image.width > 2 * 128
    assert (host.lora_dir / f"{NAME}.grid.png").read_bytes() == Path(done["grid_image"]).read_bytes()
    saved = json.loads((Path(done["grid_image"]).parent / GRID_JSON).read_text(encoding="utf-8"))
    assert saved["suggestion"]["step"] == expected["step"] and saved["validation"]["points"] == points
    assert [row["label"] for row in saved["rows"]] == [f"epoch {n}" for n in range(1, 6)] + ["final"]
    # a reload shows the finished grid again, and how long it took does not grow
    elapsed = job.elapsed
    time.sleep(0.05)
    restored = selection_shown(ctx, live.restore(ctx)["selection"])  # the page load, then the selection's views
    assert restored["grid_image"] == done["grid_image"] and len(restored["compare_gallery"]) == 12
    # and its form as that grid was rendered, not the dataset's prompt again (a late re-show keeps what was typed)
    assert (restored["compare_prompt"], restored["compare_weights"]) == ("tt_cat, toy", "0, 1")
    assert (restored["compare_steps"], restored["compare_size"], restored["compare_seed"]) == (2, 64, 7)
    assert job.elapsed == elapsed
    # the estimate now knows this machine's step
    assert "on this machine" in result_section.grid_estimate(ctx, PROJECT, VERSION, "", "a", 2, 64, "0, 1")


def test_keep_this_epoch_makes_it_the_version_s_lora_and_keeps_the_old_final_file(ctx, tmp_path) -> None:
    _trained(ctx, tmp_path, epochs=3)
    lora_dir = ctx.host.lora_dir
    final = lora_dir / f"{NAME}.safetensors"
    before = final.read_bytes()
    out = result_section.keep_epoch(ctx, PROJECT, VERSION, keep_file=f"{NAME}-000002.safetensors")
    kept = lora_dir / f"{NAME}-2.safetensors"
    assert final.read_bytes() == before and kept.is_file()
    assert f"&lt;lora:{NAME}-2:0.8&gt;" in out["result_status"] and out["lora_token"] == f"<lora:{NAME}-2:0.8>"
    with safe_open(str(kept), "pt") as handle, safe_open(str(lora_dir / f"{NAME}-000002.safetensors"), "pt") as old:
        assert handle.metadata()["ss_output_name"] == f"{NAME}-2" and handle.metadata()["ss_epoch"] == "2"
        assert handle.metadata()["train_tools_kept_from"] == f"{NAME}-000002.safetensors"
        assert all(handle.get_tensor(key).equal(old.get_tensor(key)) for key in old.keys())
    listed = runs.version_runs(ctx, PROJECT, VERSION)
    assert [(run.name, run.record.status) for run in listed] == [(f"{NAME}-2", "kept"), (NAME, "finished")]
    assert ctx.store.read_manifest(PROJECT, VERSION)["output_name"] == f"{NAME}-2"
    again = runs.keep_file(ctx, PROJECT, VERSION, f"{NAME}-000001.safetensors")
    assert again.name == f"{NAME}-3" and kept.is_file()  # a new number: nothing is replaced
    with pytest.raises(Exception, match="not a file of"):
        runs.keep_file(ctx, PROJECT, VERSION, "other.safetensors")
    with pytest.raises(Exception, match="would escape the LoRA folder"):
        runs.keep_file(ctx, PROJECT, VERSION, "../x.safetensors")


def test_cancel_stops_the_grid_job_and_the_page_says_so_and_an_empty_prompt_is_the_training_s(ctx, tmp_path) -> None:
    _trained(ctx, tmp_path, epochs=2)
    original = ctx.host.generate

    def slow(request):
        time.sleep(0.3)
        return original(request)

    ctx.host.generate = slow
    form = dict(compare_negative="", compare_seed=1, compare_steps=2, compare_size=64, compare_weights="0, 0.5, 1")
    started = result_section.compare(ctx, PROJECT, VERSION, result_name="", compare_prompt=" ", **form)
    while not ctx.jobs.current.data.get("cells"):
        time.sleep(0.05)
    assert "Stopping the grid" in result_section.cancel_grid(ctx)["result_status"]
    assert ctx.jobs.current.finished_event.wait(60)
    shown = live.poll(ctx, selection=selection_key(PROJECT, VERSION), job_seen=started["job_seen"])
    assert "Cancelled after" in shown["compare_progress"] and "of 5 images" in shown["compare_progress"]
    assert not (ctx.host.lora_dir / f"{NAME}.grid.png").exists()  # only a finished grid goes beside the LoRA
    assert ctx.jobs.current.result.spec.blocks[0].startswith("tt_cat")  # no prompt typed: the training's own


def test_the_rest_api_renders_the_grid_and_answers_the_epochs_and_keeps_a_file(ctx, tmp_path) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from lora_ext.api import PREFIX, build_router

    _trained(ctx, tmp_path, epochs=2)
    app = FastAPI()
    app.include_router(build_router(lambda: ctx.host, {}, context=ctx))
    client = TestClient(app)
    base = f"{PREFIX}/projects/{PROJECT}/versions/{VERSION}"
    epochs = client.get(f"{base}/runs/{NAME}/epochs").json()
    assert [item["label"] for item in epochs["files"]] == ["epoch 1", "final"]
    assert len(epochs["validation"]["points"]) == 2 and epochs["suggestion"]["reason"]
    started = client.post(f"{base}/grid", json={"prompts": ["toy"], "steps": 2, "weights": [0, 1]})
    assert started.status_code == 200 and started.json()["name"] == grid.JOB_NAME
    assert ctx.jobs.current.finished_event.wait(600)
    status = client.get(f"{PREFIX}/jobs/current").json()
    result = status["result"]
    assert Path(result["image"]).is_file() and len(result["cells"]) == 4 and result["renders"] == 3
    assert result["suggestion"]["step"] == epochs["suggestion"]["step"]
    assert result["width"] == 64  # the training's resolution
    refused = client.post(f"{base}/grid", json={"weights": [0, "x"]})
    assert refused.status_code == 422  # not a number: refused before anything starts
    kept = client.post(f"{base}/keep", json={"file": f"{NAME}-000001.safetensors"})
    assert kept.status_code == 200 and kept.json()["name"] == f"{NAME}-2"
    assert client.post(f"{base}/keep", json={"file": "../../etc/passwd"}).status_code == 409


def test_the_cli_renders_the_grid_of_a_six_epoch_demo_run_with_its_json(tmp_path, capsys) -> None:
    from train_support import make_dataset

    from lora_ext.cli import main

    make_dataset(tmp_path / "data", count=2)
    out = tmp_path / "lora" / "cat.safetensors"
    train = [
        "train",
        "--model",
        "demo",
        "--dataset",
        str(tmp_path / "data"),
        "--out",
        str(out),
        "--preset",
        "fast-test",
    ]
    assert main([*train, "--epochs", "6", "save_every_n_epochs=1", "trigger_word=tt_cat"]) == 0
    args = ["compare", str(out), "--model", "demo", "--steps", "2", "--weights", "0,1", "--out", str(tmp_path / "g")]
    assert main([*args, "--no-progress"]) == 0
    printed = capsys.readouterr()
    assert "6 files × 2 weights: 7 images × 2 steps ≈" in printed.err
    assert "suggested: " in printed.out and f"grid: {tmp_path / 'g' / 'grid.png'}" in printed.out
    saved = json.loads((tmp_path / "g" / GRID_JSON).read_text(encoding="utf-8"))
    assert [row["label"] for row in saved["rows"]] == [f"epoch {n}" for n in range(1, 6)] + ["final"]
    assert all(row["validation_loss"] is not None for row in saved["rows"])  # from each file's metadata
    assert [point["epoch"] for point in saved["validation"]["points"]] == [1, 2, 3, 4, 5, 6]
    assert saved["prompts"][0].startswith("tt_cat") and saved["width"] == 64  # from the training
    assert saved["suggestion"] == _suggestion_of(saved)
    assert main(["compare", str(tmp_path / "nothing.safetensors"), "--model", "demo"]) == 2


def _suggestion_of(saved: dict) -> dict:
    expected = _expected_suggestion(saved["validation"]["points"])
    return {**saved["suggestion"], "step": expected["step"], "epoch": expected["epoch"]}
