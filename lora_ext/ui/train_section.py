"""Train: the host's model and whether it can train, presets, Basic/Advanced settings, computed steps,
Start / Cancel / Resume with a live progress bar, ETA, loss chart and preview gallery."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from lora_ext.config import resolve_preset
from lora_ext.dataset.names import sanitize_filename
from lora_ext.errors import DatasetError, HostUnavailable, LoraExtError
from lora_ext.ui import train_fields
from lora_ext.ui.common import Outputs, message
from lora_ext.ui.jobs import Job, follow, format_seconds, progress_html
from lora_ext.ui.registry import Registry
from lora_ext.ui.workspace import Context

PREFIX = "cfg_"
LOSS_POINTS = 2000


def field_components(ui: Registry) -> dict[str, Any]:
    """``{"cfg_<field>": component}`` for every config field in the form."""
    return {f"{PREFIX}{spec.name}": ui[f"{PREFIX}{spec.name}"] for spec in train_fields.form_fields()}


def _values(cfg: dict[str, Any]) -> dict[str, Any]:
    return {name[len(PREFIX) :]: value for name, value in cfg.items()}


def capabilities_html(ctx: Context) -> str:
    """Whether the host can train now, and why not."""
    try:
        host = ctx.host
        capabilities = host.capabilities()
    except LoraExtError as error:
        return message(f"Training is not possible: {error.one_line()}", "error")
    if not capabilities.can_train:
        return message("Training is not possible: " + "; ".join(capabilities.reasons), "error")
    notes = [message(reason, "warn") for reason in capabilities.reasons]
    return message("Ready to train on the loaded model.", "ok") + "".join(notes)


def _machine(ctx: Context) -> tuple[str, bool, bool]:
    """(family, has a GPU, is the demo model) of the loaded model, for resolving ``auto``."""
    try:
        host = ctx.host
        return host.info.family, host.device.type != "cpu", host.info.is_demo
    except LoraExtError:
        return "sd1", True, False


def preset_defaults(ctx: Context, preset_name: str) -> Any:
    """The preset's config with the host's memory settings (A1111: Settings → Train Tools) applied."""
    config = train_fields.preset_config(preset_name, *_machine(ctx))
    setting = ctx.workspace.setting
    return config.replace(
        gradient_checkpointing=bool(setting("train_tools_gradient_checkpointing", config.gradient_checkpointing)),
        cache_latents_to_disk=bool(setting("train_tools_cache_latents_to_disk", config.cache_latents_to_disk)),
    )


def default_preset(ctx: Context) -> str:
    """The "Default training preset" setting when it names a preset, else ``auto``."""
    name = ctx.workspace.setting("train_tools_default_preset", train_fields.AUTO_PRESET)
    return name if name in train_fields.preset_choices() else train_fields.AUTO_PRESET


def apply_preset(ctx: Context, preset_name: str) -> Outputs:
    """Fill every field from the preset (``auto``: the beginner defaults of the loaded model's family)."""
    config = preset_defaults(ctx, preset_name)
    return {f"{PREFIX}{name}": value for name, value in train_fields.config_values(config).items()}


def plan(ctx: Context, project: str | None, version: str | None, preset: str | None = None, **cfg: Any) -> Outputs:
    """Computed steps and how long the run will take on this machine, for the selected version and settings."""
    if not project or not version:
        return {"plan": message("Pick a project and version to see the number of steps.")}
    paths = ctx.version(project, version)
    _samples, _per_epoch, total, text = train_fields.planned_steps(_values(cfg), paths.dataset)
    notes = []
    if preset is not None:
        reason = resolve_preset(preset, *_machine(ctx)).reason
        notes += [message(reason, "ok")] if reason else []
    if total:
        estimated = _estimate(ctx, cfg, paths.dataset)
        if estimated is not None:
            text += f" · {estimated.text}"
            notes += [message(estimated.warning, "warn")] if estimated.warning else []
    return {"plan": message(text) + "".join(notes)}


def _estimate(ctx: Context, cfg: dict[str, Any], dataset: Any) -> Any:
    """The run's estimate, timing steps on the host the first time (not while a job uses the model)."""
    from lora_ext.training.estimate import estimate_for

    try:
        config = train_fields.build_config(_values(cfg), str(dataset), "estimate")
        host = ctx.host
    except LoraExtError:
        return None  # a half-typed form: the estimate waits for valid settings
    if ctx.jobs.model_busy() and ctx.step_costs.known(host, config) is None:
        return None
    return estimate_for(host, config, ctx.step_costs)


def _events(job: Job, host: Any = None) -> Any:
    from lora_ext.training.events import TrainEvents

    # The WebUI host mirrors progress into shared.state and reports its Interrupt button.
    report = getattr(host, "report_progress", None)
    interrupted = getattr(host, "interrupted", None)

    job.data.update(losses=[], log=[], previews=[], saved=[], phase=None)

    def on_progress(info: Any) -> None:
        job.data["progress"] = info
        losses = job.data["losses"]
        losses.append((info.step, info.loss, info.smoothed_loss))
        del losses[:-LOSS_POINTS]
        job.report(info.step, info.total_steps, f"step {info.step}/{info.total_steps}")
        if report is not None:
            report(info.step, info.total_steps, f"Training: step {info.step}/{info.total_steps}, loss {info.loss:.4f}")
        if job.cancelled() or (interrupted is not None and interrupted()):
            events.request_stop()

    def on_sample(_images: list, paths: list) -> None:
        job.data["previews"] += [str(path) for path in paths]

    def on_phase(info: Any) -> None:
        job.data["phase"] = info
        if info.phase != "training":  # the training line is reported by on_progress, with the loss
            job.report(info.done, info.total, info.text)

    events = TrainEvents(
        on_progress=on_progress,
        on_phase=on_phase,
        on_status=lambda text: job.data["log"].append(text),
        on_saved=lambda path: job.data["saved"].append(str(path)),
        on_sample=on_sample,
    )
    job.on_cancel.append(events.request_stop)
    return events


def _loss_frame(job: Job) -> Any:
    import pandas as pd

    rows = [
        {"step": step, "loss": value, "series": series}
        for step, loss, smoothed in job.data.get("losses", [])
        for series, value in (("loss", loss), ("smoothed", smoothed))
    ]
    return pd.DataFrame(rows or [{"step": 0, "loss": 0.0, "series": "loss"}])


def render_training(job: Job) -> Outputs:
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
        "loss_plot": _loss_frame(job),
        "train_log": "\n".join(log[-30:]),
        "previews": list(job.data.get("previews", [])),
    }


