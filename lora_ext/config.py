"""One training configuration, unchanged from the UI or CLI to the trainer to the saved file.

``TrainConfig`` is frozen; the trainer never assigns to it. Every field has a
default and a ``help`` string in its metadata, which the UI uses for labels and
tooltips. Numbers derived from the config and the dataset (steps per epoch, total
steps, warmup steps) live in ``lora_ext.training.plan.TrainPlan``.

Presets are plain data (``PRESETS``): a name → the fields they change. User
presets are TOML or JSON files holding the same field names.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lora_ext.dataset.names import validate_name
from lora_ext.errors import ConfigError, DatasetError

CONFIG_VERSION = 1

NETWORK_TYPES = ("lora", "locon", "loha", "lokr")
OPTIMIZERS = ("AdamW", "AdamW8bit", "Lion", "Prodigy", "Adafactor", "AdamWScheduleFree", "SGD")
SCHEDULERS = ("constant", "constant_with_warmup", "cosine", "cosine_with_restarts", "linear", "polynomial")
PRECISIONS = ("no", "fp16", "bf16")
SAVE_DTYPES = ("fp16", "bf16", "fp32")
PREDICTION_CHOICES = ("auto", "eps", "v")
ZERO_TERMINAL_SNR_CHOICES = ("auto", "on", "off")
MEMORY_MODES = ("manual", "auto")


# The choices of each text option (the page's dropdowns show these; ``_check`` refuses anything else).
CHOICES: dict[str, tuple[str, ...]] = {
    "network_type": NETWORK_TYPES,
    "optimizer": OPTIMIZERS,
    "lr_scheduler": SCHEDULERS,
    "mixed_precision": PRECISIONS,
    "save_dtype": SAVE_DTYPES,
    "prediction": PREDICTION_CHOICES,
    "zero_terminal_snr": ZERO_TERMINAL_SNR_CHOICES,
    "memory_mode": MEMORY_MODES,
}


@dataclass(frozen=True)
class Range:
    """Where a number has a meaning: ``low`` ≤ (or <, ``low_open``) value ≤ (or <, ``high_open``) ``high``."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def refusal(self, name: str, value: float) -> str | None:
        """The one-line reason ``value`` is refused for setting ``name``; None when it is in range."""
        if not math.isfinite(value):
            return f"{name} must be a finite number, not {value}"
        below = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        above = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        if not (below or above):
            return None
        low, high = f"{self.low:g}" if self.low is not None else "", f"{self.high:g}" if self.high is not None else ""
        if self.high is None:
            return f"{name} must be {'above' if self.low_open else 'at least'} {low}, not {value:g}"
        if self.low is None:
            return f"{name} must be at most {high}, not {value:g}"
        brackets = ("(" if self.low_open else "[") + f"{low}, {high}" + (")" if self.high_open else "]")
        return f"{name} must be in {brackets}, not {value:g}"


