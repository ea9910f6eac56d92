from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_dataset_support import files_under, image_bytes, snapshot, write_image

from lora_ext.dataset import ingest as ingest_module
from lora_ext.dataset.ingest import IngestOptions, ingest
from lora_ext.errors import DatasetError


def _reasons(report) -> dict[str, str]:
    return {Path(item.source.split(":")[-1]).name: item.reason for item in report.skipped}


def _notices(report, stored: str) -> tuple[str, ...]:
    return next(item.notices for item in report.added if item.stored == stored)


def _open(path: Path) -> Image.Image:
    image = Image.open(path)
    image.load()
    return image


def test_images_and_their_captions_are_added_and_originals_left_untouched(tmp_path: Path) -> None:
    source = tmp_path / "drop"
    write_image(source / "a.png", (255, 0, 0))
    write_image(source / "b.jpg", (0, 255, 0))
    write_image(source / "c.webp", (0, 0, 255))
    (source / "a.txt").write_text("1girl, smile", "utf-8")
    (source / "b.caption").write_text("\ufeffcat\r\n", "utf-8")
    before = snapshot(source)
    report = ingest([source], tmp_path / "dataset")
    assert sorted(item.stored for item in report.added) == ["a.png", "b.jpg", "c.webp"]
    assert report.skipped == ()
    dataset = tmp_path / "dataset"
    assert (dataset / "a.txt").read_text("utf-8") == "1girl, smile\n"
    assert (dataset / "b.txt").read_text("utf-8") == "cat\n"
    assert not (dataset / "c.txt").exists()
    assert (dataset / "a.png").read_bytes() == (source / "a.png").read_bytes()  # kept byte for byte
    assert snapshot(source) == before
    assert report.summary() == "3 image(s) added, 0 skipped"


def test_japanese_file_names_survive(tmp_path: Path) -> None:
    source = tmp_path / "猫の写真"
    write_image(source / "猫 01.png")
    (source / "猫 01.txt").write_text("猫, 可愛い", "utf-8")
    report = ingest([source], tmp_path / "データ")
    assert [item.stored for item in report.added] == ["猫 01.png"]
    assert (tmp_path / "データ" / "猫 01.txt").read_text("utf-8") == "猫, 可愛い\n"


def test_loose_dropped_files_pair_with_dropped_captions(tmp_path: Path) -> None:
    first, second = tmp_path / "upload1", tmp_path / "upload2"
    image = write_image(first / "x.png")
    caption = second / "x.txt"
    caption.parent.mkdir()
    caption.write_text("dropped together", "utf-8")
    report = ingest([image, caption], tmp_path / "dataset")
    assert report.added[0].caption == "x.txt"
    assert (tmp_path / "dataset" / "x.txt").read_text("utf-8") == "dropped together\n"


def test_a_loose_file_brings_the_caption_beside_it(tmp_path: Path) -> None:
    image = write_image(tmp_path / "src" / "y.png")
    (tmp_path / "src" / "y.txt").write_text("beside", "utf-8")
    ingest([image], tmp_path / "dataset")
    assert (tmp_path / "dataset" / "y.txt").read_text("utf-8") == "beside\n"


def test_kohya_folders_keep_their_repeats(tmp_path: Path) -> None:
    source = tmp_path / "train"
    write_image(source / "10_cat" / "a.png", (1, 1, 1))
    write_image(source / "10_cat" / "nested" / "b.png", (2, 2, 2))
    write_image(source / "3_dog" / "a.png", (3, 3, 3))
    write_image(source / "loose.png", (4, 4, 4))
    report = ingest([source], tmp_path / "dataset", IngestOptions(target_folder="5_misc"))
    assert report.folders == {"10_cat": 10, "3_dog": 3, "5_misc": 5}
    assert files_under(tmp_path / "dataset") == [
        ".ingest-index.json",
        "10_cat/a.png",
        "10_cat/b.png",
        "3_dog/a.png",
        "5_misc/loose.png",
    ]


def test_a_dropped_n_name_folder_itself_is_kept(tmp_path: Path) -> None:
    write_image(tmp_path / "4_style" / "a.png")
    report = ingest([tmp_path / "4_style"], tmp_path / "dataset")
    assert report.added[0].stored == "4_style/a.png"


