"""Start a training run on a host: the one call the UI and the CLI make.

``train_lora(host, config, events)`` checks the host, scans the dataset, builds
and attaches the network, trains, saves, and always hands the model back as it
was. The run is held inside ``host.training_session(config)``, where a host keeps
its own locks and undoes its own state — the A1111 adapter: queue lock, built-in
Lora restored and inert, checkpoint pinned, fp32 VAE when ``config.vae_fp32``,
SDXL embedders made trainable when the TE trains; by default: the LoRAs its prompt
hook merged are restored first.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from lora_ext.config import TrainConfig
from lora_ext.dataset.names import sanitize_filename
from lora_ext.errors import ConfigError, HostUnavailable
from lora_ext.host import Host
from lora_ext.paths import resolve_inside
from lora_ext.training import buckets, checkpoint, loop, paths, save
from lora_ext.training.data import SkippedImage, TrainingDataset, build_dataset
from lora_ext.training.distributed import Collectives
from lora_ext.training.eta import Eta, StepCosts
from lora_ext.training.events import PhaseInfo, TrainEvents
from lora_ext.training.fp8 import fp8_weights
from lora_ext.training.inject import attached
from lora_ext.training.memory import fit_for
from lora_ext.training.network import LoraNetwork, build_network, network_spec, parameter_dtype
from lora_ext.training.objective import Objective, objective_for
from lora_ext.training.optim import (
    build_optimizer,
    build_scheduler,
    check_optimizer,
    describe_optimizer,
    fused_backward,
)
from lora_ext.training.outputs import RunOutputs
from lora_ext.training.plan import TrainPlan, make_plan
from lora_ext.training.previews import LOSS_LOG, Previews
from lora_ext.training.saving import Saving
from lora_ext.training.steps import TrainingParts, TrainProgress
from lora_ext.training.validation import BEST_WEIGHTS, VALIDATION_FILE, Validation

# Settings a resumed run may change; anything else must match the saved state.
RESUMABLE_CHANGES = frozenset(
    {
        "epochs",
        "max_steps",
        "save_every_n_epochs",
        "save_every_n_steps",
        "keep_last_n",
        "save_state",
        "sample_prompts",
        "sample_every_n_epochs",
        "sample_every_n_steps",
        "training_comment",
        "preferred_weight",
        "output_name",
        "validate_every_n_steps",
        "early_stop_patience",
    }
)


@dataclass
class TrainResult:
    """What a run produced."""

    status: Literal["finished", "cancelled"]  # an early stop is finished: its final file is the best epoch's
    path: Path | None  # the final LoRA file (None when cancelled)
    steps: int
    total_steps: int
    final_loss: float
    state_path: Path | None
    saved: list[Path] = field(default_factory=list)
    skipped: list[SkippedImage] = field(default_factory=list)
    loss_log: Path | None = None
    work_dir: Path | None = None  # the run's working folder (loss log, previews, resume state)
    stop_reason: str = ""  # why early stop ended the run ("" when it ran all its steps or was cancelled)


def output_path_for(host: Host, config: TrainConfig, out: str | Path | None) -> Path:
    """Where the LoRA goes: ``out`` as given (a command-line choice), else ``<output_name>.safetensors``
    inside the host's LoRA folder, never through a link that leads out of it."""
    if out:
        path = Path(out)
        return path if path.suffix == ".safetensors" else path.with_name(path.name + ".safetensors")
    name = config.output_name or sanitize_filename(Path(config.dataset_dir).name, fallback="lora")
    return resolve_inside(host.lora_dir, f"{name}.safetensors", "the LoRA folder")


def _check_host(host: Host, config: TrainConfig) -> None:
    capabilities = host.capabilities()
    if not capabilities.can_train:
        raise HostUnavailable(
            "training is not possible with the model as it is loaded now: "
            + "; ".join(capabilities.reasons or ["the host refused"])
        )
    if config.trains_text_encoder and not capabilities.can_train_text_encoder:
        raise ConfigError(
            "the text encoder cannot be trained here: " + "; ".join(capabilities.reasons),
            hint="turn off train_text_encoder (UNet-only training)",
        )