AT_LEAST_0, AT_LEAST_1, ABOVE_0 = Range(0), Range(1), Range(0, low_open=True)
FRACTION = Range(0, 1, high_open=True)  # a probability or share that must leave something: [0, 1)
# Every number that has a meaning only in a range (``_check`` refuses the rest with one line); ``seed`` is any
# integer and ``preferred_weight`` any finite weight, as A1111 takes it.
RANGES: dict[str, Range] = {
    "prior_loss_weight": AT_LEAST_0,
    "default_repeats": AT_LEAST_1,
    "resolution": Range(8),
    "min_bucket_reso": Range(8),
    "max_bucket_reso": Range(8),
    "bucket_reso_steps": Range(8),
    "keep_tokens": AT_LEAST_0,
    "caption_dropout_rate": FRACTION,
    "tag_dropout_rate": FRACTION,
    "validation_split": FRACTION,
    "rank": AT_LEAST_1,
    "alpha": ABOVE_0,
    "conv_rank": AT_LEAST_0,  # at least 1 for LoCon (checked with the network type)
    "conv_alpha": ABOVE_0,
    "loraplus_lr_ratio": AT_LEAST_0,  # 0 turns it off
    "lokr_factor": Range(-1),  # -1: no limit; 0 is refused with the network type
    "dropout": FRACTION,
    "rank_dropout": FRACTION,
    "module_dropout": FRACTION,
    "min_snr_gamma": AT_LEAST_0,  # 0 turns it off
    "noise_offset": Range(0, 1),
    "min_timestep": Range(0, 999),
    "max_timestep": Range(1, 1000),
    "weight_decay": AT_LEAST_0,
    "unet_lr": AT_LEAST_0,
    "text_encoder_lr": AT_LEAST_0,
    "warmup_steps": AT_LEAST_0,
    "warmup_ratio": FRACTION,
    "num_cycles": AT_LEAST_1,
    "power": ABOVE_0,
    "batch_size": AT_LEAST_1,
    "gradient_accumulation": AT_LEAST_1,
    "max_grad_norm": AT_LEAST_0,  # 0 turns clipping off
    "epochs": AT_LEAST_0,
    "max_steps": AT_LEAST_0,
    "save_every_n_epochs": AT_LEAST_0,
    "save_every_n_steps": AT_LEAST_0,
    "keep_last_n": AT_LEAST_0,
    "sample_every_n_epochs": AT_LEAST_0,
    "sample_every_n_steps": AT_LEAST_0,
    "validate_every_n_steps": AT_LEAST_0,
    "early_stop_patience": AT_LEAST_0,
    "preferred_weight": Range(),
}


