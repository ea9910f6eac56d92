"""The host settings Train Tools reads, in one table: key, default, label, and how the WebUI shows it.

The WebUI host registers exactly these (``hosts/webui.register_settings``); the core
reads them through ``Host.setting(key, default)`` by the names below, so a key is
spelled once. Hosts without settings (the standalone app) answer every read with
its default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SECTION = ("train_tools", "Train Tools")  # the WebUI's Settings section: (id, title)

LORA_LOADER = "train_tools_lora_loader"
TAGGER_DIR = "train_tools_tagger_dir"
DEFAULT_PRESET = "train_tools_default_preset"
GRADIENT_CHECKPOINTING = "train_tools_gradient_checkpointing"
CACHE_LATENTS_TO_DISK = "train_tools_cache_latents_to_disk"
KEEP_LORA_BACKUPS = "train_tools_keep_lora_backups"
LORA_CACHE_SIZE = "train_tools_lora_cache_size"

# The WebUI's own "Localization" setting (``ja_JP``, ``None``…): the page's language follows it.
WEBUI_LOCALIZATION = "localization"
LORA_LOADER_CHOICES = ("Train Tools", "Built-in")


@dataclass(frozen=True)
class Setting:
    """One entry of the Settings section."""

    key: str
    default: Any
    label: str
    info: str | None = None
    choices: tuple[str, ...] = ()  # shown as a radio when given
    slider: tuple[int, int, int] | None = None  # (minimum, maximum, step): shown as a slider
    loader_only: bool = False  # only where our loader owns <lora:…>


SETTINGS: tuple[Setting, ...] = (
    Setting(
        LORA_LOADER,
        LORA_LOADER_CHOICES[0],
        "LoRA loader for <lora:…> prompts",
        info=(
            "Train Tools: more formats, block weights, exact fast switching (on Forge: merged and restored by "
            "Forge itself); Built-in: the WebUI's own Lora"
        ),
        choices=LORA_LOADER_CHOICES,
        loader_only=True,
    ),
    Setting(TAGGER_DIR, "", "Tagger model folder (empty: models/wd14_tagger)"),
    Setting(DEFAULT_PRESET, "auto", "Default training preset ('auto' picks by model family)"),
    Setting(GRADIENT_CHECKPOINTING, True, "Gradient checkpointing while training (less VRAM, ~20% slower)"),
    Setting(CACHE_LATENTS_TO_DISK, True, "Cache training latents on disk"),
    Setting(
        KEEP_LORA_BACKUPS,
        True,
        "Keep original weights after a LoRA is removed",
        info="the next LoRA applies without copying them again (as the built-in Lora does); off: less RAM",
        loader_only=True,
    ),
    Setting(LORA_CACHE_SIZE, 4, "LoRA files kept parsed in memory", slider=(0, 32, 1), loader_only=True),
)
