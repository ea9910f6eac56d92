"""The schedule of a run: every count and every "does step N save, preview, validate?" answer, decided once.

``DatasetCounts`` is what the schedule needs to know of a dataset. It comes from a
folder scan for the page (``data.folder_counts``: image counts and repeats, nothing
opened) and from the built dataset for the trainer (``TrainingDataset.counts``);
both go through ``dataset_counts`` and the same rules (``epoch_samples``, ``held_out``). ``make_plan(config,
counts)`` is the one pure function that turns a config and counts into the
``TrainPlan``; the trainer never writes derived numbers back into the config
(diffusers mutates ``args.max_train_steps`` mid-run; we don't).

Steps are counted from 1: "after step 3" is after the third optimizer step.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from lora_ext.config import TrainConfig

# Training images validated (at fixed noise and timesteps) when none are held out (``validation_split`` 0).
VALIDATION_SAMPLE = 4


@dataclass(frozen=True)
class DatasetCounts:
    """What the schedule needs to know of a dataset."""

    images: int  # training images (the held-out validation images not counted)
    train_samples: int  # training images × their repeats (kohya's ss_num_train_images)
    reg_images: int
    reg_samples: int  # regularisation images × their repeats (kohya's ss_num_reg_images)
    validation_images: int
    samples: int  # per epoch: the training samples, and as many regularisation samples when there are any
    batches: int  # global batches per epoch (``batch_size × world_size`` samples; a batch never mixes buckets)
    world_size: int = 1  # processes of a data-parallel run, each with ``batch_size`` samples of every batch

    @property
    def validated_images(self) -> int:
        """Images each validation loss is measured on: the held-out ones, else a fixed sample of the training
        images (``VALIDATION_SAMPLE``)."""
        return self.validation_images or min(VALIDATION_SAMPLE, self.images)

    @property
    def validation_source(self) -> str:
        """What the validation loss is measured on, as the page, the run folder and the metadata name it."""
        return "held-out images" if self.validation_images else "training images (none held out)"


def epoch_samples(train_repeats: Sequence[int], reg_repeats: Sequence[int] = ()) -> list[int]:
    """One epoch's samples as record indices: each training image × its repeats, then regularisation images
    (indices after the training ones) cycled to as many samples as the training images give, whatever
    their own repeats (kohya)."""
    samples = [index for index, repeats in enumerate(train_repeats) for _ in range(repeats)]
    offset = len(train_repeats)
    reg = [offset + index for index, repeats in enumerate(reg_repeats) for _ in range(repeats)]
    if reg:
        samples += [reg[position % len(reg)] for position in range(len(samples))]
    return samples


def held_out(image_count: int, config: TrainConfig) -> set[int]:
    """Positions (in scan order) of the training images held out for the validation loss."""
    if config.validation_split <= 0 or image_count < 2:
        return set()
    count = max(1, round(image_count * config.validation_split))
    return set(random.Random(f"validation:{config.seed}").sample(range(image_count), count))


def dataset_counts(
    config: TrainConfig,
    train_repeats: Sequence[int],
    reg_repeats: Sequence[int] = (),
    validation_images: int = 0,
    world_size: int = 1,
    batches: int | None = None,
) -> DatasetCounts:
    """Counts of the training images (validation ones already taken out) and regularisation images, given
    each one's repeats. ``batches``: the trainer's bucketed count; without it every batch is full."""
    samples = len(epoch_samples(train_repeats, reg_repeats))
    global_batch = config.batch_size * world_size
    return DatasetCounts(
        images=len(train_repeats),
        train_samples=sum(train_repeats),
        reg_images=len(reg_repeats),
        reg_samples=sum(reg_repeats),
        validation_images=validation_images,
        samples=samples,
        batches=batches if batches is not None else math.ceil(samples / global_batch),
        world_size=world_size,
    )


def _multiples(every: int, after: int, upto: int) -> int:
    """How many multiples of ``every`` lie in ``(after, upto]``."""
    return upto // every - after // every if every > 0 and upto > after else 0


@dataclass(frozen=True)
class TrainPlan:
    """The run's schedule; answers every step, epoch, save, preview and validation question."""

    counts: DatasetCounts
    steps_per_epoch: int  # optimizer steps: batches / gradient accumulation, rounded up
    total_steps: int
    epochs: int
    warmup_steps: int
    effective_batch: int  # samples per optimizer step: batch_size × world_size × gradient_accumulation
    save_every_n_steps: int = 0
    save_every_n_epochs: int = 0
    previews: bool = False  # the config has preview prompts
    preview_every_n_steps: int = 0
    preview_every_n_epochs: int = 0
    validate_every_n_steps: int = 0  # 0: at each epoch's end (and after the last step)
    early_stop_patience: int = 0  # stop after this many validations without improvement; 0: never
    save_state: bool = False  # each save also writes a resumable state

    # -- what the metadata and the page show -------------------------------------------------------
    @property
    def batches_per_epoch(self) -> int:
        return self.counts.batches

    @property
    def num_train_images(self) -> int:
        return self.counts.train_samples

    @property
    def world_size(self) -> int:
        return self.counts.world_size

    # -- epochs ------------------------------------------------------------------------------------
    def epoch_of(self, step: int) -> int:
        """The 1-based epoch that step ``step`` (1-based) trains in."""
        return (step - 1) // self.steps_per_epoch + 1

    def ends_epoch(self, step: int) -> bool:
        """Whether step ``step`` is its epoch's last (a run cut short by ``max_steps`` may end mid-epoch)."""
        return step % self.steps_per_epoch == 0

    # -- after each step ----------------------------------------------------------------------------
    def saves_at_step(self, step: int) -> bool:
        """An intermediate ``NAME-step…`` file after ``step`` (the final file is saved anyway)."""
        return self.save_every_n_steps > 0 and step % self.save_every_n_steps == 0 and step < self.total_steps

    def saves_at_epoch(self, step: int) -> bool:
        """An intermediate ``NAME-0000NN`` file after ``step``, the end of an epoch the schedule saves."""
        epoch = step // self.steps_per_epoch
        return (
            self.ends_epoch(step) and self.save_every_n_epochs > 0 and epoch % self.save_every_n_epochs == 0
        ) and epoch < self.epochs

    def previews_at(self, step: int) -> bool:
        """A preview render after ``step`` (a request aside)."""
        if not self.previews:
            return False
        by_steps = self.preview_every_n_steps > 0 and step % self.preview_every_n_steps == 0
        epoch = step // self.steps_per_epoch
        by_epochs = (
            self.ends_epoch(step) and self.preview_every_n_epochs > 0 and epoch % self.preview_every_n_epochs == 0
        )
        return by_steps or by_epochs

    @property
    def validates_each_epoch(self) -> bool:
        """Whether every epoch's end validates: with held-out images, or for early stop."""
        return bool(self.counts.validation_images or self.early_stop_patience)

    def validates_at(self, step: int) -> bool:
        """The validation loss after ``step``: with every file saved (so each has its own) and after the last
        step; every ``validate_every_n_steps`` instead when set, else at each epoch's end as well when the run
        validates each epoch."""
        if not self.counts.validated_images:
            return False
        if step == self.total_steps:
            return True
        if self.validate_every_n_steps:
            return step % self.validate_every_n_steps == 0
        if self.validates_each_epoch:
            return self.ends_epoch(step)
        return self.saves_at_step(step) or self.saves_at_epoch(step)

    def final_preview(self, previewed_at: int | None) -> bool:
        """Whether the run renders one more preview at its end, for the final file's card: unless the last
        step was previewed (on schedule or on request)."""
        return self.previews and previewed_at != self.total_steps and not self.previews_at(self.total_steps)

    # -- what is still to come, for the ETA --------------------------------------------------------
    def previews_left(self, after_step: int = 0, previewed_at: int | None = None) -> int:
        """Preview renders after step ``after_step``, the final one included."""
        if not self.previews:
            return 0
        total, per_epoch = self.total_steps, self.steps_per_epoch
        count = _multiples(self.preview_every_n_steps, after_step, total)
        if self.preview_every_n_steps > 0 and self.preview_every_n_epochs > 0:  # a step both count once
            every = math.lcm(self.preview_every_n_steps, self.preview_every_n_epochs * per_epoch)
            count -= _multiples(every, after_step, total)
        count += _multiples(self.preview_every_n_epochs, after_step // per_epoch, total // per_epoch)
        return count + int(self.final_preview(previewed_at))

    def saves_left(self, after_step: int = 0) -> int:
        """LoRA files written after step ``after_step``: intermediate saves on schedule, then the final one."""
        total, per_epoch = self.total_steps, self.steps_per_epoch
        count = _multiples(self.save_every_n_steps, after_step, total - 1)
        last_end = min(total // per_epoch, self.epochs - 1)
        count += _multiples(self.save_every_n_epochs, after_step // per_epoch, last_end)
        return count + 1

    def validations_left(self, after_step: int = 0) -> int:
        """Validation losses after step ``after_step`` (the last step's included)."""
        total, per_epoch = self.total_steps, self.steps_per_epoch
        if not self.counts.validated_images or after_step >= total:
            return 0
        if self.validate_every_n_steps or self.validates_each_epoch:
            every = self.validate_every_n_steps or per_epoch
            return _multiples(every, after_step, total) + int(total % every != 0)
        # one with each intermediate save (a step saving by steps and by epochs counts once), then the last step
        count = _multiples(self.save_every_n_steps, after_step, total - 1)
        count += _multiples(self.save_every_n_epochs, after_step // per_epoch, min(total // per_epoch, self.epochs - 1))
        if self.save_every_n_steps > 0 and self.save_every_n_epochs > 0:
            count -= _multiples(
                math.lcm(self.save_every_n_steps, self.save_every_n_epochs * per_epoch), after_step, total - 1
            )
        return count + 1

    def states_left(self, after_step: int = 0) -> int:
        """Resumable states written after ``after_step`` (one with each save when ``save_state``)."""
        return self.saves_left(after_step) if self.save_state else 0


def make_plan(config: TrainConfig, counts: DatasetCounts) -> TrainPlan:
    """The schedule of ``config`` over a dataset with ``counts``."""
    steps_per_epoch = max(1, math.ceil(counts.batches / config.gradient_accumulation))
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
        counts=counts,
        steps_per_epoch=steps_per_epoch,
        total_steps=total,
        epochs=epochs,
        warmup_steps=warmup,
        effective_batch=config.batch_size * counts.world_size * config.gradient_accumulation,
        save_every_n_steps=config.save_every_n_steps,
        save_every_n_epochs=config.save_every_n_epochs,
        previews=bool(config.sample_prompts.strip()),
        preview_every_n_steps=config.sample_every_n_steps,
        preview_every_n_epochs=config.sample_every_n_epochs,
        validate_every_n_steps=config.validate_every_n_steps,
        early_stop_patience=config.early_stop_patience,
        save_state=config.save_state,
    )
