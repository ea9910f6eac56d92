"""Image → model input, following the SmilingWolf v3 reference contract.

Contract (docs/tagger.md, "Preprocessing contract"): EXIF orientation applied; any alpha composited
onto white; padded to a centred white square of side max(w, h) (the odd pixel
goes right/bottom); resized with PIL BICUBIC to the model's side only when the
side differs (so small images are upscaled too); float32 0–255; RGB → BGR; HWC.

Undecodable files are rejected with ``FileFormatError`` naming the reason. A
truncated file is never decoded "as far as it goes" (toriato sets
``LOAD_TRUNCATED_IMAGES``): a half-grey image yields wrong tags.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lora_ext.errors import FileFormatError

WHITE = (255, 255, 255)
# PIL's own warning limit (about 89.5 megapixels), applied as a hard limit here.
DEFAULT_MAX_PIXELS = 89_478_485
_EXIF_ORIENTATION = 0x0112
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


def _reject(reason: str) -> FileFormatError:
    return FileFormatError(reason)


def _kind(path: Path) -> str:
    return path.suffix.lstrip(".").upper() or "image"


def open_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode ``path`` fully and apply its EXIF orientation; ``FileFormatError`` if it cannot be used."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise _reject(f"cannot read the file ({error.strerror or error})") from error
    if size == 0:
        raise _reject("empty file (0 bytes)")
    try:
        with Image.open(path) as image:
            pixels = image.width * image.height
            if pixels > max_pixels:
                raise _reject(f"image too large ({image.width}×{image.height}, possible decompression bomb)")
            image.load()
            return upright(image)
    except Image.DecompressionBombError as error:
        raise _reject("image too large (possible decompression bomb)") from error
    except UnidentifiedImageError as error:
        raise _reject(
            f"not an image (the content of this .{_kind(path).lower()} file is not a known image format)"
        ) from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        message = str(error)
        if "truncated" in message or "broken data stream" in message or isinstance(error, EOFError):
            raise _reject(f"truncated {_kind(path)} ({message or 'ends early'})") from error
        raise _reject(f"corrupt {_kind(path)} ({message})") from error


def upright(image: Image.Image) -> Image.Image:
    """``image`` turned upright as its EXIF orientation says (itself when already upright)."""
    orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    if orientation in (None, 1):
        return image  # fully loaded pixels stay usable after the file is closed; no copy needed
    return ImageOps.exif_transpose(image)


def to_rgb_on_white(image: Image.Image) -> Image.Image:
    """Any PIL mode → 8-bit RGB, with transparency composited onto white."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit greyscale: PIL's own convert clips at 255 (nearly all white); scale instead.
        values = np.asarray(image, dtype=np.float64)
        if image.mode != "I" or values.max(initial=0) > 255:
            values = values / 257.0
        image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.rint(np.asarray(image)), 0, 255).astype(np.uint8), "L")
    has_alpha = image.mode in _ALPHA_MODES or "transparency" in image.info
    if not has_alpha:
        return image if image.mode == "RGB" else image.convert("RGB")
    rgba = image.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (*WHITE, 255)), rgba).convert("RGB")


def pad_and_resize(image: Image.Image, side: int) -> Image.Image:
    """Centre an RGB image on a white square of side max(w, h), then BICUBIC-resize to ``side``."""
    width, height = image.size
    square = max(width, height)
    canvas = Image.new("RGB", (square, square), WHITE)
    canvas.paste(image, ((square - width) // 2, (square - height) // 2))
    if square != side:
        canvas = canvas.resize((side, side), Image.BICUBIC)
    return canvas


def to_model_input(image: Image.Image, side: int) -> np.ndarray:
    """A decoded image → float32 BGR array [side, side, 3] with values 0–255."""
    try:
        rgb = to_rgb_on_white(image)
    except (ValueError, OSError) as error:  # PIL has no conversion for a few exotic modes
        raise _reject(f"unsupported colour mode {image.mode} ({error})") from error
    square = np.asarray(pad_and_resize(rgb, side))  # uint8 [side, side, 3], RGB
    return square[:, :, ::-1].astype(np.float32)  # BGR, contiguous, in one copy


def load_model_input(path: Path, side: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode ``path`` and prepare it for the model; ``FileFormatError`` names why it cannot be."""
    return to_model_input(open_image(path, max_pixels), side)
