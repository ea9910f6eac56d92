"""The files a run saves: intermediate and final LoRAs (pruned to ``keep_last_n``) and resumable states.

``Saving.after_step`` asks the plan whether this step saves (a request from the
page saves too); each save reports its own line with the run's ETA.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lora_ext.config import TrainConfig
from lora_ext.training import checkpoint, save
from lora_ext.training.eta import Eta
from lora_ext.training.events import PhaseInfo, TrainEvents
from lora_ext.training.optim import evaluation
from lora_ext.training.steps import TrainingParts


class Saving:
    """LoRA files and states of one run (the main process's)."""

    def __init__(
        self,
        config: TrainConfig,
        parts: TrainingParts,
        events: TrainEvents,
        eta: Eta,
        facts_for: Callable[[str, int, int], save.RunFacts],  # (output name, epoch, step) → the metadata's facts
        card: Callable[[], Any] = lambda: None,  # the preview image for a file saved now, or None
    ) -> None:
        self.config = config
        self.parts = parts
        self.events = events
        self.eta = eta
        self.facts_for = facts_for
        self.card = card
        self.saves = 0

    def after_step(self, step: int) -> None:
        """Intermediate files the plan (or a request) asks for after ``step``."""
        plan, output = self.parts.plan, self.parts.output_path
        epoch = plan.epoch_of(step)
        if plan.saves_at_step(step) or self.events.take_save_request():
            self.save_intermediate(save.intermediate_path(output, step=step), epoch)
        if plan.saves_at_epoch(step):
            self.save_intermediate(save.intermediate_path(output, epoch=epoch), epoch)

    def save_lora(self, path: Path, epoch: int, step: int | None = None) -> Path:
        """Write the network as a kohya LoRA at ``path``, with its metadata and sidecars; ``step``: the step the
        weights are from (an early stop's best), by default the run's."""
        started = time.perf_counter()
        self.saves += 1
        total = self.saves - 1 + self.parts.plan.saves_left(self.parts.progress.step)
        eta = self.eta.remaining()
        self.events.phase(PhaseInfo("saving", self.saves - 1, total, f"saving {path.name} ({self.saves}/{total})", eta))
        with evaluation(self.parts.optimizer):  # schedule-free: the averaged weights are the ones to use
            tensors = self.parts.network.kohya_state_dict(save.save_dtype(self.config))
        step = self.parts.progress.step if step is None else step
        metadata = save.kohya_metadata(self.config, self.facts_for(path.stem, epoch, step))
        save.save_lora(path, tensors, metadata)
        save.write_sidecars(path, self.config, self.parts.host.info, self.card())
        self.eta.saved(time.perf_counter() - started)
        eta = self.eta.remaining()
        self.events.phase(PhaseInfo("saving", self.saves, total, f"saved {path.name} ({self.saves}/{total})", eta))
        self.events.saved(path)
        return path

    def save_intermediate(self, path: Path, epoch: int) -> None:
        self.save_lora(path, epoch)
        progress = self.parts.progress
        progress.saved_files = save.prune([*progress.saved_files, str(path)], self.config.keep_last_n)
        if self.config.save_state:
            self.save_state()

    def save_state(self) -> Path:
        path = checkpoint.save_state(self.parts.work_dir, self.parts, self.config.to_dict())
        self.events.status(f"saved training state at step {self.parts.progress.step}")
        return path
