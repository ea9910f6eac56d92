"""The named steps of the training loop (``loop.py`` calls each in order)."""

from __future__ import annotations

import contextlib
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from lora_ext.config import TrainConfig
from lora_ext.errors import TrainingDiverged
from lora_ext.host import Conditioning, Host
from lora_ext.training import loss as losses
from lora_ext.training.data import Batch, TrainingDataset
from lora_ext.training.distributed import Collectives
from lora_ext.training.eta import Eta
from lora_ext.training.events import ProgressInfo
from lora_ext.training.network import LoraNetwork
from lora_ext.training.objective import Objective
from lora_ext.training.optim import evaluation
from lora_ext.training.plan import TrainPlan

SMOOTHING = 0.95  # weight of the previous smoothed loss (≈ the last 20 steps)
VALIDATION_TIMESTEPS = (200, 400, 600, 800)  # sd-scripts' fixed validation timesteps
VALIDATION_SEED = 20_000_000  # the validation noise: the same in every run, whatever the training seed


@dataclass
class TrainProgress:
    """Counters that go into checkpoints; everything else is derived from them and the seed."""

    step: int = 0  # optimizer steps done
    smoothed_loss: float = 0.0
    last_loss: float = 0.0
    elapsed_seconds: float = 0.0
    saved_files: list[str] = field(default_factory=list)
    validation: list[list[float]] = field(default_factory=list)  # [step, epoch, loss, training loss] each

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainingParts:
    """Everything the loop works with besides the config and the dataset."""

    host: Host
    network: LoraNetwork
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    plan: TrainPlan
    progress: TrainProgress
    autocast_dtype: torch.dtype | None
    train_text_encoder: bool
    output_path: Path
    work_dir: Path
    started_at: float = field(default_factory=time.time)
    group: Collectives = field(default_factory=Collectives)  # the other processes of a data-parallel run
    objective: Objective | None = None  # target, schedule and loss weights (``objective.objective_for``)


@dataclass(frozen=True)
class StepBatches:
    """The micro-batches of one optimizer step, with the seeds that make them reproducible."""

    epoch: int
    items: list[list[tuple[int, bool]]]
    seeds: list[int]
    ends_epoch: bool


def batches_for_step(dataset: TrainingDataset, plan: TrainPlan, config: TrainConfig, step: int) -> StepBatches:
    """Batches ``[k·accum, (k+1)·accum)`` of the epoch that optimizer step ``step`` (counted from 0) falls in."""
    epoch, within = divmod(step, plan.steps_per_epoch)
    batches = dataset.epoch_batches(epoch)
    accumulation = config.gradient_accumulation
    start = within * accumulation
    chosen = batches[start : start + accumulation]
    seeds = [config.seed * 1_000_003 + epoch * plan.batches_per_epoch + start + i for i in range(len(chosen))]
    return StepBatches(epoch, chosen, seeds, plan.ends_epoch(step + 1))


def get_batch(
    parts: TrainingParts, dataset: TrainingDataset, items: list[tuple[int, bool]], seed: int, rows: range
) -> Batch:
    """This process's ``rows`` of the micro-batch, with every random draw of it (captions, dropout masks) from ``seed``.

    Nothing draws from a global generator: those are shared by every thread of the
    process, so what they give depends on what else runs at the same time. Each process
    of a data-parallel run draws the masks of the whole micro-batch and keeps its rows'.
    """
    parts.network.reseed(seed, rows, len(items))  # before the text encoder runs
    return dataset.make_batch(items, random.Random(seed), rows)


def share_of_step(loss: torch.Tensor, rows: range, total: int, micro_batches: int) -> torch.Tensor:
    """What this process's loss adds to the step's: its rows' mean × their share of the ``total`` samples of the
    micro-batch, per micro-batch.

    Summed over the processes (``sum_over_processes``) it is the mean one process takes over the whole batch.
    """
    if len(rows) != total:
        loss = loss * (len(rows) / total)
    return loss / micro_batches


def train_on(
    parts: TrainingParts, config: TrainConfig, batch: Batch, seed: int, rows: range, total: int, micro_batches: int
) -> float:
    """Steps 2–5 of the loop for one micro-batch (``rows`` of its ``total`` samples): its loss, gradients added.

    The time estimate (``estimate.measure_costs``) times this same call.
    """
    latents, conditioning = latents_and_conditioning(parts, batch)  # 2. latents and conditioning
    noisy, timesteps, target, weights = noise_and_timesteps(parts, config, latents, seed, rows, total)  # 3.
    loss = predict_and_loss(parts, noisy, timesteps, conditioning, target, weights, batch)  # 4. predict, loss
    backward(parts, share_of_step(loss, rows, total, micro_batches))  # 5. backward, accumulating
    return loss.detach().item()


def autocast(parts: TrainingParts):
    if parts.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(parts.host.device.type, dtype=parts.autocast_dtype)


def latents_and_conditioning(parts: TrainingParts, batch: Batch) -> tuple[torch.Tensor, Conditioning]:
    latents = batch.latents.to(parts.host.device)
    if batch.conditioning is not None:
        return latents, batch.conditioning
    with torch.set_grad_enabled(parts.train_text_encoder), autocast(parts):
        return latents, parts.host.encode_prompts(batch.captions, batch.sizes)


