"""Your own training presets and settings files, as a use case for the page and the REST API.

A user preset is a TOML file of ``TrainConfig`` settings in the workspace's
``presets/`` folder (beside ``projects/``), listed after the built-in presets and
chosen the same way; it never carries an output name (a preset serves many
versions, each trains under its own). A settings file (``.toml``/``.json``) is
either ours (a preset, a version's ``config/train.toml``) or kohya's (sd-scripts'
``--config_file``, the kohya_ss GUI's JSON): ``kohya_settings.from_kohya`` reads
both, and what it cannot use is named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lora_ext.app.context import Context
from lora_ext.config import PRESETS, TrainConfig, load_settings, save_config
from lora_ext.dataset.names import validate_name
from lora_ext.errors import ConfigError, DatasetError
from lora_ext.kohya_settings import ReadSettings, from_kohya
from lora_ext.paths import resolve_inside

SUFFIX = ".toml"
RESERVED = frozenset({"auto", *PRESETS})
SETTINGS_SUFFIXES = (".toml", ".json")


def presets_dir(ctx: Context) -> Path:
    return ctx.workspace.projects_root.parent / "presets"


def user_presets(ctx: Context) -> list[str]:
    """The names of your presets, sorted."""
    folder = presets_dir(ctx)
    if not folder.is_dir():
        return []
    return sorted((path.stem for path in folder.glob(f"*{SUFFIX}") if not path.name.startswith(".")), key=str.casefold)


def preset_path(ctx: Context, name: str) -> Path | None:
    """Your preset called ``name``, or None when there is none (a built-in name never is one)."""
    if not name or name in RESERVED:
        return None
    try:
        path = resolve_inside(presets_dir(ctx), f"{name}{SUFFIX}", "the presets folder")
    except DatasetError:  # a name that would lead out of the folder is no preset of yours
        return None
    return path if path.is_file() else None


def save_preset(ctx: Context, name: str, config: TrainConfig, replace: bool = False) -> Path:
    """Save ``config`` (without its output name) as your preset ``name``; an existing one only when ``replace``."""
    name = validate_name((name or "").strip(), "preset name")
    if name in RESERVED:
        raise ConfigError(f"{name} is a built-in preset.", hint="choose another name")
    folder = presets_dir(ctx)
    folder.mkdir(parents=True, exist_ok=True)
    path = resolve_inside(folder, f"{name}{SUFFIX}", "the presets folder")
    if path.exists() and not replace:
        raise ConfigError(
            f"A preset called {name} exists already.", hint="tick 'Replace an existing preset' to save over it"
        )
    save_config(config.replace(output_name="", dataset_dir=""), path)
    return path


def read_settings_file(path: str | Path) -> ReadSettings:
    """A settings file (ours or kohya's) as ``TrainConfig`` settings, checked; the keys it could not use named."""
    path = Path(path)
    if path.suffix.lower() not in SETTINGS_SUFFIXES:
        raise ConfigError(f"{path.name} is not a settings file.", hint="choose a .toml or .json file")
    read = from_kohya(load_settings(path))
    read.settings.pop("dataset_dir", None)  # the version's own dataset is trained
    TrainConfig.from_dict({**TrainConfig().to_dict(), **read.settings}, warn=lambda _line: None)  # refuse bad values
    return read


def apply_over(values: dict[str, Any], read: ReadSettings) -> dict[str, Any]:
    """The form's ``values`` with the file's settings over them."""
    return {**values, **{name: value for name, value in read.settings.items() if name in values}}