def _f(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs besides the model and the dataset files."""

    # -- data -------------------------------------------------------------------------------
    dataset_dir: str = _f("", "Folder of images with .txt captions, or of kohya 'N_name' sub-folders.")
    reg_dir: str = _f("", "Optional folder of regularisation images (same layout).")
    prior_loss_weight: float = _f(1.0, "Loss weight of regularisation images.")
    default_repeats: int = _f(10, "Repeats for images at the top level of the dataset folder.")
    caption_extension: str = _f(".txt", "Extension of caption files next to the images.")
    resolution: int = _f(512, "Training resolution (side of the square with the target area).")
    enable_bucket: bool = _f(True, "Aspect-ratio bucketing: group images by shape instead of cropping to a square.")
    min_bucket_reso: int = _f(256, "Smallest bucket side.")
    max_bucket_reso: int = _f(1024, "Largest bucket side.")
    bucket_reso_steps: int = _f(64, "Bucket sides are multiples of this.")
    bucket_no_upscale: bool = _f(False, "Never upscale small images; their bucket is their own size.")
    flip_aug: bool = _f(False, "Randomly mirror images (leave off for faces and asymmetric characters).")
    cache_latents: bool = _f(True, "Encode each image once and keep the latent in RAM.")
    cache_latents_to_disk: bool = _f(False, "Also keep latents in .npz-like files next to the images.")
    shuffle_caption: bool = _f(False, "Shuffle the tags of each caption every time it is used.")
    keep_tokens: int = _f(0, "Number of leading tags that shuffle and tag dropout never touch.")
    caption_dropout_rate: float = _f(0.0, "Probability of training a sample with an empty caption.")
    tag_dropout_rate: float = _f(0.0, "Probability of dropping each (non-kept) tag.")
    trigger_word: str = _f("", "Put first in every caption (if missing) and written as activation text.")
    masked_loss: bool = _f(False, "Use the image's alpha channel as a loss mask.")
    validation_split: float = _f(
        0.0,
        "Fraction of images held out for the validation loss (fixed noise and timesteps); 0 measures it on a fixed "
        "sample of the training images.",
    )

    # -- network ----------------------------------------------------------------------------
    network_type: str = _f(
        "lora",
        "lora (linear and 1×1 layers), locon (adds 3×3 convolutions), loha or lokr (LyCORIS; 3×3 convolutions "
        "too unless conv_rank is 0).",
    )
    rank: int = _f(16, "LoRA rank (network_dim).")
    alpha: float = _f(8.0, "LoRA alpha; the update is scaled by alpha / rank.")
    conv_rank: int = _f(8, "Rank of 3×3 convolution LoRAs (LoCon, LoHa, LoKr).")
    conv_alpha: float = _f(1.0, "Alpha of 3×3 convolution LoRAs (LoCon, LoHa, LoKr).")
    dora: bool = _f(False, "DoRA: also train a magnitude per input column (weight decomposition, LyCORIS dora_wd).")
    lokr_factor: int = _f(-1, "LoKr: split each dimension at most this far (-1: as square as possible).")
    loraplus_lr_ratio: float = _f(
        0.0, "LoRA+: train the up (B) matrices this many times faster; 0 = off (16 is common)."
    )
    dropout: float = _f(0.0, "Neuron dropout on the LoRA down-projection output.")
    rank_dropout: float = _f(0.0, "Probability of dropping each rank channel per sample.")
    module_dropout: float = _f(0.0, "Probability of skipping a whole LoRA module for a step.")
    train_text_encoder: bool = _f(True, "Also train LoRAs on the text encoder(s).")
    init_weights: str = _f("", "Optional LoRA file to start from (same rank).")

    # -- loss -------------------------------------------------------------------------------
    prediction: str = _f("auto", "What the UNet is trained to predict: auto (the model's own), eps or v.")
    zero_terminal_snr: str = _f(
        "auto", "Zero-terminal-SNR noise schedule (v-prediction models such as NoobAI V-Pred): auto, on or off."
    )
    override_detection: bool = _f(
        False, "Allow a prediction or schedule other than the loaded model's (the LoRA will not match the model)."
    )
    min_snr_gamma: float = _f(0.0, "Min-SNR-γ loss weighting; 0 turns it off (5 is common).")
    debiased_estimation: bool = _f(False, "Debiased-estimation loss weighting (1/√SNR for ε, 1/(SNR+1) for v).")
    noise_offset: float = _f(0.0, "Noise offset strength (about 0.05–0.1 helps very dark/bright images).")
    min_timestep: int = _f(0, "Lowest training timestep.")
    max_timestep: int = _f(1000, "One above the highest training timestep.")

    # -- optimisation -----------------------------------------------------------------------
    optimizer: str = _f(
        "AdamW",
        "AdamW, AdamW8bit (bitsandbytes, CUDA), Lion (lion-pytorch), Prodigy (prodigyopt), Adafactor, "
        "AdamWScheduleFree (schedulefree; no LR schedule), SGD.",
    )
    optimizer_args: str = _f("", "Extra optimizer arguments as 'key=value key=value'.")
    weight_decay: float = _f(0.01, "Weight decay.")
    unet_lr: float = _f(1e-4, "Learning rate of the UNet LoRAs.")
    text_encoder_lr: float = _f(5e-5, "Learning rate of the text-encoder LoRAs.")
    lr_scheduler: str = _f(
        "cosine", "constant, constant_with_warmup, cosine, cosine_with_restarts, linear, polynomial."
    )
    warmup_steps: int = _f(0, "Warm-up steps; when 0, warmup_ratio is used.")
    warmup_ratio: float = _f(0.05, "Warm-up as a fraction of all steps (used when warmup_steps is 0).")
    num_cycles: int = _f(1, "Restarts of cosine_with_restarts.")
    power: float = _f(1.0, "Power of the polynomial schedule.")
    batch_size: int = _f(1, "Images per batch (a batch never mixes buckets).")
    gradient_accumulation: int = _f(1, "Batches per optimizer step.")
    max_grad_norm: float = _f(1.0, "Clip the gradient norm to this; 0 turns clipping off.")
    mixed_precision: str = _f("no", "no, fp16 (with a gradient scaler) or bf16 autocast.")
    gradient_checkpointing: bool = _f(False, "Recompute activations in backward (less memory, ~20–30 % slower).")
    fused_backward: bool = _f(
        False, "Adafactor only: step and free each gradient during backward (sd-scripts' fused backward pass)."
    )
    fp8_base: bool = _f(
        False, "Keep the frozen UNet weights in fp8 while training (each layer upcast when it runs; less memory)."
    )
    memory_mode: str = _f(
        "manual",
        "manual, or auto: before the run, turn on checkpointing, fp8 base weights and UNet-only training as "
        "needed to fit the device's free memory.",
    )
    epochs: int = _f(10, "Number of epochs (ignored when max_steps is set).")
    max_steps: int = _f(0, "Total optimizer steps; 0 means epochs × steps per epoch.")
    seed: int = _f(42, "Random seed; the same seed on CPU gives the same file.")

    # -- output and control -----------------------------------------------------------------
    output_name: str = _f("", "File stem of the LoRA; also ss_output_name (the prompt alias).")
    save_dtype: str = _f("fp16", "Tensor dtype of the saved file: fp16, bf16 or fp32.")
    save_every_n_epochs: int = _f(0, "Also save <name>-000005.safetensors every N epochs; 0 = only at the end.")
    save_every_n_steps: int = _f(0, "Also save <name>-step00000100.safetensors every N steps.")
    keep_last_n: int = _f(0, "Keep only the last N intermediate files; 0 keeps all.")
    save_state: bool = _f(False, "Save a resumable training state with each save.")
    sample_prompts: str = _f("", "Preview prompts, one per line, with --n --w --h --s --l --d options.")
    sample_every_n_epochs: int = _f(0, "Generate previews every N epochs; 0 = never.")
    sample_every_n_steps: int = _f(0, "Generate previews every N steps; 0 = never.")
    validate_every_n_steps: int = _f(0, "Validation loss every N steps; 0 = at the end of each epoch.")
    early_stop_patience: int = _f(
        0, "Stop when the validation loss has not improved for N validations and keep the best epoch; 0 = off."
    )
    training_comment: str = _f("", "Free text stored as ss_training_comment.")
    preferred_weight: float = _f(0.8, "Weight written to the <name>.json sidecar.")
    vae_fp32: bool = _f(False, "Keep latent encoding in fp32 (recommended for SDXL with fp16).")

    def __post_init__(self) -> None:
        if self.output_name:  # a file name in the LoRA folder, checked like a project name; "" = chosen later
            object.__setattr__(self, "output_name", _output_name(self.output_name))
        _check(self)

    @property
    def trains_text_encoder(self) -> bool:
        """Whether the run trains the text encoder(s): asked for, with a learning rate above 0."""
        return self.train_text_encoder and self.text_encoder_lr > 0

    @property
    def trains_unet(self) -> bool:
        """Whether the run trains the UNet: its learning rate is above 0."""
        return self.unet_lr > 0

    @property
    def trained_conv_rank(self) -> int:
        """The rank of the trained 3×3 convolutions: ``conv_rank`` for LoCon, LoHa and LoKr, 0 (none) for LoRA."""
        return self.conv_rank if self.network_type != "lora" else 0

    # -- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """All fields plus ``config_version``; JSON-serialisable."""
        data = dataclasses.asdict(self)
        data["config_version"] = CONFIG_VERSION
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], warn: Callable[[str], None] | None = None) -> TrainConfig:
        """Build a config from ``to_dict`` output of any version; unknown keys are warned about, not fatal."""
        warn = warn or (lambda message: warnings.warn(message, stacklevel=3))
        data = dict(data)
        version = int(data.pop("config_version", CONFIG_VERSION))
        for from_version in range(version, CONFIG_VERSION):
            data = MIGRATIONS[from_version](data)
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            warn(f"ignoring unknown training settings: {', '.join(unknown)}")
        values = {name: _coerce(known[name], value) for name, value in data.items() if name in known}
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


# Version n → n+1; empty while there has only been one version.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def field_help() -> dict[str, str]:
    """Field name → help text, for the UI's labels and tooltips."""
    return {f.name: f.metadata["help"] for f in fields(TrainConfig)}


def _coerce(spec: dataclasses.Field, value: Any) -> Any:
    kind = spec.type if isinstance(spec.type, str) else spec.type.__name__
    try:
        if kind == "bool":
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        return str(value)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"setting {spec.name} must be a {kind}, not {value!r}") from error


