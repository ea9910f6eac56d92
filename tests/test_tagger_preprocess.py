"""Preprocessing follows the v3 reference contract, checked against an independent numpy version.

The numpy reference below re-implements every step from the contract (white
composite, centred white square, PIL-style antialiased bicubic with a = -0.5,
BGR, float32) without calling the code under test, from pixel arrays the test
itself generated, so any deviation (no upscaling, edge padding, dropped alpha,
RGB order, wrong offsets) shows up.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lora_ext.errors import FileFormatError
from lora_ext.tagger.preprocess import load_model_input, open_image, to_model_input

SIDE = 64
RNG = np.random.default_rng(7)


# ---- the independent reference -------------------------------------------------


def _bicubic(x: np.ndarray) -> np.ndarray:
    a = -0.5
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x < 1, near, np.where(x < 2, far, 0.0))


def _resample_matrix(in_size: int, out_size: int) -> np.ndarray:
    """[out, in] weights of PIL's antialiased bicubic resampling along one axis."""
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = 2.0 * filter_scale
    matrix = np.zeros((out_size, in_size))
    for out in range(out_size):
        center = (out + 0.5) * scale
        low = max(int(center - support + 0.5), 0)
        high = min(int(center + support + 0.5), in_size)
        taps = np.arange(low, high)
        weights = _bicubic((taps - center + 0.5) / filter_scale)
        matrix[out, low:high] = weights / weights.sum()
    return matrix


def _reference_resize(square: np.ndarray, side: int) -> np.ndarray:
    horizontal = _resample_matrix(square.shape[1], side)
    vertical = _resample_matrix(square.shape[0], side)
    # PIL resamples horizontally first and stores 8-bit values between passes.
    rows = np.clip(np.rint(np.einsum("ow,hwc->hoc", horizontal, square)), 0, 255)
    return np.clip(np.rint(np.einsum("oh,hwc->owc", vertical, rows)), 0, 255)


def reference_input(rgba: np.ndarray, side: int = SIDE) -> np.ndarray:
    """The contract, from an [H, W, 4] (or [H, W, 3]) uint8 array of the upright image."""
    pixels = rgba.astype(np.float64)
    if pixels.shape[2] == 4:
        alpha = pixels[:, :, 3:] / 255.0
        pixels = np.rint(pixels[:, :, :3] * alpha + 255.0 * (1.0 - alpha))
    height, width = pixels.shape[:2]
    square_side = max(height, width)
    square = np.full((square_side, square_side, 3), 255.0)
    top, left = (square_side - height) // 2, (square_side - width) // 2
    square[top : top + height, left : left + width] = pixels
    if square_side != side:
        square = _reference_resize(square, side)
    return square[:, :, ::-1].astype(np.float32)


def assert_matches_reference(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape == (expected.shape[0], expected.shape[0], 3)
    assert actual.dtype == np.float32
    difference = np.abs(actual.astype(np.float64) - expected)
    # Fixed-point rounding in PIL's composite and resample: at most a couple of levels, rarely.
    assert difference.max() <= 2.0, difference.max()
    assert difference.mean() < 0.3, difference.mean()


def _smooth_rgb(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 / max(width - 1, 1), y * 255 / max(height - 1, 1), (x + y) % 97 * 2.6], axis=2)
    return np.clip(image + RNG.normal(0, 12, image.shape), 0, 255).astype(np.uint8)


def _save(array: np.ndarray, path: Path, mode: str | None = None, **params: object) -> Path:
    Image.fromarray(array, mode).save(path, **params)
    return path


# ---- the contract on real files -------------------------------------------------


@pytest.mark.parametrize(
    ("height", "width"),
    [(31, 45), (45, 31), (2, 3), (1, 1), (64, 40), (300, 1500), (1023, 769)],
    ids=["odd-landscape", "odd-portrait", "tiny", "one-pixel", "side-equals-target", "extreme-wide", "large-odd"],
)
def test_rgb_images_match_the_reference_contract(tmp_path: Path, height: int, width: int) -> None:
    pixels = _smooth_rgb(height, width)
    path = _save(pixels, tmp_path / "image.png")
    assert_matches_reference(load_model_input(path, SIDE), reference_input(pixels))


def test_image_that_is_already_square_at_model_size_is_not_resampled(tmp_path: Path) -> None:
    pixels = _smooth_rgb(SIDE, SIDE)
    path = _save(pixels, tmp_path / "exact.png")
    np.testing.assert_array_equal(load_model_input(path, SIDE), pixels[:, :, ::-1].astype(np.float32))


def test_alpha_is_composited_on_white_not_dropped(tmp_path: Path) -> None:
    rgb = _smooth_rgb(37, 50)
    alpha = np.tile(np.linspace(0, 255, 50).astype(np.uint8), (37, 1))
    alpha[:10] = 0  # fully transparent band: hidden colours must not leak through
    rgba = np.dstack([rgb, alpha])
    path = _save(rgba, tmp_path / "alpha.png", "RGBA")
    actual = load_model_input(path, SIDE)
    assert_matches_reference(actual, reference_input(rgba))
    assert np.abs(actual - reference_input(rgb)).mean() > 10  # a pipeline that drops alpha would fail above


