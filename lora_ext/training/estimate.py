"""How long a run will take, said before it starts: costs measured on the host through the trainer's own
functions × the plan's counts (``eta.estimate_run``).

``measure_costs`` builds the parts a run builds (``run.build_parts``) and times the
loop's own micro-batch (``steps.train_on``) and optimizer step on a batch of the
chosen size and resolution, a latent's encoding, a file's save and, when the config
has preview prompts, a preview render; ``CostCache`` keeps them per model and
step-time settings. The page's line, the over-an-hour warning and its shortcuts
are the same arithmetic over other configs.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from safetensors.torch import save_file

from lora_ext.config import TrainConfig
from lora_ext.host import GenerationRequest, SizeCondition
from lora_ext.training import buckets, steps
from lora_ext.training.data import (
    Batch,
    ImageRecord,
    caches_conditioning,
    folder_counts,
    load_pixels,
    timing_image,
)
from lora_ext.training.eta import RunEstimate, StepCosts, estimate_run
from lora_ext.training.inject import attached
from lora_ext.training.objective import model_objective
from lora_ext.training.plan import TrainPlan, dataset_counts, make_plan
from lora_ext.training.run import build_parts

HOUR = 3600.0
# Steps are timed at least ``TIMED_STEPS`` times and for at least ``TIMED_SECONDS`` (a short step timed twice
# is at the mercy of one burst of other work); the first warms allocators and kernels up, the median of the
# rest is the measurement.
TIMED_STEPS = 3
TIMED_SECONDS = 1.0
MAX_TIMED_STEPS = 20


@dataclass(frozen=True)
class Shortcut:
    """One setting changed, and the run's time with it."""

    setting: str
    before: Any
    after: Any
    total_seconds: float

    def describe(self) -> str:
        return f"{self.setting} {self.before} → {self.after} (≈ {format_minutes(self.total_seconds)})"


def folder_plan(config: TrainConfig, world_size: int = 1) -> TrainPlan:
    """The plan for ``config`` over its folders' images and repeats (regularisation images included)."""
    return make_plan(config, folder_counts(config, world_size))