def _output_name(name: str) -> str:
    """``name`` as the file stem of a LoRA: the project-name rules (no path, no ``..``, not too long)."""
    try:
        return validate_name(name, "output name")
    except DatasetError as error:
        raise ConfigError(error.user_message, hint=error.hint) from None


def _check(config: TrainConfig) -> None:
    for name, allowed in CHOICES.items():
        value = getattr(config, name)
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    for name, allowed_range in RANGES.items():
        refusal = allowed_range.refusal(name, getattr(config, name))
        if refusal:
            raise ConfigError(refusal)
    if config.network_type == "locon" and config.conv_rank < 1:
        raise ConfigError("conv_rank must be at least 1 for LoCon", hint="or choose network_type lora")
    if config.lokr_factor == 0:
        raise ConfigError("lokr_factor must be -1 or at least 1, not 0")
    if not config.min_timestep < config.max_timestep:
        raise ConfigError("timesteps must satisfy 0 ≤ min_timestep < max_timestep ≤ 1000")
    if config.epochs < 1 and config.max_steps < 1:
        raise ConfigError("set epochs or max_steps to at least 1")
    if not (config.trains_unet or config.trains_text_encoder):
        raise ConfigError("nothing to train: the UNet learning rate is 0 and the text encoder is not trained")
    if config.resolution % 8:
        raise ConfigError(f"resolution must be a multiple of 8, not {config.resolution}")
    if config.min_bucket_reso > config.max_bucket_reso:
        raise ConfigError("min_bucket_reso must not exceed max_bucket_reso")
    if config.lr_scheduler == "constant" and config.warmup_steps > 0:
        raise ConfigError("the constant schedule has no warm-up", hint="choose constant_with_warmup")
    parse_optimizer_args(config.optimizer_args)


