"""Rendering a grid through a host: every cell by the host's own generator (``Host.generate``: the WebUI's
``process_images``, the diffusers pipeline) with ``<lora:…>`` applied by whichever loader owns it, then the
labelled image, the cells and ``grid.json`` in one folder.

The model is handed back as it was: the networks the last cells merged are put back at the end, cancelled or
not (``Host.restore_prompt_networks``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_ext.fileio import atomic_path, write_text_atomic
from lora_ext.grid.image import RowLabel, compose
from lora_ext.grid.spec import GridCell, GridSpec
from lora_ext.host import GenerationRequest, Host

GRID_IMAGE = "grid.png"
GRID_JSON = "grid.json"
CELLS = "cells"

Report = Callable[[int, int, str], None]  # (renders done, renders, line)


@dataclass(frozen=True)
class GridResult:
    """A rendered (or cancelled) grid: its image and cells in ``folder``."""

    spec: GridSpec
    folder: Path
    image: Any  # the composed PIL image
    image_path: Path
    cells: tuple[tuple[GridCell, Path], ...]  # every rendered cell and its file
    render_seconds: tuple[float, ...]  # each render's wall time, in order
    cancelled: bool
    extra: Mapping[str, Any]

    @property
    def seconds(self) -> float:
        return sum(self.render_seconds)

    def to_json(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "image": str(self.image_path),
            "folder": str(self.folder),
            "cancelled": self.cancelled,
            "rows": [
                {
                    "label": r.label,
                    "lora": r.lora,
                    "step": r.step,
                    "epoch": r.epoch,
                    "validation_loss": r.validation_loss,
                }
                for r in spec.rows
            ],
            "weights": list(spec.weights),
            "prompts": list(spec.blocks),
            "negative_prompt": spec.negative,
            "seed": spec.seed,
            "steps": spec.steps,
            "width": spec.width,
            "height": spec.height,
            "cfg_scale": spec.cfg_scale,
            "cells": [
                {"block": c.block, "row": c.row, "column": c.column, "prompt": c.prompt, "path": str(path)}
                for c, path in self.cells
            ],
            "renders": len(self.render_seconds),
            "seconds": round(self.seconds, 3),
            **self.extra,
        }


def caption(spec: GridSpec) -> str:
    """The settings every cell shares (and the prompt, when there is one)."""
    settings = f"seed {spec.seed} · {spec.steps} steps · {spec.width}×{spec.height} · CFG {spec.cfg_scale:g}"
    if spec.negative.strip():
        settings += f" · negative: {spec.negative.strip()}"
    return f"{spec.blocks[0]} — {settings}" if len(spec.blocks) == 1 else settings


def row_labels(spec: GridSpec, marks: Mapping[int, str]) -> list[RowLabel]:
    """Each row's file and validation loss; ``marks``: row index → its mark ("suggested")."""
    return [
        RowLabel(
            (row.label,) + ((f"val {row.validation_loss:.4f}",) if row.validation_loss is not None else ()),
            marks.get(index, ""),
        )
        for index, row in enumerate(spec.rows)
    ]


def render_grid(
    host: Host,
    spec: GridSpec,
    folder: Path,
    report: Report | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    marks: Mapping[int, str] | None = None,
    extra: Mapping[str, Any] | None = None,
    on_cell: Callable[[GridCell, Path], None] | None = None,
) -> GridResult:
    """Render every cell of ``spec`` on ``host`` into ``folder`` (``cells/``, ``grid.png``, ``grid.json``).

    ``report`` gets one line per sampler step ("cell 3/13: epoch 2 @ 0.7 (sampler step 5/20)"); ``cancelled``
    is asked before each render (a render a host stopped half-way is dropped). ``extra`` goes into grid.json;
    ``on_cell`` hears of each cell saved.
    """
    renders = spec.renders()
    report = report or (lambda done, total, text: None)
    cells_dir = folder / CELLS
    cells_dir.mkdir(parents=True, exist_ok=True)
    images: dict[tuple[int, int, int], Any] = {}
    saved: list[tuple[GridCell, Path]] = []
    seconds: list[float] = []
    stopped = False
    try:
        for number, group in enumerate(renders, start=1):
            if cancelled():
                stopped = True
                break
            image, took = _render(host, spec, group[0], _reporter(report, number, len(renders), spec, group[0]))
            if cancelled():  # the host may have stopped this render half-way: not a cell
                stopped = True
                break
            seconds.append(took)
            for cell in group:
                path = cells_dir / cell.name
                with atomic_path(path) as tmp:
                    image.save(tmp, format="PNG")
                images[(cell.block, cell.row, cell.column)] = image
                saved.append((cell, path))
                if on_cell is not None:
                    on_cell(cell, path)
    finally:
        host.restore_prompt_networks()
    report(len(seconds), len(renders), "composing the grid")
    columns = [f"weight {weight:g}" for weight in spec.weights]
    titles = [f"{index + 1}: {prompt}" for index, prompt in enumerate(spec.blocks)] if len(spec.blocks) > 1 else [""]
    grid = compose(images, titles, row_labels(spec, marks or {}), columns, caption(spec), (spec.width, spec.height))
    image_path = folder / GRID_IMAGE
    with atomic_path(image_path) as tmp:
        grid.save(tmp, format="PNG")
    result = GridResult(spec, folder, grid, image_path, tuple(saved), tuple(seconds), stopped, dict(extra or {}))
    write_text_atomic(folder / GRID_JSON, json.dumps(result.to_json(), ensure_ascii=False, indent=1) + "\n")
    return result


def cell_caption(spec: GridSpec, cell: GridCell) -> str:
    """``epoch 2 @ 0.7``; a weight-0 cell is the base model's, whatever its row."""
    return "base model" if cell.weight == 0 else f"{spec.rows[cell.row].label} @ {cell.weight:g}"


def _reporter(report: Report, number: int, total: int, spec: GridSpec, cell: GridCell) -> Callable[[int, int], None]:
    what = cell_caption(spec, cell)

    def on_step(step: int, steps: int) -> None:
        report(number - 1, total, f"cell {number}/{total}: {what} (sampler step {step}/{steps})")

    return on_step


def _render(host: Host, spec: GridSpec, cell: GridCell, on_step: Callable[[int, int], None]) -> tuple[Any, float]:
    request = GenerationRequest(
        prompt=cell.prompt,
        negative_prompt=spec.negative,
        seed=spec.seed,
        width=spec.width,
        height=spec.height,
        steps=spec.steps,
        cfg_scale=spec.cfg_scale,
        on_step=on_step,
    )
    on_step(0, spec.steps)
    started = time.perf_counter()
    image = host.generate(request)[0]
    return image, time.perf_counter() - started