def _param_groups(network: LoraNetwork, config: TrainConfig) -> list[dict]:
    """UNet and text-encoder groups at their rates; with LoRA+, each part's output-side factors in a group of
    their own at ``loraplus_lr_ratio`` × the rate (as sd-scripts' ``loraplus_lr_ratio``)."""
    groups = []
    faster = network.output_parameters() if config.loraplus_lr_ratio > 0 else set()
    for modules, lr, trained in (
        (network.unet_modules(), config.unet_lr, config.trains_unet),
        (network.text_encoder_modules(), config.text_encoder_lr, config.trains_text_encoder),
    ):
        params = [p for m in modules for p in m.parameters()]
        if not params or not trained:
            continue
        groups.append({"params": [p for p in params if id(p) not in faster], "lr": lr})
        if faster:
            groups.append({"params": [p for p in params if id(p) in faster], "lr": lr * config.loraplus_lr_ratio})
    return groups


def _load_init_weights(network: LoraNetwork, path: str) -> None:
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise ConfigError(f"the LoRA to start from does not exist: {path}")
    missing = network.load_kohya_state_dict(load_file(path))
    if len(missing) == len(network.loras):
        raise ConfigError(
            f"{Path(path).name} has no layer that matches this model and rank",
            hint="start from a LoRA of the same base model and rank",
        )


def _resume_state(
    config: TrainConfig, output_path: Path, work_dir: Path, events: TrainEvents, world_size: int = 1
) -> dict | None:
    """The saved state, if ``config`` may continue it: the same settings, the number of processes aside.

    A data-parallel run may resume with another number of processes when the global batch
    (``batch_size × world_size``) stays: the batches, and so the run, are the same.
    """
    # An older run's folder beside the LoRA is moved over once, by a single process (never by several ranks at once).
    moved_from = checkpoint.adopt_legacy(work_dir, output_path) if world_size == 1 else None
    if moved_from is not None:
        events.status(f"moved the run's working folder from {moved_from} to {work_dir}")
    state = checkpoint.load_state(work_dir, output_path)
    saved = state["config"]
    if not isinstance(saved, dict):
        raise ConfigError(f"cannot resume {output_path.stem}: the saved state has no settings")
    saved_batch = saved.get("batch_size", 0) * state.get("world_size", 1)
    global_batch = config.batch_size * world_size
    # A state in the dataset's own working folder moved with it (a renamed project or folder): same data.
    moved_with_data = work_dir == paths.work_dir(config.dataset_dir, output_path.stem)
    same = {"batch_size": saved_batch == global_batch, "dataset_dir": moved_with_data}
    defaults = TrainConfig().to_dict()  # a setting newer than the saved run: the run had its default
    changed = sorted(
        k
        for k, v in config.to_dict().items()
        if saved.get(k, defaults.get(k)) != v and k not in RESUMABLE_CHANGES and not same.get(k, False)
    )
    if changed:
        raise ConfigError(
            f"cannot resume {output_path.stem}: these settings differ from the saved run: {', '.join(changed)}",
            hint="resume with the same settings, or start a new run"
            + (" (batch_size × processes must stay the same)" if "batch_size" in changed else ""),
        )
    return state


def _facts_factory(
    config: TrainConfig,
    host: Host,
    dataset: TrainingDataset,
    parts: TrainingParts,
    session_id: str,
    validation: Validation,
):
    def dirs(folders) -> dict:
        return {f.name: {"n_repeats": f.repeats, "img_count": f.image_count} for f in folders}

    bucket_info = (
        buckets.bucket_info([r.placement for r in dataset.records], [r.size for r in dataset.records])
        if config.enable_bucket
        else None
    )

    def facts(output_name: str, epoch: int, step: int) -> save.RunFacts:
        return save.RunFacts(
            info=host.info,
            output_name=output_name,
            session_id=session_id,
            started_at=parts.started_at,
            steps=step,
            epoch=epoch,
            total_steps=parts.plan.total_steps,
            epochs=parts.plan.epochs,
            batches_per_epoch=parts.plan.batches_per_epoch,
            num_train_images=parts.plan.counts.train_samples,
            num_reg_images=parts.plan.counts.reg_samples,
            num_validation_images=parts.plan.counts.validation_images,
            warmup_steps=parts.plan.warmup_steps,
            optimizer=describe_optimizer(parts.optimizer, config),
            dataset_dirs=dirs(dataset.train.folders),
            reg_dataset_dirs=dirs(dataset.reg.folders),
            tag_frequency={f.name: f.tag_frequency for f in dataset.train.folders},
            bucket_info=bucket_info,
            resolution=(config.resolution, config.resolution),
            prediction=parts.objective.prediction,
            zero_terminal_snr=parts.objective.zero_terminal_snr,
            world_size=parts.plan.world_size,
            validation=validation.summary(parts.progress.step),  # what was measured until now
        )

    return facts


