"""The epochs × weights grid: its cells, its rendering through the host's own generator with our loader, the
labelled image, Cancel and progress, the model handed back as it was."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from train_support import fingerprint, host_roots, make_dataset, tiny_train_config

from lora_ext.errors import ConfigError
from lora_ext.grid import estimate
from lora_ext.grid.epochs import run_epochs
from lora_ext.grid.image import MARK
from lora_ext.grid.render import GRID_IMAGE, GRID_JSON, render_grid
from lora_ext.grid.spec import GridRow, GridSpec, parse_prompts, parse_weights
from lora_ext.loading.loader import NetworkLoader
from lora_ext.training.events import TrainEvents
from lora_ext.training.run import train_lora

ROWS = (GridRow("epoch 1", "x-000001", 2, 1, 0.5), GridRow("final", "x", 4, 2, 0.4))


def test_cells_add_each_file_s_token_and_weight_zero_is_rendered_once_per_prompt() -> None:
    spec = GridSpec(ROWS, (0.0, 0.7, 1.0), ("1girl", "", "a cat"))
    cells = spec.cells()
    assert len(cells) == 2 * 2 * 3 and spec.blocks == ("1girl", "a cat")  # the empty prompt is no block
    assert [cell.prompt for cell in cells[:3]] == ["1girl", "1girl <lora:x-000001:0.7>", "1girl <lora:x-000001:1>"]
    renders = spec.renders()
    assert len(renders) == 2 * (1 + 2 * 2)  # per prompt: the base image, then two weights of two files
    base = renders[0]
    assert [(cell.row, cell.column) for cell in base] == [(0, 0), (1, 0)] and base[0].prompt == "1girl"


def test_bad_grid_settings_are_refused_with_one_line() -> None:
    assert parse_weights("0, 0.4 0.7,1") == (0.0, 0.4, 0.7, 1.0)
    assert parse_prompts("a\n\n b \n") == ("a", "b")
    with pytest.raises(ConfigError, match="'lots' is not a weight"):
        parse_weights("0, lots")
    with pytest.raises(ConfigError, match="grid prompt is empty"):
        GridSpec(ROWS, (1.0,), (" ",))
    with pytest.raises(ConfigError, match="no LoRA file"):
        GridSpec((), (1.0,), ("a",))
    with pytest.raises(ConfigError, match="steps must be at least 1"):
        GridSpec(ROWS, (1.0,), ("a",), steps=0)


def test_the_default_step_count_fits_the_machine() -> None:
    spec = GridSpec(ROWS, (0.0, 1.0), ("a",))  # 3 renders
    assert estimate.fitting_steps(spec, step_seconds=0.01) == 20
    assert estimate.fitting_steps(spec, step_seconds=10.0) == 15  # 3 × 15 × 10 s × 1.15 ≈ 26 min > 10 min …
    assert estimate.grid_seconds(spec, 1.0) == pytest.approx(3 * 20 * 1.15)


@pytest.fixture
def trained(make_standalone_host, tmp_path):
    """A tiny diffusers host with our loader, and a LoRA trained 3 epochs with a file each epoch."""
    make_dataset(tmp_path / "data", count=2)
    host = make_standalone_host("sd1")
    NetworkLoader.for_host(host)
    config = tiny_train_config(
        tmp_path / "data", max_steps=0, epochs=3, save_every_n_epochs=1, unet_lr=3e-2, train_text_encoder=False
    )
    result = train_lora(host, config, TrainEvents(), out=host.lora_dir / "x.safetensors")
    return host, result


def _files(host, name="x"):
    from lora_ext.app.results import output_paths

    return output_paths(host.lora_dir, name)


def test_a_grid_renders_every_cell_through_the_loader_and_hands_the_model_back(trained, tmp_path) -> None:
    host, result = trained
    epochs = run_epochs(_files(host), result.work_dir)
    assert [row.label for row in epochs.rows] == ["epoch 1", "epoch 2", "final"]
    assert [row.step for row in epochs.rows] == [2, 4, 6]
    assert all(row.validation_loss is not None for row in epochs.rows)
    before = fingerprint(*host_roots(host))
    spec = GridSpec(epochs.rows, (0.0, 1.0), ("toy",), steps=2, width=64, height=64)
    lines: list[str] = []
    grid = render_grid(host, spec, tmp_path / "grid", lambda d, t, line: lines.append(line), marks=epochs.marks())
    assert fingerprint(*host_roots(host)) == before  # every LoRA the cells merged is put back
    assert not grid.cancelled and len(grid.render_seconds) == 4 and len(grid.cells) == 6
    assert "cell 1/4: base model (sampler step 0/2)" in lines and "cell 4/4: final @ 1 (sampler step 2/2)" in lines
    cells = {(cell.row, cell.column): Image.open(path).tobytes() for cell, path in grid.cells}
    assert cells[(0, 0)] == cells[(2, 0)]  # weight 0: the base model in every row
    assert cells[(2, 1)] != cells[(0, 0)] and cells[(2, 1)] != cells[(0, 1)]  # each file's LoRA, applied
    again = render_grid(host, spec, tmp_path / "again")  # a fixed seed: the same cells again
    assert [Image.open(p).tobytes() for _, p in again.cells] == [Image.open(p).tobytes() for _, p in grid.cells]
    with Image.open(tmp_path / "grid" / GRID_IMAGE) as image:  # labels around 3 rows × 2 columns of cells
        assert image.width > 2 * 128 and image.height > 3 * 128
    saved = json.loads((tmp_path / "grid" / GRID_JSON).read_text(encoding="utf-8"))
    assert saved["weights"] == [0.0, 1.0] and saved["prompts"] == ["toy"] and saved["seed"] == 1234
    assert [row["label"] for row in saved["rows"]] == ["epoch 1", "epoch 2", "final"]


def test_cancel_stops_the_grid_between_cells_keeps_what_it_made_and_hands_the_model_back(trained, tmp_path) -> None:
    host, _ = trained
    before = fingerprint(*host_roots(host))
    spec = GridSpec(run_epochs(_files(host)).rows, (0.0, 1.0), ("toy",), steps=2, width=64, height=64)
    made: set = set()  # the renders made so far (the base image fills a cell in every row)
    grid = render_grid(
        host,
        spec,
        tmp_path / "g",
        cancelled=lambda: len(made) >= 2,
        on_cell=lambda cell, _path: made.add("base" if cell.weight == 0 else (cell.row, cell.column)),
    )
    assert grid.cancelled and len(grid.render_seconds) == 2 and (tmp_path / "g" / GRID_IMAGE).is_file()
    assert fingerprint(*host_roots(host)) == before


def test_the_suggested_row_is_framed_in_the_grid_image(trained, tmp_path) -> None:
    host, result = trained
    epochs = run_epochs(_files(host), result.work_dir)
    assert epochs.suggested_row is not None
    spec = GridSpec(epochs.rows, (1.0,), ("toy",), steps=1, width=64, height=64)
    marked = render_grid(host, spec, tmp_path / "a", marks=epochs.marks()).image
    plain = render_grid(host, spec, tmp_path / "b").image
    frame = [pixel for pixel in marked.getdata() if pixel == MARK]
    assert len(frame) > 4 * 128 and MARK not in set(plain.getdata())  # a frame around a row of 128-px cells


def test_the_history_comes_from_the_files_when_the_run_folder_is_gone(trained) -> None:
    host, result = trained
    with_folder = run_epochs(_files(host), result.work_dir)
    without = run_epochs(_files(host))
    assert without.points == with_folder.points and without.suggestion == with_folder.suggestion
    assert without.source == "training images (none held out)"
