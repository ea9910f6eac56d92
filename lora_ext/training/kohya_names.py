"""Live module names → kohya LoRA names, exactly as A1111's built-in Lora maps them back.

kohya spells SD1/SD2 UNet modules diffusers-style (``lora_unet_down_blocks_0_attentions_0_…``)
and SDXL UNet modules ldm/sgm-style (``lora_unet_input_blocks_4_1_…``). A1111's
``convert_diffusers_name_to_compvis`` turns the former into ldm names, so from an ldm
UNet we need its inverse; from a diffusers SDXL UNet we need diffusers → sgm.
Text encoders are ``lora_te_`` (SD1/SD2) or ``lora_te1_``/``lora_te2_`` (SDXL) followed by
HF CLIP names (``text_model_encoder_layers_N_self_attn_q_proj``); OpenCLIP's
``resblocks.N.attn`` / ``mlp.c_fc`` / ``mlp.c_proj`` become ``self_attn`` / ``mlp_fc1`` / ``mlp_fc2``.

These are pure functions of (family, naming, part, module name); they assume two
residual blocks per level, which every SD1/SD2/SDXL UNet has.
"""

from __future__ import annotations

import re

_LDM_RESNET = {
    "in_layers.2": "conv1",
    "out_layers.3": "conv2",
    "in_layers.0": "norm1",
    "out_layers.0": "norm2",
    "emb_layers.1": "time_emb_proj",
    "skip_connection": "conv_shortcut",
}
_DIFFUSERS_RESNET = {value: key for key, value in _LDM_RESNET.items()}
_ATTENTION_PARTS = ("proj_in", "proj_out", "norm", "transformer_blocks")


def _flat(name: str) -> str:
    return name.replace(".", "_")


def _is_attention(rest: str) -> bool:
    return rest.split(".", 1)[0] in _ATTENTION_PARTS


def ldm_unet_to_diffusers(name: str) -> str | None:
    """``input_blocks.1.1.proj_in`` → ``down_blocks.0.attentions.0.proj_in`` (SD1/SD2 layout)."""
    match = re.match(r"input_blocks\.(\d+)\.(\d+)\.(.+)$", name)
    if match:
        number, index, rest = int(match[1]), int(match[2]), match[3]
        if number == 0:
            return None
        block, layer = divmod(number - 1, 3)
        if layer == 2:
            return f"down_blocks.{block}.downsamplers.0.conv" if rest == "op" else None
        return _block_child("down_blocks", block, layer, rest)
    match = re.match(r"middle_block\.(\d+)\.(.+)$", name)
    if match:
        index, rest = int(match[1]), match[2]
        if _is_attention(rest):
            return f"mid_block.attentions.0.{rest}"
        return _resnet(f"mid_block.resnets.{index // 2}", rest)
    match = re.match(r"output_blocks\.(\d+)\.(\d+)\.(.+)$", name)
    if match:
        (block, layer), rest = divmod(int(match[1]), 3), match[3]
        if rest == "conv" and int(match[2]) > 0:
            return f"up_blocks.{block}.upsamplers.0.conv"
        return _block_child("up_blocks", block, layer, rest)
    simple = {
        "time_embed.0": "time_embedding.linear_1",
        "time_embed.2": "time_embedding.linear_2",
        "input_blocks.0.0": "conv_in",
        "out.2": "conv_out",
    }
    return simple.get(name)


def _block_child(kind: str, block: int, layer: int, rest: str) -> str | None:
    if _is_attention(rest):
        return f"{kind}.{block}.attentions.{layer}.{rest}"
    return _resnet(f"{kind}.{block}.resnets.{layer}", rest)


def _resnet(prefix: str, rest: str) -> str | None:
    renamed = _LDM_RESNET.get(rest)
    return f"{prefix}.{renamed}" if renamed else None


def diffusers_unet_to_sgm(name: str) -> str | None:
    """``down_blocks.1.attentions.0.proj_in`` → ``input_blocks.4.1.proj_in`` (SDXL layout)."""
    match = re.match(r"(down|up)_blocks\.(\d+)\.(attentions|resnets)\.(\d+)\.(.+)$", name)
    if match:
        side, block, kind, layer, rest = match[1], int(match[2]), match[3], int(match[4]), match[5]
        number = 3 * block + layer + (1 if side == "down" else 0)
        where = "input_blocks" if side == "down" else "output_blocks"
        if kind == "attentions":
            return f"{where}.{number}.1.{rest}"
        renamed = _DIFFUSERS_RESNET.get(rest)
        return f"{where}.{number}.0.{renamed}" if renamed else None
    match = re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv$", name)
    if match:
        return f"input_blocks.{3 * int(match[1]) + 3}.0.op"
    match = re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv$", name)
    if match:
        # SDXL's up block 0 has attention, so its upsampler is the third child (index 2).
        return f"output_blocks.{3 * int(match[1]) + 2}.2.conv"
    match = re.match(r"mid_block\.(attentions|resnets)\.(\d+)\.(.+)$", name)
    if match:
        if match[1] == "attentions":
            return f"middle_block.1.{match[3]}"
        renamed = _DIFFUSERS_RESNET.get(match[3])
        return f"middle_block.{2 * int(match[2])}.{renamed}" if renamed else None
    return None


def unet_lora_name(family: str, naming: str, name: str) -> str | None:
    """kohya name of a UNet module (``None`` for modules kohya never targets)."""
    if family == "sdxl":
        converted = name if naming == "ldm" else diffusers_unet_to_sgm(name)
    else:
        converted = ldm_unet_to_diffusers(name) if naming == "ldm" else name
    return None if converted is None else "lora_unet_" + _flat(converted)


def text_encoder_prefix(family: str, index: int) -> str:
    return f"lora_te{index + 1}" if family == "sdxl" else "lora_te"


def hf_clip_lora_name(family: str, index: int, name: str) -> str | None:
    """``transformer.text_model.encoder.layers.0.self_attn.q_proj`` → ``lora_te_text_model_…``."""
    position = name.find("text_model.")
    if position < 0:
        # transformers ≥ 5 flattens CLIPTextModel (``encoder.layers.0…``).
        position = name.find("encoder.layers.")
        if position < 0:
            return None
        name = "text_model." + name[position:]
        position = 0
    return f"{text_encoder_prefix(family, index)}_{_flat(name[position:])}"


def open_clip_lora_name(family: str, index: int, name: str, projection: str | None = None) -> str | None:
    """``model.transformer.resblocks.3.mlp.c_fc`` → ``lora_te2_text_model_encoder_layers_3_mlp_fc1``.

    For the fused attention, ``projection`` is ``q``, ``k``, ``v`` or ``out``.
    """
    match = re.search(r"transformer\.resblocks\.(\d+)\.(attn|mlp\.c_fc|mlp\.c_proj)$", name)
    if not match:
        return None
    layer, part = match[1], match[2]
    tail = {"mlp.c_fc": "mlp_fc1", "mlp.c_proj": "mlp_fc2"}.get(part) or f"self_attn_{projection}_proj"
    return f"{text_encoder_prefix(family, index)}_text_model_encoder_layers_{layer}_{tail}"
