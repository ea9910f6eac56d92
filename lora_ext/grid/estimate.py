"""How long a grid takes, said before it starts: sampler steps × the seconds one takes on this machine.

``measure`` times a sampler step and what a render costs besides its steps through the host's own generator at
the grid's size (the CLI does; the page uses what was timed already: a grid, or the training's costs, where a
sampler step with CFG is two UNet forwards). A finished grid's own
time per step (its text encoding and VAE decode spread over its steps) replaces the measurement
(``step_seconds_of``). The step count a grid gets by default is the largest of ``STEP_CHOICES`` whose grid
fits in ``BUDGET_SECONDS``.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace

import torch

from lora_ext.grid.spec import GridSpec
from lora_ext.host import Host

STEP_CHOICES = (20, 15, 12, 8, 6, 4)
BUDGET_SECONDS = 600.0  # a default grid should be done in about ten minutes
TIMES = 3  # renders timed at each step count
OVERHEAD = 1.15  # text encoding, the VAE decode and saving, over the sampler's steps (a finished grid corrects it)


def measure(host: Host, width: int, height: int) -> tuple[float, float]:
    """(one sampler step, a render's fixed part: text encoding, VAE decode) at ``width`` × ``height``, from 1-step
    and 3-step generations through ``host.generate`` itself — the sampler's whole step, not only its UNet calls (the
    caller holds the host's job slot)."""
    from lora_ext.host import GenerationRequest

    def render(steps: int) -> float:
        request = GenerationRequest("a photo", width=width, height=height, steps=steps, seed=0)
        if host.device.type == "cuda":
            torch.cuda.synchronize(host.device)
        started = time.perf_counter()
        host.generate(request)
        if host.device.type == "cuda":
            torch.cuda.synchronize(host.device)
        return time.perf_counter() - started

    render(1)  # warm-up: allocators, kernels, the text encoder's first call
    # the median of TIMES, not the fastest: a grid runs for minutes on a machine that may be doing other work
    one = statistics.median(render(1) for _ in range(TIMES))
    three = statistics.median(render(3) for _ in range(TIMES))
    step = max(0.0, (three - one) / 2)
    return step, max(0.0, one - step)


def grid_seconds(spec: GridSpec, step_seconds: float, render_seconds: float | None = None) -> float:
    """The grid's time at ``step_seconds`` a sampler step (of the grid's own size) and ``render_seconds`` more a
    render (unknown: ``OVERHEAD`` over the steps)."""
    steps = len(spec.renders()) * spec.steps * step_seconds
    if render_seconds is None:
        return steps * OVERHEAD
    return steps + len(spec.renders()) * render_seconds


def step_seconds_of(render_seconds: float, renders: int, steps: int) -> float:
    """A finished grid's seconds per sampler step, everything included (divided back by ``OVERHEAD``)."""
    return render_seconds / max(1, renders * steps) / OVERHEAD


def fitting_steps(
    spec: GridSpec, step_seconds: float, render_seconds: float | None = None, budget: float = BUDGET_SECONDS
) -> int:
    """The most steps of ``STEP_CHOICES`` with which ``spec`` fits in ``budget`` seconds (the fewest otherwise)."""
    for steps in STEP_CHOICES:
        if grid_seconds(replace(spec, steps=steps), step_seconds, render_seconds) <= budget:
            return steps
    return STEP_CHOICES[-1]
