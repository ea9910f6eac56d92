"""A run's saved files as the grid's rows, with the validation history and the suggested file.

Each file's metadata says the step and epoch its weights are from (``ss_steps``, ``ss_epoch``) and its own
validation loss (``train_tools_validation_loss``); the history comes from the run folder's
``validation.json`` or, without one (a file copied elsewhere), from the newest file's metadata
(``train_tools_validation``). Nothing here loads a tensor.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_ext.errors import FileFormatError
from lora_ext.formats.safetensors_io import read_header
from lora_ext.grid.spec import GridRow
from lora_ext.training import validation
from lora_ext.training.validation import Suggestion, ValidationPoint

SUGGESTED = "suggested"


@dataclass(frozen=True)
class RunEpochs:
    """The rows of a run's grid, its validation history and the suggested row."""

    rows: tuple[GridRow, ...]
    paths: tuple[Path, ...]  # each row's file
    points: tuple[ValidationPoint, ...]
    source: str  # what the validation loss was measured on ("" when the files have none)
    suggestion: Suggestion | None
    early_stop: str = ""

    @property
    def suggested_row(self) -> int | None:
        """The suggested file's row (the earliest one of its step)."""
        if self.suggestion is None:
            return None
        return next((i for i, row in enumerate(self.rows) if row.step == self.suggestion.step), None)

    def marks(self) -> dict[int, str]:
        row = self.suggested_row
        return {} if row is None else {row: SUGGESTED}

    def to_json(self) -> dict[str, Any]:
        return {
            "files": [
                {
                    "file": path.name,
                    "label": row.label,
                    "step": row.step,
                    "epoch": row.epoch,
                    "validation_loss": row.validation_loss,
                }
                for row, path in zip(self.rows, self.paths, strict=True)
            ],
            "validation": {
                "source": self.source,
                "points": [
                    {"step": p.step, "epoch": p.epoch, "loss": p.loss, "train_loss": p.train_loss} for p in self.points
                ],
                "tolerance": validation.TOLERANCE,
            },
            "suggestion": self.suggestion.to_json() if self.suggestion else None,
            "early_stop": self.early_stop,
        }


def _number(value: Any, kind: type) -> Any:
    try:
        return kind(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _metadata(path: Path) -> dict[str, str]:
    try:
        return read_header(path).metadata
    except FileFormatError:
        return {}


def run_epochs(files: Sequence[tuple[Path, str]], work_dir: Path | None = None) -> RunEpochs:
    """``files`` ((path, label), the final file last, as ``results.output_paths`` lists them) as rows with
    their steps and validation losses, the run's history and the suggestion among the files."""
    rows, metadata = [], []
    for path, label in files:
        data = _metadata(path)
        metadata.append(data)
        rows.append(
            GridRow(
                label,
                path.stem,
                _number(data.get("ss_steps"), int),
                _number(data.get("ss_epoch"), int),
                _number(data.get("train_tools_validation_loss"), float),
            )
        )
    history = validation.read_history(work_dir) if work_dir is not None else None
    if history is None:  # no run folder: the newest file that carries the history
        for data in reversed(metadata):
            try:
                history = json.loads(data["train_tools_validation"])
                break
            except (KeyError, ValueError):
                continue
    history = history if isinstance(history, dict) else {}
    points = validation.points_from_json(history)
    saved = [row.step for row in rows if row.step is not None]
    return RunEpochs(
        tuple(rows),
        tuple(path for path, _label in files),
        tuple(points),
        str(history.get("source") or ""),
        validation.suggest(points, saved) if saved else None,
        str(history.get("early_stop") or ""),
    )
