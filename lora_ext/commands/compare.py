"""``compare``: the epochs × weights grid of a trained LoRA, rendered on the standalone host.

Rows are the LoRA's saved files (``NAME-000002.safetensors`` …, then ``NAME.safetensors``), columns are
weights; every cell uses the same seed. The grid image, its cells and ``grid.json`` (each file's validation
loss, the run's history, the suggested epoch and why) go into ``--out``. Prompt, size and steps default to
what the training used (its metadata): the trigger word and a caption of its dataset, its resolution, and
the most steps that render the grid in about ten minutes here (the time is printed before it starts).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

HELP = "render the epochs × weights grid of a trained LoRA (grid PNG + JSON with validation and the suggestion)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("lora", help="the LoRA file (its NAME-0000NN epoch files beside it are the other rows)")
    parser.add_argument("--model", required=True, help="diffusers folder, single-file checkpoint, or 'demo'")
    parser.add_argument("--prompt", action="append", help="a prompt (repeat for several); default: from the training")
    parser.add_argument("--negative", default="", help="negative prompt")
    parser.add_argument("--weights", default="0, 0.4, 0.7, 1", help="the columns' weights (default: 0, 0.4, 0.7, 1)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--steps", type=int, help="sampler steps (default: the most that fit in about 10 minutes)")
    parser.add_argument("--size", type=int, help="image side in pixels (default: the training resolution)")
    parser.add_argument("--cfg", type=float, default=7.0, help="CFG scale")
    parser.add_argument("--out", help="folder for grid.png, grid.json and the cells (default: ./NAME-grid)")
    parser.add_argument("--work-dir", help="the run's working folder, for its validation.json (else the metadata)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--config-dir", help="offline diffusers config folder for single-file checkpoints")
    parser.add_argument("--no-progress", action="store_true", help="no progress line")
    parser.add_argument("--json", action="store_true", help="print grid.json instead of a summary")


def _training(path: Path):
    """The TrainConfig the file was trained with (its metadata), or None."""
    from lora_ext.config import TrainConfig
    from lora_ext.errors import LoraExtError
    from lora_ext.formats.safetensors_io import read_header

    try:
        data = json.loads(read_header(path).metadata.get("train_tools_config", ""))
        return TrainConfig.from_dict(data, warn=lambda _line: None)
    except (LoraExtError, ValueError, TypeError, AttributeError):
        return None


def run(args: argparse.Namespace) -> int:
    from lora_ext.app.grid import dataset_prompt
    from lora_ext.app.results import output_paths
    from lora_ext.errors import UsageError
    from lora_ext.grid import estimate
    from lora_ext.grid.epochs import run_epochs
    from lora_ext.grid.render import render_grid
    from lora_ext.grid.spec import GridSpec, parse_weights
    from lora_ext.hosts.standalone import StandaloneHost
    from lora_ext.loading.loader import NetworkLoader
    from lora_ext.training.estimate import format_minutes

    lora = Path(args.lora)
    if not lora.is_file():
        raise UsageError(f"{lora} does not exist", hint="give the trained .safetensors file")
    files = output_paths(lora.parent, lora.stem)
    if not files:
        raise UsageError(f"{lora.name} is not a trained LoRA's final file", hint="give NAME.safetensors")
    epochs = run_epochs(files, Path(args.work_dir) if args.work_dir else None)
    config = _training(lora)
    prompts = tuple(args.prompt or ([dataset_prompt(config)] if config is not None else []))
    if not any(prompt.strip() for prompt in prompts):
        raise UsageError("no prompt: the file does not say what it was trained on", hint="pass --prompt")
    size = args.size or (config.resolution if config is not None else 512)
    host = StandaloneHost.load(
        args.model,
        lora_dir=lora.parent,
        config_dir=Path(args.config_dir) if args.config_dir else None,
        device=args.device,
    )
    NetworkLoader.for_host(host)
    spec = GridSpec(
        epochs.rows,
        parse_weights(args.weights),
        prompts,
        args.negative,
        args.seed,
        args.steps or 20,
        size,
        size,
        args.cfg,
    )
    step_seconds, render_seconds = estimate.measure(host, size, size)
    if not args.steps:
        spec = dataclasses.replace(spec, steps=estimate.fitting_steps(spec, step_seconds, render_seconds))
    print(
        f"{len(spec.rows)} files × {len(spec.weights)} weights: {len(spec.renders())} images × {spec.steps} steps "
        f"≈ {format_minutes(estimate.grid_seconds(spec, step_seconds, render_seconds))} on this machine",
        file=sys.stderr,
    )
    out = Path(args.out) if args.out else Path.cwd() / f"{lora.stem}-grid"
    progress = (lambda done, total, line: None) if args.no_progress else _Progress()
    result = render_grid(host, spec, out, progress, marks=epochs.marks(), extra={"lora": lora.stem, **epochs.to_json()})
    if not args.no_progress:
        sys.stderr.write("\n")
    if args.json:
        print(json.dumps(result.to_json(), ensure_ascii=False, indent=1))
    else:
        _summary(result, epochs)
    return 0


class _Progress:
    """The current cell and sampler step on one line of stderr, at most five times a second."""

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self, done: int, total: int, line: str) -> None:
        import time

        now = time.monotonic()
        if now - self.last < 0.2 and done < total:
            return
        self.last = now
        sys.stderr.write(f"\r{line}\x1b[K")
        sys.stderr.flush()


def _summary(result, epochs) -> None:
    for row in epochs.rows:
        loss = f"validation loss {row.validation_loss:.4f}" if row.validation_loss is not None else "no validation loss"
        print(f"{row.label:>12}  {row.lora}  {loss}")
    if epochs.suggestion is not None:
        row = epochs.suggested_row
        label = epochs.rows[row].label if row is not None else f"step {epochs.suggestion.step}"
        print(f"suggested: {label} — {epochs.suggestion.reason}")
        if epochs.suggestion.warning:
            print(f"warning: {epochs.suggestion.warning}")
    print(f"grid: {result.image_path}")
    print(f"json: {result.folder / 'grid.json'}")
