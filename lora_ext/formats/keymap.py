"""Key → module mapping, built forward from the model's own module names.

For every patchable module of the loaded model (or of a checkpoint's keys — the
same entries, see ``entries_from_checkpoint``) we generate every spelling a LoRA
file may use for it — kohya ``lora_unet_…`` in both ldm (SDXL) and diffusers
(SD1/SD2) names, ``lycoris_…``, ``oft_unet_…``, diffusers/PEFT dotted names
with ``unet.``/``base_model.model.`` prefixes and the attention-processor form,
ComfyUI ``diffusion_model.…``, and the text-encoder forms — and store them in one
dict. Matching a file is then a lookup, never a chain of string replacements.

UNet names are converted between ldm (``input_blocks.4.1…``) and diffusers
(``down_blocks.1.attentions.0…``) with a layout read from the module names (how
many levels, which carry attention), which is what makes SDXL's upsamplers
(``output_blocks.2.2.conv``) come out right where A1111's SD1 rule does not.

OpenCLIP text encoders (SD2, SDXL bigG) have a fused ``attn.in_proj_weight``;
the HF names ``self_attn.{q,k,v}_proj`` map to its row slices [0:d], [d:2d],
[2d:3d] as independent targets, so a file with only q and v still applies.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch

from lora_ext.host import Family, ModelParts

# ---------------------------------------------------------------------------- pure name maths
_RESNET_LDM_TO_DIFFUSERS = (
    ("in_layers.0", "norm1"),
    ("in_layers.2", "conv1"),
    ("out_layers.0", "norm2"),
    ("out_layers.3", "conv2"),
    ("emb_layers.1", "time_emb_proj"),
    ("skip_connection", "conv_shortcut"),
)
_SIMPLE_LDM_TO_DIFFUSERS = (
    ("time_embed.0", "time_embedding.linear_1"),
    ("time_embed.2", "time_embedding.linear_2"),
    ("label_emb.0.0", "add_embedding.linear_1"),
    ("label_emb.0.2", "add_embedding.linear_2"),
    ("out.0", "conv_norm_out"),
    ("out.2", "conv_out"),
)


@dataclass(frozen=True)
class UnetLayout:
    """How many resolution levels the UNet has and which down levels carry attention."""

    levels: int
    attention_levels: frozenset[int]

    def up_has_attention(self, up_level: int) -> bool:
        return (self.levels - 1 - up_level) in self.attention_levels


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
    resnet_back = tuple((new, old) for old, new in _RESNET_LDM_TO_DIFFUSERS)
    try:
        if head == "conv_in":
            return _join("input_blocks.0.0", ".".join(parts[1:]))
        if head == "down_blocks" and len(parts) >= 4:
            level, kind, index, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
            if kind == "resnets":
                return _join(f"input_blocks.{3 * level + index + 1}.0", _rename_prefix(rest, resnet_back) or rest)
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
                return _join(f"middle_block.{2 * index}", _rename_prefix(rest, resnet_back) or rest)
            return None
        if head == "up_blocks" and len(parts) >= 4:
            level, kind, index, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
            if kind == "resnets":
                return _join(f"output_blocks.{3 * level + index}.0", _rename_prefix(rest, resnet_back) or rest)
            if kind == "attentions":
                return _join(f"output_blocks.{3 * level + index}.1", rest)
            if kind == "upsamplers":
                slot = 2 if layout.up_has_attention(level) else 1
                return _join(f"output_blocks.{3 * level + 2}.{slot}", rest)
            return None
    except ValueError:
        return None
    return _rename_prefix(name, tuple((new, old) for old, new in _SIMPLE_LDM_TO_DIFFUSERS))


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


def processor_spelling(diffusers_name: str) -> str | None:
    """Old diffusers attention-processor name: ``attn1.to_q`` → ``attn1.processor.to_q``, ``to_out.0`` → ``processor.to_out``."""
    if match := re.fullmatch(r"(.*\.attn\d)\.(to_q|to_k|to_v)", diffusers_name):
        return f"{match.group(1)}.processor.{match.group(2)}"
    if match := re.fullmatch(r"(.*\.attn\d)\.to_out\.0", diffusers_name):
        return f"{match.group(1)}.processor.to_out"
    return None


_OPEN_CLIP_TO_HF = (
    ("attn.out_proj", "self_attn.out_proj"),
    ("mlp.c_fc", "mlp.fc1"),
    ("mlp.c_proj", "mlp.fc2"),
    ("ln_1", "layer_norm1"),
    ("ln_2", "layer_norm2"),
)


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


# ---------------------------------------------------------------------------- entries and targets
@dataclass(frozen=True)
class ModuleEntry:
    """One patchable module: which part, its root-relative name and its weight's shape."""

    part: str  # "unet", "te0", "te1"
    kind: str  # "unet", "hf_clip", "open_clip"
    name: str
    weight_shape: tuple[int, ...]
    weight_attr: str = "weight"
    bias_attr: str | None = "bias"