def parse_optimizer_args(text: str) -> dict[str, Any]:
    """``"betas=0.9,0.99 eps=1e-8 relative_step=False"`` → keyword arguments."""
    result: dict[str, Any] = {}
    for item in text.split():
        key, sep, raw = item.partition("=")
        if not sep or not key.isidentifier():
            raise ConfigError(f"optimizer_args: {item!r} is not key=value")
        values = [_literal(part) for part in raw.split(",")]
        result[key] = tuple(values) if len(values) > 1 else values[0]
    return result


def _literal(text: str) -> Any:
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


# -- presets ---------------------------------------------------------------------------------

# ``auto``: the family's beginner preset where a GPU trains, else ``quick``, which finishes in a few
# minutes on a CPU (a first LoRA to see the whole flow work, not a finished one).
AUTO_PRESET = "auto"
QUICK_PRESET = "quick"
LOW_MEMORY_PRESET = "low-memory"
QUICK_RESOLUTION = 256
DEMO_RESOLUTION = 64  # the demo model's own image size (lora_ext/demo.py)

PRESETS: dict[str, dict[str, Any]] = {
    # ≈ 10 repeats × 10 epochs for 20 images (≈ 2000 steps at batch 1).
    "sd1-beginner": {
        "rank": 16,
        "alpha": 8.0,
        "unet_lr": 1e-4,
        "text_encoder_lr": 5e-5,
        "optimizer": "AdamW",
        "lr_scheduler": "cosine",
        "warmup_ratio": 0.05,
        "resolution": 512,
        "enable_bucket": True,
        "default_repeats": 10,
        "epochs": 10,
        "train_text_encoder": True,
    },
    "sd2-v-beginner": {
        "rank": 16,
        "alpha": 8.0,
        "unet_lr": 1e-4,
        "text_encoder_lr": 5e-5,
        "optimizer": "AdamW",
        "lr_scheduler": "cosine",
        "warmup_ratio": 0.05,
        "resolution": 768,
        "enable_bucket": True,
        "default_repeats": 10,
        "epochs": 10,
        "max_bucket_reso": 1280,
        "train_text_encoder": True,
    },
    "sdxl-beginner": {
        "rank": 16,
        "alpha": 8.0,
        "unet_lr": 1e-4,
        "optimizer": "AdamW",
        "lr_scheduler": "cosine",
        "warmup_ratio": 0.05,
        "resolution": 1024,
        "enable_bucket": True,
        "max_bucket_reso": 2048,
        "default_repeats": 8,
        "epochs": 10,
        "train_text_encoder": False,
        "vae_fp32": True,
        "gradient_checkpointing": True,
    },
    "locon": {"network_type": "locon", "conv_rank": 8, "conv_alpha": 1.0},
    # LyCORIS' usual starting points: LoHa at a small rank (its effective rank is the square), LoKr's factors
    # as square as possible; both take 3×3 convolutions too.
    "loha": {"network_type": "loha", "rank": 8, "alpha": 4.0, "conv_rank": 4, "conv_alpha": 2.0},
    "lokr": {"network_type": "lokr", "rank": 8, "alpha": 4.0, "conv_rank": 4, "conv_alpha": 2.0, "lokr_factor": -1},
    "dora": {"dora": True},
    # Optimizers with the settings their users start from (sd-scripts / kohya_ss presets and the libraries' docs).
    "adamw8bit": {"optimizer": "AdamW8bit"},
    "lion": {  # ~3-10× lower LR and higher weight decay than AdamW (the Lion paper; train-tools' Lion setup)
        "optimizer": "Lion",
        "unet_lr": 3e-5,
        "text_encoder_lr": 1e-5,
        "weight_decay": 0.1,
        "optimizer_args": "betas=0.9,0.99",
    },
    "prodigy": {  # Prodigy finds the step size itself: LR 1.0 scales it (kohya_ss' Prodigy presets)
        "optimizer": "Prodigy",
        "unet_lr": 1.0,
        "text_encoder_lr": 1.0,
        "weight_decay": 0.01,
        "optimizer_args": "decouple=True use_bias_correction=True safeguard_warmup=True",
        "lr_scheduler": "cosine",
    },
    "adafactor": {"optimizer": "Adafactor", "lr_scheduler": "constant_with_warmup", "weight_decay": 0.0},
    "schedulefree": {  # no LR schedule: the optimizer warms up and averages by itself
        "optimizer": "AdamWScheduleFree",
        "unet_lr": 3e-4,
        "text_encoder_lr": 1e-4,
        "lr_scheduler": "constant_with_warmup",  # the warm-up goes to the optimizer's own ``warmup_steps``
        "warmup_ratio": 0.05,
        "weight_decay": 0.01,
    },
    # SDXL on 8-12 GB (sd-scripts' train_SDXL advice): frozen weights in fp8, recomputed activations, Adafactor
    # stepping each gradient as backward makes it, UNet only, bf16, cached latents, batch 1.
    LOW_MEMORY_PRESET: {
        "fp8_base": True,
        "gradient_checkpointing": True,
        "optimizer": "Adafactor",
        "fused_backward": True,
        "lr_scheduler": "constant_with_warmup",
        "weight_decay": 0.0,
        "gradient_accumulation": 1,
        "train_text_encoder": False,
        "mixed_precision": "bf16",
        "cache_latents": True,
        "batch_size": 1,
    },
    "fast-test": {
        "rank": 4,
        "alpha": 4.0,
        "epochs": 1,
        "default_repeats": 1,
        "resolution": 64,
        "min_bucket_reso": 64,
        "unet_lr": 1e-3,
        "text_encoder_lr": 1e-3,
        "lr_scheduler": "constant",
        "warmup_ratio": 0.0,
    },
    QUICK_PRESET: {
        "rank": 8,
        "alpha": 4.0,
        "unet_lr": 3e-4,
        "text_encoder_lr": 5e-5,
        "optimizer": "AdamW",
        "lr_scheduler": "constant",
        "warmup_ratio": 0.0,
        "resolution": QUICK_RESOLUTION,
        "enable_bucket": True,
        "min_bucket_reso": 64,
        "max_bucket_reso": 512,
        "default_repeats": 2,
        "epochs": 4,
        "max_steps": 0,
        "train_text_encoder": False,
        "gradient_checkpointing": False,
    },
}

