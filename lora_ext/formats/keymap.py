"""Key → module mapping, built forward from the model's own module names.

For every patchable module of the loaded model (or of a checkpoint's keys — the
same entries, see ``entries_from_checkpoint``) we generate every spelling a LoRA
file may use for it — kohya ``lora_unet_…`` in both ldm (SDXL) and diffusers
(SD1/SD2) names, ``lycoris_…``, ``oft_unet_…``, diffusers/PEFT dotted names
with ``unet.``/``base_model.model.`` prefixes and the attention-processor form,
ComfyUI ``diffusion_model.…``, and the text-encoder forms — and store them in one
dict. Matching a file is then a lookup, never a chain of string replacements.

The name maths (ldm ↔ diffusers with a layout read from the model, HF CLIP names,
kohya's flattened spelling) lives in ``unet_names``, which the trainer writes with.

OpenCLIP text encoders (SD2, SDXL bigG) have a fused ``attn.in_proj_weight``;
the HF names ``self_attn.{q,k,v}_proj`` map to its row slices [0:d], [d:2d],
[2d:3d] as independent targets, so a file with only q and v still applies.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch

from lora_ext.formats.unet_names import (
    block_id,
    flat,
    hf_text_name,
    kohya_text_names,
    kohya_unet_name,
    layout_from_names,
    open_clip_attention_names,
    open_clip_text_name,
    unet_name_pair,
)
from lora_ext.host import Family, ModelParts


# ---------------------------------------------------------------------------- spellings
def processor_spelling(diffusers_name: str) -> str | None:
    """Old diffusers attention-processor name: ``attn1.to_q`` → ``attn1.processor.to_q``, ``to_out.0`` → ``processor.to_out``."""
    if match := re.fullmatch(r"(.*\.attn\d)\.(to_q|to_k|to_v)", diffusers_name):
        return f"{match.group(1)}.processor.{match.group(2)}"
    if match := re.fullmatch(r"(.*\.attn\d)\.to_out\.0", diffusers_name):
        return f"{match.group(1)}.processor.to_out"
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


def _te_dotted_prefixes(family: Family, part: str) -> tuple[str, ...]:
    """Dotted prefixes a file may use for one text encoder (the kohya ones come from ``kohya_text_names``)."""
    if family == "sdxl":
        if part == "te0":
            return ("text_encoder.", "text_encoders.clip_l.transformer.")
        return ("text_encoder_2.", "text_encoders.clip_g.transformer.")
    clip = "clip_h" if family == "sd2" else "clip_l"
    return ("text_encoder.", f"text_encoders.{clip}.transformer.")


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
            ldm, diffusers = unet_name_pair(entry.name, naming, layout)
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
                    kohya_unet_name(ldm),
                    f"lycoris_{flat(ldm)}",
                    f"oft_unet_{flat(ldm)}",
                    f"diffusion_model.{ldm}",
                    f"model.diffusion_model.{ldm}",
                    ldm,
                ]
            if diffusers:
                spellings += [
                    kohya_unet_name(diffusers),
                    f"lycoris_{flat(diffusers)}",
                    f"oft_unet_{flat(diffusers)}",
                    f"unet.{diffusers}",
                    f"base_model.model.{diffusers}",
                    diffusers,
                ]
                if processor := processor_spelling(diffusers):
                    spellings += [f"unet.{processor}", processor]
            add(spellings, target)
            continue
        index, dotted = int(entry.part[2:]), _te_dotted_prefixes(family, entry.part)
        if entry.kind == "open_clip" and entry.weight_attr == "in_proj_weight":
            names = open_clip_attention_names(entry.name)
            if names is None:
                continue
            width = entry.weight_shape[0] // 3
            for slot, projection in enumerate(("q", "k", "v")):
                hf = names[projection]
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
                add(_te_spellings(family, index, hf, dotted), target)
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
            add(_te_spellings(family, index, "text_projection", dotted), target)
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
        add(_te_spellings(family, index, hf, dotted), target)
    return KeyMap(family=family, by_prefix=by_prefix)


def _te_spellings(family: Family, index: int, hf: str, dotted: Sequence[str]) -> list[str]:
    flattened = hf[len("text_model.") :] if hf.startswith("text_model.") else None
    spellings = [*kohya_text_names(family, index, hf), *(prefix + hf for prefix in dotted)]
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