def test_zip_traversal_and_absolute_entries_are_refused(tmp_path: Path) -> None:
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr(zipfile.ZipInfo("../../x.png"), image_bytes((1, 2, 3)))
        zipped.writestr(zipfile.ZipInfo("/abs.png"), image_bytes((4, 5, 6)))
        zipped.writestr(zipfile.ZipInfo("ok/../../../y.png"), image_bytes((7, 8, 9)))
        zipped.writestr("2_cat/good.png", image_bytes((10, 11, 12)))
        zipped.writestr("2_cat/good.txt", "cat")
        zipped.writestr("__MACOSX/2_cat/._good.png", b"resource fork")
    dataset = tmp_path / "deep" / "dataset"
    report = ingest([archive], dataset)
    assert [item.stored for item in report.added] == ["2_cat/good.png"]
    reasons = _reasons(report)
    assert set(reasons) == {"x.png", "abs.png", "y.png"}
    assert all("escape" in reason for reason in reasons.values())
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "deep" / "x.png").exists()
    assert files_under(tmp_path / "deep") == [
        "dataset/.ingest-index.json",
        "dataset/2_cat/good.png",
        "dataset/2_cat/good.txt",
    ]


def test_zip_japanese_names_are_kept_and_nested_zips_refused(tmp_path: Path) -> None:
    archive = tmp_path / "写真.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("猫/ねこ.png", image_bytes())
        zipped.writestr("inner.zip", b"PK")
    report = ingest([archive], tmp_path / "dataset")
    assert [item.stored for item in report.added] == ["ねこ.png"]
    assert "inside a zip" in _reasons(report)["inner.zip"]


def test_duplicates_by_content_are_skipped_with_a_notice(tmp_path: Path) -> None:
    write_image(tmp_path / "src" / "one.png", (9, 9, 9))
    write_image(tmp_path / "src" / "same.png", (9, 9, 9))
    report = ingest([tmp_path / "src"], tmp_path / "dataset")
    assert [item.stored for item in report.added] == ["one.png"]
    assert "duplicate of one.png" in _reasons(report)["same.png"]
    again = ingest([tmp_path / "src"], tmp_path / "dataset")
    assert again.added == () and len(again.skipped) == 2


def test_a_re_encoded_image_is_still_recognised_as_a_duplicate(tmp_path: Path) -> None:
    tiff = write_image(tmp_path / "src" / "scan.tif", fmt="TIFF")
    ingest([tiff], tmp_path / "dataset")
    again = ingest([tiff], tmp_path / "dataset")
    assert "duplicate" in _reasons(again)["scan.tif"]


@pytest.mark.parametrize(
    ("name", "words"), [("photo.heic", "HEIC"), ("art.psd", "Photoshop"), ("notes.pdf", "not an image")]
)
def test_unsupported_formats_get_a_clear_message(tmp_path: Path, name: str, words: str) -> None:
    (tmp_path / name).write_bytes(b"whatever")
    report = ingest([tmp_path / name], tmp_path / "dataset")
    assert words in _reasons(report)[name]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"this is text, not a picture", "not a readable image"),
        (image_bytes(size=(64, 64))[:60], "damaged"),
    ],
)
def test_damaged_images_are_skipped(tmp_path: Path, data: bytes, words: str) -> None:
    (tmp_path / "bad.png").write_bytes(data)
    report = ingest([tmp_path / "bad.png"], tmp_path / "dataset")
    assert words in _reasons(report)["bad.png"]
    assert files_under(tmp_path / "dataset") == [".ingest-index.json"]


def test_decompression_bomb_guard_refuses_huge_images_before_decoding(tmp_path: Path) -> None:
    write_image(tmp_path / "big.png", size=(40, 40))
    report = ingest([tmp_path / "big.png"], tmp_path / "dataset", IngestOptions(bomb_pixels=1000))
    assert "decompression bomb" in _reasons(report)["big.png"]


def test_a_large_photo_is_scaled_down_with_a_line_saying_so(tmp_path: Path) -> None:
    # A 9000×9000 camera photo (81 MP) is over the 64 MP kept as they are, far under a bomb.
    Image.new("RGB", (9000, 9000), (90, 140, 200)).save(tmp_path / "camera.jpg", quality=80)
    report = ingest([tmp_path / "camera.jpg"], tmp_path / "dataset")
    (added,) = report.added
    stored = _open(tmp_path / "dataset" / added.stored)
    assert stored.size == (4096, 4096)
    assert "scaled down from 9000×9000 (81 megapixels) to 4096×4096" in added.notices
    assert stored.getpixel((2000, 2000)) == pytest.approx((90, 140, 200), abs=3)


