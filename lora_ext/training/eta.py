"""How long a run takes: the plan's counts × costs, before it starts (``estimate_run``) and while it runs (``Eta``).

``StepCosts`` are seconds measured on this machine through the trainer's own
functions (``estimate.measure_costs``). Everything here is arithmetic over the
plan (``plan.TrainPlan``): steps, latents to cache, validations, previews (a
preview's sampler step is two UNet forwards with CFG) and files to save. The
running ``Eta`` counts the same things and replaces each cost by the run's own
timing once it has one, so one object gives the ETA of every phase's line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from lora_ext.config import TrainConfig
from lora_ext.training.plan import TrainPlan
from lora_ext.training.prompts import parse_sample_prompts

# A UNet forward without gradients costs about a third of forward + backward (backward ≈ 2 forwards).
FORWARD_SHARE = 1 / 3
# A resumable state holds the weights and AdamW's two moments in fp32: about three LoRA files more.
STATE_FILES = 3
WRITE_BYTES_PER_SECOND = 50e6  # a save's guess until one has been timed (no measured costs)
VALIDATION_TIMESTEPS = 4  # forwards of the validation batch per validation (``steps.VALIDATION_TIMESTEPS``)


@dataclass(frozen=True)
class StepCosts:
    """Seconds measured on this machine at one (resolution, batch size)."""

    resolution: int
    batch_size: int
    micro_batch_seconds: float  # one micro-batch: conditioning, UNet forward, loss, backward (``steps.train_on``)
    optimizer_seconds: float  # one optimizer step: clip, step, schedule, zero (``steps.optimizer_step``)
    encode_seconds: float  # one image: read, resize, VAE-encode (caching its latent)
    setup_seconds: float  # building the network, the optimizer and the dataset's caches before caching
    save_seconds: float  # writing the LoRA file once
    render_seconds: float = 0.0  # a preview prompt's fixed part (its text encoding, the VAE decode); 0: unmeasured
    sampler_step_seconds: float = 0.0  # one sampler step of a preview at batch 1 (two UNet forwards with CFG)

    def scaled(self, config: TrainConfig) -> StepCosts:
        """These costs at ``config``'s resolution and batch size (time ∝ pixels per step)."""
        area = (config.resolution / self.resolution) ** 2
        return StepCosts(
            config.resolution,
            config.batch_size,
            self.micro_batch_seconds * area * config.batch_size / self.batch_size,
            self.optimizer_seconds,
            self.encode_seconds * area,
            self.setup_seconds,
            self.save_seconds,
            self.render_seconds,
            self.sampler_step_seconds,
        )

    def step_seconds(self, config: TrainConfig) -> float:
        """One optimizer step at these (scaled) costs: its micro-batches, their latents when not cached, the step."""
        encode = 0.0 if caches_latents(config) else config.batch_size * self.encode_seconds
        return config.gradient_accumulation * (self.micro_batch_seconds + encode) + self.optimizer_seconds


@dataclass(frozen=True)
class RunEstimate:
    """Seconds each part of a run will take."""

    setup: float
    caching: float
    training: float
    validation: float
    previews: float
    saving: float
    total_steps: int

    @property
    def total(self) -> float:
        return self.setup + self.caching + self.training + self.validation + self.previews + self.saving


def caches_latents(config: TrainConfig) -> bool:
    return config.cache_latents or config.cache_latents_to_disk


def latents_to_cache(config: TrainConfig, plan: TrainPlan) -> int:
    """Images the run encodes before its first step (each flipped copy too); the validation images' latents
    are encoded at the first validation."""
    if not caches_latents(config):
        return 0
    flips = 2 if config.flip_aug else 1
    return (plan.counts.images + plan.counts.reg_images) * flips


def preview_seconds(config: TrainConfig, render_seconds: float, sampler_step_seconds: float, resolution: int) -> float:
    """One preview: every prompt's fixed part and sampler steps, each scaled by its area."""
    prompts = parse_sample_prompts(config.sample_prompts, config.resolution, config.resolution, config.seed)
    return sum(
        (render_seconds + p.steps * sampler_step_seconds) * (p.width * p.height) / resolution**2 for p in prompts
    )


def _validation_seconds(config: TrainConfig, plan: TrainPlan, micro_batch_seconds: float) -> float:
    """One validation loss: fixed timesteps over the validation images, forwards without gradients."""
    per_sample = FORWARD_SHARE * micro_batch_seconds / config.batch_size
    return VALIDATION_TIMESTEPS * plan.counts.validated_images * per_sample


