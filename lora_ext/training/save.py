"""Writing trained LoRAs in kohya format, with the metadata A1111 and other tools read.

``kohya_metadata`` is the one function that turns a config (plus the run's facts)
into ``ss_*`` and ``modelspec.*`` keys; the whole config also goes in as one JSON
entry (``train_tools_config``). Hashes follow sd-scripts'
``precalculate_safetensors_hashes``: ``sshs_model_hash`` is the sha256 of the
tensor bytes after the header (A1111's "addnet" hash), ``sshs_legacy_hash`` the
8-hex sha256 of 64 KiB at 1 MiB of the in-memory file with ``ss_*`` metadata only.
"""

from __future__ import annotations

import hashlib
import json
import struct
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from lora_ext.config import TrainConfig
from lora_ext.fileio import atomic_path, write_text_atomic
from lora_ext.host import ModelInfo

SAVE_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
BASE_MODEL_VERSION = {
    ("sd1", "eps"): "sd_v1",
    ("sd1", "v"): "sd_v1_v",
    ("sd2", "eps"): "sd_v2",
    ("sd2", "v"): "sd_v2_v",
    ("sdxl", "eps"): "sdxl_base_v1-0",
    ("sdxl", "v"): "sdxl_base_v1-0",
}
SD_VERSION = {"sd1": "SD1", "sd2": "SD2", "sdxl": "SDXL"}  # A1111's user-metadata "sd version" values
NETWORK_MODULE = "networks.lora"
LYCORIS_MODULE = "lycoris.kohya"  # LoHa, LoKr and DoRA files, with ``algo`` in ss_network_args as LyCORIS writes it


@dataclass(frozen=True)
class RunFacts:
    """What the metadata needs from the run besides the config."""

    info: ModelInfo
    output_name: str
    session_id: str
    started_at: float
    steps: int
    epoch: int
    total_steps: int
    epochs: int
    batches_per_epoch: int
    num_train_images: int
    num_reg_images: int
    num_validation_images: int
    warmup_steps: int
    optimizer: str
    dataset_dirs: dict[str, dict[str, int]]
    reg_dataset_dirs: dict[str, dict[str, int]]
    tag_frequency: dict[str, dict[str, int]]
    bucket_info: dict[str, Any] | None
    resolution: tuple[int, int]
    prediction: str  # what was trained: "eps" or "v" (``training/objective.py``), not only what the model says
    zero_terminal_snr: bool
    world_size: int = 1  # processes of a data-parallel run
    validation: dict[str, Any] | None = None  # ``validation.history_json`` up to this file's step


def new_session_id() -> str:
    return uuid.uuid4().hex


def _architecture(info: ModelInfo, prediction: str) -> str:
    if info.family == "sdxl":
        return "stable-diffusion-xl-v1-base/lora"
    if info.family == "sd2":
        return "stable-diffusion-v2-768-v/lora" if prediction == "v" else "stable-diffusion-v2-512/lora"
    return "stable-diffusion-v1/lora"


