"""Train: the host's model and whether it can train, presets, Basic/Advanced settings, computed steps,
Start / Cancel / Resume with a live progress bar, ETA, loss chart and preview gallery."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lora_ext.app import training
from lora_ext.app.context import Context
from lora_ext.app.jobs import Job, format_seconds
from lora_ext.app.train_settings import SETTINGS_FILE, build_config, config_values, saved_values
from lora_ext.errors import ConfigError, DatasetError, LoraExtError
from lora_ext.ui import compat, train_fields
from lora_ext.ui.common import Outputs, message, progress_html, user_message
from lora_ext.ui.registry import Registry

PREFIX = "cfg_"


def field_components(ui: Registry) -> dict[str, Any]:
    """``{"cfg_<field>": component}`` for every config field in the form."""
    return {f"{PREFIX}{spec.name}": ui[f"{PREFIX}{spec.name}"] for spec in train_fields.form_fields()}


def _values(cfg: dict[str, Any]) -> dict[str, Any]:
    return {name[len(PREFIX) :]: value for name, value in cfg.items()}


def capabilities_html(ctx: Context) -> str:
    """Whether the host can train now, and why not."""
    can_train, reasons = training.capability_lines(ctx)
    if not can_train:
        return message("Training is not possible: " + "; ".join(reasons), "error")
    notes = [message(reason, "warn") for reason in reasons]
    return message("Ready to train on the loaded model.", "ok") + "".join(notes)


def apply_preset(ctx: Context, preset_name: str) -> Outputs:
    """Fill every field from the preset (``auto``: the beginner defaults of the loaded model's family)."""
    config = training.preset_defaults(ctx, preset_name)
    return {f"{PREFIX}{name}": value for name, value in config_values(config).items()}


def saved_settings(ctx: Context, project: str | None, version: str | None) -> Outputs:
    """Every field from the version's saved settings (what its last training started with); nothing when none."""
    saved = saved_values(ctx.version(project, version).config) if project and version else None
    return {} if saved is None else {f"{PREFIX}{name}": value for name, value in saved.items()}


def version_settings(ctx: Context, project: str | None, version: str | None) -> Outputs:
    """The form for the selected version: the settings its last training started with (``config/train.toml``).
    A version that never trained keeps the form as it is (nothing typed there is lost); ``form_source`` says
    which of the two the form holds."""
    out: Outputs = {}
    try:
        settings = saved_settings(ctx, project, version)
    except ConfigError as error:  # a hand-edited file that is not valid: the form keeps what it holds
        settings = {}
        out["train_status"] = message(f"The saved training settings were not loaded: {user_message(error)}", "warn")
    out["form_source"] = form_source(project, version, trained=bool(settings))
    return {**out, **settings}


def form_source(project: str | None, version: str | None, trained: bool) -> str:
    """The line naming the version whose settings the form holds (or saying it has none of its own yet)."""
    if not project or not version:
        return ""
    if trained:
        return message(f"The form holds the settings {project} / {version} last trained with.")
    return message(
        f"{project} / {version} has not been trained yet: the form keeps the values it holds "
        "(a preset fills in its defaults)."
    )


def form_source_now(ctx: Context, project: str | None, version: str | None) -> Outputs:
    """``form_source`` for the version as it is on disk, without touching the form (the language switch)."""
    try:
        trained = bool(project and version and (ctx.version(project, version).config / SETTINGS_FILE).is_file())
    except LoraExtError:
        return {"form_source": ""}
    return {"form_source": form_source(project, version, trained)}


def save_preset(ctx: Context, preset_save_name: str, replace_preset: bool, **cfg: Any) -> Outputs:
    """Save the form as your preset (listed in Preset from now on) and offer its file for download."""
    import gradio as gr

    from lora_ext.app import presets

    path = presets.save_preset(ctx, preset_save_name, build_config(_values(cfg), "", ""), bool(replace_preset))
    # Only the choices change: setting the value would fill the form again from the preset it came from.
    return {
        "preset": gr.update(choices=training.preset_choices(ctx)),
        "preset_file": str(path),
        "train_status": message(f"Saved preset {path.stem}: {path}", "ok"),
    }


def load_settings_file(
    ctx: Context, settings_upload: Any, project: str | None, version: str | None, preset: str | None = None, **cfg: Any
) -> Outputs:
    """Fill the form from a settings file (ours, or kohya's sd-scripts / kohya_ss); name what was not used."""
    from lora_ext.app import presets

    if not settings_upload:
        return {}
    path = compat.file_path(settings_upload)
    read = presets.read_settings_file(path)
    values = presets.apply_over(_values(cfg), read)
    changed = {f"{PREFIX}{name}": value for name, value in values.items() if name in read.settings}
    lines = [message(f"Loaded {len(changed)} settings from {Path(path).name}", "ok")]
    if read.not_used:
        lines.append(message(f"Not used from the file: {', '.join(read.not_used)}", "warn"))
    out: Outputs = {**changed, "train_status": "".join(lines)}
    try:
        out.update(plan(ctx, project, version, preset, **{**cfg, **changed}))
    except LoraExtError:
        pass  # no version selected: the form is filled all the same
    return out


def plan(ctx: Context, project: str | None, version: str | None, preset: str | None = None, **cfg: Any) -> Outputs:
    """Computed steps and how long the run will take on this machine, for the selected version and settings."""
    text, notes = training.plan_text(ctx, project, version, _values(cfg), preset)
    return {"plan": message(text) + "".join(message(note, kind) for note, kind in notes)}


def _loss_frame(ctx: Context, job: Job) -> Any:
    """The loss history as the chart's rows; the series' names are in the page's language (the legend shows them)."""
    import pandas as pd

    names = {"loss": ctx.tr("loss"), "smoothed": ctx.tr("smoothed")}
    rows = [
        {"step": step, "loss": value, "series": names[series]}
        for step, loss, smoothed in job.data.get("losses", [])
        for series, value in (("loss", loss), ("smoothed", smoothed))
    ]
    return pd.DataFrame(rows or [{"step": 0, "loss": 0.0, "series": names["loss"]}])


def render_training(ctx: Context, job: Job) -> Outputs:
    """The progress bar, loss chart, log and previews of a running training.

    The log's lines are English lines of the trainer (``TrainEvents.status``), shown in the page's language
    here: a text box is not status markup, which the edge translates."""
    info = job.data.get("progress")
    phase = job.data.get("phase")
    log = job.data.get("log", [])
    if phase is not None and phase.phase != "training":  # scanning, caching, a preview, a save: its own line
        eta = f" · ETA {format_seconds(phase.eta_seconds)}" if phase.eta_seconds > 0 else ""
        step = f" · step {info.step}/{info.total_steps}" if info is not None else ""
        bar = progress_html(phase.done / max(1, phase.total), f"Training: {phase.text}{step}{eta}")
    elif info is None:
        text = log[-1] if log else "Starting…"
        bar = progress_html(0.0, f"Training: {text}")
    else:
        text = (
            f"Training: step {info.step}/{info.total_steps} · epoch {info.epoch}/{info.epochs} · "
            f"loss {info.loss:.4f} (smoothed {info.smoothed_loss:.4f}) · lr {info.lr:.2e} · "
            f"{info.its_per_second:.2f} it/s · ETA {format_seconds(info.eta_seconds)}"
        )
        bar = progress_html(info.step / max(1, info.total_steps), text)
    return {
        "train_progress": bar,
        "loss_plot": _loss_frame(ctx, job),
        "train_log": "\n".join(ctx.tr(line) for line in log[-30:]),
        "previews": list(job.data.get("previews", [])),
    }


def render_job(ctx: Context, job: Job) -> Outputs:
    """A training job as the page shows it, running or finished (its end read from the job, not an event)."""
    out = render_training(ctx, job)
    if not job.finished:
        return out
    if job.error is not None:
        line = user_message(job.error)
        out["train_progress"] = progress_html(job.fraction, f"Training failed: {line}", "error")
        out["train_status"] = message(line, "error")
        return out
    result = job.result
    if result.status == "finished":
        done = f"Finished: {result.steps} steps, final loss {result.final_loss:.4f} → {result.path}"
        out["train_progress"] = progress_html(1.0, done, "done")
    else:
        where = f"; Resume continues from the state in {result.state_path.parent}" if result.state_path else ""
        out["train_progress"] = progress_html(job.fraction, f"Cancelled at step {result.steps}{where}", "cancelled")
    out["train_status"] = "".join(message(f"Skipped {item.path}: {item.reason}", "warn") for item in result.skipped)
    return out


def job_outputs(ui: Registry) -> dict[str, Any]:
    """The components ``render_job`` fills."""
    return ui.pick("train_progress", "loss_plot", "train_log", "previews", "train_status")


def idle_outputs() -> Outputs:
    """``job_outputs`` for a version with no training to show (none yet, or the last one was another version's)."""
    return {"train_progress": "", "loss_plot": None, "train_log": "", "previews": [], "train_status": ""}


def start_training(ctx: Context, project: str | None, version: str | None, resume: bool = False, **cfg: Any) -> Outputs:
    """Start training in the background and return at once; the page then follows the job (``ui/live.py``)."""
    started = training.start_training_job(ctx, project, version, _values(cfg), resume)
    lines = [message(note, "ok") for note in started.notes] + [message(line, "warn") for line in started.warnings]
    return {
        "train_status": "".join(lines),  # an old error goes when a new job starts
        "train_progress": progress_html(0.0, "Training: starting…"),
        "train_log": "",
        "previews": [],
        "job_seen": f"{started.job.id}:running",
        **(_resumed_form(started.config) if started.resumed else {}),
    }


def _resumed_form(config: Any) -> Outputs:
    """The form as the resumed run trains (its saved settings), so the page shows what runs; the output
    name field stays as typed (the run keeps its own name)."""
    values = config_values(config)
    values.pop("output_name")
    return {f"{PREFIX}{name}": value for name, value in values.items()}


def resume_training(ctx: Context, project: str | None, version: str | None, **cfg: Any) -> Outputs:
    """Continue the version's stopped run with the settings it started with; the form shows them after."""
    return start_training(ctx, project, version, resume=True, **cfg)


def cancel_training(ctx: Context) -> Outputs:
    cancelled = ctx.jobs.cancel()
    return {"train_status": message("Stopping after the current step…" if cancelled else "Nothing is running.", "warn")}


# Data-parallel training is the command line's (training/distributed.py); the UI trains the loaded model.
SINGLE_PROCESS_NOTE = (
    "Training here is one process on the loaded model. For several GPUs or machines, run the version's "
    "config/train.toml with `torchrun … -m lora_ext train --config` (see the README)."
)


def build(ctx: Context, ui: Registry) -> None:
    import gradio as gr

    preset_name = training.default_preset(ctx)
    defaults = config_values(training.preset_defaults(ctx, preset_name))
    ui["capabilities"] = gr.HTML(capabilities_html(ctx), elem_id="train_tools_capabilities")
    gr.Markdown(SINGLE_PROCESS_NOTE, elem_id="train_tools_single_process")
    with gr.Row(equal_height=False):
        ui["preset"] = gr.Dropdown(
            choices=training.preset_choices(ctx),
            value=preset_name,
            label="Preset",
            info="auto: beginner defaults for the loaded model's family",
            elem_id="train_tools_preset",
        )
        ui["plan"] = gr.HTML(elem_id="train_tools_plan")
    ui["form_source"] = gr.HTML(elem_id="train_tools_form_source")
    with gr.Row(equal_height=False):
        ui["preset_save_name"] = gr.Textbox(
            label="Save these settings as a preset",
            placeholder="preset name",
            elem_id="train_tools_preset_save_name",
            scale=2,
        )
        ui["replace_preset"] = gr.Checkbox(
            label="Replace an existing preset", value=False, elem_id="train_tools_replace_preset"
        )
        ui["save_preset"] = gr.Button("Save preset", elem_id="train_tools_save_preset", scale=0)
        ui["settings_upload"] = gr.UploadButton(
            "Load settings file (.toml / .json, kohya too)",
            file_types=[".toml", ".json"],
            elem_id="train_tools_settings_upload",
            scale=0,
        )
        ui["preset_file"] = gr.File(label="Preset file", interactive=False, elem_id="train_tools_preset_file")
    specs = {spec.name: spec for spec in train_fields.form_fields()}

    def fields(names: list[str] | tuple[str, ...]) -> None:
        for row in _rows(names, 4):
            with gr.Row(equal_height=False):
                for name in row:
                    ui[f"{PREFIX}{name}"] = train_fields.component_for(specs[name], defaults[name])

    with gr.Group(elem_id="train_tools_basic"):
        gr.Markdown("**Basic**")
        fields(train_fields.BASIC_FIELDS)
    # Start and its progress right under the Basic settings: pressing it never leaves the bar off screen.
    with gr.Row(equal_height=False, elem_id="train_tools_train_buttons"):
        ui["start_training"] = gr.Button("Start training", variant="primary", elem_id="train_tools_start_training")
        ui["cancel_training"] = gr.Button("Cancel", variant="stop", elem_id="train_tools_cancel_training")
        ui["resume_training"] = gr.Button("Resume", elem_id="train_tools_resume_training")
    ui["train_status"] = gr.HTML(elem_id="train_tools_train_status")
    ui["train_progress"] = gr.HTML(elem_id="train_tools_train_progress")
    with gr.Row(equal_height=False):
        ui["loss_plot"] = gr.LinePlot(
            x="step",
            y="loss",
            color="series",
            **compat.plot_titles(x="Step", y="Loss", legend="Series"),
            label="Loss",
            elem_id="train_tools_loss_plot",
            height=220,
            width=480,
        )
        ui["previews"] = gr.Gallery(label="Previews", columns=4, height=260, elem_id="train_tools_previews")
    ui["train_log"] = gr.Textbox(label="Log", lines=4, max_lines=12, interactive=False, elem_id="train_tools_log")
    with gr.Accordion("Advanced", open=False, elem_id="train_tools_advanced"):
        for title, names in train_fields.advanced_groups():
            group_id = "train_tools_group_" + title.lower().replace(" ", "_")
            with gr.Group(elem_id=group_id, elem_classes=["tt-field-group"]):
                gr.Markdown(f"**{title}**")
                fields(names)


def _rows(names: tuple[str, ...] | list[str], width: int) -> list[list[str]]:
    names = list(names)
    return [names[index : index + width] for index in range(0, len(names), width)]


# The settings the step plan depends on.
# Everything the step count or the time estimate depends on refreshes the plan line.
PLANNED = (
    *("cfg_default_repeats", "cfg_epochs", "cfg_max_steps", "cfg_batch_size", "cfg_gradient_accumulation"),
    *("cfg_reg_dir", "cfg_resolution", "cfg_rank", "cfg_network_type", "cfg_train_text_encoder"),
    *("cfg_sample_prompts", "cfg_sample_every_n_epochs", "cfg_sample_every_n_steps", "cfg_gradient_checkpointing"),
    *("cfg_prediction", "cfg_zero_terminal_snr", "cfg_override_detection"),  # the objective line
)


def plan_on(ctx: Context, ui: Registry, event: Any, inputs: dict[str, Any]) -> None:
    """``plan`` on ``event``; of the plans a page asks for, only the newest is shown (``NewestOnly``): one that
    timed steps on the model for the form of before never lands after the plan of the form as it is now."""
    from lora_ext.ui.common import NewestOnly
    from lora_ext.ui.common import wire as on

    if "plan_requests" not in ui:
        ui["plan_requests"] = NewestOnly()
    planned = ui["plan_requests"].wrap(_plan_for(inputs))
    on(event, planned, {**ui.pick("page_id"), **inputs}, ui.pick("plan"), ctx, status=ui["train_status"])


def _plan_for(inputs: dict[str, Any]) -> Any:
    """``plan`` from its inputs: the form's fields and either the picker's project and version or the selection."""
    if "selection" not in inputs:
        return plan

    def plan_of_selection(ctx: Context, selection: str, preset: str | None = None, **cfg: Any) -> Outputs:
        from lora_ext.ui.projects import parse_selection

        project, version = parse_selection(selection)
        try:
            ctx.version(project, version)
        except DatasetError:  # gone meanwhile: the plan asks to pick one
            project = version = None
        # A form that is not valid says so (the train status line), never "pick a project"
        return plan(ctx, project, version, preset, **cfg)

    return plan_of_selection


def wire(ctx: Context, ui: Registry) -> None:
    from lora_ext.ui.common import wire as on

    fields = field_components(ui)
    inputs = {**ui.pick("project", "version"), **fields}
    started = ui.pick("train_progress", "train_log", "previews", "train_status", "job_seen")
    status = ui["train_status"]
    on(ui["start_training"].click, start_training, inputs, started, ctx, status=status)
    resumed = on(ui["resume_training"].click, resume_training, inputs, {**started, **fields}, ctx, status=status)
    on(ui["cancel_training"].click, cancel_training, {}, ui.pick("train_status"), ctx, status=status)
    preset = on(ui["preset"].change, apply_preset, {"preset_name": ui["preset"]}, fields, ctx, status=status)
    saving = {**ui.pick("preset_save_name", "replace_preset"), **fields}
    on(
        ui["save_preset"].click,
        save_preset,
        saving,
        ui.pick("preset", "preset_file", "train_status"),
        ctx,
        status=status,
    )
    loading = {**ui.pick("settings_upload", "project", "version", "preset"), **fields}
    on(
        ui["settings_upload"].upload,
        load_settings_file,
        loading,
        {**fields, **ui.pick("plan", "train_status")},
        ctx,
        status=status,
    )
    # The plan follows the form: after a preset or a resume filled it, and on the user's own edits (``input``,
    # not ``change``: gradio 3 drops an event while the same one is still running, so a preset's change of a
    # field, planned slowly while steps are timed, would swallow the user's next edit of that field).
    plan_inputs = {**ui.pick("project", "version", "preset"), **fields}
    plan_on(ctx, ui, preset.then, plan_inputs)
    plan_on(ctx, ui, resumed.then, plan_inputs)
    for name in PLANNED:
        plan_on(ctx, ui, ui[name].input, plan_inputs)
    plan_on(ctx, ui, ui["editor_state"].change, plan_inputs)
