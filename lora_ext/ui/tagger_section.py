"""Auto-tag: WD14 model choice (v2/v3 or a local folder), thresholds, MCut, exclude/trigger, write mode,
progress with images/s and cancel, and per-image confidence bars."""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lora_ext.errors import DatasetError, LoraExtError
from lora_ext.ui.common import Outputs, message
from lora_ext.ui.jobs import Job, follow, format_seconds, progress_html
from lora_ext.ui.registry import Registry
from lora_ext.ui.workspace import Context


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


def form_defaults() -> dict[str, Any]:
    """The tagging form's starting values (one per ``OPTION_NAMES``), taken from ``TagOptions``' own defaults."""
    from lora_ext.dataset.captions import join_tags
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
    from lora_ext.dataset.captions import parse_tags
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


def _render(job: Job) -> Outputs:
    if job.finished:
        return {}
    eta = ""
    rate = job.data.get("rate", 0.0)
    if rate > 0 and job.total > job.done:
        eta = f" · ETA {format_seconds((job.total - job.done) / rate)}"
    text = f"Tagging: {job.done}/{job.total} images · {rate:.1f} images/s{eta}" if job.total else "Loading the tagger…"
    return {"tag_progress": progress_html(job.fraction, text)}


def report_html(report: Any) -> str:
    lines = [
        f"Tagged {len(report.tagged)} of {report.total} image(s) in {report.seconds:.1f} s "
        f"({report.images_per_second:.1f} images/s); {report.changed} caption(s) written, "
        f"{len(report.kept)} kept, {len(report.skipped)} skipped"
    ]
    if report.cancelled:
        lines.append("Cancelled: images not reached yet keep their captions.")
    body = "".join(message(line, "warn" if report.cancelled else "ok") for line in lines)
    body += "".join(message(warning, "warn") for warning in report.warnings)
    if report.skipped:
        rows = "".join(
            f"<tr><td>{html.escape(path.name)}</td><td>{html.escape(reason)}</td></tr>"
            for path, reason in report.skipped
        )
        body += f"<table class='tt-skipped'><tr><th>Skipped</th><th>Why</th></tr>{rows}</table>"
    return body


def start_tagging(
    ctx: Context, project: str | None, version: str | None, model: str, options: Any, write: Any, batch_size: int = 8
) -> Job:
    """Tag every image of a version in a background job (also used by the REST API)."""
    paths = ctx.version(project, version)
    session = ctx.editors.get((paths.project, paths.version))
    if session is not None and session.editor.is_dirty:
        raise DatasetError("The caption editor has unsaved changes.", hint="save or undo them before auto-tagging")

    def work(job: Job) -> Any:
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
    return ctx.jobs.start("Auto-tagging", work, uses_model=False)


def run_tagging(
    ctx: Context,
    project: str | None,
    version: str | None,
    model: str,
    existing: str,
    batch_size: float,
    **option_values: Any,
) -> Iterator[Outputs]:
    """Tag every image of the version in the background, showing progress until it ends."""
    from lora_ext.tagger import WriteOptions
    from lora_ext.ui import editor_section

    options = tag_options(**option_values)
    job = start_tagging(ctx, project, version, model, options, WriteOptions(existing=existing), int(batch_size or 1))
    yield from follow(job, _render)
    if job.error is not None:
        if isinstance(job.error, LoraExtError):
            yield {"tag_progress": progress_html(0, job.error.one_line(), "error")}
        raise job.error
    report = job.result
    yield {
        **editor_section.view(ctx, project, version),
        "tag_progress": progress_html(1.0, "Auto-tagging finished" if not report.cancelled else "Cancelled", "done"),
        "tag_report": report_html(report),
    }


def cancel_job(ctx: Context) -> Outputs:
    cancelled = ctx.jobs.cancel()
    return {"job_status": message("Cancelling…" if cancelled else "Nothing is running.", "warn")}


def unload_tagger(ctx: Context) -> Outputs:
    with ctx.lock:
        if ctx.tagger is not None:
            ctx.tagger.unload()
        ctx.tagger, ctx.tagger_source = None, None
    return {"tag_report": message("Tagger model unloaded.")}


