"""How long a run will take, said before it starts: measured costs on this machine × the plan's counts.

A few real forward+backward steps at the chosen settings are timed through the
Host (``measure_costs``, cached per model and step-time settings by ``CostCache``);
everything else is pure arithmetic over the plan: optimizer steps, latents to
cache, previews (each sampler step is two UNet forwards with CFG) and files to
save. The same counts give the running ETA (``pending_seconds``), so the time
previews and saves will spend is in it from the first step.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_ext.config import TrainConfig
from lora_ext.dataset.layout import dataset_folders
from lora_ext.training.plan import TrainPlan, make_plan

HOUR = 3600.0
# A UNet forward costs about a third of forward+backward (backward ≈ 2 forwards).
FORWARD_SHARE = 1 / 3
# Used for the ETA until the run's first save has been timed.
WRITE_BYTES_PER_SECOND = 50e6
TIMED_STEPS = 2  # the first warms allocators and kernels up; the last one is the measurement


@dataclass(frozen=True)
class StepCosts:
    """Seconds measured on this machine at one (resolution, batch size)."""

    resolution: int
    batch_size: int
    step_seconds: float  # one micro-batch: text encoder (when trained), UNet forward + backward, optimizer step
    forward_seconds: float  # one no-grad UNet forward at batch 1 (a preview's sampler step runs two with CFG)
    encode_seconds: float  # the VAE encoding one image (caching its latent)
    save_seconds: float  # writing the LoRA file once


@dataclass(frozen=True)
class RunEstimate:
    """Seconds each part of a run will take."""

    caching: float
    training: float
    previews: float
    saving: float
    total_steps: int

    @property
    def total(self) -> float:
        return self.caching + self.training + self.previews + self.saving


@dataclass(frozen=True)
class Shortcut:
    """One setting changed, and the run's time with it."""

    setting: str
    before: Any
    after: Any
    total_seconds: float

    def describe(self) -> str:
        return f"{self.setting} {self.before} → {self.after} (≈ {format_minutes(self.total_seconds)})"


# -- counts the plan will spend ----------------------------------------------------------------


def _multiples(every: int, after: int, upto: int) -> int:
    """How many multiples of ``every`` lie in ``(after, upto]``."""
    return upto // every - after // every if every > 0 and upto > after else 0