def _candidates(config: TrainConfig) -> list[tuple[str, Any]]:
    """Settings a user can lower to shorten a run, each with the value tried."""
    found: list[tuple[str, Any]] = []
    if config.resolution > 256:
        found.append(("resolution", max(256, config.resolution // 2 // 64 * 64)))
    if config.max_steps > 0:
        found.append(("max_steps", max(1, config.max_steps // 2)))
    elif config.epochs > 1:
        found.append(("epochs", max(1, config.epochs // 2)))
    if config.default_repeats > 1:
        found.append(("default_repeats", max(1, config.default_repeats // 2)))
    for name in ("sample_every_n_epochs", "sample_every_n_steps", "save_every_n_epochs", "save_every_n_steps"):
        if getattr(config, name) > 0:
            found.append((name, 0))
    if config.save_state:
        found.append(("save_state", False))
    return found


def shortcuts(config: TrainConfig, costs: StepCosts, count: int = 2) -> list[Shortcut]:
    """The ``count`` single-setting changes that shorten the run most, by the estimate itself."""
    found = []
    for name, value in _candidates(config):
        changed = config.replace(**{name: value})
        total = estimate_run(changed, folder_plan(changed), costs).total
        found.append(Shortcut(name, getattr(config, name), value, total))
    return sorted(found, key=lambda shortcut: shortcut.total_seconds)[:count]


def format_minutes(seconds: float) -> str:
    """``700`` → ``12 min``; ``5000`` → ``1 h 23 min`` (never below 1 min: it is an estimate)."""
    minutes = max(1, int(round(seconds / 60)))
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def describe(estimate: RunEstimate) -> str:
    """``≈ 12 min on this machine``."""
    return f"≈ {format_minutes(estimate.total)} on this machine"


def long_run_warning(config: TrainConfig, costs: StepCosts, estimate: RunEstimate, limit: float = HOUR) -> str:
    """A line naming the two settings that would shorten a run over ``limit`` seconds most; "" otherwise."""
    if estimate.total <= limit:
        return ""
    best = shortcuts(config, costs)
    text = f"This run takes over an hour here ({describe(estimate)})."
    if best:
        text += " Shorten it most with " + " or ".join(shortcut.describe() for shortcut in best) + "."
    return text


# -- measuring on the host ---------------------------------------------------------------------


def cost_key(host: Any, config: TrainConfig) -> tuple:
    """What the measured costs depend on: the model and the settings that change the work per step."""
    info = host.info
    return (
        info.name,
        info.short_hash,
        info.family,
        str(host.device),
        config.resolution,
        config.batch_size,
        config.network_type,
        config.rank,
        config.trained_conv_rank,
        config.trains_text_encoder,
        config.trains_unet,
        caches_conditioning(config),
        config.optimizer,
        config.masked_loss,
        config.gradient_checkpointing,
        config.mixed_precision,
        bool(config.sample_prompts.strip()),  # previews are timed only when the run has prompts
    )


def _synchronize(host: Any) -> None:
    if host.device.type == "cuda":
        torch.cuda.synchronize(host.device)


def _timed(host: Any, work: Callable[[], Any]) -> float:
    _synchronize(host)
    started = time.perf_counter()
    work()
    _synchronize(host)
    return time.perf_counter() - started


def _timing_batch(host: Any, config: TrainConfig) -> Any:
    """A batch like the dataset's at ``config``'s size: latents, captions, weights, masks, cached conditioning."""
    batch, side = config.batch_size, config.resolution // 8
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(batch, 4, side, side, generator=generator)
    sizes = [SizeCondition((config.resolution,) * 2, (0, 0), (config.resolution,) * 2)] * batch
    masks = torch.ones(batch, 1, side, side) if config.masked_loss else None
    timing = Batch(latents, ["a photo"] * batch, sizes, torch.ones(batch), masks)
    if caches_conditioning(config):
        with torch.no_grad():
            timing.conditioning = host.encode_prompts(timing.captions, sizes)
    return timing


def _image_seconds(host: Any, config: TrainConfig) -> tuple[float, float]:
    """(reading one image, caching one latent: read, resize, encode), on the dataset's first image if any."""
    found = timing_image(config)
    if found is None:
        pixels = torch.zeros(1, 3, config.resolution, config.resolution)
        return 0.0, _timed(host, lambda: host.encode_images(pixels, torch.Generator().manual_seed(0)))
    path, size = found

    def read() -> None:
        with Image.open(path) as image:
            image.load()

    read_seconds = _typical([_timed(host, read) for _ in range(TIMED_STEPS)])
    placement = buckets.place(size, None, config.resolution, config.bucket_reso_steps, config.bucket_no_upscale)
    record = ImageRecord(path, "", "", 1, False, size, placement, "")

    def encode() -> None:
        pixels, _alpha = load_pixels(record, False, config.masked_loss)
        host.encode_images(pixels[None], torch.Generator().manual_seed(0))

    return read_seconds, _typical([_timed(host, encode) for _ in range(TIMED_STEPS)])


def _preview_seconds(host: Any, config: TrainConfig) -> tuple[float, float]:
    """(a preview prompt's fixed part, one sampler step) at ``config``'s resolution, through ``host.generate``."""
    side = config.resolution
    request = GenerationRequest("a photo", width=side, height=side, steps=1, cfg_scale=7.0, seed=0)
    latents = torch.zeros(2, 4, side // 8, side // 8)
    timesteps = torch.full((2,), 500, dtype=torch.long)

    with torch.no_grad():
        conditioning = host.encode_prompts(["a photo", ""])  # once per render, as a sampler does

        def sampler_step() -> None:  # one sampler step with CFG: the UNet on the prompt and on the negative
            host.predict(latents, timesteps, conditioning)

        sampler_step()  # warm-up
        step_seconds = _typical([_timed(host, sampler_step) for _ in range(TIMED_STEPS)])
    render_seconds = min(_timed(host, lambda: host.generate(request)) for _ in range(2))
    return max(0.0, render_seconds - step_seconds), step_seconds


def measure_costs(host: Any, config: TrainConfig) -> StepCosts:
    """Time the loop's own steps at ``config``'s resolution and batch on ``host``, then hand it back.

    The parts are thrown away and every random draw comes from local generators,
    so the host and any later run are exactly as they were.
    """
    plan = make_plan(config, dataset_counts(config, [1] * config.batch_size))
    rows, batch_size = range(config.batch_size), config.batch_size
    with tempfile.TemporaryDirectory(prefix="train-tools-estimate-") as folder:
        with host.training_session(config), torch.random.fork_rng(devices=[]):
            started = time.perf_counter()
            objective = model_objective(host, config)  # what is timed is the same for any prediction
            parts = build_parts(
                host, config, plan, Path(folder) / "timing.safetensors", Path(folder), None, False, objective
            )
            setup_seconds = time.perf_counter() - started
            batch = _timing_batch(host, config)
            read_seconds, encode_seconds = _image_seconds(host, config)
            micro, optimizer = [], []
            with attached(parts.network, host.parts(), config.gradient_checkpointing):
                parts.network.train()
                while len(micro) < MAX_TIMED_STEPS and (
                    len(micro) < TIMED_STEPS or sum(micro) + sum(optimizer) < TIMED_SECONDS
                ):
                    micro.append(_timed(host, lambda: steps.train_on(parts, config, batch, 0, rows, batch_size, 1)))
                    optimizer.append(_timed(host, lambda: steps.optimizer_step(parts, config)))
                render = sampler_step = 0.0
                if config.sample_prompts.strip() and host.capabilities().can_generate:
                    parts.network.eval()
                    render, sampler_step = _preview_seconds(host, config)
        save_seconds = _timed(host, lambda: _write_once(parts.network, Path(folder)))
    images = _image_count(config)
    return StepCosts(
        resolution=config.resolution,
        batch_size=batch_size,
        micro_batch_seconds=_typical(micro),
        optimizer_seconds=_typical(optimizer),
        encode_seconds=encode_seconds,
        # the first step's warm-up (allocators, kernels, the optimizer's state) is paid once per run
        setup_seconds=setup_seconds + images * read_seconds + _warm_up(micro) + _warm_up(optimizer),
        save_seconds=save_seconds,
        render_seconds=render,
        sampler_step_seconds=sampler_step,
    )


def _typical(seconds: list[float]) -> float:
    """The median of the timings after the first (the warm-up)."""
    return statistics.median(seconds[1:] or seconds)


def _warm_up(seconds: list[float]) -> float:
    """How much longer the first timing took than the typical one."""
    return max(0.0, seconds[0] - _typical(seconds))


def _image_count(config: TrainConfig) -> int:
    counts = folder_counts(config)
    return counts.images + counts.reg_images + counts.validation_images


def _write_once(network: Any, folder: Path) -> None:
    save_file(network.kohya_state_dict(), str(folder / "timing.safetensors"))


class CostCache:
    """Measured costs per (model, step-time settings); owned by the app, shared by its requests."""

    def __init__(self, measure: Callable[[Any, TrainConfig], StepCosts] = measure_costs) -> None:
        self._measure = measure
        self._costs: dict[tuple, StepCosts] = {}
        self._lock = threading.Lock()

    def known(self, host: Any, config: TrainConfig) -> StepCosts | None:
        return self._costs.get(cost_key(host, config))

    def costs(self, host: Any, config: TrainConfig) -> StepCosts:
        """The cached costs, measured on the host the first time (one measurement at a time)."""
        key = cost_key(host, config)
        with self._lock:
            if key not in self._costs:
                self._costs[key] = self._measure(host, config)
            return self._costs[key]


@dataclass(frozen=True)
class PlanEstimate:
    """What the page shows next to *Start training*."""

    estimate: RunEstimate
    text: str  # "≈ 12 min on this machine"
    warning: str  # "" or the over-an-hour line naming two settings


def estimate_for(host: Any, config: TrainConfig, cache: CostCache, plan: TrainPlan | None = None) -> PlanEstimate:
    """The estimate for training ``config`` (over ``plan``, by default its folders') on ``host`` (timing steps on
    it the first time)."""
    costs = cache.costs(host, config)
    estimate = estimate_run(config, plan or folder_plan(config), costs)
    return PlanEstimate(estimate, describe(estimate), long_run_warning(config, costs, estimate))
