"""Result: the runs, the trained files with size and hash, a copyable ``<lora:name:0.8>``, the run's
validation loss per epoch beside its training loss with the suggested epoch, *Keep this epoch*, and the
epochs × weights grid rendered by the host (``app/grid.py``), with Cancel and live progress."""

from __future__ import annotations

from typing import Any

from lora_ext.app import grid, results, runs
from lora_ext.app.context import Context
from lora_ext.app.jobs import Job, format_seconds
from lora_ext.errors import LoraExtError
from lora_ext.grid.epochs import RunEpochs
from lora_ext.ui.common import Outputs, ShownOnce, message, progress_html, user_message
from lora_ext.ui.registry import Registry

FILE_COLUMNS = ("File", "Saved at", "Size", "AutoV2", "SHA-256")
RUN_COLUMNS = ("Run", "Started", "Status", "Steps", "Settings", "Files")


def refresh_outputs(ui: Registry) -> dict[str, Any]:
    return ui.pick(
        "result_name",
        "result_runs",
        "result_files",
        "lora_token",
        "result_work_dir",
        "epoch_summary",
        "validation_plot",
        "keep_file",
        *GRID_FORM,
        "grid_estimate",
    )


GRID_FORM = ("compare_prompt", "compare_steps", "compare_size", "compare_weights", "compare_seed")


def refresh(ctx: Context, project: str | None, version: str | None, result_name: str | None = None) -> Outputs:
    """The version's runs, and the files and copy line of one run (``result_name``; by default the newest)."""
    name, files = results.version_files(ctx, project, version, result_name)
    run_rows = [run_row(ctx, run) for run in runs.version_runs(ctx, project, version)] if project and version else []
    if not name:
        return {**_empty(ctx), "result_runs": run_table(ctx, run_rows)}
    rows = [
        [item.path.name, ctx.tr(item.label), f"{item.size / 2**20:.2f} MB", item.autov2, item.sha256] for item in files
    ]
    return {
        "result_name": name,
        "result_runs": run_table(ctx, run_rows),
        "result_files": file_table(ctx, rows),
        "lora_token": f"<lora:{name}:0.8>" if files else "",
        "result_work_dir": work_dir_html(results.work_folder(ctx, project, version, name)),
        **epochs_view(ctx, project, version, name if files else None),
    }


def run_view(ctx: Context, project: str | None, version: str | None, result_name: str | None = None) -> Outputs:
    """``refresh``, and the grid form filled for the run: as its last grid was rendered, else from its training
    (its resolution, a prompt from its dataset, the steps that fit this machine), with the grid's time."""
    out = refresh(ctx, project, version, result_name)
    name = out.get("result_name")
    if not name or not project or not version:
        return out
    chosen = grid.form(ctx, project, version, name)
    form = {
        "compare_prompt": chosen.prompt,
        "compare_steps": chosen.steps,
        "compare_size": chosen.size,
        "compare_weights": chosen.weights,
        "compare_seed": chosen.seed,
    }
    return {**out, **form, "grid_estimate": grid_estimate(ctx, project, version, name, **form)}


def grid_form_once(out: Outputs, selection: str, page_id: str, forms: ShownOnce | None) -> Outputs:
    """``out`` without the grid form when this page holds that run's form already (``forms``):
    a view shown again, or late, leaves what the user typed there. The first fill for a run and page stays."""
    if forms is None or "result_name" not in out:
        return out  # not a view of the section (a job's progress lines)
    if forms.first(page_id, f"{selection}\n{out['result_name']}") or "compare_prompt" not in out:
        return out  # (a version without a LoRA has no form: noted, so that coming back fills its own again)
    return {key: value for key, value in out.items() if key not in (*GRID_FORM, "grid_estimate")}


def _empty(ctx: Context) -> Outputs:
    return {
        "result_name": "",
        "result_runs": run_table(ctx, []),
        "result_files": file_table(ctx, []),
        "lora_token": "",
        "result_work_dir": "",
        **epochs_view(ctx, None, None, None),
    }


def epochs_view(ctx: Context, project: str | None, version: str | None, name: str | None) -> Outputs:
    """The run's validation loss per epoch beside its training loss, the suggested epoch with its reason (and
    the overfit warning), and the files *Keep this epoch* offers, the suggested one chosen."""
    import gradio as gr

    epochs = grid.version_epochs(ctx, project, version, name) if name else None
    if epochs is None or not epochs.rows:
        return {
            "epoch_summary": "",
            "validation_plot": _loss_frame(None),
            "keep_file": gr.update(choices=[], value=None),
        }
    files = [path.name for path in epochs.paths]
    chosen = epochs.paths[epochs.suggested_row].name if epochs.suggested_row is not None else files[-1]
    return {
        "epoch_summary": summary_html(epochs),
        "validation_plot": _loss_frame(epochs),
        "keep_file": gr.update(choices=files, value=chosen),
    }


