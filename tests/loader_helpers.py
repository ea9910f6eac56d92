"""Shared helpers for the loader tests: hosts with a loader, parameter snapshots."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from lora_ext.loading.loader import NetworkLoader


def snapshot(*modules: torch.nn.Module) -> dict[str, str]:
    """sha256 of every parameter and buffer's bytes, by name."""
    digests = {}
    for index, module in enumerate(modules):
        for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
            data = tensor.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes()
            digests[f"{index}:{name}"] = hashlib.sha256(data).hexdigest()
    return digests


def loader_for(host, **kwargs) -> NetworkLoader:
    Path(host.lora_dir).mkdir(parents=True, exist_ok=True)
    return NetworkLoader.for_host(host, **kwargs)


def all_roots(host) -> list[torch.nn.Module]:
    parts = host.parts()
    return [parts.unet, *(encoder.root for encoder in parts.text_encoders)]
