from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image
from test_dataset_support import write_image

from lora_ext.dataset.thumbnails import thumbnail_path
from lora_ext.errors import DatasetError


def test_thumbnail_is_made_once_then_served_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = write_image(tmp_path / "big.jpg", (200, 0, 0), size=(600, 300))
    first = thumbnail_path(image, tmp_path / "cache", max_side=64)
    with Image.open(first) as thumb:
        assert thumb.size == (64, 32)

    def refuse(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(Image, "open", refuse)
    assert thumbnail_path(image, tmp_path / "cache", max_side=64) == first


def test_a_changed_image_gets_a_new_thumbnail(tmp_path: Path) -> None:
    image = write_image(tmp_path / "a.png", (0, 0, 200), size=(40, 40))
    first = thumbnail_path(image, tmp_path / "cache")
    write_image(image, (0, 200, 0), size=(50, 40))
    os.utime(image, ns=(1, 1))
    second = thumbnail_path(image, tmp_path / "cache")
    assert second != first
    with Image.open(second) as thumb:
        assert thumb.size == (50, 40) and thumb.getpixel((5, 5))[1] > 150


def test_an_unreadable_image_is_a_dataset_error(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"nope")
    with pytest.raises(DatasetError, match="No thumbnail"):
        thumbnail_path(tmp_path / "bad.png", tmp_path / "cache")
    with pytest.raises(DatasetError, match="cannot be read"):
        thumbnail_path(tmp_path / "missing.png", tmp_path / "cache")
