"""The epochs × weights grid as a use case: its defaults from the training, its time before it starts, and the
grid rendered as a job that the page, the REST API and a reload all follow.

Rows are a run's saved files (``results.output_paths``: its epochs, then the final file), with each one's
validation loss and the suggested one marked (``grid.epochs``); columns are weights. The job renders every
cell with the host's own generator (``grid.render``) into ``<run folder>/grids/<time>/`` (the cells,
``grid.png``, ``grid.json``) and puts the finished grid beside the LoRA as ``NAME.grid.png``.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass

from lora_ext.app import results, runs
from lora_ext.app.context import Context
from lora_ext.app.jobs import Job
from lora_ext.config import TrainConfig
from lora_ext.errors import ConfigError
from lora_ext.fileio import atomic_path
from lora_ext.grid import estimate
from lora_ext.grid.epochs import RunEpochs, run_epochs
from lora_ext.grid.render import GRID_JSON, GridResult, cell_caption, render_grid
from lora_ext.grid.spec import DEFAULT_WEIGHTS, GridSpec, parse_prompts, parse_weights

JOB_NAME = "Epoch grid"
GRIDS = "grids"
BESIDE_SUFFIX = ".grid.png"  # NAME.grid.png beside NAME.safetensors (not a card: A1111 reads NAME.png / .preview.png)
PROMPT_TAGS = 12  # tags of the dataset caption the default prompt keeps
FALLBACK_STEPS = {"cuda": 20, "cpu": 8}  # before anything was timed on this machine
DEFAULT_SEED = 1234


def version_epochs(ctx: Context, project: str | None, version: str | None, name: str | None = None) -> RunEpochs:
    """The run's files as rows (the version's latest run by default), with validation and the suggestion."""
    name = results.output_name(ctx, project, version, name)
    if not name:
        raise ConfigError("There is no trained LoRA for this version yet.", hint="train first, or type its name")
    files = results.output_paths(ctx.host.lora_dir, name)
    return run_epochs(files, results.work_folder(ctx, project, version, name))


def run_settings(ctx: Context, project: str | None, version: str | None, name: str) -> TrainConfig | None:
    """The settings the run trained with (its record), when known."""
    folder = results.work_folder(ctx, project, version, name)
    record = runs.read_record(folder) if folder is not None else None
    if record is None or not record.settings:
        return None
    try:
        return TrainConfig.from_dict(record.settings, warn=lambda _line: None)
    except ConfigError:
        return None


def dataset_prompt(config: TrainConfig) -> str:
    """The trigger word and a caption of the dataset (its first captioned image's, trimmed), as trained."""
    from lora_ext.dataset.captions import join_tags, parse_tags
    from lora_ext.training.data import first_caption

    caption = first_caption(config)
    return join_tags(parse_tags(caption)[:PROMPT_TAGS]) if caption else config.trigger_word


@dataclass(frozen=True)
class GridDefaults:
    """What the grid form starts with for a run: its resolution, a prompt from its dataset, the steps that fit."""

    prompt: str
    size: int
    steps: int
    weights: str
    seed: int = DEFAULT_SEED


def defaults(ctx: Context, project: str | None, version: str | None, name: str | None = None) -> GridDefaults:
    """The grid settings a run starts with (``name``: the run; the version's latest by default)."""
    name = results.output_name(ctx, project, version, name)
    config = run_settings(ctx, project, version, name) if name else None
    host = ctx.host
    size = config.resolution if config is not None else 512
    prompt = dataset_prompt(config) if config is not None else ""
    weights = _weights_text(DEFAULT_WEIGHTS)
    steps = FALLBACK_STEPS.get(host.device.type, 20)
    seconds = step_seconds(ctx, size, size, config)
    if seconds is not None and name:
        rows = version_epochs(ctx, project, version, name).rows
        if rows:
            steps = estimate.fitting_steps(GridSpec(rows, DEFAULT_WEIGHTS, ("x",), width=size, height=size), seconds)
    return GridDefaults(prompt, size, steps, weights)


def form(ctx: Context, project: str | None, version: str | None, name: str | None = None) -> GridDefaults:
    """What the page's grid form shows for a run: the settings of its newest finished grid (what the grid on
    screen was rendered with), else ``defaults``. Showing the version again (a reload, a re-show) keeps the
    prompt the user last rendered instead of putting the dataset's back."""
    name = results.output_name(ctx, project, version, name)
    folder = results.work_folder(ctx, project, version, name) if name else None
    if folder is None:
        return defaults(ctx, project, version, name)
    for saved in sorted((folder / GRIDS).glob(f"*/{GRID_JSON}"), reverse=True):
        try:
            grid = json.loads(saved.read_text(encoding="utf-8"))
            if grid.get("cancelled"):
                continue
            return GridDefaults(
                prompt="\n".join(grid["prompts"]),
                size=int(grid["width"]),
                steps=int(grid["steps"]),
                weights=_weights_text(float(weight) for weight in grid["weights"]),
                seed=int(grid["seed"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue  # unreadable or from another version of the app: the next older one, or the defaults
    return defaults(ctx, project, version, name)


def _weights_text(weights) -> str:
    """Weights as the form's field holds them: ``0, 0.5, 0.8, 1``."""
    return ", ".join(f"{weight:g}" for weight in weights)


def _cost_key(ctx: Context, width: int, height: int) -> tuple:
    host = ctx.host
    return (host.info.name, host.info.short_hash, str(host.device), width, height)


def step_seconds(ctx: Context, width: int, height: int, config: TrainConfig | None = None) -> float | None:
    """Seconds of one sampler step at this size, from what this machine has timed: a grid at this size, else
    the training's own costs (a preview's step, or two forwards of a training step); None when nothing was."""
    known = ctx.grid_step_seconds.get(_cost_key(ctx, width, height))
    if known is not None:
        return known
    if config is None:
        return None
    costs = ctx.step_costs.known(ctx.host, config)
    if costs is None:
        return None
    from lora_ext.training.eta import FORWARD_SHARE

    per_step = costs.sampler_step_seconds or 2 * FORWARD_SHARE * costs.micro_batch_seconds / costs.batch_size
    return per_step * (width * height) / costs.resolution**2


def estimate_text(ctx: Context, spec: GridSpec, config: TrainConfig | None = None) -> str:
    """``13 images × 8 steps · ≈ 3 min on this machine`` (without a time when nothing was timed yet)."""
    from lora_ext.training.estimate import format_minutes

    renders = len(spec.renders())
    text = f"{renders} images × {spec.steps} steps"
    seconds = step_seconds(ctx, spec.width, spec.height, config)
    if seconds is None:
        return text + " · the time is known after the first image"
    return text + f" · ≈ {format_minutes(estimate.grid_seconds(spec, seconds))} on this machine"


def build_spec(
    epochs: RunEpochs,
    prompts: str,
    negative: str,
    seed: int,
    steps: int,
    size: int,
    weights: str,
    cfg_scale: float = 7.0,
) -> GridSpec:
    """The grid of a run's files for the form's values (checked: a clear line for each bad one)."""
    return GridSpec(
        epochs.rows,
        parse_weights(weights),
        parse_prompts(prompts),
        negative.strip(),
        int(seed),
        int(steps),
        int(size),
        int(size),
        float(cfg_scale),
    )


def start_grid(
    ctx: Context,
    project: str | None,
    version: str | None,
    name: str | None,
    prompts: str,
    negative: str,
    seed: int,
    steps: int,
    size: int,
    weights: str,
    cfg_scale: float = 7.0,
) -> Job:
    """Render the run's grid in a background job.

    ``job.data``: ``cells`` fills with (path, caption) as cells are made, ``line`` is the current status
    ("cell 3/13: epoch 2 @ 0.7 (sampler step 5/20)"); the job's result is the ``GridResult``.
    """
    name = results.output_name(ctx, project, version, name)
    epochs = version_epochs(ctx, project, version, name)
    if not prompts.strip():  # nothing typed: the training's own prompt (trigger word and a dataset caption)
        prompts = defaults(ctx, project, version, name).prompt
    spec = build_spec(epochs, prompts, negative, seed, steps, size, weights, cfg_scale)
    host = ctx.host
    work_dir = ctx.version(project, version).run_dir(name)
    folder = work_dir / GRIDS / time.strftime("%Y%m%d-%H%M%S")
    beside = host.lora_dir / f"{name}{BESIDE_SUFFIX}"
    extra = {"lora": name, **epochs.to_json()}
    key = _cost_key(ctx, spec.width, spec.height)

    def work(job: Job) -> GridResult:
        cells: list[tuple[str, str]] = []  # (path, caption) of each cell made, for the page
        job.data.update(project=project, version=version, output_name=name, cells=cells)
        result = render_grid(
            host,
            spec,
            folder,
            job.report,
            job.cancelled,
            epochs.marks(),
            extra,
            on_cell=lambda cell, path: cells.append((str(path), cell_caption(spec, cell))),
        )
        if result.render_seconds:
            ctx.grid_step_seconds[key] = estimate.step_seconds_of(
                result.seconds, len(result.render_seconds), spec.steps
            )
        if not result.cancelled:
            with atomic_path(beside) as tmp:
                shutil.copyfile(result.image_path, tmp)
        return result

    return ctx.jobs.start(JOB_NAME, work, host, subject=(project, version) if project and version else None)
