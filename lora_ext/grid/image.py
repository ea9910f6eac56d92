"""The labelled grid image: a caption on top (the settings every cell shares), the weights over the columns,
each row's file (its validation loss, and a mark on the suggested one) on the left, and one block of rows
per prompt under the prompt's line.

Labels are drawn with the first font found that covers Japanese (prompts and names may be Japanese), else a
Latin one, else Pillow's own (``docs/grid.md`` lists where we look).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT_CANDIDATES = (
    "/usr/share/fonts/opentype/ipafont-gothic/ipagp.ttf",
    "/usr/share/fonts/truetype/fonts-japanese-gothic.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "C:/Windows/Fonts/meiryo.ttc",
    "C:/Windows/Fonts/msgothic.ttc",
    "/System/Library/Fonts/ヒラギノ角ゴシック W3.ttc",
    "/System/Library/Fonts/Hiragino Sans GB.ttc",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "C:/Windows/Fonts/arial.ttf",
    "/Library/Fonts/Arial.ttf",
)
BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)
MUTED = (90, 90, 90)
MARK = (200, 60, 20)  # the suggested row's frame and mark
EMPTY_CELL = (235, 235, 235)  # a cell not rendered (a cancelled grid)
MIN_CELL = 128  # smaller renders are shown enlarged (whole multiples, pixels kept sharp)


@dataclass(frozen=True)
class RowLabel:
    """A row's label lines: its file, then its validation loss; ``mark`` ("suggested") frames the row."""

    lines: tuple[str, ...]
    mark: str = ""


def _lines(label: RowLabel) -> tuple[str, ...]:
    return label.lines + ((f"★ {label.mark}",) if label.mark else ())


def load_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """The first candidate font that opens, at ``size`` px; Pillow's built-in one otherwise."""
    for candidate in FONT_CANDIDATES:
        if Path(candidate).is_file():
            try:
                return ImageFont.truetype(candidate, size)
            except OSError:
                continue
    try:
        return ImageFont.load_default(size=size)  # Pillow ≥ 10.1
    except TypeError:
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text or " ", font=font)
    return right - left, bottom - top


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    """``text`` in lines no wider than ``width`` px: broken at spaces, and inside a word (or a Japanese
    sentence, which has none) only where it does not fit on a line of its own."""
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if draw.textlength(candidate, font=font) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        line = ""
        for char in word:
            if line and draw.textlength(line + char, font=font) > width:
                lines.append(line)
                line = ""
            line += char
    lines.append(line)
    return lines


def compose(
    images: Mapping[tuple[int, int, int], Image.Image],
    block_titles: Sequence[str],
    rows: Sequence[RowLabel],
    columns: Sequence[str],
    caption: str,
    cell_size: tuple[int, int],
) -> Image.Image:
    """The grid: ``images[(block, row, column)]`` (a missing one is a grey cell) under ``caption``."""
    scale = max(1, -(-MIN_CELL // max(1, min(cell_size))))  # tiny renders (a 64-px demo) shown larger
    cell_w, cell_h = cell_size[0] * scale, cell_size[1] * scale
    font_px = max(12, min(28, min(cell_w, cell_h) // 12))
    font, small = load_font(font_px), load_font(max(10, font_px * 4 // 5))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_h = _text_size(probe, "Ag漢", font)[1] + font_px // 2
    label_w = max([_text_size(probe, line, font)[0] for row in rows for line in _lines(row)] + [cell_w // 2])
    label_w += font_px
    grid_w = label_w + cell_w * len(columns)
    caption_lines = _wrap(probe, caption, font, grid_w - font_px)
    titles = [_wrap(probe, title, small, grid_w - font_px) if title else [] for title in block_titles]
    header_h = line_h * len(caption_lines) + font_px // 2 + line_h
    blocks_h = sum(line_h * len(title) + cell_h * len(rows) for title in titles)
    canvas = Image.new("RGB", (grid_w, header_h + blocks_h + font_px // 2), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    y = font_px // 4
    for line in caption_lines:
        draw.text((font_px // 2, y), line, fill=TEXT, font=font)
        y += line_h
    y += font_px // 2
    for column, text in enumerate(columns):
        width = _text_size(draw, text, font)[0]
        draw.text((label_w + column * cell_w + (cell_w - width) // 2, y), text, fill=TEXT, font=font)
    y += line_h
    for block, title in enumerate(titles):
        for line in title:
            draw.text((font_px // 2, y), line, fill=MUTED, font=small)
            y += line_h
        for row, label in enumerate(rows):
            top = y + row * cell_h
            for index, line in enumerate(_lines(label)):
                colour = MARK if label.mark and index == len(label.lines) else TEXT if index == 0 else MUTED
                draw.text((font_px // 2, top + font_px // 4 + index * line_h), line, fill=colour, font=font)
            for column in range(len(columns)):
                left = label_w + column * cell_w
                image = images.get((block, row, column))
                if image is None:
                    draw.rectangle((left, top, left + cell_w - 1, top + cell_h - 1), fill=EMPTY_CELL)
                else:
                    resample = Image.NEAREST if scale > 1 else Image.BICUBIC
                    canvas.paste(image.convert("RGB").resize((cell_w, cell_h), resample), (left, top))
            if label.mark:
                width = max(2, font_px // 6)
                draw.rectangle((label_w, top, grid_w - 1, top + cell_h - 1), outline=MARK, width=width)
        y += cell_h * len(rows)
    return canvas
