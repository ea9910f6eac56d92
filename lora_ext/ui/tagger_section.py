"""Auto-tag: WD14 model choice (v2/v3 or a local folder), thresholds, MCut, exclude/trigger, write mode,
progress with images/s and cancel, and per-image confidence bars."""

from __future__ import annotations

import html
from typing import Any

from lora_ext.app import tagging
from lora_ext.app.context import Context
from lora_ext.app.jobs import Job, format_seconds
from lora_ext.app.tagging import OPTION_NAMES
from lora_ext.ui.common import Outputs, message, progress_html, user_message
from lora_ext.ui.registry import Registry


def render_job(ctx: Context, job: Job) -> Outputs:
    """A tagging job as the page shows it: progress with images/s while it runs, then its report."""
    if not job.finished:
        eta = ""
        rate = job.data.get("rate", 0.0)
        if rate > 0 and job.total > job.done:
            eta = f" · ETA {format_seconds((job.total - job.done) / rate)}"
        text = (
            f"Tagging: {job.done}/{job.total} images · {rate:.1f} images/s{eta}" if job.total else "Loading the tagger…"
        )
        return {"tag_progress": progress_html(job.fraction, text)}
    if job.error is not None:
        line = user_message(job.error)
        return {"tag_progress": progress_html(0, line, "error"), "tag_status": message(line, "error")}
    report = job.result
    return {
        "tag_progress": progress_html(1.0, "Auto-tagging finished" if not report.cancelled else "Cancelled", "done"),
        "tag_report": report_html(report),
    }


def job_outputs(ui: Registry) -> dict[str, Any]:
    """The components ``render_job`` fills."""
    return ui.pick("tag_progress", "tag_report", "tag_status")


def idle_outputs() -> Outputs:
    """``job_outputs`` for a version with no tagging to show."""
    return {"tag_progress": "", "tag_report": "", "tag_status": ""}


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
            f"<tr><td>{html.escape(path.name)}</td><td class='tt-why'>{html.escape(reason)}</td></tr>"
            for path, reason in report.skipped
        )
        body += f"<table class='tt-skipped'><tr><th>Skipped</th><th>Why</th></tr>{rows}</table>"
    return body


def run_tagging(
    ctx: Context,
    project: str | None,
    version: str | None,
    model: str,
    existing: str,
    batch_size: float,
    **option_values: Any,
) -> Outputs:
    """Start tagging every image of the version in the background; the page then follows the job."""
    from lora_ext.tagger import WriteOptions

    options = tagging.tag_options(**option_values)
    job = tagging.start_tagging(
        ctx, project, version, model, options, WriteOptions(existing=existing), int(batch_size or 1)
    )
    return {
        "tag_status": "",
        "tag_progress": progress_html(0.0, "Loading the tagger…"),
        "job_seen": f"{job.id}:running",
    }


def cancel_job(ctx: Context) -> Outputs:
    cancelled = ctx.jobs.cancel()
    return {"job_status": message("Cancelling…" if cancelled else "Nothing is running.", "warn")}


def unload_tagger(ctx: Context) -> Outputs:
    tagging.unload_tagger(ctx)
    return {"tag_report": message("Tagger model unloaded.")}


def refresh_models(ctx: Context, model: str | None) -> Outputs:
    """The model list again, with folders added since; the selection stays while it is still listed.

    gradio 3.41's dropdown takes ``choices`` and ``value`` in one update and allows no custom value (a value
    not listed shows dimmed and a blur clears it), so the value sent is always one of the new choices.
    """
    import gradio as gr

    from lora_ext.tagger.models import default_model, local_models, model_choices

    folder = ctx.workspace.tagger_dir
    choices = model_choices(folder)
    local = local_models(folder)
    found = f"{len(local)} model folder(s) in {folder}"
    if model in choices:
        return {"tag_model": gr.update(choices=choices, value=model), "tag_report": message(f"{found}.")}
    picked = default_model(folder)
    if not model:
        return {"tag_model": gr.update(choices=choices, value=picked), "tag_report": message(f"{found}.")}
    note = message(f"{found}; {model} is no longer there, so {picked} is selected.", "warn")
    return {"tag_model": gr.update(choices=choices, value=picked), "tag_report": note}


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
    start = tagging.form_defaults()
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
        ui["tag_batch_size"] = gr.Number(label="Tagger batch size", value=8, precision=0)
    with gr.Row(equal_height=False):
        ui["run_tagging"] = gr.Button("Auto-tag", variant="primary", elem_id="train_tools_run_tagging")
        ui["cancel_tagging"] = gr.Button("Cancel", variant="stop", elem_id="train_tools_cancel_tagging")
        ui["unload_tagger"] = gr.Button("Unload model", elem_id="train_tools_unload_tagger")
    ui["tag_status"] = gr.HTML(elem_id="train_tools_tag_status")
    ui["tag_progress"] = gr.HTML(elem_id="train_tools_tag_progress")
    ui["tag_report"] = gr.HTML(elem_id="train_tools_tag_report")


def wire(ctx: Context, ui: Registry) -> None:
    from lora_ext.ui.common import wire as on

    inputs = {
        **ui.pick("project", "version"),
        "model": ui["tag_model"],
        **ui.pick("existing"),
        "batch_size": ui["tag_batch_size"],
        **ui.pick(*OPTION_NAMES),
    }
    status = ui["tag_status"]
    on(
        ui["run_tagging"].click,
        run_tagging,
        inputs,
        ui.pick("tag_status", "tag_progress", "job_seen"),
        ctx,
        status=status,
    )
    on(ui["cancel_tagging"].click, cancel_job, {}, ui.pick("job_status"), ctx, status=status)
    on(ui["unload_tagger"].click, unload_tagger, {}, ui.pick("tag_report"), ctx, status=status)
    refresh = {"model": ui["tag_model"]}
    on(ui["refresh_tag_models"].click, refresh_models, refresh, ui.pick("tag_model", "tag_report"), ctx, status=status)