def test_greyscale_with_alpha_is_composited_on_white(tmp_path: Path) -> None:
    grey = _smooth_rgb(30, 20)[:, :, 0]
    alpha = RNG.integers(0, 256, grey.shape, dtype=np.uint8)
    path = tmp_path / "la.png"
    Image.fromarray(np.dstack([grey, alpha]), "LA").save(path)
    expected = reference_input(np.dstack([grey, grey, grey, alpha]))
    assert_matches_reference(load_model_input(path, SIDE), expected)


def test_palette_with_transparent_index_is_composited_on_white(tmp_path: Path) -> None:
    indices = RNG.integers(0, 4, (40, 25), dtype=np.uint8)
    palette = np.array([[200, 10, 10], [10, 200, 10], [10, 10, 200], [0, 0, 0]], dtype=np.uint8)
    image = Image.fromarray(indices, "P")
    image.putpalette(palette.flatten().tolist())
    path = tmp_path / "palette.png"
    image.save(path, transparency=3)
    rgba = np.dstack([palette[indices], np.where(indices == 3, 0, 255).astype(np.uint8)])
    assert_matches_reference(load_model_input(path, SIDE), reference_input(rgba))


def test_cmyk_is_converted_to_rgb(tmp_path: Path) -> None:
    cmyk = RNG.integers(0, 256, (33, 21, 4), dtype=np.uint8)
    path = _save(cmyk, tmp_path / "cmyk.tif", "CMYK")
    ink = cmyk.astype(np.float64)
    rgb = np.rint((255 - ink[:, :, :3]) * (255 - ink[:, :, 3:]) / 255).astype(np.uint8)
    assert_matches_reference(load_model_input(path, SIDE), reference_input(rgb))


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    deep = (np.linspace(0, 65535, 48 * 30).reshape(30, 48)).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(deep).save(path)  # a 16-bit greyscale PNG ("I;16")
    grey = np.rint(deep / 257.0).astype(np.uint8)
    assert_matches_reference(load_model_input(path, SIDE), reference_input(np.dstack([grey] * 3)))


@pytest.mark.parametrize(("orientation", "quarter_turns"), [(3, 2), (6, -1), (8, 1)])
def test_exif_orientation_is_applied_before_padding(tmp_path: Path, orientation: int, quarter_turns: int) -> None:
    stored = _smooth_rgb(20, 44)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(stored, tmp_path / "rotated.png", exif=exif)
    upright = np.rot90(stored, k=quarter_turns)
    assert_matches_reference(load_model_input(path, SIDE), reference_input(upright))


def test_jpeg_decodes_like_pil_and_follows_the_contract(tmp_path: Path) -> None:
    path = _save(_smooth_rgb(90, 60), tmp_path / "photo.jpg", quality=90)
    decoded = np.asarray(Image.open(path).convert("RGB"))
    assert_matches_reference(load_model_input(path, SIDE), reference_input(decoded))


def test_in_memory_image_uses_the_same_contract() -> None:
    rgba = np.dstack([_smooth_rgb(17, 29), RNG.integers(0, 256, (17, 29), dtype=np.uint8)])
    assert_matches_reference(to_model_input(Image.fromarray(rgba, "RGBA"), SIDE), reference_input(rgba))


def test_output_is_bgr_not_rgb(tmp_path: Path) -> None:
    path = _save(np.full((8, 8, 3), (250, 20, 5), dtype=np.uint8), tmp_path / "red.png")
    centre = load_model_input(path, SIDE)[SIDE // 2, SIDE // 2]
    np.testing.assert_allclose(centre, [5, 20, 250], atol=1)


# ---- files that cannot be used ----------------------------------------------------


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def _truncated_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(_smooth_rgb(200, 300)).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.png", b"", "empty file"),
        ("cut.jpg", None, "truncated JPG"),
        ("notes.png", b"these are my notes, not a picture\n", "not an image"),
        ("bomb.png", _png_header_only(40_000, 40_000), "decompression bomb"),
        ("big.png", _png_header_only(10_000, 9_000), "decompression bomb"),
    ],
    ids=["zero-bytes", "truncated-jpeg", "text-renamed-png", "bomb-over-pil-limit", "bomb-over-warning-limit"],
)
def test_unusable_files_are_rejected_with_a_reason(
    tmp_path: Path, name: str, content: bytes | None, reason: str
) -> None:
    path = tmp_path / name
    path.write_bytes(_truncated_jpeg() if content is None else content)
    with pytest.raises(FileFormatError) as caught:
        open_image(path)
    assert reason in caught.value.user_message
    assert "\n" not in caught.value.one_line()


def test_missing_file_is_rejected_with_a_reason(tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match="cannot read"):
        open_image(tmp_path / "gone.png")


def test_colour_mode_pil_cannot_convert_is_rejected_not_crashing() -> None:
    with pytest.raises(FileFormatError, match="unsupported colour mode La"):
        to_model_input(Image.new("La", (4, 4)), SIDE)