def _autocast_dtype(config: TrainConfig, host: Host) -> torch.dtype | None:
    if config.mixed_precision == "bf16":
        return torch.bfloat16
    if config.mixed_precision == "fp16":
        if host.device.type != "cuda":
            raise ConfigError("fp16 mixed precision needs a CUDA device", hint="use bf16 or no on the CPU")
        return torch.float16
    return None


def build_parts(
    host: Host,
    config: TrainConfig,
    plan: TrainPlan,
    output_path: Path,
    work_dir: Path,
    group: Collectives | None = None,
    init_weights: bool = True,
    objective: Objective | None = None,
) -> TrainingParts:
    """The network (attached later), its optimizer, schedule and scaler for ``config`` on ``host``.

    The time estimate (``estimate.measure_costs``) builds the same parts and times steps on them.
    ``objective``: the run's (``objective.objective_for``); by default the one ``config`` asks of the model.
    """
    spec = network_spec(config)
    network = build_network(host.parts(), host.info.family, spec, config.seed)
    network.to(host.device, parameter_dtype(host.dtype))
    if init_weights and config.init_weights:
        _load_init_weights(network, config.init_weights)
    optimizer = build_optimizer(config, _param_groups(network, config), plan.warmup_steps)
    autocast_dtype = _autocast_dtype(config, host)
    scaler = torch.amp.GradScaler("cuda") if autocast_dtype == torch.float16 else None
    return TrainingParts(
        host,
        network,
        optimizer,
        build_scheduler(config, optimizer, plan),
        scaler,
        plan,
        TrainProgress(),
        autocast_dtype,
        spec.train_text_encoder,
        output_path,
        work_dir,
        group=group or Collectives(),
        objective=objective or objective_for(config, host.info, host.alphas_cumprod),
    )


