"""Helpers for the dataset tests: small generated images and folder snapshots (no tests here)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from PIL import Image

from lora_ext.locking import LOCK_NAME


def image_bytes(
    color: int | tuple[int, ...] = (200, 30, 30),
    size: tuple[int, int] = (8, 8),
    mode: str = "RGB",
    fmt: str = "PNG",
    **save,
) -> bytes:
    """A small single-colour image encoded in memory."""
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format=fmt, **save)
    return buffer.getvalue()


def write_image(path: Path, color: int | tuple[int, ...] = (200, 30, 30), **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = kwargs.pop("fmt", {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".gif": "GIF"}.get(path.suffix, "PNG"))
    path.write_bytes(image_bytes(color, fmt=fmt, **kwargs))
    return path


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder`` → (sha256, mtime_ns), to prove nothing was modified."""
    return {
        path.relative_to(folder).as_posix(): (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def files_under(folder: Path) -> list[str]:
    """Every file under ``folder`` but a dataset's lock file (``.train-tools.lock``, made by the first lock)."""
    return sorted(
        path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file() and path.name != LOCK_NAME
    )