def kohya_metadata(config: TrainConfig, facts: RunFacts, finished_at: float | None = None) -> dict[str, str]:
    """Every metadata entry of a saved file, as strings (JSON for nested values)."""
    info = facts.info
    network_args = _network_args(config)
    unet_only = not config.trains_text_encoder
    values: dict[str, Any] = {
        "ss_session_id": facts.session_id,
        "ss_training_started_at": facts.started_at,
        "ss_training_finished_at": finished_at if finished_at is not None else time.time(),
        "ss_output_name": facts.output_name,
        "ss_learning_rate": config.unet_lr,
        "ss_unet_lr": config.unet_lr,
        "ss_text_encoder_lr": 0.0 if unet_only else config.text_encoder_lr,
        "ss_num_train_images": facts.num_train_images,
        "ss_num_reg_images": facts.num_reg_images,
        "ss_num_validation_images": facts.num_validation_images,
        "ss_num_batches_per_epoch": facts.batches_per_epoch,
        "ss_num_epochs": facts.epochs,
        "ss_epoch": facts.epoch,
        "ss_steps": facts.steps,
        "ss_max_train_steps": facts.total_steps,
        "ss_gradient_checkpointing": config.gradient_checkpointing,
        "ss_gradient_accumulation_steps": config.gradient_accumulation,
        "ss_lr_warmup_steps": facts.warmup_steps,
        "ss_lr_scheduler": config.lr_scheduler,
        "ss_network_module": LYCORIS_MODULE if is_lycoris(config) else NETWORK_MODULE,
        "ss_network_dim": config.rank,
        "ss_network_alpha": config.alpha,
        "ss_network_dropout": config.dropout,
        "ss_network_args": json.dumps(network_args) if network_args else None,
        "ss_network_train_unet_only": unet_only,
        "ss_mixed_precision": config.mixed_precision,
        "ss_full_fp16": False,
        "ss_v2": info.family == "sd2",
        "ss_base_model_version": BASE_MODEL_VERSION[(info.family, facts.prediction)],
        "ss_v_parameterization": facts.prediction == "v",
        "ss_clip_skip": None,
        "ss_max_token_length": None,
        "ss_cache_latents": config.cache_latents or config.cache_latents_to_disk,
        "ss_seed": config.seed,
        "ss_lowram": False,
        "ss_noise_offset": config.noise_offset or None,
        "ss_multires_noise_iterations": None,
        "ss_multires_noise_discount": None,
        "ss_adaptive_noise_scale": None,
        "ss_zero_terminal_snr": facts.zero_terminal_snr,
        "ss_training_comment": config.training_comment or None,
        "ss_optimizer": facts.optimizer,
        "ss_max_grad_norm": config.max_grad_norm,
        "ss_caption_dropout_rate": config.caption_dropout_rate,
        "ss_caption_dropout_every_n_epochs": 0,
        "ss_caption_tag_dropout_rate": config.tag_dropout_rate,
        "ss_face_crop_aug_range": None,
        "ss_prior_loss_weight": config.prior_loss_weight,
        "ss_min_snr_gamma": config.min_snr_gamma or None,
        "ss_scale_weight_norms": None,
        "ss_ip_noise_gamma": None,
        "ss_debiased_estimation": config.debiased_estimation,
        "ss_loss_type": "l2",
        "ss_masked_loss": config.masked_loss,
        "ss_fp8_base": False,
        "ss_fp8_base_unet": False,
        "ss_validation_seed": config.seed if config.validation_split else None,
        "ss_validation_split": config.validation_split,
        "ss_validate_every_n_steps": config.validate_every_n_steps or None,
        "ss_resize_interpolation": "box/lanczos",
        "ss_batch_size_per_device": config.batch_size,
        "ss_total_batch_size": config.batch_size * facts.world_size * config.gradient_accumulation,
        "ss_num_processes": facts.world_size,
        "ss_resolution": f"({facts.resolution[0]}, {facts.resolution[1]})",
        "ss_color_aug": False,
        "ss_flip_aug": config.flip_aug,
        "ss_random_crop": False,
        "ss_shuffle_caption": config.shuffle_caption,
        "ss_keep_tokens": config.keep_tokens,
        "ss_enable_bucket": config.enable_bucket,
        "ss_bucket_no_upscale": config.bucket_no_upscale,
        "ss_min_bucket_reso": config.min_bucket_reso,
        "ss_max_bucket_reso": config.max_bucket_reso,
        "ss_bucket_info": json.dumps(facts.bucket_info) if facts.bucket_info else None,
        "ss_dataset_dirs": json.dumps(facts.dataset_dirs),
        "ss_reg_dataset_dirs": json.dumps(facts.reg_dataset_dirs),
        "ss_tag_frequency": json.dumps(facts.tag_frequency),
        "ss_sd_model_name": info.name,
        "ss_sd_model_hash": info.legacy_hash,
        "ss_new_sd_model_hash": info.short_hash,
        "ss_sd_scripts_commit_hash": None,
    }
    metadata = {key: _text(value) for key, value in values.items() if value is not None}
    width, height = facts.resolution
    metadata.update(
        {
            "modelspec.sai_model_spec": "1.0.1",
            "modelspec.architecture": _architecture(info, facts.prediction),
            "modelspec.implementation": (
                "https://github.com/Stability-AI/generative-models" if info.family == "sdxl" else "diffusers"
            ),
            "modelspec.title": facts.output_name,
            "modelspec.resolution": f"{width}x{height}",
            "modelspec.date": datetime.fromtimestamp(facts.started_at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
            "modelspec.prediction_type": "v" if facts.prediction == "v" else "epsilon",
            "modelspec.implementation_version": "train-tools",
        }
    )
    if (config.min_timestep, config.max_timestep) != (0, 1000):
        metadata["modelspec.timestep_range"] = f"{config.min_timestep},{config.max_timestep}"
    if config.trigger_word:
        metadata["modelspec.trigger_phrase"] = config.trigger_word
    metadata["train_tools_config"] = json.dumps(config.to_dict(), ensure_ascii=False)
    points = (facts.validation or {}).get("points") or []
    if points:  # the run's validation history until the save (``training/validation.py``) and this file's loss
        metadata["train_tools_validation"] = json.dumps(facts.validation, ensure_ascii=False)
        own = [point["loss"] for point in points if point["step"] == facts.steps]
        if own:
            metadata["train_tools_validation_loss"] = f"{own[-1]:.6g}"
    return metadata


def is_lycoris(config: TrainConfig) -> bool:
    """Whether the file is a LyCORIS network (LoHa, LoKr, or anything with DoRA) rather than kohya's LoRA."""
    return config.network_type in ("loha", "lokr") or config.dora


def _network_args(config: TrainConfig) -> dict[str, Any]:
    """``ss_network_args``: what kohya's ``--network_args`` (or LyCORIS') would have said, as strings."""
    args: dict[str, Any] = {}
    if is_lycoris(config):
        args["algo"] = config.network_type
    if config.trained_conv_rank:
        args.update(conv_dim=str(config.trained_conv_rank), conv_alpha=str(config.conv_alpha))
    if config.dora:
        args["dora_wd"] = "True"
    if config.network_type == "lokr":
        args["factor"] = str(config.lokr_factor)
    if config.rank_dropout:
        args["rank_dropout"] = str(config.rank_dropout)
    if config.module_dropout:
        args["module_dropout"] = str(config.module_dropout)
    if config.loraplus_lr_ratio:
        args["loraplus_lr_ratio"] = str(config.loraplus_lr_ratio)
    return args


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def safetensors_hashes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> tuple[str, str]:
    """(``sshs_model_hash``, ``sshs_legacy_hash``) as sd-scripts computes them before saving."""
    from safetensors.torch import save

    data = save(tensors, {k: v for k, v in metadata.items() if k.startswith("ss_")})
    header_length = struct.unpack("<Q", data[:8])[0]
    model_hash = hashlib.sha256(data[8 + header_length :]).hexdigest()
    legacy_hash = hashlib.sha256(data[0x100000 : 0x100000 + 0x10000]).hexdigest()[:8]
    return model_hash, legacy_hash


def save_lora(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Write ``tensors`` with ``metadata`` plus both hashes to ``path`` atomically."""
    from safetensors.torch import save_file

    model_hash, legacy_hash = safetensors_hashes(tensors, metadata)
    metadata = {**metadata, "sshs_model_hash": model_hash, "sshs_legacy_hash": legacy_hash}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def write_sidecars(path: Path, config: TrainConfig, info: ModelInfo, preview=None) -> list[Path]:
    """``<name>.json`` (A1111 user metadata) and ``<name>.preview.png`` next to the LoRA file."""
    written = []
    sidecar = path.with_suffix(".json")
    data = {
        "description": config.training_comment,
        "sd version": SD_VERSION[info.family],
        "activation text": config.trigger_word,
        "preferred weight": config.preferred_weight,
        "notes": f"Trained with Train Tools on {info.name}.",
    }
    write_text_atomic(sidecar, json.dumps(data, indent=4, ensure_ascii=False) + "\n")
    written.append(sidecar)
    if preview is not None:
        target = path.with_name(path.stem + ".preview.png")
        with atomic_path(target) as tmp:
            preview.save(tmp, format="PNG")
        written.append(target)
    return written


def intermediate_path(final: Path, epoch: int | None = None, step: int | None = None) -> Path:
    """kohya's names: ``name-000005.safetensors`` per epoch, ``name-step00000100.safetensors`` per step."""
    suffix = f"-{epoch:06d}" if epoch is not None else f"-step{step:08d}"
    return final.with_name(final.stem + suffix + final.suffix)


def prune(saved: list[str], keep_last: int) -> list[str]:
    """Delete all but the newest ``keep_last`` intermediate files (and their sidecars); returns what remains."""
    if keep_last <= 0 or len(saved) <= keep_last:
        return saved
    for name in saved[:-keep_last]:
        path = Path(name)
        for victim in (path, path.with_suffix(".json"), path.with_name(path.stem + ".preview.png")):
            victim.unlink(missing_ok=True)
    return saved[-keep_last:]


def save_dtype(config: TrainConfig) -> torch.dtype:
    return SAVE_DTYPES[config.save_dtype]
