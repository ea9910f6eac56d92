"""Thumbnails for the gallery, made on first request and cached on disk.

Loading a dataset never decodes an image; the UI asks for a thumbnail when a
row becomes visible. The cache key is the image's path, size and modification
time, so an edited or replaced image gets a new thumbnail.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from lora_ext.errors import DatasetError
from lora_ext.fileio import atomic_path

DEFAULT_MAX_SIDE = 256


def thumbnail_path(
    image_path: str | os.PathLike[str], cache_dir: str | os.PathLike[str], max_side: int = DEFAULT_MAX_SIDE
) -> Path:
    """A JPEG thumbnail of ``image_path`` at most ``max_side`` pixels wide and high, made if not cached yet."""
    image = Path(image_path)
    try:
        stat = image.stat()
    except OSError as error:
        raise DatasetError(f"The image {image.name} cannot be read: {error.strerror or error}.") from None
    key = f"{image.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{max_side}"
    target = Path(cache_dir) / f"{hashlib.blake2b(key.encode('utf-8'), digest_size=16).hexdigest()}.jpg"
    if target.is_file():
        return target
    try:
        with Image.open(image) as opened:
            opened.draft("RGB", (max_side, max_side))  # JPEG: decode at reduced size, much faster
            small = ImageOps.exif_transpose(opened)
            small.thumbnail((max_side, max_side))
            small = small.convert("RGB")
        with atomic_path(target) as temp:
            small.save(temp, format="JPEG", quality=85)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise DatasetError(f"No thumbnail for {image.name}: {error}.") from None
    return target
