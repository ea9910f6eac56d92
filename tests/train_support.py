"""Helpers for the training tests: toy datasets and whole-model fingerprints."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lora_ext.config import TrainConfig

# The small, fast training every test starts from: 64 px, rank 2, two steps, no warm-up, fp32 files.
TINY_TRAIN = {
    "resolution": 64,
    "min_bucket_reso": 64,
    "rank": 2,
    "alpha": 2.0,
    "max_steps": 2,
    "default_repeats": 1,
    "lr_scheduler": "constant",
    "warmup_ratio": 0.0,
    "save_dtype": "fp32",
}


def tiny_train_config(dataset, **changes) -> TrainConfig:
    """``TINY_TRAIN`` on ``dataset``; a test names only what it changes."""
    return TrainConfig(dataset_dir=str(dataset), **{**TINY_TRAIN, **changes})


def make_dataset(
    root: Path,
    count: int = 2,
    size: tuple[int, int] = (64, 64),
    folder: str = "1_toy",
    captions: bool = True,
    alpha: bool = False,
) -> Path:
    """A learnable toy set: smooth colour gradients, one caption each."""
    target = root / folder if folder else root
    target.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        width, height = size
        x = np.linspace(0, 1, width)[None, :, None]
        y = np.linspace(0, 1, height)[:, None, None]
        colour = rng.uniform(0.2, 0.9, size=3)[None, None, :]
        pixels = (x * colour + y * (1 - colour)) * 255
        mode = "RGB"
        if alpha:
            mask = np.zeros((height, width, 1))
            mask[:, : width // 2] = 255
            pixels = np.concatenate([pixels, mask], axis=2)
            mode = "RGBA"
        Image.fromarray(pixels.astype(np.uint8), mode).save(target / f"img{index}.png")
        if captions:
            (target / f"img{index}.txt").write_text(f"toy, gradient {index}, colour", encoding="utf-8")
    return root


def fingerprint(*roots: torch.nn.Module) -> dict:
    """Everything that must come back unchanged: tensors' bytes, requires_grad, dtype, device, modes, hooks."""
    result: dict = {}
    for position, root in enumerate(roots):
        for name, tensor in list(root.named_parameters()) + list(root.named_buffers()):
            data = tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()
            result[f"{position}:{name}"] = (
                hashlib.sha256(data).hexdigest(),
                tensor.requires_grad,
                tensor.dtype,
                tensor.device,
                type(tensor).__name__,
            )
        for name, module in root.named_modules():
            result[f"{position}:{name}:module"] = (
                module.training,
                len(module._forward_hooks),
                len(module._forward_pre_hooks),
                len(module._backward_hooks),
                "forward" in module.__dict__,
                sorted(k for k in module.__dict__ if k in ("in_proj_weight", "weight")),
            )
    return result


def host_roots(host) -> list[torch.nn.Module]:
    parts = host.parts()
    roots = [parts.unet, *(encoder.root for encoder in parts.text_encoders)]
    model = getattr(host, "sd_model", None) or getattr(host, "pipeline", None)
    if isinstance(model, torch.nn.Module):
        roots.append(model)
    return roots


def wake_zero_layers(host, seed: int = 0) -> None:
    """Give freshly initialised all-zero layers (ldm's ``zero_module`` output convs) small random weights.

    A random-init ldm UNet ends in a zero convolution, so no gradient reaches any
    LoRA; a trained checkpoint never looks like that.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for root in host_roots(host)[:-1] if len(host_roots(host)) > 1 else host_roots(host):
            for parameter in root.parameters():
                if parameter.dim() > 1 and not parameter.any():
                    fan_in = parameter[0].numel()
                    noise = torch.randn(parameter.shape, generator=generator) / fan_in**0.5
                    parameter.copy_(noise.to(parameter.dtype))
