"""Module names of the UNet and the text encoders: ldm ↔ diffusers ↔ HF CLIP ↔ kohya.

The one home of the name maths: the loader's key map reads files with it and the
trainer writes files with it, so a naming fix reaches both.

UNet names are converted between ldm (``input_blocks.4.1…``) and diffusers
(``down_blocks.1.attentions.0…``) with a layout read from the module names (how
many levels, which carry attention), which is what makes SDXL's upsamplers
(``output_blocks.2.2.conv``) come out right where A1111's SD1 rule does not.

Text-encoder modules are named as HF CLIP does (``text_model.encoder.layers.N…``):
A1111's ``transformer.text_model.…``, transformers 5's flattened ``encoder.…`` and
OpenCLIP's ``model.transformer.resblocks.N.…`` (whose fused ``attn`` holds q, k, v)
all map there.

kohya spells a module ``lora_unet_<name with . → _>`` (SD1/SD2 files in diffusers
names, SDXL files in ldm/sgm names) and ``lora_te_`` (SD1/SD2) or ``lora_te1_``/
``lora_te2_`` (SDXL) followed by the flattened HF CLIP name. Pure functions only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_RESNET_LDM_TO_DIFFUSERS = (
    ("in_layers.0", "norm1"),
    ("in_layers.2", "conv1"),
    ("out_layers.0", "norm2"),
    ("out_layers.3", "conv2"),
    ("emb_layers.1", "time_emb_proj"),
    ("skip_connection", "conv_shortcut"),
)
_RESNET_DIFFUSERS_TO_LDM = tuple((new, old) for old, new in _RESNET_LDM_TO_DIFFUSERS)
_SIMPLE_LDM_TO_DIFFUSERS = (
    ("time_embed.0", "time_embedding.linear_1"),
    ("time_embed.2", "time_embedding.linear_2"),
    ("label_emb.0.0", "add_embedding.linear_1"),
    ("label_emb.0.2", "add_embedding.linear_2"),
    ("out.0", "conv_norm_out"),
    ("out.2", "conv_out"),
)
_SIMPLE_DIFFUSERS_TO_LDM = tuple((new, old) for old, new in _SIMPLE_LDM_TO_DIFFUSERS)
_OPEN_CLIP_TO_HF = (
    ("attn.out_proj", "self_attn.out_proj"),
    ("mlp.c_fc", "mlp.fc1"),
    ("mlp.c_proj", "mlp.fc2"),
    ("ln_1", "layer_norm1"),
    ("ln_2", "layer_norm2"),
)


# ---------------------------------------------------------------------------- UNet: ldm ↔ diffusers
@dataclass(frozen=True)
class UnetLayout:
    """How many resolution levels the UNet has and which down levels carry attention."""

    levels: int
    attention_levels: frozenset[int]

    def up_has_attention(self, up_level: int) -> bool:
        return (self.levels - 1 - up_level) in self.attention_levels


def layout_from_names(names: Iterable[str], naming: str) -> UnetLayout:
    """Levels and attention levels from a UNet's module (or key) names."""
    names = list(names)
    if naming == "ldm":
        numbers = [int(m.group(1)) for n in names if (m := re.match(r"input_blocks\.(\d+)\.", n + "."))]
        levels = (max(numbers, default=0) + 2) // 3
        attention = {i for i in range(levels) if any(n.startswith(f"input_blocks.{3 * i + 1}.1.") for n in names)}
    else:
        numbers = [int(m.group(1)) for n in names if (m := re.match(r"down_blocks\.(\d+)\.", n + "."))]
        levels = max(numbers, default=-1) + 1
        attention = {i for i in range(levels) if any(n.startswith(f"down_blocks.{i}.attentions.") for n in names)}
    return UnetLayout(levels=levels, attention_levels=frozenset(attention))


def _join(*parts: str) -> str:
    return ".".join(part for part in parts if part)


def _rename_prefix(rest: str, table: Iterable[tuple[str, str]]) -> str | None:
    for old, new in table:
        if rest == old or rest.startswith(old + "."):
            return new + rest[len(old) :]
    return None


