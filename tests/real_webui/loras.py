"""Random kohya LoRA / LoHa files for an SD1 checkpoint, written by the tests into the WebUI's Lora folder."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

# kohya's SD1 UNet names (diffusers spelling) and widths of the transformer blocks' attention layers
UNET_BLOCKS = [
    *((f"down_blocks_{i}_attentions_{j}", width) for i, width in enumerate((320, 640, 1280)) for j in range(2)),
    ("mid_block_attentions_0", 1280),
    *((f"up_blocks_{i}_attentions_{j}", width) for i, width in ((1, 1280), (2, 640), (3, 320)) for j in range(3)),
]
CONTEXT = 768  # CLIP-L


def _layers(text_encoder: bool, unet: bool) -> dict[str, tuple[int, int]]:
    """kohya module name → (out, in) of every linear layer the file touches."""
    layers: dict[str, tuple[int, int]] = {}
    if unet:
        for block, width in UNET_BLOCKS:
            prefix = f"lora_unet_{block}_transformer_blocks_0"
            for attention, source in (("attn1", width), ("attn2", CONTEXT)):
                layers[f"{prefix}_{attention}_to_q"] = (width, width)
                layers[f"{prefix}_{attention}_to_k"] = (width, source)
                layers[f"{prefix}_{attention}_to_v"] = (width, source)
                layers[f"{prefix}_{attention}_to_out_0"] = (width, width)
    if text_encoder:
        for index in range(12):
            for projection in ("q_proj", "k_proj", "v_proj", "out_proj"):
                layers[f"lora_te_text_model_encoder_layers_{index}_self_attn_{projection}"] = (768, 768)
    return layers


def write_random_lora(
    path: Path, seed: int, kind: str = "lora", rank: int = 4, scale: float = 0.05, text_encoder=True, unet=True
) -> Path:
    """A random ``kind`` ("lora" or "loha") file, strong enough to change a 64-px image visibly."""
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=generator) * scale

    state: dict[str, torch.Tensor] = {}
    for name, (out, inner) in _layers(text_encoder, unet).items():
        if kind == "lora":
            state |= {f"{name}.lora_up.weight": rand(out, rank) * 8, f"{name}.lora_down.weight": rand(rank, inner)}
        else:
            state |= {
                f"{name}.hada_w1_a": rand(out, rank) * 8,
                f"{name}.hada_w1_b": rand(rank, inner),
                f"{name}.hada_w2_a": rand(out, rank) * 8,
                f"{name}.hada_w2_b": rand(rank, inner),
            }
        state[f"{name}.alpha"] = torch.tensor(float(rank))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({key: value.to(torch.float16).contiguous() for key, value in state.items()}, str(path))
    return path
