"""What a grid renders: rows = a run's saved files (epochs, then the final file), columns = weights, one block
of rows per prompt; the same seed in every cell, so a cell differs from its neighbours only by its file and
weight.

Pure values: ``cells`` lists every cell with its full prompt (``<lora:FILE:WEIGHT>`` added), and ``renders``
the images actually made — weight 0 is the base model, the same image for every file, so it is rendered once
per prompt and shared by the column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lora_ext.errors import ConfigError

DEFAULT_WEIGHTS = (0.0, 0.4, 0.7, 1.0)


@dataclass(frozen=True)
class GridRow:
    """One LoRA file of the run: ``lora`` is the name its ``<lora:…>`` token uses (the file's stem)."""

    label: str  # "epoch 2", "step 100", "final"
    lora: str
    step: int | None = None  # the step its weights are from (its metadata's ss_steps), when known
    epoch: int | None = None
    validation_loss: float | None = None


@dataclass(frozen=True)
class GridCell:
    """One cell: prompt block ``block``, row ``row`` (a file), column ``column`` (a weight)."""

    block: int
    row: int
    column: int
    weight: float
    prompt: str  # the full prompt, with the file's token (none at weight 0)

    @property
    def name(self) -> str:
        """The cell's file name in the grid's folder."""
        return f"p{self.block + 1}_r{self.row + 1:02d}_w{self.column + 1:02d}.png"


@dataclass(frozen=True)
class GridSpec:
    """Everything that decides a grid's images; the same spec gives the same grid."""

    rows: tuple[GridRow, ...]
    weights: tuple[float, ...] = DEFAULT_WEIGHTS
    prompts: tuple[str, ...] = ("",)
    negative: str = ""
    seed: int = 1234
    steps: int = 20
    width: int = 512
    height: int = 512
    cfg_scale: float = 7.0

    def __post_init__(self) -> None:
        if not self.rows:
            raise ConfigError("There is no LoRA file to put in the grid.", hint="train first, or check the name")
        if not self.weights:
            raise ConfigError("No weights to compare.", hint="write numbers such as 0, 0.4, 0.7, 1")
        if not any(prompt.strip() for prompt in self.prompts):
            raise ConfigError("The grid prompt is empty.", hint="type a prompt, e.g. the trigger word and a few tags")
        for name, value, low in (("steps", self.steps, 1), ("width", self.width, 8), ("height", self.height, 8)):
            if value < low:
                raise ConfigError(f"The grid's {name} must be at least {low}, not {value}.")

    @property
    def blocks(self) -> tuple[str, ...]:
        """The prompts that are not empty, one block of rows each."""
        return tuple(prompt.strip() for prompt in self.prompts if prompt.strip())

    def cells(self) -> list[GridCell]:
        """Every cell, block by block, row by row, weight by weight."""
        return [
            GridCell(block, row_index, column, weight, _prompt(prompt, row.lora, weight))
            for block, prompt in enumerate(self.blocks)
            for row_index, row in enumerate(self.rows)
            for column, weight in enumerate(self.weights)
        ]

    def renders(self) -> list[list[GridCell]]:
        """The images to make, each with the cells it fills: a weight-0 cell shares its block's base image."""
        groups: dict[tuple, list[GridCell]] = {}
        for cell in self.cells():
            key = (cell.block, "base") if cell.weight == 0 else (cell.block, cell.row, cell.column)
            groups.setdefault(key, []).append(cell)
        return list(groups.values())


def _prompt(prompt: str, lora: str, weight: float) -> str:
    return prompt if weight == 0 else f"{prompt} <lora:{lora}:{weight:g}>"


def parse_weights(text: str) -> tuple[float, ...]:
    """``"0, 0.4, 0.7, 1"`` → (0.0, 0.4, 0.7, 1.0)."""
    weights: list[float] = []
    for part in re.split(r"[,\s]+", text or ""):
        if not part:
            continue
        try:
            weights.append(float(part))
        except ValueError:
            raise ConfigError(f"{part!r} is not a weight", hint="write numbers such as 0, 0.4, 0.7, 1") from None
    if not weights:
        raise ConfigError("No weights to compare.", hint="write numbers such as 0, 0.4, 0.7, 1")
    return tuple(weights)


def parse_prompts(text: str) -> tuple[str, ...]:
    """One prompt a line (empty lines left out)."""
    return tuple(line.strip() for line in (text or "").splitlines() if line.strip())
