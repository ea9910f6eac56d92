"""What the Forge host (``hosts/forge.py``) and its ``<lora:…>`` loader (``hosts/forge_loader.py``) both read of
Forge's engine: its family, how its UNet is stored, where a module sits in it. Nothing here imports Forge."""

from __future__ import annotations

import torch

from lora_ext.host import Family

QUANTIZED_STORAGE = {"nf4": "nf4", "fp4": "fp4", "gguf": "GGUF"}
FP8_STORAGE = (torch.float8_e4m3fn, torch.float8_e5m2)
ENGINE_NAMES = {
    "Flux": "Flux",
    "StableDiffusion3": "SD3.5",
    "Chroma": "Chroma",
    "StableDiffusionXLRefiner": "SDXL refiner",
}


def forge_family(engine) -> Family | None:
    """SD1 / SD2 / SDXL from the engine's flags; None for every other engine (Flux, SD3.5, Chroma, the refiner…)."""
    if type(engine).__name__ in ENGINE_NAMES:
        return None
    for flag, family in (("is_sdxl", "sdxl"), ("is_sd2", "sd2"), ("is_sd1", "sd1")):
        if getattr(engine, flag, False):
            return family
    return None


def prefix_of(parent: torch.nn.Module, root: torch.nn.Module) -> str | None:
    for name, module in parent.named_modules():
        if module is root:
            return f"{name}." if name else ""
    return None
