"""The training settings form, generated from ``TrainConfig``'s fields.

Every engine option gets one component, named after its field, with the
field's ``help`` metadata as its description (one source for help text). The
config is built back from ``{field name: value}`` by ``lora_ext.app.train_settings``.
"""

from __future__ import annotations

from typing import Any

from lora_ext.app.train_settings import setting_fields
from lora_ext.config import CHOICES

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
# The Advanced settings in titled groups, in this order; a field no group names goes to "Other" at the end.
ADVANCED_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Network",
        (
            *("network_type", "conv_rank", "conv_alpha", "dora", "lokr_factor", "dropout", "rank_dropout"),
            *("module_dropout", "init_weights"),
        ),
    ),
    (
        "Optimizer and schedule",
        (
            *("optimizer", "optimizer_args", "weight_decay", "lr_scheduler", "warmup_steps", "warmup_ratio"),
            *("loraplus_lr_ratio", "num_cycles", "power", "max_grad_norm"),
        ),
    ),
    (
        "Dataset and captions",
        (
            *("reg_dir", "prior_loss_weight", "caption_extension", "shuffle_caption", "keep_tokens"),
            *("caption_dropout_rate", "tag_dropout_rate", "flip_aug", "masked_loss"),
        ),
    ),
    ("Buckets", ("enable_bucket", "min_bucket_reso", "max_bucket_reso", "bucket_reso_steps", "bucket_no_upscale")),
    (
        "Noise and loss",
        (
            *("prediction", "zero_terminal_snr", "override_detection", "min_snr_gamma", "debiased_estimation"),
            *("noise_offset", "min_timestep", "max_timestep"),
        ),
    ),
    (
        "Memory and precision",
        (
            *("memory_mode", "mixed_precision", "gradient_checkpointing", "fp8_base", "fused_backward"),
            *("gradient_accumulation", "cache_latents", "cache_latents_to_disk", "vae_fp32"),
        ),
    ),
    ("Saving", ("save_dtype", "save_every_n_epochs", "save_every_n_steps", "keep_last_n", "save_state")),
    (
        "Previews and validation",
        ("sample_every_n_steps", "validation_split", "validate_every_n_steps", "early_stop_patience"),
    ),
    ("Metadata", ("training_comment", "preferred_weight")),
)
OTHER_GROUP = "Other"
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
    "early_stop_patience": "Early stop patience",
    "training_comment": "Training comment",
    "preferred_weight": "Preferred weight",
    "vae_fp32": "VAE in fp32",
    "prediction": "Prediction",
    "zero_terminal_snr": "Zero terminal SNR",
    "override_detection": "Train against the model's detection",
    "debiased_estimation": "Debiased estimation",
    "dora": "DoRA (weight decomposition)",
    "lokr_factor": "LoKr factor",
    "loraplus_lr_ratio": "LoRA+ ratio",
    "fused_backward": "Fused backward pass",
    "fp8_base": "UNet weights in fp8",
    "memory_mode": "Memory mode",
}


def form_fields() -> list[Any]:
    """The ``TrainConfig`` fields the form shows: every setting."""
    return setting_fields()


def advanced_fields() -> list[str]:
    return [spec.name for spec in form_fields() if spec.name not in BASIC_FIELDS]


def advanced_groups() -> list[tuple[str, list[str]]]:
    """``(title, field names)`` of the Advanced settings: ``ADVANCED_GROUPS``, then any field they leave out."""
    shown = set(advanced_fields())
    groups = [(title, [name for name in names if name in shown]) for title, names in ADVANCED_GROUPS]
    grouped = {name for _title, names in groups for name in names}
    other = [name for name in advanced_fields() if name not in grouped]
    return [(title, names) for title, names in [*groups, (OTHER_GROUP, other)] if names]


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
