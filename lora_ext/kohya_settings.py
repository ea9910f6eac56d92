"""Settings files written by kohya's tools, read as ``TrainConfig`` settings.

sd-scripts takes a TOML ``--config_file`` whose keys are its argument names
(``network_dim``, ``max_train_epochs``, ``train_batch_size`` …); the kohya_ss GUI
saves a JSON file with the same names plus its own (``epoch``, ``LoRA_type``…).
``from_kohya`` renames the keys this trainer has an equivalent for and lists the
rest as not used, so a kohya user's file fills the form (or the CLI's ``--config``)
instead of failing on the first unknown key. A file in our own format
(``TrainConfig`` field names) goes through unchanged.

Not taken from such a file: paths of another machine (``train_data_dir``,
``output_dir``, ``pretrained_model_name_or_path``, ``reg_data_dir``…): the dataset
is the version's own, and the model the one loaded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from lora_ext.config import TrainConfig

# kohya name → ours, where the meaning is the same.
RENAMED: dict[str, str] = {
    "network_dim": "rank",
    "network_alpha": "alpha",
    "network_dropout": "dropout",
    "max_train_epochs": "epochs",
    "epoch": "epochs",  # the kohya_ss GUI's name
    "max_train_steps": "max_steps",
    "train_batch_size": "batch_size",
    "gradient_accumulation_steps": "gradient_accumulation",
    "lr_warmup_steps": "warmup_steps",
    "lr_scheduler_num_cycles": "num_cycles",
    "lr_scheduler_power": "power",
    "optimizer_type": "optimizer",
    "caption_tag_dropout_rate": "tag_dropout_rate",
    "save_last_n_epochs": "keep_last_n",
    "save_last_n_steps": "keep_last_n",
    "sample_prompts_text": "sample_prompts",
}
SAVE_PRECISION = {"float": "fp32", "fp32": "fp32", "fp16": "fp16", "bf16": "bf16"}
# Where this machine's own choice replaces the file's: paths and the model.
NOT_TAKEN = frozenset(
    {
        "train_data_dir",
        "reg_data_dir",
        "output_dir",
        "logging_dir",
        "pretrained_model_name_or_path",
        "vae",
        "dataset_dir",
        "dataset_config",
        "resume",
        "sample_prompts_file",
    }
)


@dataclass(frozen=True)
class ReadSettings:
    """A settings file as ``TrainConfig`` settings, and what of it was not used."""

    settings: dict[str, Any]
    not_used: tuple[str, ...] = ()


def _resolution(value: Any) -> int:
    """``"768,512"`` (kohya's ``width,height``) → the side of the square with that area, a multiple of 64."""
    parts = [float(part) for part in str(value).replace("x", ",").split(",") if part.strip()]
    area = parts[0] * (parts[1] if len(parts) > 1 else parts[0])
    return max(64, int(round(math.sqrt(area) / 64)) * 64)


def _network(data: Mapping[str, Any], settings: dict[str, Any], not_used: list[str]) -> None:
    """``network_module`` / ``network_args`` (conv_dim, conv_alpha) → network_type, conv_rank, conv_alpha."""
    module = str(data.get("network_module") or "networks.lora")
    if module != "networks.lora":
        not_used.append(f"network_module={module}")
        return
    args = data.get("network_args") or []
    items = args if isinstance(args, list) else str(args).split()
    for item in items:
        key, _, value = str(item).partition("=")
        if key.strip() == "conv_dim" and value.strip():
            settings.update(network_type="locon", conv_rank=int(value))
        elif key.strip() == "conv_alpha" and value.strip():
            settings["conv_alpha"] = float(value)
        else:
            not_used.append(f"network_args {item}")
    if data.get("conv_dim"):  # the kohya_ss GUI's own fields
        settings.update(network_type="locon", conv_rank=int(data["conv_dim"]))
        if data.get("conv_alpha"):
            settings["conv_alpha"] = float(data["conv_alpha"])


def from_kohya(data: Mapping[str, Any]) -> ReadSettings:
    """The ``TrainConfig`` settings in ``data`` (ours, or kohya's names), and the keys that were not used."""
    ours = {spec.name for spec in fields(TrainConfig)} | {"config_version"}
    special = {
        "network_module",
        "network_args",
        "conv_dim",
        "learning_rate",
        "network_train_unet_only",
        "save_precision",
    }
    settings: dict[str, Any] = {}
    not_used: list[str] = []
    for key, value in data.items():
        if key in special:
            continue
        if key in NOT_TAKEN:
            if value not in ("", None, False):
                not_used.append(key)
        elif key in ours:
            settings[key] = value
        elif key in RENAMED:
            settings[RENAMED[key]] = value
        elif value not in ("", None, False, [], {}):
            not_used.append(key)
    if isinstance(settings.get("resolution"), str):
        settings["resolution"] = _resolution(settings["resolution"])
    if "save_precision" in data:
        settings["save_dtype"] = SAVE_PRECISION.get(str(data["save_precision"]), str(data["save_precision"]))
    if "learning_rate" in data and "unet_lr" not in data:  # kohya: one rate unless unet_lr is given
        settings["unet_lr"] = data["learning_rate"]
    if "network_module" in data or "network_args" in data or data.get("conv_dim"):
        _network(data, settings, not_used)
    if data.get("network_train_unet_only"):
        settings["train_text_encoder"] = False
    return ReadSettings(settings, tuple(not_used))