def train_lora(
    host: Host,
    config: TrainConfig,
    events: TrainEvents | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    work_dir: str | Path | None = None,
    group: Collectives | None = None,
    costs: StepCosts | None = None,
) -> TrainResult:
    """Train a LoRA on ``host``'s loaded model; ``resume`` continues from the run's saved state (``checkpoint``).

    ``work_dir``: the run's working folder; by default ``paths.work_dir`` (with the dataset, never in the LoRA folder).
    ``group``: the processes of a data-parallel run (``distributed.join``); only rank 0 writes files.
    ``costs``: measured before the start (``estimate.CostCache``), for the ETA until the run has timed its own.
    """
    events = events or TrainEvents()
    group = group or Collectives()
    world_size, is_main = group.ranks.world_size, group.ranks.is_main
    _check_host(host, config)
    if config.memory_mode == "auto":  # before anything else: the run is the fitted config
        fitted = fit_for(host, config)
        events.status(fitted.line)
        config = fitted.config
    check_optimizer(config, host.device)
    if config.fused_backward and world_size > 1:
        raise ConfigError("the fused backward pass runs in one process only", hint="turn off fused_backward")
    objective = objective_for(config, host.info, host.alphas_cumprod)  # refuses a prediction the model contradicts
    output_path = output_path_for(host, config, out)
    work_dir = Path(work_dir) if work_dir else paths.work_dir(config.dataset_dir, output_path.stem)
    state = _resume_state(config, output_path, work_dir, events, world_size) if resume else None
    with host.training_session(config):
        events.status("scanning the dataset")
        events.phase(PhaseInfo("scanning", 0, 0, "scanning the dataset"))
        dataset = build_dataset(host, config, world_size=world_size)
        found = len(dataset.records)
        events.phase(PhaseInfo("scanning", found, found, f"scanning the dataset: {found} images"))
        for skipped in dataset.train.skipped + dataset.reg.skipped:
            events.status(f"skipped unreadable image {skipped.path}: {skipped.reason}")
        plan = make_plan(config, dataset.counts())
        parts = build_parts(host, config, plan, output_path, work_dir, group, objective=objective)
        network = parts.network
        eta = Eta(config, plan, costs, lambda: sum(p.numel() for p in network.parameters()))
        outputs = RunOutputs(None, None)
        if is_main:  # the other ranks of a data-parallel run write nothing
            previews = Previews(config, parts, events, eta)
            validation = Validation(config, parts, dataset, events)
            facts = _facts_factory(config, host, dataset, parts, save.new_session_id(), validation)
            outputs = RunOutputs(previews, Saving(config, parts, events, eta, facts, previews.card), validation)
        loss_log = work_dir / LOSS_LOG
        if state is not None:
            checkpoint.restore_state(parts, state)
            if parts.progress.step > plan.total_steps:  # it would "finish" at once and save the wrong file
                raise ConfigError(
                    f"cannot resume {output_path.stem}: the saved run is at step {parts.progress.step}, "
                    f"past the {plan.total_steps} steps these settings plan",
                    hint="resume with the settings the run started with",
                )
            eta.stepped(parts.progress.step, parts.progress.elapsed_seconds)
            if is_main:
                _truncate_log(loss_log, parts.progress.step)
            events.status(f"resuming at step {parts.progress.step} of {plan.total_steps}")
        elif is_main:  # a new run in a used folder: nothing of the old run's history
            for stale in (loss_log, work_dir / VALIDATION_FILE, work_dir / BEST_WEIGHTS):
                stale.unlink(missing_ok=True)
        events.status("caching latents")
        dataset.prepare(_caching_reporter(events, eta), group)
        with torch.random.fork_rng(devices=[host.device.index or 0] if host.device.type == "cuda" else []):
            with (
                attached(network, host.parts(), config.gradient_checkpointing),
                fp8_weights(host.parts().unet, config.fp8_base),
                fused_backward(parts.optimizer, config.max_grad_norm) if config.fused_backward else nullcontext(),
            ):
                outcome = loop.train(config, parts, dataset, events, outputs, eta)
                stop_reason = outputs.stop_reason() if outcome == "stopped early" else ""
                if stop_reason:
                    events.status(f"early stop after step {parts.progress.step}: {outputs.stop_reason()}")
                final = (
                    outputs.finish(output_path, plan.epochs, config.save_state, early_stop=bool(stop_reason))
                    if outcome != "cancelled"
                    else None
                )
    state_file = checkpoint.state_path(work_dir)
    return TrainResult(
        "cancelled" if outcome == "cancelled" else "finished",
        final,
        parts.progress.step,
        plan.total_steps,
        parts.progress.last_loss,
        state_file if state_file.is_file() else None,
        [Path(p) for p in parts.progress.saved_files] + ([final] if final else []),
        dataset.train.skipped + dataset.reg.skipped,
        loss_log,
        work_dir,
        stop_reason,
    )


def _caching_reporter(events: TrainEvents, eta: Eta):
    """``prepare``'s progress as the caching phase's line: latents n/N with the time caching has left; the
    phase's ETA is the whole run's when the costs are known."""

    def report(done: int, total: int) -> None:
        left, run_left = eta.caching(done, total)
        text = f"caching latents {done}/{total}"  # the time left travels in eta_seconds: the page says it once
        events.phase(PhaseInfo("caching", done, total, text, run_left))

    return report


def _truncate_log(path: Path, step: int) -> None:
    """Drop loss-log rows after ``step`` (written by the part of the old run the state does not cover)."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [lines[0]] + [line for line in lines[1:] if int(line.split(",", 1)[0]) <= step]
    path.write_text("".join(kept), encoding="utf-8")