@dataclass(frozen=True)
class Target:
    """Where one file module lands: a weight (or a row slice of a fused weight) of one model module."""

    part: str
    module: str
    weight_attr: str
    bias_attr: str | None
    rows: tuple[int, int] | None
    canonical: str  # "unet:<ldm name>" or "te0:text_model.…"; stable across namings
    block: str | None  # LBW block id; "BASE" for text encoders
    shape: tuple[int, ...]  # of the (sliced) weight, as a LoRA sees it: (out, in, …)
    transposed: bool = False  # stored (in, out): OpenCLIP's ``text_projection`` parameter

    @property
    def is_text_encoder(self) -> bool:
        return self.part != "unet"


@dataclass
class KeyMap:
    """File module prefix → target, for one model."""

    family: Family
    by_prefix: dict[str, Target]

    def lookup(self, prefix: str) -> Target | None:
        return self.by_prefix.get(prefix)

    def targets(self) -> list[Target]:
        return list({target: None for target in self.by_prefix.values()})


def family_of(entries: Sequence[ModuleEntry]) -> Family:
    parts = {entry.part: entry.kind for entry in entries}
    if "te1" in parts:
        return "sdxl"
    return "sd2" if parts.get("te0") == "open_clip" else "sd1"


def _te_prefixes(family: Family, part: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(kohya prefixes, dotted prefixes) a file may use for one text encoder."""
    if family == "sdxl":
        if part == "te0":
            return ("lora_te1_",), ("text_encoder.", "text_encoders.clip_l.transformer.")
        return ("lora_te2_",), ("text_encoder_2.", "text_encoders.clip_g.transformer.")
    clip = "clip_h" if family == "sd2" else "clip_l"
    return ("lora_te_", "lora_te1_"), ("text_encoder.", f"text_encoders.{clip}.transformer.")


def _flat(name: str) -> str:
    return name.replace(".", "_")


def build_keymap(entries: Sequence[ModuleEntry], naming: str) -> KeyMap:
    """Every spelling of every entry → its target. ``naming`` is the UNet's ("ldm" or "diffusers")."""
    family = family_of(entries)
    unet_names = [entry.name for entry in entries if entry.part == "unet"]
    layout = layout_from_names(unet_names, naming)
    by_prefix: dict[str, Target] = {}

    def add(spellings: Iterable[str], target: Target) -> None:
        for spelling in spellings:
            by_prefix.setdefault(spelling, target)

    for entry in entries:
        if entry.part == "unet":
            ldm = entry.name if naming == "ldm" else diffusers_to_ldm(entry.name, layout)
            diffusers = entry.name if naming == "diffusers" else ldm_to_diffusers(entry.name, layout)
            target = Target(
                "unet",
                entry.name,
                entry.weight_attr,
                entry.bias_attr,
                None,
                f"unet:{ldm or entry.name}",
                block_id(ldm),
                entry.weight_shape,
            )
            spellings: list[str] = []
            if ldm:
                spellings += [
                    f"lora_unet_{_flat(ldm)}",
                    f"lycoris_{_flat(ldm)}",
                    f"oft_unet_{_flat(ldm)}",
                    f"diffusion_model.{ldm}",
                    f"model.diffusion_model.{ldm}",
                    ldm,
                ]
            if diffusers:
                spellings += [
                    f"lora_unet_{_flat(diffusers)}",
                    f"lycoris_{_flat(diffusers)}",
                    f"oft_unet_{_flat(diffusers)}",
                    f"unet.{diffusers}",
                    f"base_model.model.{diffusers}",
                    diffusers,
                ]
                if processor := processor_spelling(diffusers):
                    spellings += [f"unet.{processor}", processor]
            add(spellings, target)
            continue
        kohya, dotted = _te_prefixes(family, entry.part)
        if entry.kind == "open_clip" and entry.weight_attr == "in_proj_weight":
            match = re.fullmatch(r"model\.transformer\.resblocks\.(\d+)\.attn", entry.name)
            if not match:
                continue
            width = entry.weight_shape[0] // 3
            for slot, projection in enumerate(("q_proj", "k_proj", "v_proj")):
                hf = f"text_model.encoder.layers.{match.group(1)}.self_attn.{projection}"
                rows = (slot * width, (slot + 1) * width)
                target = Target(
                    entry.part,
                    entry.name,
                    entry.weight_attr,
                    entry.bias_attr,
                    rows,
                    f"{entry.part}:{hf}",
                    "BASE",
                    (width, *entry.weight_shape[1:]),
                )
                add(_te_spellings(hf, kohya, dotted), target)
            continue
        if entry.kind == "open_clip" and entry.weight_attr == "text_projection":
            # used as x @ P: stored (in, out), where HF's Linear (and every LoRA) is (out, in)
            target = Target(
                entry.part,
                entry.name,
                entry.weight_attr,
                None,
                None,
                f"{entry.part}:text_projection",
                "BASE",
                tuple(reversed(entry.weight_shape)),
                transposed=True,
            )
            add(_te_spellings("text_projection", kohya, dotted), target)
            continue
        hf = hf_text_name(entry.name) if entry.kind == "hf_clip" else open_clip_text_name(entry.name)
        if hf is None:
            continue
        target = Target(
            entry.part,
            entry.name,
            entry.weight_attr,
            entry.bias_attr,
            None,
            f"{entry.part}:{hf}",
            "BASE",
            entry.weight_shape,
        )
        add(_te_spellings(hf, kohya, dotted), target)
    return KeyMap(family=family, by_prefix=by_prefix)


def _te_spellings(hf: str, kohya: Sequence[str], dotted: Sequence[str]) -> list[str]:
    flattened = hf[len("text_model.") :] if hf.startswith("text_model.") else None
    spellings = [prefix + _flat(hf) for prefix in kohya] + [prefix + hf for prefix in dotted]
    if flattened:
        spellings += [prefix + flattened for prefix in dotted]
    return spellings


# ---------------------------------------------------------------------------- entries from a model or a checkpoint
def _module_entries(part: str, kind: str, root: torch.nn.Module) -> list[ModuleEntry]:
    entries = []
    for name, module in root.named_modules():
        if isinstance(module, torch.nn.MultiheadAttention) and module.in_proj_weight is not None:
            bias = "in_proj_bias" if module.in_proj_bias is not None else None
            entries.append(ModuleEntry(part, kind, name, tuple(module.in_proj_weight.shape), "in_proj_weight", bias))
            continue
        projection = getattr(module, "text_projection", None)
        if kind == "open_clip" and isinstance(projection, torch.nn.Parameter) and projection.dim() == 2:
            entries.append(ModuleEntry(part, kind, name, tuple(projection.shape), "text_projection", None))
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.nn.Parameter) and weight.dim() >= 1:
            bias = "bias" if isinstance(getattr(module, "bias", None), torch.nn.Parameter) else None
            entries.append(ModuleEntry(part, kind, name, tuple(weight.shape), "weight", bias))
    return entries


