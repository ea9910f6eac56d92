"""Export as a use case: a version's dataset as kohya ``N_name`` folders or a zip of them, captions included.

The page, the REST API and the CLI (``python -m lora_ext export``) all export here.
An export goes into the version's ``exports/`` folder under a new name
(``<project>_<version>_<time>.zip`` or the same without ``.zip`` for a folder), so
nothing is ever written over and every path stays inside that folder; the REST API
hands a zip out by its file name only. Images at the dataset's top level go into
``<repeats>_<name>``: the repeats the version's training uses and, as the folder's
name (kohya's caption for an image without one), the trigger word or the project's name.
"""

from __future__ import annotations

import time
from pathlib import Path

from lora_ext.app import train_settings
from lora_ext.app.context import Context
from lora_ext.config import TrainConfig
from lora_ext.dataset.export import ExportReport, export_kohya, export_zip
from lora_ext.dataset.names import sanitize_filename
from lora_ext.dataset.projects import VersionPaths
from lora_ext.errors import ConfigError, DatasetError
from lora_ext.locking import dataset_lock
from lora_ext.paths import resolve_inside

FORMATS = ("zip", "folder")


def _saved_settings(paths: VersionPaths) -> TrainConfig:
    """The version's training settings (``config/train.toml``), or the defaults when it has none (or a bad one)."""
    try:
        saved = train_settings.saved_values(paths.config)
    except ConfigError:
        saved = None
    return TrainConfig(**saved) if saved else TrainConfig()


def export_version(
    ctx: Context,
    project: str | None,
    version: str | None,
    kind: str = "zip",
    repeats: int | None = None,
    name: str | None = None,
    destination: Path | None = None,
) -> ExportReport:
    """Export the version's dataset into its ``exports/`` folder (``kind``: ``zip`` or ``folder``).

    ``repeats`` and ``name`` are for the top-level images' folder; by default the version's saved
    ``default_repeats`` and its trigger word (or the project's name). ``destination``: the command
    line's own choice of a zip or a new folder (the page and the REST API never give one)."""
    if kind not in FORMATS:
        raise DatasetError(f"Unknown export format {kind}.", hint="use zip or folder")
    paths = ctx.version(project, version)
    saved = _saved_settings(paths)
    repeats = int(repeats) if repeats else saved.default_repeats
    name = (name or "").strip() or saved.trigger_word.strip() or paths.project
    if destination is not None:
        target = Path(destination)
    else:
        stem = f"{paths.project}_{paths.version}_{time.strftime('%Y%m%d-%H%M%S')}"
        paths.exports.mkdir(parents=True, exist_ok=True)
        target = _free(paths.exports, sanitize_filename(stem, fallback="export"), ".zip" if kind == "zip" else "")
    with dataset_lock(paths.dataset):  # a caption save or an ingestion is never exported half done
        if kind == "zip":
            return export_zip(paths.dataset, target, repeats, name)
        return export_kohya(paths.dataset, target, repeats, name)


def _free(folder: Path, stem: str, suffix: str) -> Path:
    """``stem + suffix`` in ``folder``, or ``stem-2 + suffix``… when two exports start in the same second."""
    candidate, number = folder / f"{stem}{suffix}", 1
    while candidate.exists():
        number += 1
        candidate = folder / f"{stem}-{number}{suffix}"
    return candidate


def exported_zip(ctx: Context, project: str | None, version: str | None, file_name: str) -> Path:
    """A zip the version exported, by its name; never a path outside the version's ``exports/`` folder."""
    folder = ctx.version(project, version).exports
    path = resolve_inside(folder, file_name, "the exports folder")
    if path.suffix.lower() != ".zip" or not path.is_file():
        raise DatasetError(f"There is no exported zip called {file_name}.", hint="export the dataset first")
    return path


def describe(report: ExportReport) -> str:
    """The line the page shows after an export."""
    folders = ", ".join(f"{name}" for name in report.folders)
    return f"Exported {report.images} images and {report.captions} captions to {report.destination} ({folders})"