def summary_html(epochs: RunEpochs) -> str:
    """The suggestion and why, what the loss was measured on, the overfit warning and an early stop's reason."""
    if not epochs.points:
        return message("No validation loss in these files (trained before it was measured).")
    lines = [message(f"Validation loss measured on {epochs.source}, at fixed noise and timesteps.")]
    suggestion = epochs.suggestion
    if suggestion is not None:
        label = (
            epochs.rows[epochs.suggested_row].label if epochs.suggested_row is not None else f"step {suggestion.step}"
        )
        lines.append(message(f"Suggested: {label} — {suggestion.reason}", "ok"))
        if suggestion.warning:
            lines.append(message(f"Overfit warning: {suggestion.warning}", "warn"))
    if epochs.early_stop:
        lines.append(message(f"Stopped early: {epochs.early_stop}", "info"))
    return "".join(lines)


def _loss_frame(epochs: RunEpochs | None) -> Any:
    """The validation loss and the (smoothed) training loss at each validation, by step."""
    import pandas as pd

    rows = [
        {"step": point.step, "loss": value, "series": series}
        for point in (epochs.points if epochs is not None else ())
        for series, value in (("validation", point.loss), ("training", point.train_loss))
    ]
    return pd.DataFrame(rows or [{"step": 0, "loss": 0.0, "series": "validation"}])


def run_row(ctx: Context, run: runs.Run) -> list[str]:
    """One run as a row: its name, when it started (local time), how it ended, steps, settings, file count."""
    record = run.record
    steps = f"{record.steps}/{record.total_steps}" if record.total_steps else ""
    return [
        run.name,
        _local_time(record.started_at),
        ctx.tr(record.status),
        steps,
        settings_summary(ctx, record.settings),
        str(len(run.files)),
    ]


def settings_summary(ctx: Context, settings: dict[str, Any]) -> str:
    """The settings a run is told apart by: ``lora 8/4 · lr 0.0001 · 10 epochs · 512 px · seed 42``."""
    if not settings:
        return ""
    length = (
        f"{settings.get('max_steps')} steps"
        if int(settings.get("max_steps") or 0) > 0
        else f"{settings.get('epochs')} epochs"
    )
    parts = [
        f"{settings.get('network_type')} {settings.get('rank')}/{settings.get('alpha'):g}",
        f"lr {float(settings.get('unet_lr') or 0):g}",
        length,
        f"{settings.get('resolution')} px",
        f"seed {settings.get('seed')}",
    ]
    return " · ".join(ctx.tr(part) for part in parts)


def _local_time(iso: str) -> str:
    from datetime import datetime

    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


def run_table(ctx: Context, rows: list[list[str]]) -> dict[str, Any]:
    """The runs table with its headers (as ``file_table``)."""
    return {"headers": [ctx.tr(column) for column in RUN_COLUMNS], "data": rows or [[""] * len(RUN_COLUMNS)]}


def select_run(ctx: Context, project: str | None, version: str | None, evt: Any) -> Outputs:
    """A click on a run's row shows that run's files and token."""
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    listed = runs.version_runs(ctx, project, version)
    if not isinstance(row, int) or not 0 <= row < len(listed):
        return {}
    return run_view(ctx, project, version, listed[row].name)


def work_dir_html(folder: Any) -> str:
    """The line naming the run's working folder (kept with the version, out of the WebUI's LoRA folder)."""
    return message(f"Loss log, previews and resume state: {folder}") if folder is not None else ""


def file_table(ctx: Context, rows: list[list[str]]) -> dict[str, Any]:
    """The file table with its headers: a bare list would make gradio number the columns (or drop them when empty)."""
    return {"headers": [ctx.tr(column) for column in FILE_COLUMNS], "data": rows or [[""] * len(FILE_COLUMNS)]}


def grid_estimate(
    ctx: Context,
    project: str | None,
    version: str | None,
    result_name: str | None,
    compare_prompt: str = "",
    compare_steps: float = 20,
    compare_size: float = 512,
    compare_weights: str = "",
    compare_seed: float = 0,
) -> str:
    """How many images the grid makes and how long it takes here (nothing when the form is not a grid yet)."""
    try:
        name = results.output_name(ctx, project, version, result_name)
        epochs = grid.version_epochs(ctx, project, version, name)
        spec = grid.build_spec(
            epochs,
            compare_prompt or "-",
            "",
            int(compare_seed or 0),
            int(compare_steps),
            int(compare_size),
            compare_weights,
        )
        text = grid.estimate_text(ctx, spec, grid.run_settings(ctx, project, version, name))
    except (LoraExtError, TypeError, ValueError):
        return ""
    return message(f"Grid: {len(spec.rows)} files × {len(spec.weights)} weights · {text}")


