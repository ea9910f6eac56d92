"""How long a grid takes, said before it starts: sampler steps × the seconds one takes on this machine.

A sampler step with CFG is two UNet forwards (the prompt and the negative); ``measure_step`` times that pair
through ``host.predict`` at the grid's size (the caller holds the host's job slot). A finished grid's own
time per step (its text encoding and VAE decode spread over its steps) replaces the measurement
(``step_seconds_of``). The step count a grid gets by default is the largest of ``STEP_CHOICES`` whose grid
fits in ``BUDGET_SECONDS``.
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch

from lora_ext.grid.spec import GridSpec
from lora_ext.host import Host

STEP_CHOICES = (20, 15, 12, 8, 6, 4)
BUDGET_SECONDS = 600.0  # a default grid should be done in about ten minutes
TIMED = 2  # the first warms up; the faster one is the measurement
OVERHEAD = 1.15  # text encoding, the VAE decode and saving, over the sampler's steps (a finished grid corrects it)


def measure_step(host: Host, width: int, height: int) -> float:
    """Seconds of one sampler step (two UNet forwards) at ``width`` × ``height`` on ``host``."""
    latents = torch.zeros(2, 4, height // 8, width // 8)
    timesteps = torch.full((2,), 500, dtype=torch.long)

    def step() -> float:
        if host.device.type == "cuda":
            torch.cuda.synchronize(host.device)
        started = time.perf_counter()
        host.predict(latents, timesteps, conditioning)
        if host.device.type == "cuda":
            torch.cuda.synchronize(host.device)
        return time.perf_counter() - started

    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        conditioning = host.encode_prompts(["a photo", ""])
        return min(step() for _ in range(TIMED))


def grid_seconds(spec: GridSpec, step_seconds: float) -> float:
    """The grid's time at ``step_seconds`` a sampler step (of the grid's own size)."""
    return len(spec.renders()) * spec.steps * step_seconds * OVERHEAD


def step_seconds_of(render_seconds: float, renders: int, steps: int) -> float:
    """A finished grid's seconds per sampler step, everything included (divided back by ``OVERHEAD``)."""
    return render_seconds / max(1, renders * steps) / OVERHEAD


def fitting_steps(spec: GridSpec, step_seconds: float, budget: float = BUDGET_SECONDS) -> int:
    """The most steps of ``STEP_CHOICES`` with which ``spec`` fits in ``budget`` seconds (the fewest otherwise)."""
    for steps in STEP_CHOICES:
        if grid_seconds(replace(spec, steps=steps), step_seconds) <= budget:
            return steps
    return STEP_CHOICES[-1]