def start_training_job(
    ctx: Context, project: str | None, version: str | None, values: dict[str, Any], resume: bool = False
) -> tuple[Job, Any]:
    """Check, save the settings with the version, and train in a background job (also used by the REST API)."""
    from lora_ext.config import save_config
    from lora_ext.training.run import output_path_for, train_lora

    paths = ctx.version(project, version)
    session = ctx.editors.get((paths.project, paths.version))
    if session is not None and session.editor.is_dirty:
        raise DatasetError("The caption editor has unsaved changes.", hint="save them first: training reads the files")
    host = ctx.host
    capabilities = host.capabilities()
    if not capabilities.can_train:
        raise HostUnavailable("Training is not possible: " + "; ".join(capabilities.reasons))
    default_output = sanitize_filename(f"{paths.project}_{paths.version}", fallback="lora")
    config = train_fields.build_config(values, str(paths.dataset), default_output)
    out = output_path_for(host, config, None)  # inside the LoRA folder, or refused before anything is written

    def remember_settings() -> None:  # only once the job is sure to start: a refused one writes nothing
        save_config(config, paths.config / "train.toml")
        ctx.store.update_manifest(paths.project, paths.version, {"output_name": config.output_name})

    def work(job: Job) -> Any:
        hook = getattr(host, "prompt_hook", None)
        if hook is not None and not hasattr(host, "training_session"):
            hook("")  # an empty prompt makes the loader restore every merged LoRA: train on the clean model
        return train_lora(host, config, _events(job, host), out=out, resume=resume)

    # The trainer holds the host's own locks when the host has a training session; otherwise the UI job
    # takes the host's job slot (A1111: the queue lock and shared.state, so Interrupt stops it).
    lock_host = None if hasattr(host, "training_session") else host
    return ctx.jobs.start("Training", work, lock_host, prepare=remember_settings), config


def start_training(
    ctx: Context, project: str | None, version: str | None, resume: bool = False, **cfg: Any
) -> Iterator[Outputs]:
    """Train in the background and follow the progress, loss and previews until it ends."""
    from lora_ext.ui import result_section

    job, config = start_training_job(ctx, project, version, _values(cfg), resume)
    yield {"train_progress": progress_html(0.0, "Training: starting…"), "previews": []}
    yield from follow(job, render_training)
    info = job.data.get("progress")
    if info is not None and info.its_per_second > 0:
        ctx.measured_speed = info.its_per_second
    final = render_training(job)
    if job.error is not None:
        final["train_progress"] = progress_html(job.fraction, f"Training failed: {_one_line(job.error)}", "error")
        yield final
        raise job.error
    result = job.result
    skipped = "".join(message(f"Skipped {item.path}: {item.reason}", "warn") for item in result.skipped)
    if result.status == "finished":
        done = f"Finished: {result.steps} steps, final loss {result.final_loss:.4f} → {result.path}"
        final["train_progress"] = progress_html(1.0, done, "done")
    else:
        where = f"; Resume continues from the state in {result.state_path.parent}" if result.state_path else ""
        final["train_progress"] = progress_html(job.fraction, f"Cancelled at step {result.steps}{where}", "cancelled")
    final["train_status"] = skipped
    yield {**final, **result_section.refresh(ctx, project, version, config.output_name)}


