"""Everything a run writes: LoRA files (final and intermediate), states, previews, the loss log."""

from __future__ import annotations

import dataclasses
import functools
import re
import time
from pathlib import Path

import torch

from lora_ext.config import TrainConfig
from lora_ext.host import GenerationRequest
from lora_ext.training import checkpoint, estimate, save, steps
from lora_ext.training.data import TrainingDataset
from lora_ext.training.events import PhaseInfo, TrainEvents
from lora_ext.training.optim import evaluation

_OPTION = re.compile(r"\s--(n|w|h|s|l|d)\s+")


def parse_sample_prompts(text: str, width: int, height: int, seed: int) -> list[GenerationRequest]:
    """kohya's prompt lines: ``prompt --n negative --w 512 --h 512 --s 20 --l 7 --d 1``; ``#`` comments."""
    prompts = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pieces = _OPTION.split(" " + line)
        values: dict[str, str] = {}
        for key, value in zip(pieces[1::2], pieces[2::2], strict=True):
            values[key] = value.strip()
        try:
            prompts.append(
                GenerationRequest(
                    prompt=pieces[0].strip(),
                    negative_prompt=values.get("n", ""),
                    width=int(values.get("w", width)),
                    height=int(values.get("h", height)),
                    steps=int(values.get("s", 20)),
                    cfg_scale=float(values.get("l", 7.0)),
                    seed=int(values.get("d", seed)),
                )
            )
        except ValueError:
            continue  # a malformed option line is skipped rather than ending the run
    return prompts


