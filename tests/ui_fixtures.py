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


def selection_shown(ctx, selection: str, preset: str | None = None, **form) -> dict:
    """What the page shows after the selection changed: ``show``, then the plan of the form as it left it."""
    from lora_ext.errors import DatasetError
    from lora_ext.ui import selection as views
    from lora_ext.ui import train_section
    from lora_ext.ui.projects import parse_selection

    shown = views.show(ctx, selection)
    form = {**form, **{name: value for name, value in shown.items() if name.startswith("cfg_")}}
    try:
        ctx.version(*parse_selection(selection))
    except DatasetError:  # the version went away: the page's plan says to pick one
        return {**shown, **train_section.plan(ctx, None, None, preset, **form)}
    return {**shown, **train_section.plan(ctx, *parse_selection(selection), preset, **form)}


def change_then(dependencies: list[dict], component: int) -> tuple[dict, dict]:
    """In a built page's config: the one event on ``component`` and the event that follows it (``.then``)."""

    def targets(dep: dict) -> list:  # gradio 3: [id]; gradio 4: [[id, event]]
        return [target[0] if isinstance(target, list | tuple) else target for target in dep["targets"]]

    indexed = [(dep.get("id", index), dep) for index, dep in enumerate(dependencies)]  # gradio 4 numbers them
    ((first_id, first),) = [
        (i, dep) for i, dep in indexed if component in targets(dep) and dep["trigger_after"] is None
    ]
    ((_, then),) = [(i, dep) for i, dep in indexed if dep["trigger_after"] == first_id]
    return first, then