def test_scaling_keeps_the_aspect_and_stays_within_the_pixel_limit(tmp_path: Path) -> None:
    write_image(tmp_path / "wide.png", size=(80, 20))
    report = ingest([tmp_path / "wide.png"], tmp_path / "dataset", IngestOptions(max_pixels=400))
    (added,) = report.added
    assert _open(tmp_path / "dataset" / added.stored).size == (40, 10)
    assert any(notice.startswith("scaled down from 80×20") for notice in added.notices)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise for display
    Image.new("RGB", (20, 10), (120, 120, 120)).save(buffer, "JPEG", exif=exif)
    (tmp_path / "phone.jpg").write_bytes(buffer.getvalue())
    report = ingest([tmp_path / "phone.jpg"], tmp_path / "dataset")
    stored = _open(tmp_path / "dataset" / report.added[0].stored)
    assert stored.size == (10, 20)
    assert any("orientation" in notice for notice in report.added[0].notices)


def test_cmyk_becomes_rgb(tmp_path: Path) -> None:
    write_image(tmp_path / "print.jpg", (0, 255, 255, 0), mode="CMYK")
    report = ingest([tmp_path / "print.jpg"], tmp_path / "dataset")
    stored = _open(tmp_path / "dataset" / report.added[0].stored)
    assert stored.mode == "RGB"
    red, green, blue = stored.getpixel((4, 4))
    assert red > 200 and green < 60 and blue < 60
    assert "CMYK image converted to RGB" in report.added[0].notices


def test_sixteen_bit_grey_is_scaled_to_eight_bit(tmp_path: Path) -> None:
    values = np.array([[0, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "depth.png")
    report = ingest([tmp_path / "depth.png"], tmp_path / "dataset")
    stored = np.asarray(_open(tmp_path / "dataset" / "depth.png"))
    assert stored.dtype == np.uint8 and stored.tolist() == [[0, 128, 255]]
    assert "16-bit image reduced to 8-bit" in report.added[0].notices


def test_palette_with_transparency_and_alpha_are_flattened_on_white(tmp_path: Path) -> None:
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.putpixel((0, 0), 1)
    palette.save(tmp_path / "pal.png", transparency=0)
    rgba = Image.new("RGBA", (4, 4), (0, 0, 255, 0))
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    rgba.save(tmp_path / "alpha.png")
    Image.new("RGBA", (4, 4), (0, 200, 0, 255)).save(tmp_path / "opaque.png")
    report = ingest([tmp_path / name for name in ("pal.png", "alpha.png", "opaque.png")], tmp_path / "dataset")
    dataset = tmp_path / "dataset"
    pal, alpha, opaque = (_open(dataset / name) for name in ("pal.png", "alpha.png", "opaque.png"))
    assert pal.mode == "RGB" and pal.getpixel((0, 0)) == (255, 0, 0) and pal.getpixel((1, 1)) == (255, 255, 255)
    assert alpha.mode == "RGB" and alpha.getpixel((0, 0)) == (0, 0, 255) and alpha.getpixel((1, 1)) == (255, 255, 255)
    assert opaque.mode == "RGB" and opaque.getpixel((1, 1)) == (0, 200, 0)
    assert any("transparent" in notice for notice in _notices(report, "alpha.png"))
    assert not any("transparent" in notice for notice in _notices(report, "opaque.png"))


def test_animated_images_keep_the_first_frame_with_a_notice(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), color) for color in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    report = ingest([tmp_path / "anim.gif"], tmp_path / "dataset")
    assert report.added[0].stored == "anim.png"
    red, _green, blue = _open(tmp_path / "dataset" / "anim.png").convert("RGB").getpixel((2, 2))
    assert red > 200 and blue < 50
    assert any("first frame" in notice for notice in report.added[0].notices)


def test_names_are_sanitised_and_made_unique(tmp_path: Path) -> None:
    write_image(tmp_path / "dataset" / "a.png", (1, 1, 1))
    write_image(tmp_path / "src" / "A.jpg", (2, 2, 2))
    write_image(tmp_path / "src" / "a.webp", (3, 3, 3))
    write_image(tmp_path / "src" / "con.png", (4, 4, 4))
    write_image(tmp_path / "src" / "bad\x01name.png", (5, 5, 5))
    report = ingest([tmp_path / "src"], tmp_path / "dataset")
    assert sorted(item.stored for item in report.added) == ["A_2.jpg", "a_3.webp", "bad_name.png", "con_.png"]
    assert any("renamed" in notice for notice in _notices(report, "con_.png"))


def test_orphan_captions_and_missing_sources_are_reported(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "lonely.txt").write_text("no image", "utf-8")
    report = ingest([tmp_path / "src", tmp_path / "missing.png"], tmp_path / "dataset")
    reasons = _reasons(report)
    assert reasons["lonely.txt"] == "caption without a matching image"
    assert reasons["missing.png"] == "not found"


def test_a_caption_that_is_not_utf8_is_left_out_with_a_notice(tmp_path: Path) -> None:
    write_image(tmp_path / "src" / "a.png")
    (tmp_path / "src" / "a.txt").write_bytes("猫".encode("shift_jis"))
    report = ingest([tmp_path / "src"], tmp_path / "dataset")
    assert report.added[0].caption is None
    assert any("UTF-8" in notice for notice in report.added[0].notices)


def test_a_bad_target_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError):
        ingest([], tmp_path / "dataset", IngestOptions(target_folder="../up"))