def estimate_run(config: TrainConfig, plan: TrainPlan, costs: StepCosts) -> RunEstimate:
    """The run's time from measured ``costs``; other resolutions and batch sizes scale by pixels per step."""
    scaled = costs.scaled(config)
    encoded = latents_to_cache(config, plan) + plan.counts.validated_images  # validation latents: their own seed
    return RunEstimate(
        setup=scaled.setup_seconds,
        caching=encoded * scaled.encode_seconds,
        training=plan.total_steps * scaled.step_seconds(config),
        validation=plan.validations_left() * _validation_seconds(config, plan, scaled.micro_batch_seconds),
        previews=plan.previews_left() * _preview_each(config, costs),
        saving=(plan.saves_left() + STATE_FILES * plan.states_left()) * scaled.save_seconds,
        total_steps=plan.total_steps,
    )


def _preview_each(config: TrainConfig, costs: StepCosts) -> float:
    return preview_seconds(config, costs.render_seconds, costs.sampler_step_seconds, costs.resolution)


class Eta:
    """Seconds left in a running run, for the line of every phase (caching, training, preview, saving).

    What is left is counted from the plan; each cost is the run's own timing once it has
    one (steps, previews, saves, caching), else the measured ``costs`` the run was started
    with, else a guess from the steps timed so far.
    """

    def __init__(
        self,
        config: TrainConfig,
        plan: TrainPlan,
        costs: StepCosts | None = None,
        parameter_count: Callable[[], int] = lambda: 0,
    ) -> None:
        self.config = config
        self.plan = plan
        self.costs = costs.scaled(config) if costs is not None else None
        self._raw_costs = costs
        self._parameter_count = parameter_count  # for a save's guess; counted once, when first needed
        self._parameters: int | None = None
        self.step = 0
        self.step_seconds = 0.0  # mean seconds per step so far (0: none timed yet)
        self.previewed_at: int | None = None
        self._previews: list[float] = []
        self._saves: list[float] = []
        self._caching_started: float | None = None

    # -- what the run reports ---------------------------------------------------------------------
    def stepped(self, step: int, elapsed_seconds: float) -> None:
        """Step ``step`` is done; the run's steps so far took ``elapsed_seconds`` in all."""
        self.step = step
        self.step_seconds = elapsed_seconds / step if step else 0.0

    def previewed(self, step: int, seconds: float) -> None:
        self.previewed_at = step
        self._previews.append(seconds)

    def saved(self, seconds: float) -> None:
        self._saves.append(seconds)

    # -- seconds left -------------------------------------------------------------------------------
    def remaining(self) -> float:
        """The rest of the run after the current step: steps, validations, previews and saves."""
        plan, step = self.plan, self.step
        steps = (plan.total_steps - step) * self._step_each()
        validations = plan.validations_left(step) * self._validation_each()
        previews = plan.previews_left(step, self.previewed_at) * self._preview_each()
        saves = (plan.saves_left(step) + STATE_FILES * plan.states_left(step)) * self._save_each()
        return steps + validations + previews + saves

    def caching(self, done: int, total: int) -> tuple[float, float]:
        """While latents are cached: (the caching's seconds left at its rate so far, the whole run's; the
        latter only when the run was started with measured costs, else the caching's)."""
        now = time.perf_counter()
        if self._caching_started is None or done == 0:
            self._caching_started = now
        if done:
            left = (now - self._caching_started) / done * (total - done)
        else:
            left = total * self.costs.encode_seconds if self.costs else 0.0
        return left, left + (self.remaining() if self.costs else 0.0)

    def _step_each(self) -> float:
        if self.step_seconds:
            return self.step_seconds
        return self.costs.step_seconds(self.config) if self.costs else 0.0

    def _micro_batch(self) -> float:
        if self.costs and not self.step_seconds:
            return self.costs.micro_batch_seconds
        return self._step_each() / self.config.gradient_accumulation

    def _validation_each(self) -> float:
        return _validation_seconds(self.config, self.plan, self._micro_batch())

    def _preview_each(self) -> float:
        if self._previews:
            return sum(self._previews) / len(self._previews)
        if self._raw_costs is not None and self._raw_costs.sampler_step_seconds:
            return _preview_each(self.config, self._raw_costs)
        # Unmeasured: a sampler step is two forwards at batch 1, each a third of a sample's step.
        sampler_step = 2 * FORWARD_SHARE * self._micro_batch() / self.config.batch_size
        return preview_seconds(self.config, 0.0, sampler_step, self.config.resolution)

    def _save_each(self) -> float:
        if self._saves:
            return self._saves[-1]
        if self.costs:
            return self.costs.save_seconds
        if self._parameters is None:
            self._parameters = self._parameter_count()  # walking the network's parameters costs ~1 ms
        return self._parameters * 4 / WRITE_BYTES_PER_SECOND