class RunOutputs:
    """Saves and previews for one run; the loop calls ``after_step`` once per optimizer step."""

    def __init__(
        self, config: TrainConfig, parts: steps.TrainingParts, dataset: TrainingDataset, events: TrainEvents, facts_for
    ) -> None:
        self.config = config
        self.parts = parts
        self.dataset = dataset
        self.events = events
        self.facts_for = facts_for  # (output name, epoch) → save.RunFacts
        self.last_preview = None
        self.last_preview_step: int | None = None  # a file's card is a render of its own weights: this step's
        self.loss_log = parts.work_dir / "loss.csv"
        self.preview_seconds: list[float] = []  # each render so far, for the ETA
        self.save_seconds: list[float] = []
        self.saves = 0
        self.writes = parts.group.ranks.is_main  # the other ranks of a data-parallel run write nothing

    # -- the ETA of what the plan still has to do besides steps --------------------------------------
    def _step_seconds(self) -> float:
        progress = self.parts.progress
        return progress.elapsed_seconds / progress.step if progress.step else 0.0

    def _preview_each(self) -> float:
        if self.preview_seconds:
            return sum(self.preview_seconds) / len(self.preview_seconds)
        micro_batch = self._step_seconds() / self.config.gradient_accumulation
        forward = estimate.FORWARD_SHARE * micro_batch / self.config.batch_size
        return estimate.preview_seconds(self.config, forward, self.config.resolution)

    def _save_each(self) -> float:
        return self.save_seconds[-1] if self.save_seconds else self._guessed_save_seconds

    @functools.cached_property
    def _guessed_save_seconds(self) -> float:
        # counted once: walking the network's parameters takes ~1 ms, a step of a small model ~80 ms
        parameters = sum(p.numel() for p in self.parts.network.parameters())
        return parameters * 4 / estimate.WRITE_BYTES_PER_SECOND

    def pending_seconds(self, step: int) -> float:
        """What the previews and saves still planned after ``step`` will take (guessed until one has run)."""
        return estimate.pending_seconds(
            self.config,
            self.parts.plan,
            step,
            self.last_preview_step,
            self._preview_each(),
            self._save_each(),
        )

    def _eta(self) -> float:
        progress, plan = self.parts.progress, self.parts.plan
        return (plan.total_steps - progress.step) * self._step_seconds() + self.pending_seconds(progress.step)

    def after_step(self, epoch: int, ends_epoch: bool) -> None:
        if not self.writes:
            return
        config, plan, progress = self.config, self.parts.plan, self.parts.progress
        step = progress.step
        validation = None
        if self.dataset.validation and (
            (config.validate_every_n_steps and step % config.validate_every_n_steps == 0)
            or (not config.validate_every_n_steps and ends_epoch)
        ):
            validation = steps.validation_loss(self.parts, config, self.dataset)
        steps.append_loss_log(
            self.loss_log,
            step,
            epoch + 1,
            progress.last_loss,
            progress.smoothed_loss,
            self.parts.optimizer.param_groups[0]["lr"],
            validation,
        )
        if validation is not None:
            self.events.status(f"validation loss {validation:.4f} at step {step}")
        # The preview first: a file saved at this step gets this step's render as its card.
        if (
            self.events.take_sample_request()
            or plan.should_sample_step(config, step)
            or (ends_epoch and plan.should_sample_epoch(config, epoch + 1))
        ):
            self.sample(f"e{epoch + 1:06d}_s{step:08d}")
        save_requested = self.events.take_save_request()
        if plan.should_save_step(config, step) or save_requested:
            self.save_intermediate(save.intermediate_path(self.parts.output_path, step=step), epoch + 1)
        if ends_epoch and plan.should_save_epoch(config, epoch + 1):
            self.save_intermediate(save.intermediate_path(self.parts.output_path, epoch=epoch + 1), epoch + 1)

    def save_lora(self, path: Path, epoch: int) -> Path:
        started = time.perf_counter()
        self.saves += 1
        total = self.saves - 1 + estimate.save_count(self.config, self.parts.plan, self.parts.progress.step)
        self.events.phase(PhaseInfo("saving", self.saves - 1, total, f"saving {path.name} ({self.saves}/{total})"))
        with evaluation(self.parts.optimizer):  # schedule-free: the averaged weights are the ones to use
            tensors = self.parts.network.kohya_state_dict(save.save_dtype(self.config))
        metadata = save.kohya_metadata(self.config, self.facts_for(path.stem, epoch))
        save.save_lora(path, tensors, metadata)
        card = self.last_preview if self.last_preview_step == self.parts.progress.step else None
        save.write_sidecars(path, self.config, self.parts.host.info, card)
        self.save_seconds.append(time.perf_counter() - started)
        self.events.phase(PhaseInfo("saving", self.saves, total, f"saved {path.name} ({self.saves}/{total})"))
        self.events.saved(path)
        return path

    def save_intermediate(self, path: Path, epoch: int) -> None:
        self.save_lora(path, epoch)
        progress = self.parts.progress
        progress.saved_files = save.prune([*progress.saved_files, str(path)], self.config.keep_last_n)
        if self.config.save_state:
            self.save_state()

    def save_state(self) -> Path | None:
        if not self.writes:
            return None
        path = checkpoint.save_state(self.parts.work_dir, self.parts, self.config.to_dict())
        self.events.status(f"saved training state at step {self.parts.progress.step}")
        return path

    def sample(self, label: str) -> list[Path]:
        """Previews through the host's own generator, with the LoRA live and fixed seeds."""
        capabilities = self.parts.host.capabilities()
        prompts = parse_sample_prompts(
            self.config.sample_prompts, self.config.resolution, self.config.resolution, self.config.seed
        )
        if not prompts or not capabilities.can_generate:
            return []
        network = self.parts.network
        was_training = network.training
        network.eval()
        paths, images = [], []
        started = time.perf_counter()
        try:
            with torch.random.fork_rng(devices=[]), evaluation(self.parts.optimizer):
                for index, base_request in enumerate(prompts):
                    report = self._preview_reporter(index + 1, len(prompts))
                    report(0, base_request.steps)
                    request = dataclasses.replace(base_request, on_step=report)
                    image = self.parts.host.generate(request)[0]
                    path = self.parts.work_dir / "samples" / f"{label}_{index:02d}.png"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    image.save(path)
                    paths.append(path)
                    images.append(image)
        finally:
            network.train(was_training)
        self.preview_seconds.append(time.perf_counter() - started)
        self.last_preview, self.last_preview_step = images[0], self.parts.progress.step
        self.events.sampled(images, paths)
        return paths

    def _preview_reporter(self, number: int, count: int):
        """A sampler-step callback for preview ``number`` of ``count``: one status line with its own progress."""

        def report(step: int, steps: int) -> None:
            text = f"rendering preview {number}/{count} (sampler step {step}/{steps})"
            self.events.phase(PhaseInfo("preview", step, steps, text, self._eta()))

        return report
