"""Checking one dropped image and turning it into what a trainer can read.

``prepare_image`` works on bytes and returns bytes: the original file is never
opened for writing. Images that need no change (8-bit RGB or grey JPEG, PNG or
WebP, upright) keep their exact bytes; anything else is re-encoded as PNG
(lossless) and each change is reported as a notice.

Size: an image up to ``max_pixels`` (64 MP) is kept at its size. A larger photo
(a 9000×9000 camera picture is 81 MP) is scaled down to ``scaled_side`` pixels on
its long side — far more than any training resolution — with a notice saying so.
Past ``bomb_pixels`` the file is refused unopened as a decompression bomb: the
limit is Pillow's own (twice ``Image.MAX_IMAGE_PIXELS``, about 179 MP), at which
``Image.open`` itself refuses, since decoding it would take gigabytes of memory.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lora_ext.errors import DatasetError

# Formats Pillow reads that we accept, and the extension used when bytes are kept as they are.
ACCEPTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "GIF", "TIFF"})
_KEEP_AS_IS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp"}
INPUT_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
UNSUPPORTED_EXTENSIONS = {
    ".heic": "HEIC (iPhone photo)",
    ".heif": "HEIF",
    ".avif": "AVIF",
    ".jxl": "JPEG XL",
    ".psd": "Photoshop (PSD)",
    ".psb": "Photoshop (PSB)",
    ".xcf": "GIMP (XCF)",
    ".kra": "Krita",
    ".clip": "Clip Studio",
    ".svg": "SVG",
    ".raw": "camera RAW",
    ".cr2": "camera RAW",
    ".cr3": "camera RAW",
    ".nef": "camera RAW",
    ".arw": "camera RAW",
    ".dng": "camera RAW",
}
DEFAULT_MAX_PIXELS = 64 * 1024 * 1024  # kept at their size up to this; larger ones are scaled down
DEFAULT_BOMB_PIXELS = 2 * Image.MAX_IMAGE_PIXELS  # refused past this, as Pillow's Image.open refuses
DEFAULT_SCALED_SIDE = 4096  # the long side of an image scaled down on import
_EXIF_ORIENTATION = 0x0112
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, struct.error, EOFError, IndexError, Image.DecompressionBombError)


class ImageRejected(DatasetError):
    """One dropped file that cannot become a training image; the reason is its ``user_message``."""


@dataclass(frozen=True)
class PreparedImage:
    data: bytes
    extension: str  # ".png", ".jpg"…
    width: int
    height: int
    notices: tuple[str, ...] = ()


def unsupported_reason(name: str) -> str | None:
    """Why a file name is not an image we take, or ``None`` when its extension looks fine."""
    extension = os.path.splitext(name)[1].lower()
    if extension in UNSUPPORTED_EXTENSIONS:
        return f"{UNSUPPORTED_EXTENSIONS[extension]} files are not supported; export it as PNG or JPEG first"
    if extension not in INPUT_EXTENSIONS:
        return f"not an image ({extension or 'no extension'})"
    return None


def _open(data: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():  # large but not a bomb: scaled down below, not worth a console warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageRejected("not a readable image (damaged, or a format Pillow cannot read)") from None
    except Image.DecompressionBombError:
        raise ImageRejected("refused: the image is so large it looks like a decompression bomb") from None
    except _DECODE_ERRORS as error:
        raise ImageRejected(f"damaged image ({error})") from None


def _to_8bit(image: Image.Image) -> Image.Image:
    """16/32-bit grey ("I;16", "I", "F") → 8-bit grey, scaled rather than clipped."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16"):
        top = 65535.0
    elif image.mode == "F":
        top = 1.0 if values.max(initial=0.0) <= 1.0 else 255.0
    else:  # "I": 32-bit, in practice a 16-bit PNG; values that fit in 8 bits are taken as 8-bit
        top = 255.0 if values.max(initial=0) <= 255 else 65535.0
    return Image.fromarray(np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")


def _flatten_alpha(image: Image.Image, background: tuple[int, int, int]) -> tuple[Image.Image, str | None]:
    rgba = image.convert("RGBA")
    low, _high = rgba.getchannel("A").getextrema()
    if low == 255:
        return rgba.convert("RGB"), None
    canvas = Image.new("RGB", rgba.size, background)
    canvas.paste(rgba, mask=rgba.getchannel("A"))
    return canvas, "transparent areas were filled with a plain background"


def _normalise_mode(image: Image.Image, background: tuple[int, int, int]) -> tuple[Image.Image, list[str]]:
    notices: list[str] = []
    mode = image.mode
    if mode in ("RGB", "L"):
        return image, notices
    if mode == "P":
        has_alpha = "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
        notices.append("palette image converted to RGB")
        if not has_alpha:
            return image, notices
        mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        notices.append("16-bit image reduced to 8-bit")
        return _to_8bit(image), notices
    if mode == "CMYK":
        notices.append("CMYK image converted to RGB")
        return image.convert("RGB"), notices
    if mode in _ALPHA_MODES:
        image, notice = _flatten_alpha(image, background)
        notices.append(notice or "unused alpha channel removed")
        return image, notices
    if mode == "1":
        return image.convert("L"), notices
    notices.append(f"{mode} image converted to RGB")
    return image.convert("RGB"), notices


def _scaled_size(width: int, height: int, max_pixels: int, scaled_side: int) -> tuple[int, int]:
    """The size an image over ``max_pixels`` is scaled to: ``scaled_side`` on its long side, within ``max_pixels``."""
    factor = min(scaled_side / max(width, height), (max_pixels / (width * height)) ** 0.5, 1.0)
    return max(1, int(width * factor)), max(1, int(height * factor))


def prepare_image(
    data: bytes,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] = (255, 255, 255),
    bomb_pixels: int = DEFAULT_BOMB_PIXELS,
    scaled_side: int = DEFAULT_SCALED_SIDE,
) -> PreparedImage:
    """Validate an image's bytes and return the bytes to store; ``ImageRejected`` says why not."""
    probe = _open(data)
    if probe.format not in ACCEPTED_FORMATS:
        raise ImageRejected(f"{probe.format} images are not supported; export it as PNG or JPEG first")
    width, height = probe.size
    if width < 1 or height < 1:
        raise ImageRejected("the image has no pixels")
    if width * height > bomb_pixels:
        raise ImageRejected(
            f"refused: {width}×{height} is {width * height / 1e6:.0f} megapixels, over the "
            f"{bomb_pixels / 1e6:.0f} MP limit (a possible decompression bomb)"
        )
    target = _scaled_size(width, height, max_pixels, scaled_side) if width * height > max_pixels else None
    try:
        probe.verify()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if target is not None:
                image.draft(image.mode, target)  # a JPEG decodes at 1/2, 1/4 or 1/8 size: far less memory and time
            image.load()
    except _DECODE_ERRORS as error:
        raise ImageRejected(f"damaged or truncated image ({error})") from None
    notices: list[str] = []
    changed = False
    # MPO is a camera JPEG with a second (depth or preview) picture, not an animation.
    if probe.format != "MPO" and getattr(image, "n_frames", 1) > 1:
        image.seek(0)
        image = image.copy()
        notices.append("animated or multi-page image: only the first frame was kept")
        changed = True
    if image.getexif().get(_EXIF_ORIENTATION, 1) not in (1, None):
        image = ImageOps.exif_transpose(image)
        notices.append("camera rotation (EXIF orientation) applied")
        changed = True
    image, mode_notices = _normalise_mode(image, background)
    notices.extend(mode_notices)
    changed = changed or bool(mode_notices) or image.mode not in ("RGB", "L")
    if target is not None:
        upright = _scaled_size(image.width, image.height, max_pixels, scaled_side)
        image = image.resize(upright, Image.Resampling.LANCZOS)
        notices.append(
            f"scaled down from {width}×{height} ({width * height / 1e6:.0f} megapixels) to {image.width}×{image.height}"
        )
        changed = True
    if not changed and probe.format in _KEEP_AS_IS:
        return PreparedImage(data, _KEEP_AS_IS[probe.format], width, height, tuple(notices))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    if probe.format not in _KEEP_AS_IS and not notices:
        notices.append(f"{probe.format} converted to PNG")
    return PreparedImage(buffer.getvalue(), ".png", image.width, image.height, tuple(notices))
