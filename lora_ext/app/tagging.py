"""Auto-tagging as a use case: the loaded tagger, tagging options from form values, a tagging job.

The tagger stays loaded in the ``Context`` between jobs and clicks; the page and
the REST API start a tagging here and follow the returned ``Job``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lora_ext.app.context import Context
from lora_ext.app.jobs import Job
from lora_ext.dataset.captions import join_tags, parse_tags
from lora_ext.errors import DatasetError, LoraExtError

JOB_NAME = "Auto-tagging"
# The tagging form's option names (one per ``TagOptions`` setting the user picks).
OPTION_NAMES = (
    "general_threshold",
    "character_threshold",
    "general_mcut",
    "character_mcut",
    "exclude",
    "trigger_tags",
    "max_tags",
    "rating",
    "characters_first",
)


def _resolve(model: str) -> str:
    """The model as the tagger loads it: a registry name or a folder name in the tagger folder, or a path."""
    if not model:
        raise DatasetError("No tagger model is selected.", hint="pick one in the model list")
    return model


def load_tagger(ctx: Context, model: str, download: bool = True) -> Any:
    """The loaded tagger for ``model``, loading (or, when allowed, downloading) it on first use."""
    from lora_ext.tagger import Tagger

    source = _resolve(model)
    with ctx.lock:
        if ctx.tagger is None or ctx.tagger_source != source:
            if ctx.tagger is not None:
                ctx.tagger.unload()
            ctx.tagger, ctx.tagger_source = None, None
            ctx.tagger = Tagger.load(source, ctx.workspace.tagger_dir, download=download)
            ctx.tagger_source = source
        return ctx.tagger


def unload_tagger(ctx: Context) -> None:
    with ctx.lock:
        if ctx.tagger is not None:
            ctx.tagger.unload()
        ctx.tagger, ctx.tagger_source = None, None


def form_defaults() -> dict[str, Any]:
    """The tagging form's starting values (one per ``OPTION_NAMES``), taken from ``TagOptions``' own defaults."""
    from lora_ext.tagger import TagOptions

    options = TagOptions()
    return {
        "general_threshold": options.general_threshold,
        "character_threshold": options.character_threshold,
        "general_mcut": options.general_mcut,
        "character_mcut": options.character_mcut,
        "exclude": join_tags(options.exclude),
        "trigger_tags": join_tags(options.always_first),
        "max_tags": options.max_tags or 0,
        "rating": options.rating,
        "characters_first": options.characters_first,
    }


def tag_options(
    general_threshold: float,
    character_threshold: float,
    general_mcut: bool,
    character_mcut: bool,
    exclude: str,
    trigger_tags: str,
    max_tags: float,
    rating: str,
    characters_first: bool,
) -> Any:
    from lora_ext.tagger import TagOptions

    return TagOptions(
        general_threshold=float(general_threshold),
        character_threshold=float(character_threshold),
        general_mcut=bool(general_mcut),
        character_mcut=bool(character_mcut),
        exclude=parse_tags(exclude),
        always_first=parse_tags(trigger_tags),
        characters_first=bool(characters_first),
        max_tags=int(max_tags) if max_tags and int(max_tags) > 0 else None,
        rating=rating or "off",
    )


def start_tagging(
    ctx: Context, project: str | None, version: str | None, model: str, options: Any, write: Any, batch_size: int = 8
) -> Job:
    """Tag every image of a version in a background job."""
    paths = ctx.version(project, version)
    ctx.require_saved_captions(paths, hint="save or undo them before auto-tagging")

    def work(job: Job) -> Any:
        job.data.update(project=paths.project, version=paths.version)
        tagger = load_tagger(ctx, model)

        def progress(done: int, total: int, rate: float) -> None:
            job.data["rate"] = rate
            job.report(done, total, f"{done}/{total} images, {rate:.1f} images/s")

        report = tagger.tag_dataset(
            paths.dataset,
            options,
            write,
            recursive=True,
            batch_size=max(1, batch_size),
            progress=progress,
            cancel=job.cancelled,
        )
        ctx.session(paths.project, paths.version, reload=True)
        return report

    # The tagger does not touch the SD model, so it does not take the WebUI's queue slot.
    return ctx.jobs.start(JOB_NAME, work, uses_model=False, subject=(paths.project, paths.version))


def confidences(ctx: Context, image_path: Path, model: str | None = None) -> list[tuple[str, str, float]] | None:
    """(tag, category, confidence) for one image, most confident first: the loaded tagger, else ``model`` if it is
    on disk (never a download).

    None when no tagger is available without downloading one.
    """
    from lora_ext.tagger import TagOptions

    tagger = ctx.tagger
    if tagger is None and model:
        try:
            tagger = load_tagger(ctx, model, download=False)
        except LoraExtError:
            return None
    if tagger is None:
        return None
    scored = tagger.tag_image(image_path, TagOptions(general_threshold=0.0, character_threshold=0.0, max_tags=40))
    return [(tag.tag, tag.category, float(tag.confidence)) for tag in scored]
