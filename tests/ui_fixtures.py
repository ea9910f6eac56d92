"""Files for the UI tests: two real images and one broken file, and a tagger folder."""

from __future__ import annotations

from pathlib import Path

from PIL import Image


def write_images(folder: Path) -> list[Path]:
    """``red.png``, ``blue.png`` (64×64, real) and ``broken.png`` (text renamed .png) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    red = folder / "red.png"
    blue = folder / "blue.png"
    Image.new("RGB", (64, 64), (220, 30, 30)).save(red)
    Image.new("RGB", (64, 64), (30, 30, 220)).save(blue)
    broken = folder / "broken.png"
    broken.write_bytes(b"this is not an image at all")
    return [red, blue, broken]


def write_tagger(tagger_dir: Path, name: str = "tiny-tagger") -> Path:
    """A tiny WD-style tagger in ``tagger_dir/name`` (red images get red_theme, blue ones blue_theme)."""
    from onnx_tagger_fixture import build_tiny_tagger

    return build_tiny_tagger(tagger_dir / name, dynamic_batch=True)