def compare(
    ctx: Context,
    project: str | None,
    version: str | None,
    result_name: str,
    compare_prompt: str,
    compare_negative: str,
    compare_seed: float,
    compare_steps: float,
    compare_size: float,
    compare_weights: str,
) -> Outputs:
    """Start the run's epochs × weights grid; the page then follows the job."""
    job = grid.start_grid(
        ctx,
        project,
        version,
        result_name,
        compare_prompt,
        compare_negative,
        int(compare_seed),
        int(compare_steps),
        int(compare_size),
        compare_weights,
    )
    return {
        "result_status": "",
        "compare_progress": progress_html(0.0, "Starting…"),
        "compare_gallery": [],
        "grid_image": None,
        "job_seen": f"{job.id}:running",
    }


def cancel_grid(ctx: Context) -> Outputs:
    """Stop the grid after the current sampler step (what it rendered so far is kept)."""
    job = ctx.jobs.current
    if job is None or job.finished or job.name != grid.JOB_NAME:
        return {"result_status": message("No grid is being rendered.", "warn")}
    job.cancel()
    return {"result_status": message("Stopping the grid…", "warn")}


def keep_epoch(ctx: Context, project: str | None, version: str | None, keep_file: str | None) -> Outputs:
    """Make the chosen file the version's LoRA under a new numbered name; every earlier file stays."""
    if not keep_file:
        return {"result_status": message("Choose a file to keep.", "warn")}
    kept = runs.keep_file(ctx, project, version, keep_file)
    out = run_view(ctx, project, version, kept.name)
    line = f"Kept {kept.source.name} as {kept.path.name}: <lora:{kept.name}:0.8> (the earlier files are unchanged)"
    return {**out, "result_status": message(line, "ok")}


def _eta(job: Job) -> str:
    if job.done <= 0 or job.total <= job.done:
        return ""
    left = job.elapsed / job.done * (job.total - job.done)
    return f" · ETA {format_seconds(left)}"


def render_job(ctx: Context, job: Job) -> Outputs:
    """A grid as the page shows it: the cells so far with the current cell's sampler step, then the grid.

    The captions ("epoch 2 @ 0.7") are in the page's language (a gallery's captions are not status lines,
    which the edge translates)."""
    cells = [(path, ctx.tr(caption)) for path, caption in job.data.get("cells", [])]
    if not job.finished:
        text = f"Grid: {job.text}{_eta(job)}" if job.total else "Starting…"
        return {"compare_progress": progress_html(job.fraction, text), "compare_gallery": cells}
    if job.error is not None:
        line = user_message(job.error)
        return {
            "compare_progress": progress_html(job.fraction, line, "error"),
            "compare_gallery": cells,
            "result_status": message(line, "error"),
        }
    result = job.result
    elapsed = format_seconds(job.elapsed)
    image = str(result.image_path)
    if result.cancelled:
        text = f"Cancelled after {len(result.render_seconds)} of {len(result.spec.renders())} images"
        return {
            "compare_progress": progress_html(job.fraction, text, "cancelled"),
            "compare_gallery": cells,
            "grid_image": image,
        }
    done = f"Grid of {len(result.spec.rows)} × {len(result.spec.weights)}: {len(result.render_seconds)} images in {elapsed}"
    return {
        "compare_gallery": cells,
        "compare_progress": progress_html(1.0, done, "done"),
        "grid_image": image,
        "result_status": message(f"Saved the grid: {result.image_path}", "ok"),
    }


def job_outputs(ui: Registry) -> dict[str, Any]:
    """The components ``render_job`` fills."""
    return ui.pick("compare_progress", "compare_gallery", "grid_image", "result_status")


def idle_outputs() -> Outputs:
    """``job_outputs`` for a version with no grid to show."""
    return {"compare_progress": "", "compare_gallery": [], "grid_image": None, "result_status": ""}


def for_version(ctx: Context, project: str | None, version: str | None) -> Outputs:
    """The Result section of the selected version (``run_view``); empty when it has no LoRA yet or went away."""
    try:
        return run_view(ctx, project, version)
    except LoraExtError:
        return _empty(ctx)