def ldm_to_diffusers(name: str, layout: UnetLayout) -> str | None:
    """``input_blocks.1.1.proj_in`` → ``down_blocks.0.attentions.0.proj_in``; None if there is no counterpart."""
    parts = name.split(".")
    head = parts[0]
    try:
        if head == "input_blocks" and len(parts) >= 3:
            number, kind, rest = int(parts[1]), parts[2], ".".join(parts[3:])
            if number == 0:
                return _join("conv_in", rest) if kind == "0" else None
            level, index = divmod(number - 1, 3)
            if index == 2:
                if kind == "0" and (rest == "op" or rest.startswith("op.")):
                    return _join(f"down_blocks.{level}.downsamplers.0.conv", rest[3:])
                return None
            if kind == "0":
                return _join(
                    f"down_blocks.{level}.resnets.{index}", _rename_prefix(rest, _RESNET_LDM_TO_DIFFUSERS) or rest
                )
            return _join(f"down_blocks.{level}.attentions.{index}", rest) if kind == "1" else None
        if head == "middle_block" and len(parts) >= 2:
            number, rest = int(parts[1]), ".".join(parts[2:])
            if number == 1:
                return _join("mid_block.attentions.0", rest)
            if number in (0, 2):
                return _join(f"mid_block.resnets.{number // 2}", _rename_prefix(rest, _RESNET_LDM_TO_DIFFUSERS) or rest)
            return None
        if head == "output_blocks" and len(parts) >= 3:
            number, kind, rest = int(parts[1]), parts[2], ".".join(parts[3:])
            level, index = divmod(number, 3)
            attention = layout.up_has_attention(level)
            if kind == "0":
                return _join(
                    f"up_blocks.{level}.resnets.{index}", _rename_prefix(rest, _RESNET_LDM_TO_DIFFUSERS) or rest
                )
            if kind == "1" and attention:
                return _join(f"up_blocks.{level}.attentions.{index}", rest)
            if index == 2 and (kind == "2" or (kind == "1" and not attention)):
                return _join(f"up_blocks.{level}.upsamplers.0", rest)
            return None
    except ValueError:
        return None
    return _rename_prefix(name, _SIMPLE_LDM_TO_DIFFUSERS)


def diffusers_to_ldm(name: str, layout: UnetLayout) -> str | None:
    """The inverse of ``ldm_to_diffusers``."""
    parts = name.split(".")
    head = parts[0]
    try:
        if head == "conv_in":
            return _join("input_blocks.0.0", ".".join(parts[1:]))
        if head == "down_blocks" and len(parts) >= 4:
            level, kind, index, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
            if kind == "resnets":
                return _join(
                    f"input_blocks.{3 * level + index + 1}.0", _rename_prefix(rest, _RESNET_DIFFUSERS_TO_LDM) or rest
                )
            if kind == "attentions":
                return _join(f"input_blocks.{3 * level + index + 1}.1", rest)
            if kind == "downsamplers" and (rest == "conv" or rest.startswith("conv.")):
                return _join(f"input_blocks.{3 * level + 3}.0.op", rest[4:])
            return None
        if head == "mid_block" and len(parts) >= 3:
            kind, index, rest = parts[1], int(parts[2]), ".".join(parts[3:])
            if kind == "attentions":
                return _join("middle_block.1", rest)
            if kind == "resnets":
                return _join(f"middle_block.{2 * index}", _rename_prefix(rest, _RESNET_DIFFUSERS_TO_LDM) or rest)
            return None
        if head == "up_blocks" and len(parts) >= 4:
            level, kind, index, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
            if kind == "resnets":
                return _join(
                    f"output_blocks.{3 * level + index}.0", _rename_prefix(rest, _RESNET_DIFFUSERS_TO_LDM) or rest
                )
            if kind == "attentions":
                return _join(f"output_blocks.{3 * level + index}.1", rest)
            if kind == "upsamplers":
                slot = 2 if layout.up_has_attention(level) else 1
                return _join(f"output_blocks.{3 * level + 2}.{slot}", rest)
            return None
    except ValueError:
        return None
    return _rename_prefix(name, _SIMPLE_DIFFUSERS_TO_LDM)


