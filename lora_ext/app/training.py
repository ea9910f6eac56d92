"""Training as a use case: settings from a preset, the step plan, and a training run started as a job.

The page and the REST API both start a training here and follow the returned
``Job``: its ``data`` holds the live progress (``progress``), the loss history
(``losses``), the log, the preview images and the saved files.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_ext import settings
from lora_ext.app import train_settings
from lora_ext.app.context import Context
from lora_ext.app.jobs import Job
from lora_ext.config import TrainConfig
from lora_ext.dataset.names import sanitize_filename
from lora_ext.dataset.projects import VersionPaths
from lora_ext.errors import ConfigError, DatasetError, HostUnavailable, LoraExtError
from lora_ext.host import Host

JOB_NAME = "Training"
LOSS_POINTS = 2000
CAPTIONLESS_NAMED = 10  # images named in the warning about missing captions; the rest are counted


def machine(ctx: Context) -> tuple[str, bool, bool]:
    """(family, has a GPU, is the demo model) of the loaded model, for resolving ``auto``."""
    try:
        host = ctx.host
        return host.info.family, host.device.type != "cpu", host.info.is_demo
    except LoraExtError:
        return "sd1", True, False


def preset_config(ctx: Context, preset_name: str, family: str, has_gpu: bool, is_demo: bool) -> TrainConfig:
    """A built-in preset (``train_settings.preset_config``) or your own (``presets``: over the family's defaults)."""
    from lora_ext.app import presets
    from lora_ext.config import default_config, load_config

    path = presets.preset_path(ctx, preset_name)
    if path is not None:
        return load_config(path, base=default_config(family), warn=lambda _line: None)
    return train_settings.preset_config(preset_name, family, has_gpu, is_demo)


def preset_choices(ctx: Context) -> list[str]:
    """The built-in presets, then yours."""
    from lora_ext.app import presets

    return [*train_settings.preset_choices(), *presets.user_presets(ctx)]


def preset_defaults(ctx: Context, preset_name: str) -> TrainConfig:
    """The preset's config with the host's memory settings (A1111: Settings → Train Tools) applied."""
    config = preset_config(ctx, preset_name, *machine(ctx))
    setting = ctx.workspace.setting
    return config.replace(
        gradient_checkpointing=bool(setting(settings.GRADIENT_CHECKPOINTING, config.gradient_checkpointing)),
        cache_latents_to_disk=bool(setting(settings.CACHE_LATENTS_TO_DISK, config.cache_latents_to_disk)),
    )


def default_preset(ctx: Context) -> str:
    """The "Default training preset" setting when it names a preset, else ``auto``."""
    name = ctx.workspace.setting(settings.DEFAULT_PRESET, train_settings.AUTO_PRESET)
    return name if name in preset_choices(ctx) else train_settings.AUTO_PRESET


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
    plan, text = train_settings.planned_steps(values, paths.dataset)
    notes: list[tuple[str, str]] = []
    if preset_name is not None and preset_name in train_settings.preset_choices():  # yours need no reason
        reason = resolve_preset(preset_name, *machine(ctx)).reason
        notes += [(reason, "ok")] if reason else []
    objective = _objective_note(ctx, values, paths.dataset)
    notes += [objective] if objective else []
    try:  # images without a caption, named before the run starts (as the start says again)
        config = train_settings.build_config(values, str(paths.dataset), "estimate")
        notes += [(line, "warn") for line in dataset_warnings(paths.dataset, config)]
    except LoraExtError:
        pass  # a half-typed form or an empty dataset: the plan line says "0 images"
    if plan.counts.images:
        estimated = _estimate(ctx, values, paths.dataset, plan)
        if estimated is not None:
            text += f" · {estimated.text}"
            notes += [(estimated.warning, "warn")] if estimated.warning else []
        memory = _memory_note(ctx, values, paths.dataset)
        notes += [memory] if memory else []
    return text, notes


def _memory_note(ctx: Context, values: dict[str, Any], dataset: Any) -> tuple[str, str] | None:
    """(line, kind): the run's estimated peak memory against the free memory (probing the host the first time)."""
    from lora_ext.training.memory import memory_note

    try:
        config = train_settings.build_config(values, str(dataset), "estimate")
        host = ctx.host
        if not host.capabilities().can_train:
            return None
    except LoraExtError:
        return None
    with _model_at_rest(ctx) as free:
        if not free and ctx.memory_profiles.known(host, config) is None:
            return None
        return memory_note(host, config, ctx.memory_profiles)


@contextlib.contextmanager
def _model_at_rest(ctx: Context) -> Iterator[bool]:
    """Whether the plan may measure on the model now (no job, no generation of the host's uses it); while held,
    none starts: the memory probe puts the model's weights on the meta device for a moment, and the step
    timings run real steps on it."""
    with ctx.jobs.model_at_rest() as ours, ctx.host.model_at_rest() as hosts:
        yield ours and hosts


def _objective_note(ctx: Context, values: dict[str, Any], dataset: Any) -> tuple[str, str] | None:
    """(line, kind): the prediction and noise schedule the run will train, as read from the model (or why not)."""
    from lora_ext.training.objective import objective_note

    try:
        config = train_settings.build_config(values, str(dataset), "estimate")
        return objective_note(config, ctx.host.info)
    except LoraExtError:
        return None  # no model, or a half-typed form: the Train section says why


def _estimate(ctx: Context, values: dict[str, Any], dataset: Any, plan: Any) -> Any:
    """The run's estimate over ``plan`` (the line's own), timing steps on the host the first time (not while a
    job uses the model)."""
    from lora_ext.training.estimate import estimate_for

    try:
        config = train_settings.build_config(values, str(dataset), "estimate")
        host = ctx.host
        if not host.capabilities().can_train:
            return None  # nothing to time steps on (Forge's placeholder, reForge…): the Train section says why
    except LoraExtError:
        return None  # a half-typed form: the estimate waits for valid settings
    with _model_at_rest(ctx) as free:
        if not free and ctx.step_costs.known(host, config) is None:
            return None
        return estimate_for(host, config, ctx.step_costs, plan)


def preset_settings(ctx: Context, preset_name: str, changes: dict[str, Any]) -> dict[str, Any]:
    """The preset's settings with ``changes`` over them (the REST API's body); needs the loaded model."""
    host = ctx.host
    require_training(host)  # the host's own reason, before anything reads the model
    has_gpu, is_demo = host.device.type != "cpu", host.info.is_demo
    base = preset_config(ctx, preset_name or train_settings.AUTO_PRESET, host.info.family, has_gpu, is_demo)
    return {**train_settings.config_values(base), **changes}


def _events(job: Job, host: Host) -> Any:
    from lora_ext.training.events import TrainEvents

    # The WebUI host mirrors progress into shared.state and reports its Interrupt button.
    job.data.update(losses=[], previews=[], saved=[], phase=None)
    job.data.setdefault("log", [])

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


@dataclass(frozen=True)
class SettingDifference:
    """A setting the form (or the REST body) has other than the saved run a resume continues."""

    name: str
    form: Any
    saved: Any

    def describe(self) -> str:
        """``epochs 2 → 10``: the form's value, then the saved run's (values only: the same in every language)."""
        return f"{self.name} {self.form!r} → {self.saved!r}"


@dataclass(frozen=True)
class Started:
    """A training job just started and what to tell the user about it."""

    job: Job
    config: TrainConfig  # what the run trains with (a resume: the saved run's settings)
    resumed: bool = False
    notes: tuple[str, ...] = ()  # a numbered name, a resume with the saved settings
    warnings: tuple[str, ...] = ()  # images without a caption
    differences: tuple[SettingDifference, ...] = ()  # a resume: where the form differs from the saved run


def dataset_warnings(dataset: Path, config: TrainConfig) -> list[str]:
    """Refuse a dataset with nothing to train on; one line per caption that images without one get."""
    from lora_ext.dataset.layout import dataset_folders
    from lora_ext.training.data import captionless

    if not dataset.is_dir() or not sum(folder.image_count for folder in dataset_folders(dataset)):
        raise DatasetError(
            "The dataset has no images to train on.",
            hint="add images in the Dataset section (at its top level or in N_name folders)",
        )
    by_caption: dict[str, list[str]] = {}
    for path, caption in captionless(dataset, config):
        by_caption.setdefault(caption, []).append(path.relative_to(dataset).as_posix())
    lines = []
    for caption, names in by_caption.items():
        shown = ", ".join(names[:CAPTIONLESS_NAMED]) + (
            f" +{len(names) - CAPTIONLESS_NAMED}" if len(names) > CAPTIONLESS_NAMED else ""
        )
        if caption:
            lines.append(f'{len(names)} image(s) have no caption and train with the caption "{caption}": {shown}')
        else:
            lines.append(f"{len(names)} image(s) have no caption and train with an empty caption: {shown}")
    return lines


def form_differences(saved: TrainConfig, values: dict[str, Any]) -> list[SettingDifference]:
    """The settings in ``values`` (the form, or the fields a REST body names) that differ from ``saved``.

    An empty output name means "the default", never a difference; a value the form cannot hold as a
    setting (a half-typed number) is a difference as typed."""
    base = saved.to_dict()
    found = []
    for name, value in values.items():
        if name not in base or name in train_settings.HIDDEN_FIELDS or value is None:
            continue
        if name == "output_name" and not str(value).strip():
            continue
        try:  # the value as the config reads it (the form's 10.0 is the setting's 10)
            typed = getattr(TrainConfig.from_dict({**base, name: value}), name)
        except ConfigError:
            typed = value
        if typed != getattr(saved, name):
            found.append(SettingDifference(name, typed, getattr(saved, name)))
    return found


def _resume_target(ctx: Context, paths: VersionPaths) -> tuple[str, TrainConfig]:
    """(the run to resume, the settings it started with): the newest stopped run with a saved state."""
    from lora_ext.app import runs
    from lora_ext.training import checkpoint

    stopped = [run for run in runs.version_runs(ctx, paths.project, paths.version) if run.resumable]
    if not stopped:
        raise ConfigError(
            f"{paths.project}/{paths.version} has no stopped run to resume.",
            hint="a run can be resumed after Cancel; start a new run instead",
        )
    name, folder = stopped[0].name, stopped[0].state_dir
    assert folder is not None  # resumable runs have a state
    saved = checkpoint.saved_config(folder)
    return name, TrainConfig.from_dict({**saved, "dataset_dir": str(paths.dataset), "output_name": name})


def start_training_job(
    ctx: Context, project: str | None, version: str | None, values: dict[str, Any], resume: bool = False
) -> Started:
    """Check, save the settings with the version, and train in a background job.

    A new run never writes over an earlier run's LoRA (``runs.free_name``). ``resume`` continues the
    version's stopped run with the settings it started with, whatever ``values`` say: the differences
    are reported, and neither the settings file nor the form's values are written."""
    from lora_ext.app import runs
    from lora_ext.config import save_config
    from lora_ext.training.run import output_path_for

    paths = ctx.version(project, version)
    ctx.require_saved_captions(paths, hint="save them first: training reads the files")
    host = ctx.host
    require_training(host)
    ctx.jobs.require_free()  # before the checks below: a running job is the first thing to say
    notes: list[str] = []
    differences: list[SettingDifference] = []
    if resume:
        name, config = _resume_target(ctx, paths)
        differences = form_differences(config, values)
        if differences:
            changed = ", ".join(item.describe() for item in differences)
            notes.append(f"Resuming {name} with the settings it started with, not the form's: {changed}")
        else:
            notes.append(f"Resuming {name} with the settings it started with")
    else:
        default_output = sanitize_filename(f"{paths.project}_{paths.version}", fallback="lora")
        config = train_settings.build_config(values, str(paths.dataset), default_output)
        name = runs.free_name(host.lora_dir, paths, config.output_name)
        if name != config.output_name:
            notes.append(f"{config.output_name} is kept from an earlier run: this run saves as {name}")
            config = config.replace(output_name=name)
    warnings = dataset_warnings(paths.dataset, config)
    out = output_path_for(host, config, None)  # inside the LoRA folder, or refused before anything is written
    # The settings as the form had them: a name left empty stays empty, so a copy of the version that
    # reopens these settings trains under its own default name, not over this version's LoRA.
    typed = config if str(values.get("output_name") or "").strip() else config.replace(output_name="")
    work_dir = paths.run_dir(name)
    earlier = runs.read_record(work_dir) if resume else None

    def remember_settings() -> None:  # only once the job is sure to start: a refused one writes nothing
        if not resume:  # a resume trains the saved run's settings: the version's file stays as it is
            runs.keep_earlier(ctx, paths)
            save_config(typed, paths.config / train_settings.SETTINGS_FILE)
        ctx.store.update_manifest(paths.project, paths.version, {"output_name": name})

    def work(job: Job) -> Any:
        job.data.update(project=paths.project, version=paths.version, output_name=name)
        record = _started_record(earlier, name, config)
        if not resume or earlier is not None:  # an older run's folder is moved over by the trainer first
            runs.write_record(work_dir, record)
        try:
            result = _train(ctx, job, host, config, out, resume, notes + warnings)
        except BaseException as error:
            runs.write_record(work_dir, _ended(record, "failed", error=_one_line(error)))
            raise
        runs.write_record(work_dir, _ended(record, result.status, result.steps, result.total_steps))
        return result

    # No job slot for the UI job: the trainer holds the host's own (``Host.training_session``;
    # A1111: the queue lock and shared.state, and it restores merged LoRAs first).
    job = ctx.jobs.start(JOB_NAME, work, prepare=remember_settings, subject=(paths.project, paths.version))
    return Started(job, config, resume, tuple(notes), tuple(warnings), tuple(differences))


def _train(ctx: Context, job: Job, host: Host, config: TrainConfig, out: Path, resume: bool, lines: list[str]) -> Any:
    from lora_ext.training.run import train_lora

    events = _events(job, host)
    for line in lines:
        events.status(line)
    costs = ctx.step_costs.known(host, config)  # the page's measurement, for the ETA before the run has its own
    result = train_lora(host, config, events, out=out, resume=resume, costs=costs)
    info = job.data.get("progress")
    if info is not None and info.its_per_second > 0:
        ctx.measured_speed = info.its_per_second  # for the next plan's time estimate
    return result


def _started_record(earlier: Any, name: str, config: TrainConfig) -> Any:
    from lora_ext.app import runs

    if earlier is None:
        return runs.RunRecord(name, runs.now(), settings=config.to_dict())
    return dataclasses.replace(earlier, status="running", finished_at=None, error="", resumed=earlier.resumed + 1)


def _ended(record: Any, status: str, steps: int | None = None, total: int | None = None, error: str = "") -> Any:
    from lora_ext.app import runs

    return dataclasses.replace(
        record,
        status=status,
        finished_at=runs.now(),
        steps=record.steps if steps is None else steps,
        total_steps=record.total_steps if total is None else total,
        error=error,
    )


def _one_line(error: BaseException) -> str:
    return error.one_line() if isinstance(error, LoraExtError) else f"{type(error).__name__}: {error}"


def started_json(started: Started) -> dict[str, Any]:
    """What the REST API answers about a training it started, besides the job's status."""
    return {
        "output_name": started.config.output_name,
        "resumed": started.resumed,
        "notes": list(started.notes),
        "warnings": list(started.warnings),
        "differences": [{"setting": item.name, "form": item.form, "saved": item.saved} for item in started.differences],
        "settings": started.config.to_dict(),
    }
