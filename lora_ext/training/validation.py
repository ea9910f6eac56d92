"""The validation loss of a run, the epoch it suggests, and early stop.

After each step the plan validates (``TrainPlan.validates_at``: each epoch's end and
the last step), ``Validation`` measures the loss of the validation images at fixed
noise and timesteps (``steps.validation_loss``), keeps it in the run's progress (so a
resumed run has it), writes the run folder's ``validation.json`` and gives each saved
file its values for the metadata (``summary``).

The pure rules are here too, so the trainer, the page, the CLI and the REST API
apply the same ones (``docs/grid.md``):

- **suggested epoch** (``suggest``): among the saved files, the earliest whose
  validation loss is within ``TOLERANCE`` of the lowest — an earlier file that is as
  good is less overfit and more flexible;
- **overfit warning**: the last validation is more than ``TOLERANCE`` above the lowest
  while the training loss kept falling;
- **early stop** (``early_stop_reason``): ``patience`` validations in a row without
  beating the best by more than ``TOLERANCE``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lora_ext.fileio import write_text_atomic

if TYPE_CHECKING:
    from lora_ext.config import TrainConfig
    from lora_ext.training.data import TrainingDataset
    from lora_ext.training.events import TrainEvents
    from lora_ext.training.steps import TrainingParts

TOLERANCE = 0.01  # relative: validation losses closer than 1 % count as equal
VALIDATION_FILE = "validation.json"
BEST_WEIGHTS = "early-stop-best.safetensors"  # the best validation's weights, with early stop on


@dataclass(frozen=True)
class ValidationPoint:
    """One validation: after ``step`` (in ``epoch``), with the smoothed training loss at that step."""

    step: int
    epoch: int
    loss: float
    train_loss: float

    def to_list(self) -> list[float]:
        return [self.step, self.epoch, self.loss, self.train_loss]

    @classmethod
    def from_list(cls, values: Sequence[Any]) -> ValidationPoint:
        step, epoch, loss, train_loss = values
        return cls(int(step), int(epoch), float(loss), float(train_loss))


@dataclass(frozen=True)
class Suggestion:
    """The file to keep and why; ``warning`` is the overfit line ("" when none)."""

    step: int
    epoch: int
    loss: float
    reason: str
    warning: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "loss": self.loss,
            "reason": self.reason,
            "warning": self.warning,
        }


def _within(loss: float, best: float) -> bool:
    return loss <= best + TOLERANCE * abs(best)


def suggest(points: Sequence[ValidationPoint], saved_steps: Iterable[int] | None = None) -> Suggestion | None:
    """The suggested file among those saved at ``saved_steps`` (default: every validated step); None without any."""
    steps = None if saved_steps is None else set(saved_steps)
    eligible = sorted((p for p in points if steps is None or p.step in steps), key=lambda p: p.step)
    if not eligible:
        return None
    best = min(eligible, key=lambda p: p.loss)
    chosen = next(p for p in eligible if _within(p.loss, best.loss))
    if chosen is best:
        reason = f"lowest validation loss ({best.loss:.4f})"
    else:
        reason = (
            f"validation loss {chosen.loss:.4f}, within {TOLERANCE:.0%} of the lowest "
            f"({best.loss:.4f} at epoch {best.epoch}), and earlier"
        )
    return Suggestion(chosen.step, chosen.epoch, chosen.loss, reason, overfit_warning(points))


def overfit_warning(points: Sequence[ValidationPoint]) -> str:
    """A line when the validation loss rose after its lowest while the training loss kept falling; else ""."""
    ordered = sorted(points, key=lambda p: p.step)
    if len(ordered) < 2:
        return ""
    best = min(ordered, key=lambda p: p.loss)
    last = ordered[-1]
    if last.step == best.step or _within(last.loss, best.loss) or last.train_loss >= best.train_loss:
        return ""
    rise = (last.loss - best.loss) / abs(best.loss) if best.loss else 0.0
    return (
        f"the validation loss rose {rise:.0%} after epoch {best.epoch} while the training loss kept falling: "
        "later epochs are likely overfit"
    )


def early_stop_reason(points: Sequence[ValidationPoint], patience: int) -> str:
    """Why to stop now: ``patience`` validations in a row without beating the best so far by more than the
    tolerance; "" to go on (always with ``patience`` 0)."""
    if patience <= 0 or len(points) <= patience:
        return ""
    best = points[0].loss
    since = 0
    for point in points[1:]:
        if point.loss < best - TOLERANCE * abs(best):
            best, since = point.loss, 0
        else:
            best, since = min(best, point.loss), since + 1
    if since < patience:
        return ""
    kept = suggest(points)
    assert kept is not None  # points is not empty
    return (
        f"the validation loss has not improved for {since} validations; "
        f"keeping epoch {kept.epoch} (step {kept.step}, validation loss {kept.loss:.4f})"
    )


# -- the run folder's validation.json and the files' metadata ------------------------------------


def history_json(
    points: Sequence[ValidationPoint], source: str, images: int, timesteps: Sequence[int], **extra: Any
) -> dict[str, Any]:
    """What ``validation.json`` and the metadata's ``train_tools_validation`` hold."""
    return {
        "source": source,
        "images": images,
        "timesteps": list(timesteps),
        "tolerance": TOLERANCE,
        "points": [{"step": p.step, "epoch": p.epoch, "loss": p.loss, "train_loss": p.train_loss} for p in points],
        **extra,
    }


