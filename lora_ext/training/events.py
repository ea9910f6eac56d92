"""How the UI and the CLI talk to a running training loop.

Progress and status go out through callbacks; stop, save and sample requests
come in as flags, checked once per optimizer step. Requests are thread-safe, so
a UI thread can call ``request_stop()`` while the loop runs in another.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# The phases of a run, in the order they happen; previews and saves may repeat during training.
Phase = Literal["scanning", "caching", "training", "preview", "saving"]
PHASES: tuple[Phase, ...] = ("scanning", "caching", "training", "preview", "saving")


@dataclass(frozen=True)
class PhaseInfo:
    """What the run is doing now and how far that phase is: one status line of its own."""

    phase: Phase
    done: int  # items of this phase done: images scanned or cached, steps, sampler steps, files saved
    total: int
    text: str  # the status line, e.g. "rendering preview 1/2 (sampler step 5/20)"
    # Seconds left in the whole run (previews and saves included), from ``eta.Eta``: the run's own timings
    # once it has them, the costs measured before the start until then; while caching without measured
    # costs, the caching's own; 0 when unknown.
    eta_seconds: float = 0.0


@dataclass(frozen=True)
class ProgressInfo:
    step: int
    total_steps: int
    epoch: int  # 1-based epoch being trained
    epochs: int
    loss: float
    smoothed_loss: float
    lr: float
    its_per_second: float
    eta_seconds: float  # the rest of the run: steps, and the previews and saves the plan still has
    phase: Phase = "training"


class TrainEvents:
    """Callbacks out, requests in. Subclass it or pass callables."""

    def __init__(
        self,
        on_progress: Callable[[ProgressInfo], None] | None = None,
        on_status: Callable[[str], None] | None = None,
        on_saved: Callable[[Path], None] | None = None,
        on_sample: Callable[[list, list[Path]], None] | None = None,
        on_phase: Callable[[PhaseInfo], None] | None = None,
    ) -> None:
        self._on_progress = on_progress
        self._on_status = on_status
        self._on_saved = on_saved
        self._on_sample = on_sample
        self._on_phase = on_phase
        self._stop = threading.Event()
        self._save = threading.Event()
        self._sample = threading.Event()

    # -- requests (from any thread) ---------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()

    def request_save(self) -> None:
        self._save.set()

    def request_sample(self) -> None:
        self._sample.set()

    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def take_save_request(self) -> bool:
        requested = self._save.is_set()
        self._save.clear()
        return requested

    def take_sample_request(self) -> bool:
        requested = self._sample.is_set()
        self._sample.clear()
        return requested

    # -- notifications (from the loop) --------------------------------------------------
    def progress(self, info: ProgressInfo) -> None:
        """A finished optimizer step; also the training phase's status line."""
        if self._on_progress:
            self._on_progress(info)
        text = f"training step {info.step}/{info.total_steps}"
        self.phase(PhaseInfo(info.phase, info.step, info.total_steps, text, info.eta_seconds))

    def phase(self, info: PhaseInfo) -> None:
        if self._on_phase:
            self._on_phase(info)

    def status(self, text: str) -> None:
        if self._on_status:
            self._on_status(text)

    def saved(self, path: Path) -> None:
        if self._on_saved:
            self._on_saved(path)

    def sampled(self, images: list, paths: list[Path]) -> None:
        if self._on_sample:
            self._on_sample(images, paths)