def _source_with_three(tmp_path: Path) -> Path:
    source = tmp_path / "src"
    for index, name in enumerate("abc"):
        write_image(source / f"{name}.png", (index * 50, 0, 0))
        (source / f"{name}.txt").write_text(f"caption {name}", "utf-8")
    return source


def test_a_write_failing_mid_import_leaves_nothing_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _source_with_three(tmp_path)
    before = snapshot(source)
    real_replace = os.replace

    def failing(src, dst) -> None:
        if Path(dst).name == "b.png":  # its caption b.txt is already in place at this point
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(ingest_module.os, "replace", failing)
    report = ingest([source], tmp_path / "dataset")
    monkeypatch.undo()
    assert sorted(item.stored for item in report.added) == ["a.png", "c.png"]
    assert "No space left" in _reasons(report)["b.png"]
    assert files_under(tmp_path / "dataset") == [".ingest-index.json", "a.png", "a.txt", "c.png", "c.txt"]
    assert snapshot(source) == before
    # The failed file can simply be dropped again.
    assert [item.stored for item in ingest([source], tmp_path / "dataset").added] == ["b.png"]


def test_an_unexpected_error_mid_import_stops_without_partial_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _source_with_three(tmp_path)
    real_write = ingest_module._write_file
    calls = {"count": 0}

    def exploding(descriptor: int, data: bytes) -> None:
        calls["count"] += 1
        if calls["count"] == 4:  # b.png, after b.txt's temp file
            raise RuntimeError("bug")
        real_write(descriptor, data)

    monkeypatch.setattr(ingest_module, "_write_file", exploding)
    with pytest.raises(RuntimeError):
        ingest([source], tmp_path / "dataset")
    assert files_under(tmp_path / "dataset") == [".ingest-index.json", "a.png", "a.txt"]


def test_progress_is_reported_per_image(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    ingest(
        [_source_with_three(tmp_path)], tmp_path / "dataset", progress=lambda done, total: seen.append((done, total))
    )
    assert seen == [(1, 3), (2, 3), (3, 3)]


def _png_claiming(width: int, height: int) -> bytes:
    """A 1×1 PNG whose header claims ``width``×``height`` (the shape of a decompression bomb)."""
    data = bytearray(image_bytes(size=(1, 1)))
    # The IHDR chunk starts at byte 8: length(4) type(4) width(4) height(4) … crc(4).
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


# Over Pillow's own hard limit (~179 MP), at which we refuse too; a 9000×9000 photo (81 MP) is scaled down instead.
@pytest.mark.parametrize("side", [14_000, 30_000])
def test_a_bomb_header_is_refused_without_decoding(tmp_path: Path, side: int) -> None:
    (tmp_path / "bomb.png").write_bytes(_png_claiming(side, side))
    report = ingest([tmp_path / "bomb.png"], tmp_path / "dataset")
    assert "decompression bomb" in _reasons(report)["bomb.png"]


def test_an_impossible_dataset_folder_is_a_dataset_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder", "utf-8")
    with pytest.raises(DatasetError, match="cannot be created"):
        ingest([], tmp_path / "file" / "dataset")


def test_a_file_that_is_not_a_zip_and_a_corrupt_entry_are_reported(tmp_path: Path) -> None:
    (tmp_path / "fake.zip").write_bytes(b"not a zip at all")
    archive = tmp_path / "corrupt.zip"
    payload = image_bytes((1, 2, 3))
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr(zipfile.ZipInfo("broken.png"), payload)  # stored, so the bytes can be damaged below
    data = bytearray(archive.read_bytes())
    offset = data.index(payload)
    data[offset + 40] ^= 0xFF
    archive.write_bytes(bytes(data))
    report = ingest([tmp_path / "fake.zip", archive], tmp_path / "dataset")
    reasons = _reasons(report)
    assert "not a readable zip" in reasons["fake.zip"]
    assert "cannot be read" in reasons["broken.png"]
    assert report.added == ()
