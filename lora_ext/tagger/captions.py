"""Caption files beside images: merging new tags with an existing caption, and safe writes.

``merge_caption`` is pure. ``save_caption`` writes through ``fileio`` (temp file +
rename, so never a half-written caption) and first keeps a numbered backup
(``photo.txt.000.bak``, ``.001.bak``…) of any non-empty caption it replaces. The
backup name ends in ``.bak`` so trainers never read it as a caption.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from lora_ext.dataset.captions import dedupe_tags, join_tags, parse_tags
from lora_ext.dataset.layout import CAPTION_EXTENSION
from lora_ext.errors import FileFormatError, UnsafePath
from lora_ext.fileio import write_text_atomic
from lora_ext.paths import resolve_inside

ExistingMode = Literal["skip", "overwrite", "append", "prepend"]
EXISTING_MODES: tuple[ExistingMode, ...] = ("skip", "overwrite", "append", "prepend")
MAX_BACKUPS = 1000


def caption_path(image_path: Path, extension: str = CAPTION_EXTENSION) -> Path:
    """The caption file of an image: same folder, same stem, ``extension``."""
    return image_path.with_suffix(extension)


def safe_caption_path(image_path: Path, extension: str = CAPTION_EXTENSION, root: Path | None = None) -> Path:
    """``caption_path``, refused (``UnsafePath``) when it leads out of ``root`` (default: the image's folder).

    A caption that is a link to a file elsewhere, or one inside a linked folder, is
    neither read nor written: its text would end up in the dataset, its target overwritten.
    """
    target = caption_path(image_path, extension)
    base = root if root is not None else image_path.parent
    try:
        relative = target.relative_to(base)
    except ValueError:
        raise UnsafePath(f"{target.name} is not inside the tagged folder.") from None
    return resolve_inside(base, relative, "the tagged folder")


def has_caption(existing: str | None) -> bool:
    """An empty or whitespace-only caption file counts as no caption."""
    return existing is not None and bool(existing.strip())


def merge_caption(existing: str | None, new_tags: Sequence[str], mode: ExistingMode) -> str | None:
    """The caption to write, or None to leave the existing caption as it is."""
    if mode not in EXISTING_MODES:
        raise ValueError(f"unknown existing-caption mode {mode!r}")
    if not has_caption(existing) or mode == "overwrite":
        tags = dedupe_tags(new_tags)
    elif mode == "skip":
        return None
    elif mode == "append":
        tags = dedupe_tags([*parse_tags(existing or ""), *new_tags])
    else:
        tags = dedupe_tags([*new_tags, *parse_tags(existing or "")])
    return join_tags(tags)


def read_caption(path: Path) -> str | None:
    """The caption text, or None when there is no caption file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise FileFormatError(f"cannot read its caption {path.name} ({error.strerror or error})") from error
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise FileFormatError(f"its caption {path.name} is not UTF-8 text; left untouched") from error


def backup_path(path: Path) -> Path:
    """The first free ``<caption>.NNN.bak`` beside ``path``."""
    for number in range(MAX_BACKUPS):
        candidate = path.with_name(f"{path.name}.{number:03d}.bak")
        if not candidate.exists():
            return candidate
    raise FileFormatError(f"{path.name} already has {MAX_BACKUPS} backups; remove some")


def save_caption(path: Path, text: str, existing: str | None, backup: bool = True) -> bool:
    """Write ``text`` to ``path`` (backing up a replaced caption). False when nothing changed."""
    if existing is not None and existing == text:
        return False
    if backup and has_caption(existing):
        write_text_atomic(backup_path(path), existing or "")
    write_text_atomic(path, text)
    return True
