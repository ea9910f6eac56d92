"""The training settings form, generated from ``TrainConfig``'s fields.

Every engine option gets one component, named after its field, with the
field's ``help`` metadata as its description (one source for help text). The
config is built back from ``{field name: value}``, never from positions.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, fields
from typing import Any

from lora_ext.config import (
    AUTO_PRESET,
    NETWORK_TYPES,
    OPTIMIZERS,
    PRECISIONS,
    PRESETS,
    SAVE_DTYPES,
    SCHEDULERS,
    TrainConfig,
    resolve_preset,
)
from lora_ext.dataset.layout import dataset_folders
from lora_ext.errors import ConfigError

# Shown in the Basic group, in this order; every other field is in Advanced.
BASIC_FIELDS = (
    "output_name",
    "trigger_word",
    "resolution",
    "default_repeats",
    "epochs",
    "max_steps",
    "batch_size",
    "rank",
    "alpha",
    "unet_lr",
    "text_encoder_lr",
    "train_text_encoder",
    "seed",
    "sample_prompts",
    "sample_every_n_epochs",
)
# Set by the UI from the selected version, not typed.
HIDDEN_FIELDS = ("dataset_dir",)
CHOICES: dict[str, tuple[str, ...]] = {
    "network_type": NETWORK_TYPES,
    "optimizer": OPTIMIZERS,
    "lr_scheduler": SCHEDULERS,
    "mixed_precision": PRECISIONS,
    "save_dtype": SAVE_DTYPES,
}
# Short labels; the longer explanation is the field's help text.
LABELS: dict[str, str] = {
    "reg_dir": "Regularisation images folder",
    "prior_loss_weight": "Prior loss weight",
    "default_repeats": "Repeats",
    "caption_extension": "Caption extension",
    "resolution": "Resolution",
    "enable_bucket": "Aspect-ratio buckets",
    "min_bucket_reso": "Smallest bucket",
    "max_bucket_reso": "Largest bucket",
    "bucket_reso_steps": "Bucket step",
    "bucket_no_upscale": "Don't upscale small images",
    "flip_aug": "Flip augmentation",
    "cache_latents": "Cache latents in RAM",
    "cache_latents_to_disk": "Cache latents on disk",
    "shuffle_caption": "Shuffle caption tags",
    "keep_tokens": "Keep first tags",
    "caption_dropout_rate": "Caption dropout",
    "tag_dropout_rate": "Tag dropout",
    "trigger_word": "Trigger word",
    "masked_loss": "Masked loss (alpha)",
    "validation_split": "Validation split",
    "network_type": "Network type",
    "rank": "Rank (dim)",
    "alpha": "Alpha",
    "conv_rank": "Conv rank",
    "conv_alpha": "Conv alpha",
    "dropout": "Dropout",
    "rank_dropout": "Rank dropout",
    "module_dropout": "Module dropout",
    "train_text_encoder": "Train the text encoder",
    "init_weights": "Start from LoRA file",
    "min_snr_gamma": "Min-SNR gamma",
    "noise_offset": "Noise offset",
    "min_timestep": "Min timestep",
    "max_timestep": "Max timestep",
    "optimizer": "Optimizer",
    "optimizer_args": "Optimizer arguments",
    "weight_decay": "Weight decay",
    "unet_lr": "UNet learning rate",
    "text_encoder_lr": "Text encoder learning rate",
    "lr_scheduler": "LR scheduler",
    "warmup_steps": "Warm-up steps",
    "warmup_ratio": "Warm-up ratio",
    "num_cycles": "Restart cycles",
    "power": "Polynomial power",
    "batch_size": "Batch size",
    "gradient_accumulation": "Gradient accumulation",
    "max_grad_norm": "Max gradient norm",
    "mixed_precision": "Mixed precision",
    "gradient_checkpointing": "Gradient checkpointing",
    "epochs": "Epochs",
    "max_steps": "Max steps (0: use epochs)",
    "seed": "Seed",
    "output_name": "Output name",
    "save_dtype": "Save precision",
    "save_every_n_epochs": "Save every N epochs",
    "save_every_n_steps": "Save every N steps",
    "keep_last_n": "Keep last N files",
    "save_state": "Save resumable state",
    "sample_prompts": "Preview prompts",
    "sample_every_n_epochs": "Preview every N epochs",
    "sample_every_n_steps": "Preview every N steps",
    "validate_every_n_steps": "Validate every N steps",
    "training_comment": "Training comment",
    "preferred_weight": "Preferred weight",
    "vae_fp32": "VAE in fp32",
}


def form_fields() -> list[Any]:
    """The ``TrainConfig`` fields the form shows."""
    return [spec for spec in fields(TrainConfig) if spec.name not in HIDDEN_FIELDS]


def advanced_fields() -> list[str]:
    return [spec.name for spec in form_fields() if spec.name not in BASIC_FIELDS]


def preset_choices() -> list[str]:
    return [AUTO_PRESET, *PRESETS]


def preset_config(name: str, family: str, has_gpu: bool = True, is_demo: bool = False) -> TrainConfig:
    """``auto`` → the family's beginner defaults on a GPU, the quick preset on a CPU or the demo model;
    else the named preset over the family's defaults."""
    return resolve_preset(name, family, has_gpu, is_demo).config


