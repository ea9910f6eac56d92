"""Training settings as the page and the REST API hand them over: ``{field name: value}`` → ``TrainConfig``.

Every ``TrainConfig`` field but the dataset folder (set from the selected version)
is a setting; the config is built from values by field name, never from
positions, and the step count shown before starting comes from the same values.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, fields
from typing import Any

from lora_ext.config import FAMILY_PRESETS, PRESETS, TrainConfig, default_config, preset
from lora_ext.dataset.layout import dataset_folders
from lora_ext.errors import ConfigError

AUTO_PRESET = "auto"
# Set from the selected version, not typed.
HIDDEN_FIELDS = ("dataset_dir",)


def setting_fields() -> list[Any]:
    """The ``TrainConfig`` fields a user sets (the form shows each, the REST API takes each)."""
    return [spec for spec in fields(TrainConfig) if spec.name not in HIDDEN_FIELDS]


def preset_choices() -> list[str]:
    return [AUTO_PRESET, *PRESETS]


def preset_config(name: str, family: str) -> TrainConfig:
    """``auto`` → the beginner defaults of the model's family; else the named preset over defaults."""
    if not name or name == AUTO_PRESET:
        return default_config(family)
    if name in FAMILY_PRESETS.values():
        return preset(name)
    return preset(name, default_config(family))


def config_values(config: TrainConfig) -> dict[str, Any]:
    """``{field: value}`` for filling the form."""
    return {spec.name: getattr(config, spec.name) for spec in setting_fields()}


def build_config(values: dict[str, Any], dataset_dir: str, default_output: str) -> TrainConfig:
    """The config from the settings by field name; the dataset is the selected version's."""
    unknown = set(values) - {spec.name for spec in setting_fields()}
    if unknown:
        raise ConfigError(f"unknown training settings: {', '.join(sorted(unknown))}")
    data = {name: value for name, value in values.items() if value is not None}
    for spec in setting_fields():
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
