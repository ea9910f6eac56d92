"""The training loop, in the order the work happens. Helpers live in ``steps.py``."""

from __future__ import annotations

import time
from typing import Literal

from lora_ext.config import TrainConfig
from lora_ext.training import steps
from lora_ext.training.data import TrainingDataset
from lora_ext.training.eta import Eta
from lora_ext.training.events import TrainEvents
from lora_ext.training.outputs import RunOutputs

Outcome = Literal["finished", "cancelled", "stopped early"]


def train(
    config: TrainConfig,
    parts: steps.TrainingParts,
    dataset: TrainingDataset,
    events: TrainEvents,
    outputs: RunOutputs,
    eta: Eta,
) -> Outcome:
    """Run optimizer steps from ``parts.progress.step`` to ``parts.plan.total_steps``; stop early on request."""
    plan, network = parts.plan, parts.network
    network.train()
    while parts.progress.step < plan.total_steps:
        started = time.perf_counter()
        step = steps.batches_for_step(dataset, plan, config, parts.progress.step)  # 1. the batches of this step
        loss = 0.0
        for items, seed in zip(step.items, step.seeds, strict=True):
            rows = parts.group.ranks.rows(len(items))  # this process's share (all of it in one process)
            if not rows:
                continue
            batch = steps.get_batch(parts, dataset, items, seed, rows)
            micro_loss = steps.train_on(parts, config, batch, seed, rows, len(items), len(step.items))  # 2.–5.
            loss += micro_loss * (len(rows) / len(items)) / len(step.items)
        loss = steps.sum_over_processes(parts, loss)  # 5b. gradients and loss summed over processes
        steps.check_finite(loss, parts)
        steps.optimizer_step(parts, config)  # 6. clip, step, zero
        info = steps.update_progress(parts, loss, time.perf_counter() - started, step.epoch, eta)  # 7.
        events.progress(info)
        outputs.after_step(info.step)  # 8. validate, preview and save on schedule or request
        if parts.group.any(events.stop_requested()):  # every process stops after the same step
            outputs.stopped()
            return "cancelled"
        if plan.validates_at(info.step) and parts.group.any(bool(outputs.stop_reason())):  # 9. early stop
            return "stopped early"
    return "finished"  # 9. all steps done
