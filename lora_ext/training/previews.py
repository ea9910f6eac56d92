"""What a user watches while a run trains: preview renders and the loss log (with the validation loss).

``Previews.after_step`` asks the plan whether this step previews (a
request from the page previews too); renders go through the host's own generator
with the LoRA live and fixed seeds, one status line per sampler step.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from lora_ext.config import TrainConfig
from lora_ext.training.eta import Eta
from lora_ext.training.events import PhaseInfo, TrainEvents
from lora_ext.training.optim import evaluation
from lora_ext.training.prompts import parse_sample_prompts
from lora_ext.training.steps import TrainingParts

LOSS_LOG = "loss.csv"


def append_loss_log(
    path: Path, step: int, epoch: int, loss: float, smoothed: float, lr: float, validation: float | None = None
) -> None:
    """One CSV row per step: step, epoch, loss, smoothed loss, lr, validation loss."""
    new = not path.is_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        if new:
            handle.write("step,epoch,loss,smoothed_loss,lr,validation_loss\n")
        handle.write(
            f"{step},{epoch},{loss:.6g},{smoothed:.6g},{lr:.6g},{'' if validation is None else f'{validation:.6g}'}\n"
        )


class Previews:
    """Previews and the loss log of one run (the main process's)."""

    def __init__(self, config: TrainConfig, parts: TrainingParts, events: TrainEvents, eta: Eta) -> None:
        self.config = config
        self.parts = parts
        self.events = events
        self.eta = eta
        self.loss_log = parts.work_dir / LOSS_LOG
        self.last_image: Any = None
        self.last_step: int | None = None  # the step of the last render: a file's card is a render of its weights

    def after_step(self, step: int, validation: float | None = None) -> None:
        """Log the step (with its validation loss, when it has one), then preview when due."""
        parts, plan = self.parts, self.parts.plan
        progress = parts.progress
        lr = parts.optimizer.param_groups[0]["lr"]
        epoch = plan.epoch_of(step)
        append_loss_log(self.loss_log, step, epoch, progress.last_loss, progress.smoothed_loss, lr, validation)
        if self.events.take_sample_request() or plan.previews_at(step):
            self.render(f"e{epoch:06d}_s{step:08d}")

    def finish(self, weights_changed: bool = False) -> None:
        """The final file's card: a render of the final weights, unless the last step was previewed (and the
        weights are still that step's: an early stop puts the best epoch's back)."""
        plan = self.parts.plan
        if plan.final_preview(self.last_step) or (weights_changed and plan.previews):
            self.render("final")

    def card(self) -> Any:
        """The image for a file saved now: the last render, when it was made at this step."""
        return self.last_image if self.last_step == self.parts.progress.step else None

    def render(self, label: str) -> list[Path]:
        """Previews through the host's own generator, with the LoRA live and fixed seeds."""
        config, parts = self.config, self.parts
        prompts = parse_sample_prompts(config.sample_prompts, config.resolution, config.resolution, config.seed)
        if not prompts or not parts.host.capabilities().can_generate:
            return []
        network = parts.network
        was_training = network.training
        network.eval()
        paths, images = [], []
        started = time.perf_counter()
        try:
            with torch.random.fork_rng(devices=[]), evaluation(self.parts.optimizer):
                for index, base_request in enumerate(prompts):
                    report = self._reporter(index + 1, len(prompts))
                    report(0, base_request.steps)
                    image = parts.host.generate(dataclasses.replace(base_request, on_step=report))[0]
                    path = parts.work_dir / "samples" / f"{label}_{index:02d}.png"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    image.save(path)
                    paths.append(path)
                    images.append(image)
        finally:
            network.train(was_training)
        step = parts.progress.step
        self.eta.previewed(step, time.perf_counter() - started)
        self.last_image, self.last_step = images[0], step
        self.events.sampled(images, paths)
        return paths

    def _reporter(self, number: int, count: int):
        """A sampler-step callback for preview ``number`` of ``count``: one status line with its own progress."""

        def report(step: int, steps: int) -> None:
            text = f"rendering preview {number}/{count} (sampler step {step}/{steps})"
            self.events.phase(PhaseInfo("preview", step, steps, text, self.eta.remaining()))

        return report