def build(ctx: Context, ui: Registry) -> None:
    import gradio as gr

    with gr.Row(equal_height=False):
        ui["result_name"] = gr.Textbox(label="LoRA name", elem_id="train_tools_result_name", scale=2)
        ui["refresh_results"] = gr.Button("Refresh", elem_id="train_tools_refresh_results", scale=0)
        ui["lora_token"] = gr.Textbox(
            label="Prompt token", interactive=False, elem_id="train_tools_lora_token", scale=2
        )
        ui["copy_token"] = gr.Button("Copy", elem_id="train_tools_copy_token", scale=0)
    ui["result_runs"] = gr.Dataframe(
        headers=[ctx.tr(column) for column in RUN_COLUMNS],
        datatype=["str"] * len(RUN_COLUMNS),
        interactive=False,
        label="Runs (click one to show its files)",
        elem_id="train_tools_result_runs",
        wrap=True,
    )
    ui["result_files"] = gr.Dataframe(
        headers=[ctx.tr(column) for column in FILE_COLUMNS],
        datatype=["str"] * len(FILE_COLUMNS),
        interactive=False,
        elem_id="train_tools_result_files",
        wrap=True,
    )
    ui["result_work_dir"] = gr.HTML(elem_id="train_tools_result_work_dir")
    gr.Markdown("**Epochs × weights**")
    with gr.Row(equal_height=False):
        ui["validation_plot"] = gr.LinePlot(
            x="step",
            y="loss",
            color="series",
            label="Validation and training loss",
            elem_id="train_tools_validation_plot",
            height=220,
            width=480,
        )
        with gr.Column():
            ui["epoch_summary"] = gr.HTML(elem_id="train_tools_epoch_summary")
            with gr.Row(equal_height=False):
                ui["keep_file"] = gr.Dropdown(
                    label="File to keep", choices=[], elem_id="train_tools_keep_file", scale=3
                )
                ui["keep_epoch"] = gr.Button("Keep this epoch", elem_id="train_tools_keep_epoch", scale=1)
    with gr.Row(equal_height=False):
        ui["compare_prompt"] = gr.Textbox(
            label="Grid prompts (one per line)", lines=2, elem_id="train_tools_compare_prompt", scale=3
        )
        ui["compare_negative"] = gr.Textbox(label="Negative prompt", lines=2, elem_id="train_tools_compare_negative")
    with gr.Row(equal_height=False):
        ui["compare_seed"] = gr.Number(
            label="Grid seed", value=grid.DEFAULT_SEED, precision=0, elem_id="train_tools_compare_seed"
        )
        ui["compare_steps"] = gr.Number(label="Steps", value=20, precision=0, elem_id="train_tools_compare_steps")
        ui["compare_size"] = gr.Number(label="Size", value=512, precision=0, elem_id="train_tools_compare_size")
        ui["compare_weights"] = gr.Textbox(
            label="Weights", value="0, 0.4, 0.7, 1", elem_id="train_tools_compare_weights"
        )
    ui["grid_estimate"] = gr.HTML(elem_id="train_tools_grid_estimate")
    with gr.Row():
        ui["compare"] = gr.Button("Render grid", variant="primary", elem_id="train_tools_compare")
        ui["cancel_grid"] = gr.Button("Cancel", variant="stop", elem_id="train_tools_cancel_grid")
    ui["result_status"] = gr.HTML(elem_id="train_tools_result_status")
    ui["compare_progress"] = gr.HTML(elem_id="train_tools_compare_progress")
    ui["grid_image"] = gr.Image(label="Grid", type="filepath", interactive=False, elem_id="train_tools_grid_image")
    ui["compare_gallery"] = gr.Gallery(
        label="Cells", columns=4, height=300, object_fit="contain", elem_id="train_tools_compare_gallery"
    )


def wire(ctx: Context, ui: Registry) -> None:
    from lora_ext.ui.common import wire as on

    status = ui["result_status"]
    refreshing = ui.pick("project", "version", "result_name")
    on(ui["refresh_results"].click, refresh, refreshing, refresh_outputs(ui), ctx, status=status)
    on(
        ui["result_runs"].select,
        select_run,
        ui.pick("project", "version"),
        refresh_outputs(ui),
        ctx,
        event_arg="evt",
        status=status,
    )
    inputs = ui.pick(
        "project",
        "version",
        "result_name",
        "compare_prompt",
        "compare_negative",
        "compare_seed",
        "compare_steps",
        "compare_size",
        "compare_weights",
    )
    started = ui.pick("result_status", "compare_gallery", "compare_progress", "grid_image", "job_seen")
    on(ui["compare"].click, compare, inputs, started, ctx, status=status)
    on(ui["cancel_grid"].click, cancel_grid, {}, ui.pick("result_status"), ctx, status=status)
    on(
        ui["keep_epoch"].click,
        keep_epoch,
        ui.pick("project", "version", "keep_file"),
        {**refresh_outputs(ui), **ui.pick("result_status")},
        ctx,
        status=status,
    )
    estimate_inputs = ui.pick("project", "version", "result_name", *GRID_FORM)
    for name in ("compare_prompt", "compare_steps", "compare_size", "compare_weights"):
        on(ui[name].change, grid_estimate_view, estimate_inputs, ui.pick("grid_estimate"), ctx, status=status)


def grid_estimate_view(ctx: Context, **values: Any) -> Outputs:
    return {"grid_estimate": grid_estimate(ctx, **values)}
