"""Bake LoRAs into a single-file checkpoint, state-dict only and streaming.

The base's safetensors header gives every key's shape without reading data; the
key map is built from those keys (the same code that maps a live model). The
output is written tensor by tensor in the base's order: untouched tensors are
copied byte for byte, and each touched weight becomes
round(W_fp32 + Σ weight·ΔW) in the base dtype (or ``save_dtype``). Only one
tensor at a time is held in memory, besides the parsed LoRAs.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lora_ext.errors import FileFormatError, IncompatibleBaseModel, UsageError
from lora_ext.fileio import atomic_path
from lora_ext.formats.detect import incompatible
from lora_ext.formats.keymap import build_keymap, entries_from_checkpoint
from lora_ext.formats.parse import parse_lora
from lora_ext.formats.placement import place
from lora_ext.formats.safetensors_io import (
    dtype_name,
    is_safetensors,
    iter_bytes,
    load_state_dict,
    read_header,
    read_tensor,
    tensor_bytes,
    torch_dtype,
)
from lora_ext.loading.patcher import ParamPatch, add_deltas

SAVE_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass(frozen=True)
class MergeSource:
    path: Path
    weight: float = 1.0


@dataclass
class MergeSummary:
    out: Path
    touched: int = 0
    copied: int = 0
    matched: dict[str, int] = field(default_factory=dict)
    unmatched: dict[str, list[str]] = field(default_factory=dict)
    family: str = ""


def parse_lora_argument(text: str) -> MergeSource:
    """``PATH[:WEIGHT]``; a trailing ``:number`` is the weight, so ``C:\\x.safetensors`` still works."""
    path, sep, tail = text.rpartition(":")
    if sep and path:
        try:
            return MergeSource(Path(path), float(tail))
        except ValueError:
            pass
    return MergeSource(Path(text), 1.0)


def _plan(
    base_keys: dict[str, tuple[int, ...]],
    sources: Sequence[MergeSource],
    warn: Callable[[str], None],
    summary: MergeSummary,
) -> dict[str, list[ParamPatch]]:
    entries, prefixes = entries_from_checkpoint(base_keys)
    keymap = build_keymap(entries, "ldm")
    summary.family = keymap.family
    plan: dict[str, list[ParamPatch]] = {}
    for source in sources:
        tensors, metadata = load_state_dict(source.path)
        parsed = parse_lora(tensors, metadata, path=source.path)
        name = source.path.name
        if incompatible(parsed.detection, keymap.family):
            raise IncompatibleBaseModel(
                f"{name} was made for {parsed.detection.family.upper()} but the base is {keymap.family.upper()}"
            )
        unmatched = list(parsed.unparsed_keys)
        matched = 0
        for prefix, adapter in parsed.adapters.items():
            target = keymap.lookup(prefix)
            if target is None:
                unmatched += parsed.source_keys[prefix]
                continue
            placement = place(adapter, target)
            if placement is None:
                raise IncompatibleBaseModel(
                    f"{name}: module {prefix} does not fit the base weight "
                    f"{'.'.join([target.module, target.weight_attr])} of shape "
                    f"{tuple(target.shape)} (shape mismatch)",
                    hint="the LoRA was made for another base model",
                )
            key = f"{prefixes[target.part]}{target.module}.{target.weight_attr}"
            plan.setdefault(key, []).append(ParamPatch(adapter, source.weight, placement))
            if adapter.has_bias and target.bias_attr:
                bias_key = f"{prefixes[target.part]}{target.module}.{target.bias_attr}"
                plan.setdefault(bias_key, []).append(ParamPatch(adapter, source.weight, placement, is_bias=True))
            matched += 1
        if matched == 0:
            raise IncompatibleBaseModel(
                f"{name} matches nothing in the base checkpoint ({len(unmatched)} keys, "
                f"e.g. {', '.join(sorted(unmatched)[:3])})",
                hint="check that the LoRA and the checkpoint are for the same model family",
            )
        if unmatched:
            warn(
                f"{name}: {len(unmatched)} keys matched nothing in the base and were ignored "
                f"(e.g. {', '.join(sorted(unmatched)[:3])})"
            )
        summary.matched[name] = matched
        summary.unmatched[name] = sorted(unmatched)
    return plan


def _merged(original: torch.Tensor, patches: Sequence[ParamPatch], out_dtype: torch.dtype) -> torch.Tensor:
    work = original.to(torch.float32, copy=True)
    needs_base = any(patch.adapter.needs_base for patch in patches)
    add_deltas(work, original.to(torch.float32) if needs_base else work, patches)
    if not bool(torch.isfinite(work).all()):
        raise FileFormatError("the merge produced NaN or infinite weights", hint="lower the LoRA weights")
    return work.to(out_dtype)


def merge_checkpoint(
    base: Path,
    sources: Sequence[MergeSource],
    out: Path,
    save_dtype: torch.dtype | None = None,
    warn: Callable[[str], None] = lambda message: None,
) -> MergeSummary:
    """Write ``out`` = ``base`` with every source LoRA baked in."""
    base, out = Path(base), Path(out)
    if not is_safetensors(base):
        raise UsageError(f"{base.name}: the base checkpoint must be a .safetensors file")
    if out.resolve() == base.resolve():
        raise UsageError("--out must differ from the base checkpoint")
    header = read_header(base)
    summary = MergeSummary(out=out)
    plan = _plan({key: info.shape for key, info in header.tensors.items()}, sources, warn, summary)

    order = sorted(header.tensors, key=lambda key: header.tensors[key].begin)
    layout: dict[str, dict] = {}
    offset = 0
    for key in order:
        info = header.tensors[key]
        dtype_label = info.dtype
        if key in plan and save_dtype is not None:
            dtype_label = dtype_name(save_dtype)
        size = (
            (info.end - info.begin)
            if dtype_label == info.dtype
            else _numel(info.shape) * torch.empty((), dtype=torch_dtype(dtype_label)).element_size()
        )
        layout[key] = {"dtype": dtype_label, "shape": list(info.shape), "data_offsets": [offset, offset + size]}
        offset += size
    header_json = dict(layout)
    if header.metadata:
        header_json["__metadata__"] = header.metadata
    raw = json.dumps(header_json, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)

    with atomic_path(out) as tmp, open(base, "rb") as source, open(tmp, "wb") as sink:
        sink.write(struct.pack("<Q", len(raw)))
        sink.write(raw)
        for key in order:
            info = header.tensors[key]
            if key not in plan:
                for block in iter_bytes(source, info):
                    sink.write(block)
                summary.copied += 1
                continue
            original = read_tensor(source, info)
            out_dtype = torch_dtype(layout[key]["dtype"])
            sink.write(tensor_bytes(_merged(original, plan[key], out_dtype)))
            summary.touched += 1
    return summary


def _numel(shape: Sequence[int]) -> int:
    count = 1
    for size in shape:
        count *= int(size)
    return count
