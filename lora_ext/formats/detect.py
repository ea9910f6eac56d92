"""Which base model a LoRA file was made for: metadata first, then tensor shapes, then key style."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import torch

BaseModel = Literal["sd1", "sd2", "sdxl", "unknown"]
Evidence = Literal["metadata", "shapes", "keys", "none"]

# cross-attention context width (attn2 to_k/to_v input) of the real models
_CONTEXT_WIDTH = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
# Key style alone: SDXL has two text encoders, an ADM label embedding, transformer depth > 1 and
# 9 input blocks on 3 levels (no attention on level 0); SD1/SD2 have one TE (``lora_te_``), 12 input
# blocks on 4 levels and attention on level 0. ldm- and diffusers-named UNet keys are both covered.
_SDXL_KEY = re.compile(
    r"(^lora_te1_|^lora_te2_|^text_encoder_2\.|^text_encoders\.clip_g\.|label_emb|add_embedding"
    r"|transformer_blocks[._][1-9])"
)
_SD_KEY = re.compile(
    r"(^lora_te_|^text_encoders\.clip_[lh]\.|(input|output)_blocks[._](9|10|11)[._]|(down|up)_blocks[._]3[._]"
    r"|down_blocks[._]0[._]attentions)"
)


@dataclass(frozen=True)
class Detection:
    family: BaseModel
    evidence: Evidence

    @property
    def strong(self) -> bool:
        """Metadata and shapes can tell SD1 from SD2; key style alone can only tell SDXL from the rest."""
        return self.evidence in ("metadata", "shapes")


def from_metadata(metadata: Mapping[str, str]) -> BaseModel:
    version = metadata.get("ss_base_model_version", "")
    architecture = metadata.get("modelspec.architecture", "")
    if version.startswith("sdxl") or architecture.startswith("stable-diffusion-xl"):
        return "sdxl"
    if version.startswith("sd_v2") or metadata.get("ss_v2") == "True" or architecture.startswith("stable-diffusion-v2"):
        return "sd2"
    if version.startswith("sd_v1") or architecture.startswith("stable-diffusion-v1"):
        return "sd1"
    return "unknown"


def from_shapes(modules: Mapping[str, Mapping[str, torch.Tensor]]) -> BaseModel:
    for prefix, tensors in modules.items():
        if re.search(r"attn2[._]to_[kv]$", prefix):
            down = tensors.get("lora_down.weight")
            if down is not None and down.dim() >= 2:
                return _CONTEXT_WIDTH.get(int(down.shape[1]), "unknown")  # type: ignore[return-value]
    return "unknown"


def from_keys(prefixes: Iterable[str]) -> BaseModel:
    prefixes = list(prefixes)
    if any(_SDXL_KEY.search(prefix) for prefix in prefixes):
        return "sdxl"
    if any(_SD_KEY.search(prefix) for prefix in prefixes):
        return "sd1"
    return "unknown"


def detect_base(modules: Mapping[str, Mapping[str, torch.Tensor]], metadata: Mapping[str, str]) -> Detection:
    """The base model and the kind of evidence it rests on."""
    family = from_metadata(metadata)
    if family != "unknown":
        return Detection(family, "metadata")
    family = from_shapes(modules)
    if family != "unknown":
        return Detection(family, "shapes")
    family = from_keys(modules)
    return Detection(family, "keys" if family != "unknown" else "none")


def incompatible(detection: Detection, model_family: str) -> bool:
    """True when a file clearly targets another base (SD1/SD2 on SDXL or the reverse; SD1↔SD2 on strong evidence)."""
    if detection.family == "unknown":
        return False
    if (detection.family == "sdxl") != (model_family == "sdxl"):
        return True
    return detection.strong and detection.family != model_family