def refresh_models(ctx: Context, model: str) -> Outputs:
    import gradio as gr

    from lora_ext.tagger.models import default_model, model_choices

    folder = ctx.workspace.tagger_dir
    choices = model_choices(folder)
    return {"tag_model": gr.update(choices=choices, value=model if model in choices else default_model(folder))}


def confidences(ctx: Context, image_path: Path, model: str | None = None) -> dict[str, float] | None:
    """Confidence per tag for one image: the loaded tagger, else ``model`` if it is on disk (never a download).

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
    return {f"{tag.tag} ({tag.category})": float(tag.confidence) for tag in scored}


def build(ctx: Context, ui: Registry) -> None:
    import gradio as gr

    from lora_ext.tagger import EXISTING_MODES, WriteOptions
    from lora_ext.tagger.models import default_model, model_choices

    folder = ctx.workspace.tagger_dir
    with gr.Row(equal_height=False):
        ui["tag_model"] = gr.Dropdown(
            choices=model_choices(folder),
            value=default_model(folder),
            label="Tagger model",
            info="Local model folders first; the others are downloaded into the tagger folder on first use.",
            elem_id="train_tools_tag_model",
            scale=3,
        )
        ui["refresh_tag_models"] = gr.Button("Refresh", elem_id="train_tools_refresh_tag_models", scale=0)
        ui["existing"] = gr.Radio(
            list(EXISTING_MODES),
            value=WriteOptions().existing,
            label="Existing captions",
            elem_id="train_tools_existing",
        )
    start = form_defaults()
    with gr.Row(equal_height=False):
        ui["general_threshold"] = gr.Slider(
            0, 1, value=start["general_threshold"], step=0.01, label="General threshold"
        )
        ui["general_mcut"] = gr.Checkbox(label="MCut (general)", value=start["general_mcut"])
        ui["character_threshold"] = gr.Slider(
            0, 1, value=start["character_threshold"], step=0.01, label="Character threshold"
        )
        ui["character_mcut"] = gr.Checkbox(label="MCut (character)", value=start["character_mcut"])
    with gr.Row(equal_height=False):
        ui["exclude"] = gr.Textbox(label="Exclude tags", placeholder="tag, tag", elem_id="train_tools_exclude")
        ui["trigger_tags"] = gr.Textbox(
            label="Trigger / tags written first", placeholder="mychar", elem_id="train_tools_trigger_tags"
        )
        ui["max_tags"] = gr.Number(label="Max tags (0: no limit)", value=start["max_tags"], precision=0)
        ui["rating"] = gr.Radio(["off", "first", "last"], value=start["rating"], label="Rating tag")
        ui["characters_first"] = gr.Checkbox(label="Characters first", value=start["characters_first"])
        ui["tag_batch_size"] = gr.Number(label="Batch size", value=8, precision=0)
    with gr.Row(equal_height=False):
        ui["run_tagging"] = gr.Button("Auto-tag", variant="primary", elem_id="train_tools_run_tagging")
        ui["cancel_tagging"] = gr.Button("Cancel", variant="stop", elem_id="train_tools_cancel_tagging")
        ui["unload_tagger"] = gr.Button("Unload model", elem_id="train_tools_unload_tagger")
    ui["tag_progress"] = gr.HTML(elem_id="train_tools_tag_progress")
    ui["tag_report"] = gr.HTML(elem_id="train_tools_tag_report")


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


def wire(ctx: Context, ui: Registry) -> None:
    from lora_ext.ui import editor_section
    from lora_ext.ui.common import wire as on

    inputs = {
        **ui.pick("project", "version"),
        "model": ui["tag_model"],
        **ui.pick("existing"),
        "batch_size": ui["tag_batch_size"],
        **ui.pick(*OPTION_NAMES),
    }
    outputs = {**ui.pick("tag_progress", "tag_report"), **editor_section.view_outputs(ui)}
    on(ui["run_tagging"].click, run_tagging, inputs, outputs, ctx)
    on(ui["cancel_tagging"].click, cancel_job, {}, ui.pick("job_status"), ctx)
    on(ui["unload_tagger"].click, unload_tagger, {}, ui.pick("tag_report"), ctx)
    on(ui["refresh_tag_models"].click, refresh_models, {"model": ui["tag_model"]}, ui.pick("tag_model"), ctx)