def unet_name_pair(name: str, naming: str, layout: UnetLayout) -> tuple[str | None, str | None]:
    """(ldm name, diffusers name) of a UNet module named in ``naming``; None where there is no counterpart."""
    ldm = name if naming == "ldm" else diffusers_to_ldm(name, layout)
    diffusers = name if naming == "diffusers" else ldm_to_diffusers(name, layout)
    return ldm, diffusers


def block_id(ldm_name: str | None) -> str | None:
    """LoRA Block Weight id of a UNet module from its ldm name (IN04, M00, OUT11); None outside the blocks."""
    if ldm_name is None:
        return None
    if match := re.match(r"input_blocks\.(\d+)\.", ldm_name):
        return f"IN{int(match.group(1)):02d}"
    if ldm_name.startswith("middle_block."):
        return "M00"
    if match := re.match(r"output_blocks\.(\d+)\.", ldm_name):
        return f"OUT{int(match.group(1)):02d}"
    return None


# ---------------------------------------------------------------------------- text encoders → HF CLIP names
def hf_text_name(name: str) -> str:
    """A1111's ``transformer.text_model.…`` / transformers 5's flattened ``encoder.…`` → ``text_model.…``."""
    if name.startswith("transformer."):
        name = name[len("transformer.") :]
    if name.startswith(("encoder.", "embeddings.", "final_layer_norm")):
        name = "text_model." + name
    return name


def open_clip_text_name(name: str) -> str | None:
    """``model.transformer.resblocks.3.mlp.c_fc`` → ``text_model.encoder.layers.3.mlp.fc1`` (not for the fused attn)."""
    if match := re.fullmatch(r"model\.transformer\.resblocks\.(\d+)\.(.+)", name):
        renamed = _rename_prefix(match.group(2), _OPEN_CLIP_TO_HF)
        return None if renamed is None else f"text_model.encoder.layers.{match.group(1)}.{renamed}"
    if name == "model.ln_final":
        return "text_model.final_layer_norm"
    return None


def open_clip_attention_names(name: str) -> dict[str, str] | None:
    """OpenCLIP's fused ``model.transformer.resblocks.3.attn`` → HF names of its q, k, v (row slices) and out.

    The slices of ``in_proj_weight`` are [0:d], [d:2d], [2d:3d] in the order q, k, v.
    """
    match = re.fullmatch(r"model\.transformer\.resblocks\.(\d+)\.attn", name)
    if not match:
        return None
    layer = f"text_model.encoder.layers.{match.group(1)}.self_attn"
    return {projection: f"{layer}.{projection}_proj" for projection in ("q", "k", "v", "out")}


# ---------------------------------------------------------------------------- kohya spellings
def flat(name: str) -> str:
    """kohya's module names have no dots: ``input_blocks.4.1`` → ``input_blocks_4_1``."""
    return name.replace(".", "_")


def kohya_unet_name(name: str) -> str:
    """``input_blocks.4.1.proj_in`` → ``lora_unet_input_blocks_4_1_proj_in`` (an ldm or a diffusers name)."""
    return f"lora_unet_{flat(name)}"


def trained_unet_name(family: str, ldm: str | None, diffusers: str | None) -> str | None:
    """The kohya name a trained file gives a UNet module: SDXL in ldm (sgm) names, SD1/SD2 in diffusers names."""
    name = ldm if family == "sdxl" else diffusers
    return None if name is None else kohya_unet_name(name)


def kohya_text_names(family: str, index: int, hf_name: str) -> tuple[str, ...]:
    """Every kohya spelling of text encoder ``index``'s module; the first is the one kohya (and our trainer) writes."""
    if family == "sdxl":
        prefixes = (f"lora_te{index + 1}_",)
    else:
        prefixes = ("lora_te_", "lora_te1_")
    return tuple(prefix + flat(hf_name) for prefix in prefixes)


def trained_text_name(family: str, index: int, hf_name: str) -> str:
    """The kohya name a trained file gives text encoder ``index``'s module (``lora_te_…``, ``lora_te2_…``)."""
    return kohya_text_names(family, index, hf_name)[0]
