"""Training as a use case: settings from a preset, the step plan, and a training run started as a job.

The page and the REST API both start a training here and follow the returned
``Job``: its ``data`` holds the live progress (``progress``), the loss history
(``losses``), the log, the preview images and the saved files.
"""

from __future__ import annotations

from typing import Any

from lora_ext import settings
from lora_ext.app import train_settings
from lora_ext.app.context import Context
from lora_ext.app.jobs import Job
from lora_ext.config import TrainConfig
from lora_ext.dataset.names import sanitize_filename
from lora_ext.errors import DatasetError, HostUnavailable, LoraExtError
from lora_ext.host import Host

JOB_NAME = "Training"
LOSS_POINTS = 2000


def machine(ctx: Context) -> tuple[str, bool, bool]:
    """(family, has a GPU, is the demo model) of the loaded model, for resolving ``auto``."""
    try:
        host = ctx.host
        return host.info.family, host.device.type != "cpu", host.info.is_demo
    except LoraExtError:
        return "sd1", True, False


def preset_defaults(ctx: Context, preset_name: str) -> TrainConfig:
    """The preset's config with the host's memory settings (A1111: Settings → Train Tools) applied."""
    config = train_settings.preset_config(preset_name, *machine(ctx))
    setting = ctx.workspace.setting
    return config.replace(
        gradient_checkpointing=bool(setting(settings.GRADIENT_CHECKPOINTING, config.gradient_checkpointing)),
        cache_latents_to_disk=bool(setting(settings.CACHE_LATENTS_TO_DISK, config.cache_latents_to_disk)),
    )


def default_preset(ctx: Context) -> str:
    """The "Default training preset" setting when it names a preset, else ``auto``."""
    name = ctx.workspace.setting(settings.DEFAULT_PRESET, train_settings.AUTO_PRESET)
    return name if name in train_settings.preset_choices() else train_settings.AUTO_PRESET


def capability_lines(ctx: Context) -> tuple[bool, list[str]]:
    """(whether the host can train now, the reasons or notes to show)."""
    try:
        capabilities = ctx.host.capabilities()
    except LoraExtError as error:
        return False, [error.one_line()]
    return capabilities.can_train, list(capabilities.reasons)


def require_training(host: Host) -> None:
    """Raise ``HostUnavailable`` with the host's reasons when it cannot train now."""
    capabilities = host.capabilities()
    if not capabilities.can_train:
        raise HostUnavailable("Training is not possible: " + "; ".join(capabilities.reasons))


def plan_text(
    ctx: Context, project: str | None, version: str | None, values: dict[str, Any], preset_name: str | None = None
) -> tuple[str, list[tuple[str, str]]]:
    """Computed steps and how long the run will take on this machine; plus (note, kind) lines: auto's choice,
    and a warning when the estimate is over an hour."""
    from lora_ext.config import resolve_preset

    if not project or not version:
        return "Pick a project and version to see the number of steps.", []
    paths = ctx.version(project, version)
    _samples, _per_epoch, total, text = train_settings.planned_steps(values, paths.dataset)
    notes: list[tuple[str, str]] = []
    if preset_name is not None:
        reason = resolve_preset(preset_name, *machine(ctx)).reason
        notes += [(reason, "ok")] if reason else []
    if total:
        estimated = _estimate(ctx, values, paths.dataset)
        if estimated is not None:
            text += f" · {estimated.text}"
            notes += [(estimated.warning, "warn")] if estimated.warning else []
    return text, notes


def _estimate(ctx: Context, values: dict[str, Any], dataset: Any) -> Any:
    """The run's estimate, timing steps on the host the first time (not while a job uses the model)."""
    from lora_ext.training.estimate import estimate_for

    try:
        config = train_settings.build_config(values, str(dataset), "estimate")
        host = ctx.host
        if not host.capabilities().can_train:
            return None  # nothing to time steps on (Forge's placeholder, reForge…): the Train section says why
    except LoraExtError:
        return None  # a half-typed form: the estimate waits for valid settings
    if ctx.jobs.model_busy() and ctx.step_costs.known(host, config) is None:
        return None
    return estimate_for(host, config, ctx.step_costs)


def preset_settings(ctx: Context, preset_name: str, changes: dict[str, Any]) -> dict[str, Any]:
    """The preset's settings with ``changes`` over them (the REST API's body); needs the loaded model."""
    host = ctx.host
    require_training(host)  # the host's own reason, before anything reads the model
    has_gpu, is_demo = host.device.type != "cpu", host.info.is_demo
    base = train_settings.preset_config(preset_name or train_settings.AUTO_PRESET, host.info.family, has_gpu, is_demo)
    return {**train_settings.config_values(base), **changes}


def _events(job: Job, host: Host) -> Any:
    from lora_ext.training.events import TrainEvents

    # The WebUI host mirrors progress into shared.state and reports its Interrupt button.
    job.data.update(losses=[], log=[], previews=[], saved=[], phase=None)

    def on_progress(info: Any) -> None:
        job.data["progress"] = info
        losses = job.data["losses"]
        losses.append((info.step, info.loss, info.smoothed_loss))
        del losses[:-LOSS_POINTS]
        job.report(info.step, info.total_steps, f"step {info.step}/{info.total_steps}")
        host.report_progress(
            info.step, info.total_steps, f"Training: step {info.step}/{info.total_steps}, loss {info.loss:.4f}"
        )
        if job.cancelled() or host.interrupted():
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


def start_training_job(
    ctx: Context, project: str | None, version: str | None, values: dict[str, Any], resume: bool = False
) -> tuple[Job, TrainConfig]:
    """Check, save the settings with the version, and train in a background job."""
    from lora_ext.config import save_config
    from lora_ext.training.run import output_path_for, train_lora

    paths = ctx.version(project, version)
    session = ctx.editors.get((paths.project, paths.version))
    if session is not None and session.editor.is_dirty:
        raise DatasetError("The caption editor has unsaved changes.", hint="save them first: training reads the files")
    host = ctx.host
    require_training(host)
    default_output = sanitize_filename(f"{paths.project}_{paths.version}", fallback="lora")
    config = train_settings.build_config(values, str(paths.dataset), default_output)
    out = output_path_for(host, config, None)  # inside the LoRA folder, or refused before anything is written

    # The settings as the form had them: a name left empty stays empty, so a copy of the version that
    # reopens these settings trains under its own default name, not over this version's LoRA.
    typed = config if str(values.get("output_name") or "").strip() else config.replace(output_name="")

    def remember_settings() -> None:  # only once the job is sure to start: a refused one writes nothing
        save_config(typed, paths.config / train_settings.SETTINGS_FILE)
        ctx.store.update_manifest(paths.project, paths.version, {"output_name": config.output_name})

    def work(job: Job) -> Any:
        job.data.update(project=paths.project, version=paths.version, output_name=config.output_name)
        result = train_lora(host, config, _events(job, host), out=out, resume=resume)
        info = job.data.get("progress")
        if info is not None and info.its_per_second > 0:
            ctx.measured_speed = info.its_per_second  # for the next plan's time estimate
        return result

    # No job slot for the UI job: the trainer holds the host's own (``Host.training_session``;
    # A1111: the queue lock and shared.state, and it restores merged LoRAs first).
    subject = (paths.project, paths.version)
    return ctx.jobs.start(JOB_NAME, work, prepare=remember_settings, subject=subject), config
