"""Benchmark of the epochs × weights grid (issue 25): what a cell costs against one plain generation.

For each model — the demo model (``lora_ext.demo``, what ``make run`` trains) and, unless ``--skip-full``, the
full-size SD1.5 architecture (UNet, CLIP-L, VAE) with random weights at 128 px — it trains a LoRA for 4 epochs
with a file each epoch (4 rows: 3 epochs and the final file), then, side by side in one run:

- one plain generation through the host (the same prompt, seed, size and steps, no ``<lora:…>``), timed after
  each of the grid's renders, inside the grid's run (their median is the reference; the grid's time is its wall
  time less theirs), so that the machine's drift hits both alike;
- the grid of 4 files × 4 weights (0, 0.4, 0.7, 1) through ``grid.render.render_grid``: 16 cells, 13 renders
  (weight 0 is the base model, rendered once and shared by the column).

It prints the grid's wall time, the cost per cell and per render ÷ the plain generation (per render ≈ 1 means
our loader's merge and restore cost little beside the sampler; per cell < 1 thanks to the shared column), and
the estimate the CLI prints before it starts (``grid.estimate.measure``: a sampler step and a render's fixed part,
from 1- and 3-step generations) ÷ the grid's time. The last
line is ``RESULT key=value …``.

Usage: ``python bench/grid.py [--skip-full] [--device cpu] [--steps 10] [--full-resolution 128]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.estimate import demo_host, full_host, make_images  # noqa: E402
from lora_ext.app.results import output_paths  # noqa: E402
from lora_ext.config import resolve_preset  # noqa: E402
from lora_ext.grid import estimate  # noqa: E402
from lora_ext.grid.epochs import run_epochs  # noqa: E402
from lora_ext.grid.render import render_grid  # noqa: E402
from lora_ext.grid.spec import GridSpec  # noqa: E402
from lora_ext.host import GenerationRequest  # noqa: E402
from lora_ext.loading.loader import NetworkLoader  # noqa: E402
from lora_ext.training.events import TrainEvents  # noqa: E402
from lora_ext.training.run import train_lora  # noqa: E402

WEIGHTS = (0.0, 0.4, 0.7, 1.0)
EPOCHS = 4


def _plain(host, spec: GridSpec) -> float:
    request = GenerationRequest(spec.blocks[0], spec.negative, spec.seed, spec.width, spec.height, spec.steps)
    started = time.perf_counter()
    host.generate(request)
    return time.perf_counter() - started


def bench_model(name: str, host, base, work: Path, size: int, steps: int) -> dict[str, float]:
    data = work / name / "data"
    make_images(data / "1_subject", size, 2, "subject")
    config = base.replace(
        dataset_dir=str(data),
        resolution=size,
        min_bucket_reso=min(64, size),
        default_repeats=1,
        epochs=EPOCHS,
        max_steps=0,
        save_every_n_epochs=1,
        sample_prompts="",
        output_name=f"{name}-grid",
    )
    result = train_lora(host, config, TrainEvents())
    assert result.status == "finished", result
    NetworkLoader.for_host(host)
    epochs = run_epochs(output_paths(host.lora_dir, config.output_name), result.work_dir)
    spec = GridSpec(epochs.rows, WEIGHTS, ("subject, a photo",), seed=1234, steps=steps, width=size, height=size)
    _plain(host, spec)  # warm-up: allocators, kernels, the text encoder's first call
    predicted = estimate.grid_seconds(spec, *estimate.measure(host, size, size))
    # A plain generation after each render, inside the grid's run (this shared machine's speed drifts by the
    # minute): the grid's own time is its wall time less theirs.
    plains: list[float] = []
    renders_seen: set = set()

    def interleave(cell, _path) -> None:
        key = "base" if cell.weight == 0 else (cell.row, cell.column)
        if key not in renders_seen:
            renders_seen.add(key)
            plains.append(_plain(host, spec))

    started = time.perf_counter()
    grid = render_grid(host, spec, work / name / "grid", marks=epochs.marks(), on_cell=interleave)
    wall = time.perf_counter() - started - sum(plains)
    plain = statistics.median(plains)
    before, after = min(plains), max(plains)
    cells, renders = len(grid.cells), len(grid.render_seconds)
    figures = {
        "plain_s": plain,
        "grid_s": wall,
        "per_cell_vs_plain": wall / cells / plain,
        "per_render_vs_plain": wall / renders / plain,
        "estimate_vs_wall": predicted / wall,
    }
    print(
        f"{name:5} {len(spec.rows)} files × {len(WEIGHTS)} weights = {cells} cells, {renders} renders, "
        f"{size} px, {steps} steps: plain generation median {plain:.2f} s ({before:.2f}–{after:.2f}); grid {wall:.1f} s "
        f"({wall / cells:.2f} s a cell = {figures['per_cell_vs_plain']:.2f} × plain; "
        f"{wall / renders:.2f} s a render = {figures['per_render_vs_plain']:.2f} × plain); "
        f"estimate {predicted:.1f} s = {figures['estimate_vs_wall']:.2f} × wall",
        flush=True,
    )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-full", action="store_true", help="only the demo model")
    parser.add_argument("--steps", type=int, default=10, help="sampler steps of every render")
    parser.add_argument("--full-resolution", type=int, default=128)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-grid-"))
    results: dict[str, dict[str, float]] = {}

    host = demo_host(work, args.device)
    demo = resolve_preset("auto", host.info.family, has_gpu=args.device != "cpu", is_demo=True).config
    results["demo"] = bench_model("demo", host, demo, work, 64, args.steps)

    if not args.skip_full:
        host = full_host(work, args.device)
        full = resolve_preset("quick", "sd1").config
        results["sd15"] = bench_model("sd15", host, full, work, args.full_resolution, args.steps)

    fields = " ".join(
        f"{model}_{key}={value:.2f}" for model, figures in results.items() for key, value in figures.items()
    )
    print(f"RESULT {fields} load={os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