def noise_and_timesteps(
    parts: TrainingParts,
    config: TrainConfig,
    latents: torch.Tensor,
    seed: int,
    rows: range | None = None,
    total: int | None = None,
):
    """(noisy latents, timesteps, target, per-sample weights) for one batch.

    A process holding ``rows`` of a batch of ``total`` draws the whole batch's noise and
    timesteps and keeps its rows, so each sample gets what it gets in one process.
    """
    generator = torch.Generator().manual_seed(seed)
    whole = latents if rows is None or total == latents.shape[0] else latents[:1].expand(total, *latents.shape[1:])
    noise = losses.sample_noise(whole, generator, config.noise_offset)
    timesteps = losses.sample_timesteps(whole.shape[0], generator, config.min_timestep, config.max_timestep)
    if whole is not latents:
        noise, timesteps = noise[rows.start : rows.stop], timesteps[rows.start : rows.stop]
    return _noised(parts, config, latents, noise, timesteps)


def _noised(
    parts: TrainingParts, config: TrainConfig, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
):
    objective = parts.objective
    noisy = objective.add_noise(latents, noise, timesteps)
    return noisy, timesteps, objective.target(latents, noise, timesteps), objective.weights(timesteps)


def predict_and_loss(
    parts: TrainingParts,
    noisy: torch.Tensor,
    timesteps: torch.Tensor,
    conditioning: Conditioning,
    target: torch.Tensor,
    weights: torch.Tensor,
    batch: Batch,
) -> torch.Tensor:
    with autocast(parts):
        prediction = parts.host.predict(noisy, timesteps, conditioning)
    return losses.diffusion_loss(prediction, target, weights * batch.loss_weights, batch.masks)


def backward(parts: TrainingParts, loss: torch.Tensor) -> None:
    (parts.scaler.scale(loss) if parts.scaler else loss).backward()


def check_finite(loss: float, parts: TrainingParts) -> None:
    if loss != loss or loss in (float("inf"), float("-inf")):
        lr = parts.scheduler.get_last_lr()[0]
        raise TrainingDiverged(
            f"the loss became {loss} at step {parts.progress.step + 1} (learning rate {lr:g})",
            hint="lower the learning rate, use bf16 instead of fp16, or turn on max_grad_norm",
        )


def sum_over_processes(parts: TrainingParts, loss: float) -> float:
    """Sum the gradients and the loss of every process of a data-parallel run (one process: as they are)."""
    if parts.group.ranks.world_size == 1:
        return loss
    parameters = [p for group in parts.optimizer.param_groups for p in group["params"]]
    return parts.group.sum_gradients(parameters, loss)


def optimizer_step(parts: TrainingParts, config: TrainConfig) -> None:
    """Unscale, clip, step the optimizer and the schedule, zero the gradients (with the fused backward pass
    the parameters were stepped during backward: only the schedule moves here)."""
    if config.fused_backward:
        parts.scheduler.step()
        parts.optimizer.zero_grad(set_to_none=True)
        return
    parameters = [p for group in parts.optimizer.param_groups for p in group["params"]]
    if parts.scaler:
        parts.scaler.unscale_(parts.optimizer)
    if config.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
    if parts.scaler:
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
    else:
        parts.optimizer.step()
    parts.scheduler.step()
    parts.optimizer.zero_grad(set_to_none=True)


def update_progress(parts: TrainingParts, loss: float, seconds: float, epoch: int, eta: Eta) -> ProgressInfo:
    """Count the step; ``eta`` (told of the step here) says what the rest of the run will take."""
    progress, plan = parts.progress, parts.plan
    progress.smoothed_loss = loss if progress.step == 0 else SMOOTHING * progress.smoothed_loss + (1 - SMOOTHING) * loss
    progress.last_loss = loss
    progress.step += 1
    progress.elapsed_seconds += seconds
    eta.stepped(progress.step, progress.elapsed_seconds)
    return ProgressInfo(
        step=progress.step,
        total_steps=plan.total_steps,
        epoch=epoch + 1,
        epochs=plan.epochs,
        loss=loss,
        smoothed_loss=progress.smoothed_loss,
        lr=parts.optimizer.param_groups[0]["lr"],
        its_per_second=progress.step / progress.elapsed_seconds if progress.elapsed_seconds > 0 else 0.0,
        eta_seconds=eta.remaining(),
    )


@torch.no_grad()
def validation_loss(parts: TrainingParts, config: TrainConfig, dataset: TrainingDataset) -> float | None:
    """Mean loss of the validation images (``TrainingDataset.validation_records``) at fixed timesteps and fixed
    noise: the same inputs at every step and in every run, so that only the network changes it."""
    batches = dataset.validation_batches()
    if not batches:
        return None
    network = parts.network
    was_training = network.training
    network.eval()
    try:
        with evaluation(parts.optimizer):  # schedule-free: validate the averaged weights
            total, count = 0.0, 0
            for number, batch in enumerate(batches):
                latents = batch.latents.to(parts.host.device)
                with autocast(parts):
                    conditioning = parts.host.encode_prompts(batch.captions, batch.sizes)
                generator = torch.Generator().manual_seed(VALIDATION_SEED + number)
                for timestep in VALIDATION_TIMESTEPS:
                    timesteps = torch.full((latents.shape[0],), timestep, dtype=torch.long)
                    noise = losses.sample_noise(latents, generator)
                    noisy, timesteps, target, weights = _noised(parts, config, latents, noise, timesteps)
                    loss = predict_and_loss(parts, noisy, timesteps, conditioning, target, weights, batch)
                    total += float(loss) * latents.shape[0]
                count += latents.shape[0]
            return total / (count * len(VALIDATION_TIMESTEPS))
    finally:
        network.train(was_training)