def component_for(spec: Any, value: Any) -> Any:
    """A Gradio input for one config field, labelled and described from the field itself."""
    import gradio as gr

    label = LABELS.get(spec.name, spec.name.replace("_", " ").capitalize())
    common = {"label": label, "info": spec.metadata.get("help"), "elem_id": f"train_tools_cfg_{spec.name}"}
    kind = spec.type if isinstance(spec.type, str) else spec.type.__name__
    if spec.name in CHOICES:
        return gr.Dropdown(choices=list(CHOICES[spec.name]), value=value, **common)
    if kind == "bool":
        return gr.Checkbox(value=bool(value), **common)
    if kind == "int":
        return gr.Number(value=int(value), precision=0, **common)
    if kind == "float":
        return gr.Number(value=float(value), **common)
    lines = 3 if spec.name == "sample_prompts" else 1
    return gr.Textbox(value=str(value), lines=lines, **common)


def config_values(config: TrainConfig) -> dict[str, Any]:
    """``{field: value}`` for filling the form."""
    return {spec.name: getattr(config, spec.name) for spec in form_fields()}


def build_config(values: dict[str, Any], dataset_dir: str, default_output: str) -> TrainConfig:
    """The config from the form's values by field name; the dataset is the selected version's."""
    unknown = set(values) - {spec.name for spec in form_fields()}
    if unknown:
        raise ConfigError(f"unknown training settings: {', '.join(sorted(unknown))}")
    data = {name: value for name, value in values.items() if value is not None}
    for spec in form_fields():
        if data.get(spec.name) is None and spec.default is not MISSING:
            data[spec.name] = spec.default
    if not str(data.get("output_name") or "").strip():
        data["output_name"] = default_output
    data["dataset_dir"] = dataset_dir
    return TrainConfig.from_dict(data)


def planned_steps(config_values_: dict[str, Any], dataset_dir: Any) -> tuple[int, int, int, str]:
    """(images × repeats, steps per epoch, total steps, explanation) for the form's current values.

    Bucketing can add a few batches (a batch never mixes buckets); the trainer's
    plan is exact, this is the estimate shown before starting.
    """
    repeats = max(1, int(config_values_.get("default_repeats") or 1))
    batch = max(1, int(config_values_.get("batch_size") or 1))
    accumulation = max(1, int(config_values_.get("gradient_accumulation") or 1))
    epochs = max(1, int(config_values_.get("epochs") or 1))
    max_steps = int(config_values_.get("max_steps") or 0)
    folders = dataset_folders(dataset_dir, repeats) if dataset_dir.is_dir() else []
    images = sum(folder.image_count for folder in folders)
    samples = sum(folder.image_count * folder.repeats for folder in folders)
    per_epoch = max(1, math.ceil(math.ceil(samples / batch) / accumulation)) if samples else 0
    total = max_steps if max_steps > 0 else epochs * per_epoch
    if max_steps > 0:
        text = f"{images} images, {samples} samples per epoch; max steps {max_steps}"
    else:
        text = f"{images} images × repeats = {samples} samples × {epochs} epochs / batch {batch * accumulation}"
        text += f" = {total} steps"
    return samples, per_epoch, total, text