def entries_from_parts(parts: ModelParts) -> list[ModuleEntry]:
    """Patchable modules of a live model."""
    entries = _module_entries("unet", "unet", parts.unet)
    for encoder in parts.text_encoders:
        entries += _module_entries(f"te{encoder.index}", encoder.kind, encoder.root)
    return entries


CHECKPOINT_UNET = "model.diffusion_model."


def checkpoint_part_prefixes(keys: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Part → (key prefix, kind) for a single-file checkpoint in A1111 layout (as A1111 tells SDXL/SD2/SD1)."""
    keys = list(keys)
    has = lambda prefix: any(key.startswith(prefix) for key in keys)  # noqa: E731
    parts = {"unet": (CHECKPOINT_UNET, "unet")}
    if has("conditioner.embedders."):
        for index in (0, 1):
            prefix = f"conditioner.embedders.{index}."
            if has(prefix):
                kind = "open_clip" if has(prefix + "model.transformer.") else "hf_clip"
                parts[f"te{index}"] = (prefix, kind)
    elif has("cond_stage_model."):
        kind = "open_clip" if has("cond_stage_model.model.transformer.") else "hf_clip"
        parts["te0"] = ("cond_stage_model.", kind)
    return parts


def entries_from_checkpoint(shapes: Mapping[str, Sequence[int]]) -> tuple[list[ModuleEntry], dict[str, str]]:
    """Patchable modules of a checkpoint from its key → shape table; also part → key prefix."""
    prefixes = checkpoint_part_prefixes(shapes)
    entries: list[ModuleEntry] = []
    for part, (prefix, kind) in prefixes.items():
        for key, shape in shapes.items():
            if not key.startswith(prefix) or len(shape) < 1:
                continue
            rest = key[len(prefix) :]
            if kind == "open_clip" and rest.endswith(".text_projection") and len(shape) == 2:
                module = rest[: -len(".text_projection")]
                entries.append(ModuleEntry(part, kind, module, tuple(int(s) for s in shape), "text_projection", None))
                continue
            for weight_attr, bias_attr in (("in_proj_weight", "in_proj_bias"), ("weight", "bias")):
                if rest.endswith("." + weight_attr):
                    module = rest[: -len(weight_attr) - 1]
                    bias = bias_attr if f"{prefix}{module}.{bias_attr}" in shapes else None
                    entries.append(ModuleEntry(part, kind, module, tuple(int(s) for s in shape), weight_attr, bias))
                    break
    return entries, {part: prefix for part, (prefix, _) in prefixes.items()}


def keymap_for_parts(parts: ModelParts) -> KeyMap:
    return build_keymap(entries_from_parts(parts), parts.naming)
