"""Training settings as the page and the REST API hand them over: ``{field name: value}`` → ``TrainConfig``.

Every ``TrainConfig`` field but the dataset folder (set from the selected version)
is a setting; the config is built from values by field name, never from
positions, and the step count shown before starting comes from the same values.
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from lora_ext.config import AUTO_PRESET, PRESETS, TrainConfig, load_config, resolve_preset
from lora_ext.errors import ConfigError
from lora_ext.training.estimate import folder_plan
from lora_ext.training.plan import TrainPlan

# Set from the selected version, not typed.
HIDDEN_FIELDS = ("dataset_dir",)
SETTINGS_FILE = "train.toml"  # in the version's config/ folder: the settings its last training started with


def setting_fields() -> list[Any]:
    """The ``TrainConfig`` fields a user sets (the form shows each, the REST API takes each)."""
    return [spec for spec in fields(TrainConfig) if spec.name not in HIDDEN_FIELDS]


def preset_choices() -> list[str]:
    return [AUTO_PRESET, *PRESETS]


def preset_config(name: str, family: str, has_gpu: bool = True, is_demo: bool = False) -> TrainConfig:
    """``auto`` → the family's beginner defaults on a GPU, the quick preset on a CPU or the demo model;
    else the named preset over the family's defaults."""
    return resolve_preset(name, family, has_gpu, is_demo).config


def config_values(config: TrainConfig) -> dict[str, Any]:
    """``{field: value}`` for filling the form."""
    return {spec.name: getattr(config, spec.name) for spec in setting_fields()}


def saved_values(config_dir: Path) -> dict[str, Any] | None:
    """The settings the version's last training started with (``config/train.toml``) for the form;
    None when it has not trained yet. A file that is not valid raises ``ConfigError``."""
    path = Path(config_dir) / SETTINGS_FILE
    if not path.is_file():
        return None
    return config_values(load_config(path))


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


def planned_steps(config_values_: dict[str, Any], dataset_dir: Any) -> tuple[TrainPlan, str]:
    """The plan for the form's current values and its explanation.

    The plan is the trainer's own (``training.plan.make_plan``) over the folders' image counts and
    repeats, regularisation images included (``training.data.folder_counts``).
    """
    config = build_config(config_values_, str(dataset_dir), "estimate")
    plan = folder_plan(config)
    counts = plan.counts
    images, samples, total = counts.images, counts.samples, plan.total_steps
    if config.max_steps > 0:
        text = f"{images} images, {samples} samples per epoch; max steps {config.max_steps}"
    elif counts.reg_images:
        text = (
            f"{images} images × repeats + regularisation = {samples} samples × {plan.epochs} epochs"
            f" / batch {plan.effective_batch} = {total} steps"
        )
    else:
        text = (
            f"{images} images × repeats = {samples} samples × {plan.epochs} epochs / batch {plan.effective_batch}"
            f" = {total} steps"
        )
    return plan, text
