"""Export a dataset to a kohya ``N_name`` folder layout or a zip of it.

Top-level images go into ``<default_repeats>_<name>``; ``N_name`` sub-folders
keep their repeats. A folder export is built under a hidden name and renamed
into place, and a zip is written through a temp file, so a failed export leaves
nothing behind. Ingesting the export gives back the same images, captions and
repeats.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

from lora_ext.dataset.layout import CAPTION_EXTENSIONS, list_images, parse_repeat_folder, repeat_folder_name
from lora_ext.errors import DatasetError
from lora_ext.fileio import atomic_path
from lora_ext.paths import is_inside


@dataclass(frozen=True)
class ExportReport:
    destination: Path
    folders: dict[str, int]  # "10_cat" → 10
    images: int
    captions: int


def _plan(dataset_dir: Path, default_repeats: int, name: str) -> list[tuple[Path, str]]:
    """(source file, path inside the export) for every image and caption."""
    base = repeat_folder_name(default_repeats, name)
    plan: list[tuple[Path, str]] = []
    for relative in list_images(dataset_dir):
        folder, _, file_name = relative.rpartition("/")
        if not folder:
            target = base
        elif parse_repeat_folder(folder) is not None:
            target = folder
        else:
            target = f"{default_repeats}_{folder}"
        image = dataset_dir / relative
        plan.append((image, f"{target}/{file_name}"))
        for extension in CAPTION_EXTENSIONS:
            caption = image.with_suffix(extension)
            if not is_inside(dataset_dir, caption.relative_to(dataset_dir)):
                break  # a caption linking out of the dataset is never copied into an export
            if caption.is_file():
                plan.append((caption, f"{target}/{Path(file_name).stem}.txt"))
                break
    if not plan:
        raise DatasetError("The dataset has no images to export.", hint="add images first")
    return plan


def _report(destination: Path, plan: list[tuple[Path, str]]) -> ExportReport:
    folders: dict[str, int] = {}
    images = captions = 0
    for _source, arcname in plan:
        folder = arcname.split("/", 1)[0]
        parsed = parse_repeat_folder(folder)
        folders[folder] = parsed[0] if parsed else 1
        if arcname.endswith(".txt"):
            captions += 1
        else:
            images += 1
    return ExportReport(destination, dict(sorted(folders.items())), images, captions)


def export_kohya(
    dataset_dir: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    default_repeats: int = 1,
    name: str = "dataset",
) -> ExportReport:
    """Copy the dataset into ``destination`` (which must not exist or be empty) as ``N_name`` folders."""
    dataset, target = Path(dataset_dir), Path(destination)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DatasetError(f"{target} already exists and is not an empty folder.", hint="choose a new folder")
    plan = _plan(dataset, default_repeats, name)
    staging = target.with_name(f".export-{target.name}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for source, arcname in plan:
            (staging / arcname).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, staging / arcname)
        if target.exists():
            target.rmdir()
        os.replace(staging, target)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise DatasetError(f"Export to {target} failed: {error.strerror or error}.") from None
    return _report(target, plan)


def export_zip(
    dataset_dir: str | os.PathLike[str],
    zip_path: str | os.PathLike[str],
    default_repeats: int = 1,
    name: str = "dataset",
) -> ExportReport:
    """Write the dataset as a zip of ``N_name`` folders (images stored, captions compressed)."""
    dataset, target = Path(dataset_dir), Path(zip_path)
    plan = _plan(dataset, default_repeats, name)
    try:
        with atomic_path(target) as temp, zipfile.ZipFile(temp, "w") as archive:
            for source, arcname in plan:
                # Images are already compressed; deflating them again costs time for nothing.
                method = zipfile.ZIP_DEFLATED if arcname.endswith(".txt") else zipfile.ZIP_STORED
                archive.write(source, arcname, compress_type=method)
    except OSError as error:
        raise DatasetError(f"Export to {target} failed: {error.strerror or error}.") from None
    return _report(target, plan)