FAMILY_PRESETS = {"sd1": "sd1-beginner", "sd2": "sd2-v-beginner", "sdxl": "sdxl-beginner"}


@dataclass(frozen=True)
class PresetChoice:
    """The config a preset name stands for on this machine, and why ``auto`` chose it."""

    config: TrainConfig
    name: str  # the preset applied (``auto`` resolved)
    reason: str = ""  # one line when ``auto`` picked it, e.g. "auto picked the quick preset: …"


def auto_preset(family: str, has_gpu: bool, is_demo: bool = False) -> tuple[str, str]:
    """(preset name, reason) ``auto`` stands for: the quick preset on the demo model or without a GPU."""
    if is_demo:
        return QUICK_PRESET, f"auto picked the {QUICK_PRESET} preset: this is the demo model"
    if not has_gpu:
        return QUICK_PRESET, f"auto picked the {QUICK_PRESET} preset: this machine has no GPU"
    name = FAMILY_PRESETS.get(family, "sd1-beginner")
    return name, f"auto picked the {name} preset for this {family} model"


def resolve_preset(name: str | None, family: str, has_gpu: bool = True, is_demo: bool = False) -> PresetChoice:
    """A preset name (``auto`` or empty included) → its config over the family's beginner defaults."""
    reason = ""
    if not name or name == AUTO_PRESET:
        name, reason = auto_preset(family, has_gpu, is_demo)
    config = preset(name) if name in FAMILY_PRESETS.values() else preset(name, default_config(family))
    if name == QUICK_PRESET and is_demo:
        config = config.replace(resolution=DEMO_RESOLUTION)
    return PresetChoice(config, name, reason)


