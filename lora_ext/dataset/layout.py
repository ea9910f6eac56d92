"""The on-disk layout of a dataset folder, shared by loading, ingestion, export and training.

A dataset folder holds images with a ``.txt`` caption beside each one, either at
its top level or inside kohya-style ``N_name`` sub-folders, where ``N`` is the
number of repeats. Hidden files and folders (``.ingest-index.json``, temp files)
are never part of the dataset.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from lora_ext.dataset.names import validate_name
from lora_ext.errors import DatasetError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})
CAPTION_EXTENSION = ".txt"
CAPTION_EXTENSIONS = (".txt", ".caption")  # read in this order; written as .txt
_REPEAT_FOLDER = re.compile(r"^(\d+)_(.+)$")


@dataclass(frozen=True)
class DatasetFolder:
    """One folder of training images and how often each is repeated per epoch."""

    path: Path
    repeats: int
    class_tokens: str  # kohya's caption for images without a caption file
    image_count: int


def parse_repeat_folder(name: str) -> tuple[int, str] | None:
    """``"10_my char"`` → ``(10, "my char")``; ``None`` for a name without a repeat prefix."""
    match = _REPEAT_FOLDER.match(name)
    if not match or int(match.group(1)) < 1:
        return None
    return int(match.group(1)), match.group(2)


def repeat_folder_name(repeats: int, name: str) -> str:
    """The kohya folder name for ``name`` repeated ``repeats`` times per epoch: ``"10_my char"``."""
    if not isinstance(repeats, int) or repeats < 1:
        raise DatasetError(f"Repeats must be a whole number of 1 or more, not {repeats!r}.")
    return validate_name(f"{repeats}_{validate_name(name, 'folder name')}", "folder name")


def is_image_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def folder_images(folder: Path) -> list[Path]:
    """The images directly inside ``folder``, sorted by name (``os.scandir`` only: nothing is opened)."""
    with os.scandir(folder) as entries:
        return [folder / name for name in sorted(e.name for e in entries if e.is_file() and is_image_name(e.name))]


def list_images(dataset_dir: Path) -> list[str]:
    """Relative POSIX paths of every image in the dataset (top level and one folder deep), sorted."""
    if not dataset_dir.is_dir():
        raise DatasetError(f"The dataset folder {dataset_dir} does not exist.")
    found = [path.name for path in folder_images(dataset_dir)]
    with os.scandir(dataset_dir) as entries:
        for entry in entries:
            if entry.is_dir() and not entry.name.startswith("."):
                found.extend(f"{entry.name}/{path.name}" for path in folder_images(Path(entry.path)))
    found.sort()
    return found


def dataset_folders(dataset_dir: Path, default_repeats: int = 1, default_name: str = "dataset") -> list[DatasetFolder]:
    """The folders a trainer should read, with their repeats.

    Top-level images count as one folder with ``default_repeats``; ``N_name``
    sub-folders keep their own ``N``. Other sub-folders are not part of training.
    """
    counts: dict[str, int] = {}
    for relative in list_images(dataset_dir):
        folder = relative.rpartition("/")[0]
        counts[folder] = counts.get(folder, 0) + 1
    folders: list[DatasetFolder] = []
    for folder, count in sorted(counts.items()):
        if not folder:
            folders.append(DatasetFolder(dataset_dir, default_repeats, default_name, count))
            continue
        parsed = parse_repeat_folder(folder)
        if parsed is not None:
            folders.append(DatasetFolder(dataset_dir / folder, parsed[0], parsed[1], count))
    return folders
