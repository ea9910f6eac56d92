"""PEFT's LoRA settings: the per-module scale that PEFT files do not store.

A PEFT ``save_pretrained`` folder holds ``adapter_model.safetensors`` and, beside it,
``adapter_config.json``; newer diffusers files carry the same settings in the
``lora_adapter_metadata`` header entry, one config per component (``unet.lora_alpha``,
``text_encoder.lora_alpha``, …; nested dicts are accepted too). From each:
``lora_alpha`` for every module, ``alpha_pattern`` overriding it per module (keys
matched against the end of the module name, as PEFT does), and ``use_rslora`` (scale
alpha/√r instead of alpha/r). The rank is read from the tensors, which is what
``r``/``rank_pattern`` say as well.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lora_ext.errors import FileFormatError

CONFIG_FILE = "adapter_config.json"
WEIGHTS_STEM = "adapter_model"
METADATA_KEY = "lora_adapter_metadata"


CONFIG_FIELDS = ("lora_alpha", "alpha_pattern", "use_rslora", "r", "rank_pattern", "use_dora", "target_modules")


@dataclass(frozen=True)
class PeftConfig:
    """One component's settings."""

    lora_alpha: float | None = None
    use_rslora: bool = False
    alpha_pattern: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data: Mapping) -> PeftConfig | None:
        try:
            alpha = None if data.get("lora_alpha") is None else float(data["lora_alpha"])
            pattern = {str(key): float(value) for key, value in (data.get("alpha_pattern") or {}).items()}
        except (TypeError, ValueError, AttributeError):
            return None
        if alpha is None and not pattern:
            return None
        return cls(alpha, bool(data.get("use_rslora", False)), pattern)

    def alpha_for(self, module: str) -> float | None:
        for key, alpha in self.alpha_pattern.items():
            if _matches(key, module):
                return alpha
        return self.lora_alpha


@dataclass(frozen=True)
class PeftSettings:
    """Configs by component (``unet``, ``text_encoder``, …; ``""`` for every module)."""

    by_component: Mapping[str, PeftConfig]

    @classmethod
    def from_mapping(cls, data: Mapping) -> PeftSettings | None:
        groups: dict[str, dict] = {}
        for key, value in data.items():
            key = str(key)
            if key in CONFIG_FIELDS:
                groups.setdefault("", {})[key] = value
            elif isinstance(value, Mapping):  # {"unet": {...}}
                groups.setdefault(key, {}).update(value)
            elif "." in key:  # diffusers: {"unet.lora_alpha": 8}
                component, _, name = key.partition(".")
                if name in CONFIG_FIELDS:
                    groups.setdefault(component, {})[name] = value
        configs = {name: config for name, group in groups.items() if (config := PeftConfig.from_mapping(group))}
        return cls(configs) if configs else None

    def config_for(self, module: str) -> PeftConfig | None:
        """The config of the component ``module`` belongs to (the longest matching name), else the general one."""
        components = [name for name in self.by_component if name and module.startswith(name + ".")]
        if components:
            return self.by_component[max(components, key=len)]  # text_encoder_2 before text_encoder
        return self.by_component.get("") or (
            next(iter(self.by_component.values())) if len(self.by_component) == 1 else None
        )


def _matches(key: str, module: str) -> bool:
    """PEFT's rule: the pattern matches the whole name or a dotted tail of it (a regex, or literal if invalid)."""
    try:
        return re.fullmatch(rf"(.*\.)?(?:{key})", module) is not None
    except re.error:
        return module == key or module.endswith("." + key)


def sidecar_path(path: Path | None) -> Path | None:
    """``adapter_config.json`` beside a LoRA file, if there is one."""
    if path is None:
        return None
    candidate = Path(path).with_name(CONFIG_FILE)
    return candidate if candidate.is_file() else None


def read_peft_settings(path: Path | None, metadata: Mapping[str, str]) -> PeftSettings | None:
    """The config beside the file, else the one in the header; None when there is none."""
    sidecar = sidecar_path(path)
    if sidecar is not None:
        try:
            data = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise FileFormatError(
                f"{sidecar.parent.name}/{CONFIG_FILE}: not readable JSON ({error})",
                hint="the PEFT folder's config is damaged; download it again",
            ) from error
        return PeftSettings.from_mapping(data) if isinstance(data, Mapping) else None
    try:
        data = json.loads(metadata.get(METADATA_KEY) or "{}")
    except ValueError:
        return None
    return PeftSettings.from_mapping(data) if isinstance(data, Mapping) else None