def preview_count(config: TrainConfig, plan: TrainPlan, after_step: int = 0, previewed_at: int | None = None) -> int:
    """Preview renders after optimizer step ``after_step``, the final one included (``previewed_at``: the step
    of the last preview made so far).

    An epoch ends (and may preview) at a multiple of ``steps_per_epoch``, as ``steps.batches_for_step`` says.
    The final file's card is a render of the final weights: the run renders one more at its end unless the
    schedule (or a request) previewed at the last step.
    """
    if not config.sample_prompts.strip():
        return 0
    total = plan.total_steps
    count = _multiples(config.sample_every_n_steps, after_step, total)
    ends_upto = total // plan.steps_per_epoch
    if config.sample_every_n_epochs > 0:
        count += _multiples(config.sample_every_n_epochs, after_step // plan.steps_per_epoch, ends_upto)
    at_end = plan.should_sample_step(config, total) or (
        total % plan.steps_per_epoch == 0 and plan.should_sample_epoch(config, ends_upto)
    )
    if not at_end and previewed_at != total:
        count += 1  # the run's final preview, for the model card and the Result section
    return count


def save_count(config: TrainConfig, plan: TrainPlan, after_step: int = 0) -> int:
    """LoRA files written after ``after_step``: intermediate saves on schedule, then the final one."""
    total = plan.total_steps
    count = _multiples(config.save_every_n_steps, after_step, total - 1)
    if config.save_every_n_epochs > 0:
        last_end = min(total // plan.steps_per_epoch, plan.epochs - 1)
        count += _multiples(config.save_every_n_epochs, after_step // plan.steps_per_epoch, last_end)
    return count + 1


def preview_seconds(config: TrainConfig, forward_seconds: float, resolution: int) -> float:
    """One preview render: every prompt's sampler steps, two UNet forwards each, scaled by its area."""
    from lora_ext.training.outputs import parse_sample_prompts

    prompts = parse_sample_prompts(config.sample_prompts, config.resolution, config.resolution, config.seed)
    return sum(2 * p.steps * forward_seconds * (p.width * p.height) / resolution**2 for p in prompts)


def _save_seconds(config: TrainConfig, costs: StepCosts) -> float:
    # A resumable state holds the weights and AdamW's two moments: about three LoRA files more.
    return costs.save_seconds * (4 if config.save_state else 1)


# -- the estimate ------------------------------------------------------------------------------


def dataset_plan(config: TrainConfig, dataset_dir: Path, world_size: int = 1) -> tuple[TrainPlan, int]:
    """(the plan for ``config`` over the folder's images, images to cache), before any image is read.

    Batches are counted without buckets (a batch never mixes them, so the trainer may add a few).
    """
    folders = dataset_folders(Path(dataset_dir), max(1, config.default_repeats)) if Path(dataset_dir).is_dir() else []
    images = sum(folder.image_count for folder in folders)
    samples = sum(folder.image_count * folder.repeats for folder in folders)
    global_batch = config.batch_size * world_size  # each of ``world_size`` processes times its batch_size
    return make_plan(config, max(1, math.ceil(samples / global_batch)), samples, world_size), images


def estimate_run(config: TrainConfig, plan: TrainPlan, images: int, costs: StepCosts) -> RunEstimate:
    """The run's time from measured ``costs``; other resolutions and batch sizes scale by pixels per step."""
    area = (config.resolution / costs.resolution) ** 2
    micro_batch = costs.step_seconds * area * config.batch_size / costs.batch_size
    encode = costs.encode_seconds * area
    flips = 2 if config.flip_aug else 1
    cached = config.cache_latents or config.cache_latents_to_disk
    caching = images * flips * encode if cached else 0.0
    per_step = config.gradient_accumulation * (micro_batch + (0.0 if cached else config.batch_size * encode))
    renders = preview_count(config, plan) * preview_seconds(config, costs.forward_seconds, costs.resolution)
    return RunEstimate(
        caching=caching,
        training=plan.total_steps * per_step,
        previews=renders,
        saving=save_count(config, plan) * _save_seconds(config, costs),
        total_steps=plan.total_steps,
    )


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


def shortcuts(config: TrainConfig, dataset_dir: Path, costs: StepCosts, count: int = 2) -> list[Shortcut]:
    """The ``count`` single-setting changes that shorten the run most, by the estimate itself."""
    found = []
    for name, value in _candidates(config):
        changed = config.replace(**{name: value})
        plan, images = dataset_plan(changed, dataset_dir)
        found.append(Shortcut(name, getattr(config, name), value, estimate_run(changed, plan, images, costs).total))
    return sorted(found, key=lambda shortcut: shortcut.total_seconds)[:count]


def format_minutes(seconds: float) -> str:
    """``700`` → ``12 min``; ``5000`` → ``1 h 23 min`` (never below 1 min: it is an estimate)."""
    minutes = max(1, int(round(seconds / 60)))
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def describe(estimate: RunEstimate) -> str:
    """``≈ 12 min on this machine``."""
    return f"≈ {format_minutes(estimate.total)} on this machine"


def long_run_warning(
    config: TrainConfig, dataset_dir: Path, costs: StepCosts, estimate: RunEstimate, limit: float = HOUR
) -> str:
    """A line naming the two settings that would shorten a run over ``limit`` seconds most; "" otherwise."""
    if estimate.total <= limit:
        return ""
    best = shortcuts(config, dataset_dir, costs)
    text = f"This run takes over an hour here ({describe(estimate)})."
    if best:
        text += " Shorten it most with " + " or ".join(shortcut.describe() for shortcut in best) + "."
    return text


def pending_seconds(
    config: TrainConfig,
    plan: TrainPlan,
    step: int,
    previewed_at: int | None,
    preview_each: float,
    save_each: float,
) -> float:
    """Seconds the previews and saves still to come after ``step`` will take (for the running ETA)."""
    previews = preview_count(config, plan, step, previewed_at)
    return previews * preview_each + save_count(config, plan, step) * save_each


# -- measuring on the host ---------------------------------------------------------------------


def cost_key(host: Any, config: TrainConfig) -> tuple:
    """What a step's time depends on: the model and the settings that change the work per step."""
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
        config.conv_rank if config.network_type == "locon" else 0,
        config.train_text_encoder and config.text_encoder_lr > 0,
        config.unet_lr > 0,
        config.gradient_checkpointing,
        config.mixed_precision,
    )


def _synchronize(host: Any) -> None:
    import torch

    if host.device.type == "cuda":
        torch.cuda.synchronize(host.device)


def _timed(host: Any, work: Callable[[], Any]) -> float:
    _synchronize(host)
    started = time.perf_counter()
    work()
    _synchronize(host)
    return time.perf_counter() - started


def measure_costs(host: Any, config: TrainConfig) -> StepCosts:
    """Time a couple of real training steps at ``config``'s resolution and batch on ``host``, then hand it back.

    The network is thrown away and every random draw comes from local generators,
    so the host and any later run are exactly as they were.
    """
    import torch

    from lora_ext.host import SizeCondition
    from lora_ext.training.inject import attached
    from lora_ext.training.network import build_network
    from lora_ext.training.run import network_spec

    spec = network_spec(config)
    network = build_network(host.parts(), host.info.family, spec, config.seed).to(host.device, torch.float32)
    network.train()
    optimizer = torch.optim.AdamW(network.parameters(), lr=0.0)
    side, batch = config.resolution // 8, config.batch_size
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(batch, 4, side, side, generator=generator).to(host.device)
    noise = torch.randn(batch, 4, side, side, generator=generator).to(host.device)
    timesteps = torch.full((batch,), 500, dtype=torch.long)
    sizes = [SizeCondition((config.resolution,) * 2, (0, 0), (config.resolution,) * 2)] * batch
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.mixed_precision)

    def autocast():
        return torch.autocast(host.device.type, dtype=dtype) if dtype else contextlib.nullcontext()

    def step() -> None:
        with torch.set_grad_enabled(spec.train_text_encoder), autocast():
            conditioning = host.encode_prompts(["a photo"] * batch, sizes)
        with autocast():
            prediction = host.predict(latents, timesteps, conditioning)
        torch.nn.functional.mse_loss(prediction.float(), noise).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def forward() -> None:
        with torch.no_grad(), autocast():
            host.predict(latents[:1], timesteps[:1], host.encode_prompts(["a photo"], sizes[:1]))

    pixels = torch.zeros(1, 3, config.resolution, config.resolution)
    with host.training_session(config):
        with torch.random.fork_rng(devices=[]), attached(network, host.parts(), config.gradient_checkpointing):
            step_seconds = min(_timed(host, step) for _ in range(TIMED_STEPS))
            forward_seconds = _timed(host, forward)
            with torch.no_grad():
                encode_seconds = _timed(host, lambda: host.encode_images(pixels, torch.Generator().manual_seed(0)))
    save_seconds = _timed(host, lambda: _write_once(network))
    return StepCosts(config.resolution, batch, step_seconds, forward_seconds, encode_seconds, save_seconds)


def _write_once(network: Any) -> None:
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory(prefix="train-tools-estimate-") as folder:
        save_file(network.kohya_state_dict(), str(Path(folder) / "timing.safetensors"))


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


def estimate_for(host: Any, config: TrainConfig, cache: CostCache) -> PlanEstimate:
    """The estimate for training ``config`` on ``host`` (timing steps on it the first time)."""
    costs = cache.costs(host, config)
    plan, images = dataset_plan(config, Path(config.dataset_dir))
    estimate = estimate_run(config, plan, images, costs)
    warning = long_run_warning(config, Path(config.dataset_dir), costs, estimate)
    return PlanEstimate(estimate, describe(estimate), warning)