def points_from_json(data: Any) -> list[ValidationPoint]:
    """The points of a ``history_json`` (from a file's metadata or ``validation.json``); [] when unreadable."""
    try:
        return [
            ValidationPoint(int(p["step"]), int(p["epoch"]), float(p["loss"]), float(p["train_loss"]))
            for p in data.get("points", [])
        ]
    except (AttributeError, KeyError, TypeError, ValueError):
        return []


def read_history(work_dir: Path) -> dict[str, Any] | None:
    """The run folder's ``validation.json``, or None (no validation yet, or unreadable)."""
    try:
        data = json.loads((Path(work_dir) / VALIDATION_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_history(work_dir: Path, data: dict[str, Any]) -> None:
    write_text_atomic(Path(work_dir) / VALIDATION_FILE, json.dumps(data, ensure_ascii=False, indent=1) + "\n")


# -- during a run ------------------------------------------------------------------------------


class Validation:
    """The validation loss of one run (the main process's), its history, and early stop."""

    def __init__(
        self, config: TrainConfig, parts: TrainingParts, dataset: TrainingDataset, events: TrainEvents
    ) -> None:
        self.config = config
        self.parts = parts
        self.dataset = dataset
        self.events = events
        self.best_weights = parts.work_dir / BEST_WEIGHTS
        self.stop_reason = ""

    @property
    def points(self) -> list[ValidationPoint]:
        """Every validation so far (kept in the progress: a resumed run goes on with its history)."""
        return [ValidationPoint.from_list(values) for values in self.parts.progress.validation]

    def after_step(self, step: int) -> float | None:
        """The validation loss when the plan validates after ``step`` (None otherwise)."""
        from lora_ext.training.steps import validation_loss

        parts, plan = self.parts, self.parts.plan
        if not plan.validates_at(step):
            return None
        loss = validation_loss(parts, self.config, self.dataset)
        if loss is None:
            return None
        point = ValidationPoint(step, plan.epoch_of(step), loss, parts.progress.smoothed_loss)
        parts.progress.validation.append(point.to_list())
        self.events.status(f"validation loss {loss:.4f} at step {step} ({plan.counts.validation_source})")
        points = self.points
        if plan.early_stop_patience > 0:
            self._keep_best(points, point)
            self.stop_reason = early_stop_reason(points, plan.early_stop_patience)
        write_history(parts.work_dir, self.summary(step))
        return loss

    def summary(self, upto_step: int | None = None) -> dict[str, Any]:
        """The history up to ``upto_step`` (a file saved then), with the suggestion among its points."""
        from lora_ext.training.steps import VALIDATION_TIMESTEPS

        counts = self.parts.plan.counts
        points = [p for p in self.points if upto_step is None or p.step <= upto_step]
        suggestion = suggest(points)
        extra: dict[str, Any] = {"suggestion": suggestion.to_json() if suggestion else None}
        if self.stop_reason:
            extra["early_stop"] = self.stop_reason
        return history_json(points, counts.validation_source, counts.validated_images, VALIDATION_TIMESTEPS, **extra)

    def _keep_best(self, points: list[ValidationPoint], point: ValidationPoint) -> None:
        """With early stop on: the weights of the suggested validation, on disk (a resumed run still has them)."""
        from safetensors.torch import save_file

        from lora_ext.fileio import atomic_path

        kept = suggest(points)
        if kept is None or kept.step != point.step:
            return
        tensors = {name: value.detach().cpu().contiguous() for name, value in self.parts.network.state_dict().items()}
        with atomic_path(self.best_weights) as tmp:
            save_file(tensors, str(tmp), metadata={"step": str(point.step), "epoch": str(point.epoch)})

    def restore_best(self) -> tuple[int, int] | None:
        """Put the kept best weights back into the network: (its step, its epoch), or None when none were kept."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        if not self.best_weights.is_file():
            return None
        with safe_open(str(self.best_weights), framework="pt") as handle:
            metadata = handle.metadata() or {}
        self.parts.network.load_state_dict(load_file(str(self.best_weights)))
        return int(metadata["step"]), int(metadata["epoch"])
