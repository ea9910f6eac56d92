"""The validation loss per epoch, the suggested epoch with its reason, the overfit warning and early stop."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file
from train_support import make_dataset, tiny_train_config, wake_zero_layers

from lora_ext.training import validation
from lora_ext.training.events import TrainEvents
from lora_ext.training.plan import dataset_counts, held_out, make_plan
from lora_ext.training.run import train_lora
from lora_ext.training.validation import ValidationPoint, early_stop_reason, overfit_warning, suggest


def points(*losses: float, train: tuple[float, ...] | None = None) -> list[ValidationPoint]:
    train = train or tuple(1.0 - 0.1 * index for index in range(len(losses)))
    return [ValidationPoint(10 * (i + 1), i + 1, loss, train[i]) for i, loss in enumerate(losses)]


# -- the rules ---------------------------------------------------------------------------------------


def test_the_suggestion_is_the_lowest_validation_loss() -> None:
    chosen = suggest(points(0.30, 0.20, 0.25, 0.28))
    assert (chosen.epoch, chosen.step) == (2, 20)
    assert chosen.reason == "lowest validation loss (0.2000)"


def test_an_earlier_epoch_within_the_tolerance_of_the_lowest_is_suggested_instead() -> None:
    chosen = suggest(points(0.30, 0.2010, 0.2000, 0.2005))
    assert chosen.epoch == 2
    assert "within 1% of the lowest (0.2000 at epoch 3)" in chosen.reason


def test_only_saved_files_are_suggested() -> None:
    chosen = suggest(points(0.30, 0.20, 0.25, 0.28), saved_steps=[10, 30, 40])
    assert chosen.epoch == 3


def test_no_suggestion_without_validations() -> None:
    assert suggest([]) is None
    assert suggest(points(0.3), saved_steps=[99]) is None


def test_overfit_warning_when_validation_rises_while_training_loss_falls() -> None:
    warning = overfit_warning(points(0.30, 0.20, 0.25, 0.30))
    assert warning.startswith("the validation loss rose 50% after epoch 2")
    assert suggest(points(0.30, 0.20, 0.25, 0.30)).warning == warning


def test_no_overfit_warning_when_training_loss_rose_too_or_validation_kept_falling() -> None:
    assert overfit_warning(points(0.30, 0.20, 0.25, train=(0.5, 0.4, 0.6))) == ""
    assert overfit_warning(points(0.30, 0.25, 0.20)) == ""
    assert overfit_warning(points(0.30)) == ""


def test_early_stop_after_patience_validations_without_improvement() -> None:
    assert early_stop_reason(points(0.30, 0.20, 0.25), 2) == ""
    reason = early_stop_reason(points(0.30, 0.20, 0.25, 0.21), 2)
    assert reason.startswith("the validation loss has not improved for 2 validations; keeping epoch 2")


def test_early_stop_counts_improvements_below_the_tolerance_as_none() -> None:
    assert early_stop_reason(points(0.30, 0.299, 0.298), 2).startswith("the validation loss has not improved")
    assert early_stop_reason(points(0.30, 0.25, 0.20), 2) == ""
    assert early_stop_reason(points(0.30, 0.40, 0.50), 0) == ""


# -- the plan -----------------------------------------------------------------------------------------


def test_every_saved_file_and_the_last_step_validate_without_held_out_images(tmp_path) -> None:
    config = tiny_train_config(tmp_path, max_steps=7, validation_split=0.0, save_every_n_epochs=1)
    plan = make_plan(config, dataset_counts(config, [1, 1, 1]))  # 3 steps an epoch
    assert plan.counts.validated_images == 3
    assert plan.counts.validation_source == "training images (none held out)"
    assert [step for step in range(1, 8) if plan.validates_at(step)] == [3, 6, 7]
    assert plan.validations_left() == 3 and plan.validations_left(6) == 1 and plan.validations_left(7) == 0
    unsaved = make_plan(config.replace(save_every_n_epochs=0), plan.counts)
    assert [step for step in range(1, 8) if unsaved.validates_at(step)] == [7]  # only the final file is saved


def test_early_stop_validates_every_epoch(tmp_path) -> None:
    config = tiny_train_config(tmp_path, max_steps=7, early_stop_patience=2)
    plan = make_plan(config, dataset_counts(config, [1, 1, 1]))
    assert [step for step in range(1, 8) if plan.validates_at(step)] == [3, 6, 7]


def test_validations_left_counts_what_validates_at_answers(tmp_path) -> None:
    for changes in (
        {"save_every_n_steps": 2, "save_every_n_epochs": 1},
        {"save_every_n_steps": 3, "save_every_n_epochs": 2, "max_steps": 0, "epochs": 4},
        {"validate_every_n_steps": 4},
        {"validation_split": 0.5},
    ):
        config = tiny_train_config(tmp_path, **{"max_steps": 11, **changes})
        plan = make_plan(
            config, dataset_counts(config, [1, 1, 1], validation_images=int("validation_split" in changes))
        )
        for after in range(plan.total_steps + 1):
            expected = sum(plan.validates_at(step) for step in range(after + 1, plan.total_steps + 1))
            assert plan.validations_left(after) == expected, (changes, after)


def test_held_out_images_are_named_as_such(tmp_path) -> None:
    config = tiny_train_config(tmp_path, validation_split=0.5, validate_every_n_steps=2, max_steps=4)
    plan = make_plan(config, dataset_counts(config, [1, 1], validation_images=2))
    assert plan.counts.validation_source == "held-out images" and plan.counts.validated_images == 2
    assert [step for step in range(1, 5) if plan.validates_at(step)] == [2, 4]


# -- a run ----------------------------------------------------------------------------------------------


def _metadata(path) -> dict:
    with safe_open(str(path), "pt") as handle:
        return handle.metadata()


def test_a_run_validates_each_epoch_into_the_run_folder_and_each_file(make_ldm_host, tmp_path) -> None:
    make_dataset(tmp_path / "data", count=2)
    host = make_ldm_host("sd1")
    config = tiny_train_config(
        tmp_path / "data", max_steps=0, epochs=3, save_every_n_epochs=1, unet_lr=1e-3, train_text_encoder=False
    )
    lines: list[str] = []
    result = train_lora(host, config, TrainEvents(on_status=lines.append), out=host.lora_dir / "v.safetensors")
    history = json.loads((result.work_dir / validation.VALIDATION_FILE).read_text(encoding="utf-8"))
    assert history["source"] == "training images (none held out)" and history["images"] == 2
    assert [(p["step"], p["epoch"]) for p in history["points"]] == [(2, 1), (4, 2), (6, 3)]
    assert history["suggestion"]["reason"]
    assert any(line.startswith("validation loss ") and "training images" in line for line in lines)
    epoch2 = _metadata(host.lora_dir / "v-000002.safetensors")
    final = _metadata(host.lora_dir / "v.safetensors")
    assert float(epoch2["train_tools_validation_loss"]) == pytest.approx(history["points"][1]["loss"], rel=1e-5)
    assert float(final["train_tools_validation_loss"]) == pytest.approx(history["points"][2]["loss"], rel=1e-5)
    assert len(json.loads(epoch2["train_tools_validation"])["points"]) == 2
    assert json.loads(final["train_tools_validation"])["points"] == history["points"]
    rows = result.loss_log.read_text().splitlines()[1:]
    assert [bool(row.split(",")[-1]) for row in rows] == [False, True] * 3


def test_the_validation_loss_is_the_same_in_every_run_whatever_the_seed(make_ldm_host, tmp_path) -> None:
    """Fixed images, noise and timesteps: with a LoRA too small to change anything, two seeds measure the same loss."""
    make_dataset(tmp_path / "data", count=3)
    host = make_ldm_host("sd1")
    measured = []
    for seed in (1, 2):
        config = tiny_train_config(tmp_path / "data", max_steps=1, unet_lr=1e-30, seed=seed, train_text_encoder=False)
        result = train_lora(host, config, TrainEvents(), out=host.lora_dir / f"s{seed}.safetensors")
        measured.append(json.loads((result.work_dir / validation.VALIDATION_FILE).read_text())["points"][0]["loss"])
    assert measured[0] == measured[1]


def _overfit_dataset(root, config) -> None:
    """Three copies of one gradient to train on, and one noise image held out: the network learns the gradient
    and, at a high rate, gets worse at the held-out image (validation falls, then rises)."""
    folder = root / "1_toy"
    folder.mkdir(parents=True)
    held = held_out(4, config)
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, 64)[None, :, None]
    colour = np.array([0.9, 0.2, 0.1])[None, None]
    gradient = ((x * colour + (1 - x) * (1 - colour)) * 255).astype(np.uint8) * np.ones((64, 1, 1), np.uint8)
    for index in range(4):
        pixels = rng.integers(0, 255, (64, 64, 3)).astype(np.uint8) if index in held else gradient
        Image.fromarray(pixels).save(folder / f"img{index}.png")
        (folder / f"img{index}.txt").write_text("toy", encoding="utf-8")


def test_early_stop_ends_an_overfitting_run_before_its_last_epoch_and_keeps_the_best(make_ldm_host, tmp_path) -> None:
    host = make_ldm_host("sd1")
    wake_zero_layers(host)
    config = tiny_train_config(
        tmp_path / "data",
        validation_split=0.25,
        max_steps=0,
        epochs=10,
        unet_lr=3e-2,
        train_text_encoder=False,
        default_repeats=2,
        rank=8,
        alpha=8.0,
        save_every_n_epochs=1,
        early_stop_patience=3,
    )
    _overfit_dataset(tmp_path / "data", config)
    lines: list[str] = []
    result = train_lora(host, config, TrainEvents(on_status=lines.append), out=host.lora_dir / "o.safetensors")
    assert result.status == "finished" and result.steps < result.total_steps
    assert result.stop_reason.startswith("the validation loss has not improved for 3 validations; keeping epoch")
    assert any(line.startswith("early stop after step") for line in lines)
    history = json.loads((result.work_dir / validation.VALIDATION_FILE).read_text(encoding="utf-8"))
    kept = history["suggestion"]
    assert history["early_stop"] == result.stop_reason and f"keeping epoch {kept['epoch']} " in result.stop_reason
    assert kept["step"] < result.steps
    # The final file holds the kept epoch's weights (its own intermediate file), with that step in its metadata.
    final, best = load_file(str(result.path)), load_file(str(host.lora_dir / f"o-{kept['epoch']:06d}.safetensors"))
    assert final.keys() == best.keys() and all(torch.equal(final[key], best[key]) for key in final)
    metadata = _metadata(result.path)
    assert metadata["ss_steps"] == str(kept["step"]) and metadata["ss_epoch"] == str(kept["epoch"])
    assert float(metadata["train_tools_validation_loss"]) == pytest.approx(kept["loss"], rel=1e-5)
    last = _metadata(host.lora_dir / f"o-{history['points'][-1]['epoch']:06d}.safetensors")
    assert last["ss_steps"] == str(result.steps)  # the epochs after the best are kept as they were saved