def resume_training(ctx: Context, project: str | None, version: str | None, **cfg: Any) -> Iterator[Outputs]:
    yield from start_training(ctx, project, version, resume=True, **cfg)


def cancel_training(ctx: Context) -> Outputs:
    cancelled = ctx.jobs.cancel()
    return {"train_status": message("Stopping after the current step…" if cancelled else "Nothing is running.", "warn")}


def _one_line(error: BaseException) -> str:
    from lora_ext.ui.common import user_message

    return user_message(error)


def build(ctx: Context, ui: Registry) -> None:
    import gradio as gr

    preset_name = default_preset(ctx)
    defaults = train_fields.config_values(preset_defaults(ctx, preset_name))
    ui["capabilities"] = gr.HTML(capabilities_html(ctx), elem_id="train_tools_capabilities")
    with gr.Row(equal_height=False):
        ui["preset"] = gr.Dropdown(
            choices=train_fields.preset_choices(),
            value=preset_name,
            label="Preset",
            info="auto: beginner defaults for the loaded model's family",
            elem_id="train_tools_preset",
        )
        ui["plan"] = gr.HTML(elem_id="train_tools_plan")
    specs = {spec.name: spec for spec in train_fields.form_fields()}
    with gr.Group(elem_id="train_tools_basic"):
        gr.Markdown("**Basic**")
        for row in _rows(train_fields.BASIC_FIELDS, 4):
            with gr.Row(equal_height=False):
                for name in row:
                    ui[f"{PREFIX}{name}"] = train_fields.component_for(specs[name], defaults[name])
    with gr.Accordion("Advanced", open=False, elem_id="train_tools_advanced"):
        for row in _rows(train_fields.advanced_fields(), 4):
            with gr.Row(equal_height=False):
                for name in row:
                    ui[f"{PREFIX}{name}"] = train_fields.component_for(specs[name], defaults[name])
    with gr.Row(equal_height=False):
        ui["start_training"] = gr.Button("Start training", variant="primary", elem_id="train_tools_start_training")
        ui["cancel_training"] = gr.Button("Cancel", variant="stop", elem_id="train_tools_cancel_training")
        ui["resume_training"] = gr.Button("Resume", elem_id="train_tools_resume_training")
    ui["train_status"] = gr.HTML(elem_id="train_tools_train_status")
    ui["train_progress"] = gr.HTML(elem_id="train_tools_train_progress")
    with gr.Row(equal_height=False):
        ui["loss_plot"] = gr.LinePlot(
            x="step", y="loss", color="series", title="Loss", elem_id="train_tools_loss_plot", height=220, width=480
        )
        ui["previews"] = gr.Gallery(label="Previews", columns=4, height=260, elem_id="train_tools_previews")
    ui["train_log"] = gr.Textbox(label="Log", lines=4, max_lines=12, interactive=False, elem_id="train_tools_log")


def _rows(names: tuple[str, ...] | list[str], width: int) -> list[list[str]]:
    names = list(names)
    return [names[index : index + width] for index in range(0, len(names), width)]


def wire(ctx: Context, ui: Registry) -> None:
    from lora_ext.ui import result_section
    from lora_ext.ui.common import wire as on

    fields = field_components(ui)
    inputs = {**ui.pick("project", "version"), **fields}
    outputs = {
        **ui.pick("train_progress", "loss_plot", "train_log", "previews", "train_status"),
        **result_section.refresh_outputs(ui),
    }
    on(ui["start_training"].click, start_training, inputs, outputs, ctx)
    on(ui["resume_training"].click, resume_training, inputs, outputs, ctx)
    on(ui["cancel_training"].click, cancel_training, {}, ui.pick("train_status"), ctx)
    on(ui["preset"].change, apply_preset, {"preset_name": ui["preset"]}, fields, ctx)
    # Everything the step count or the time estimate depends on refreshes the plan line.
    planned = (
        *("cfg_default_repeats", "cfg_epochs", "cfg_max_steps", "cfg_batch_size", "cfg_gradient_accumulation"),
        *("cfg_resolution", "cfg_rank", "cfg_network_type", "cfg_train_text_encoder", "cfg_sample_prompts"),
        *("cfg_sample_every_n_epochs", "cfg_sample_every_n_steps", "cfg_gradient_checkpointing"),
    )
    plan_inputs = {**ui.pick("project", "version", "preset"), **fields}
    for name in planned:
        on(ui[name].change, plan, plan_inputs, ui.pick("plan"), ctx)
    on(ui["version"].change, plan, plan_inputs, ui.pick("plan"), ctx)
    on(ui["editor_state"].change, plan, plan_inputs, ui.pick("plan"), ctx)
