"""Numbers derived from a config and a dataset, computed once by a pure function.

The trainer never writes these back into the config (diffusers mutates
``args.max_train_steps`` mid-run; we don't). ``make_plan`` is the one count:
the trainer calls it with the batches it built, the UI's estimate (``estimate_plan``)
with the batches the folders' image counts and repeats give.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from lora_ext.config import TrainConfig
from lora_ext.dataset.layout import DatasetFolder


@dataclass(frozen=True)
class TrainPlan:
    batches_per_epoch: int
    steps_per_epoch: int  # optimizer steps: batches / gradient accumulation, rounded up
    total_steps: int
    epochs: int
    warmup_steps: int
    effective_batch: int  # samples per optimizer step: batch_size × world_size × gradient_accumulation
    num_train_images: int  # with repeats, as ss_num_train_images
    world_size: int = 1  # processes of a data-parallel run, each with batch_size samples of every batch

    def epoch_of_step(self, step: int) -> int:
        return step // self.steps_per_epoch

    def should_save_step(self, config: TrainConfig, step: int) -> bool:
        return config.save_every_n_steps > 0 and step % config.save_every_n_steps == 0 and step < self.total_steps

    def should_save_epoch(self, config: TrainConfig, epoch: int) -> bool:
        """After finishing ``epoch`` (1-based)."""
        return config.save_every_n_epochs > 0 and epoch % config.save_every_n_epochs == 0 and epoch < self.epochs

    def should_sample_step(self, config: TrainConfig, step: int) -> bool:
        return config.sample_every_n_steps > 0 and step % config.sample_every_n_steps == 0

    def should_sample_epoch(self, config: TrainConfig, epoch: int) -> bool:
        return config.sample_every_n_epochs > 0 and epoch % config.sample_every_n_epochs == 0


def make_plan(config: TrainConfig, batches_per_epoch: int, num_train_images: int, world_size: int = 1) -> TrainPlan:
    """Steps per epoch, total steps and warm-up for ``config`` over a dataset with ``batches_per_epoch``.

    ``batches_per_epoch`` counts global batches: ``batch_size × world_size`` samples each.
    """
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / config.gradient_accumulation))
    if config.max_steps > 0:
        total = config.max_steps
        epochs = math.ceil(total / steps_per_epoch)
    else:
        epochs = config.epochs
        total = epochs * steps_per_epoch
    warmup = config.warmup_steps if config.warmup_steps > 0 else int(round(total * config.warmup_ratio))
    if config.lr_scheduler == "constant":
        warmup = 0
    warmup = min(warmup, max(0, total - 1))
    return TrainPlan(
        batches_per_epoch,
        steps_per_epoch,
        total,
        epochs,
        warmup,
        config.batch_size * world_size * config.gradient_accumulation,
        num_train_images,
        world_size,
    )


def epoch_samples(folders: Sequence[DatasetFolder], reg_folders: Sequence[DatasetFolder] = ()) -> int:
    """Samples in one epoch: each image × its folder's repeats, doubled when there are regularisation images.

    Regularisation images are cycled to as many samples as the training images give
    (kohya), whatever their own repeats; ``TrainingDataset`` builds its epoch the same way.
    """
    samples = sum(folder.image_count * folder.repeats for folder in folders)
    has_reg = any(folder.image_count for folder in reg_folders)
    return samples * 2 if has_reg else samples


def estimate_plan(
    config: TrainConfig,
    folders: Sequence[DatasetFolder],
    reg_folders: Sequence[DatasetFolder] = (),
    world_size: int = 1,
) -> TrainPlan:
    """The plan before any image is opened, from image counts and repeats (``dataset.layout.dataset_folders``).

    A batch never mixes aspect-ratio buckets, so the trainer's exact plan can have a
    few more batches per epoch when the images fall into several buckets.
    """
    samples = epoch_samples(folders, reg_folders)
    global_batch = config.batch_size * world_size
    return make_plan(config, math.ceil(samples / global_batch), samples, world_size)