def preset(name: str, base: TrainConfig | None = None) -> TrainConfig:
    """A built-in preset applied over ``base`` (defaults when omitted)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}", hint=f"choose one of {', '.join(PRESETS)}")
    return (base or TrainConfig()).replace(**PRESETS[name])


def default_config(family: str) -> TrainConfig:
    """The beginner defaults for a model family ('sd1', 'sd2', 'sdxl')."""
    return preset(FAMILY_PRESETS.get(family, "sd1-beginner"))


def load_settings(path: str | Path) -> dict[str, Any]:
    """A user preset or config file (``.toml`` or ``.json``) as a plain mapping."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read the settings file {path}: {error.strerror}") from error
    try:
        data = _toml_module().loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (ValueError, json.JSONDecodeError) as error:  # tomllib.TOMLDecodeError is a ValueError
        raise ConfigError(f"the settings file {path.name} is not valid {path.suffix[1:].upper()}: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"the settings file {path.name} must hold a table of settings")
    return data.get("train", data) if isinstance(data.get("train"), dict) else data


def _toml_module():
    """``tomllib`` (Python ≥ 3.11) or ``tomli`` (the WebUI's Python 3.10, when installed)."""
    try:
        import tomllib
    except ImportError:
        try:
            import tomli as tomllib
        except ImportError as error:
            raise ConfigError(
                "reading TOML needs Python 3.11 or the 'tomli' package", hint="save the preset as .json instead"
            ) from error
    return tomllib


def load_config(
    path: str | Path, base: TrainConfig | None = None, warn: Callable[[str], None] | None = None
) -> TrainConfig:
    """A config from a user preset file, over ``base``'s values."""
    merged = (base or TrainConfig()).to_dict()
    merged.update(load_settings(path))
    return TrainConfig.from_dict(merged, warn=warn)


def save_config(config: TrainConfig, path: str | Path) -> None:
    """Write a user preset as TOML (``.toml``) or JSON (anything else), atomically."""
    from lora_ext.fileio import write_text_atomic

    path = Path(path)
    data = config.to_dict()
    if path.suffix.lower() == ".toml":
        text = "".join(f"{key} = {_toml_value(value)}\n" for key, value in data.items())
    else:
        text = json.dumps(data, indent=2) + "\n"
    write_text_atomic(path, text)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a valid TOML basic string
