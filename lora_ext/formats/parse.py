"""A LoRA file's tensors → per-module adapters, plus everything that did not parse."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lora_ext.errors import FileFormatError
from lora_ext.formats import Adapter, parse_module, unsupported_error
from lora_ext.formats.detect import Detection, detect_base
from lora_ext.formats.keys import group_keys
from lora_ext.formats.lora import LoraAdapter


@dataclass
class ParsedLora:
    """One file, parsed once and cached: adapters by file module prefix."""

    path: Path | None
    metadata: dict[str, str]
    adapters: dict[str, Adapter]
    source_keys: dict[str, list[str]]
    unparsed_keys: list[str]  # keys of modules no format accepted, and keys with unknown suffixes
    bundled_embeddings: dict[str, list[str]]
    detection: Detection
    identity: tuple = ()  # (path, mtime_ns, size): changes when the file changes
    format_counts: dict[str, int] = field(default_factory=dict)

    @property
    def alias(self) -> str | None:
        return self.metadata.get("ss_output_name") or None


def check_finite(state_dict: Mapping[str, torch.Tensor], name: str) -> None:
    """Reject files holding NaN/Inf: merged into a weight they turn every image black.

    A tensor's sum is finite only if every element is, so one sum per tensor clears a
    healthy file in a single cheap pass; only a non-finite sum (a bad value, or a sum
    that overflowed) gets the exact element test.
    """
    floats = [(key, tensor) for key, tensor in state_dict.items() if tensor.is_floating_point()]
    sums = [tensor.sum(dtype=torch.float64 if tensor.dtype == torch.float64 else torch.float32) for _, tensor in floats]
    if not sums or bool(torch.isfinite(torch.stack(sums)).all()):
        return
    for (key, tensor), total in zip(floats, sums, strict=True):
        if not bool(torch.isfinite(total)) and not bool(torch.isfinite(tensor).all()):
            raise FileFormatError(
                f"{name}: tensor {key!r} contains NaN or infinite values",
                hint="the LoRA is broken (often a diverged training run)",
            )


def peft_alpha(metadata: Mapping[str, str]) -> float | None:
    """``lora_alpha`` from diffusers' ``lora_adapter_metadata`` (PEFT files carry no per-module alpha)."""
    try:
        config = json.loads(metadata.get("lora_adapter_metadata") or "{}")
    except ValueError:
        return None
    if not isinstance(config, dict):
        return None
    value = config.get("lora_alpha")
    if value is None:  # diffusers nests one config per component in some versions
        nested = [c.get("lora_alpha") for c in config.values() if isinstance(c, dict) and c.get("lora_alpha")]
        value = nested[0] if nested else None
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def parse_lora(
    state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str], path: Path | None = None, identity: tuple = ()
) -> ParsedLora:
    """Group and parse every module; raise ``UnsupportedLoraFormat`` only if nothing at all parses."""
    name = path.name if path else "LoRA"
    check_finite(state_dict, name)
    grouped = group_keys(state_dict)
    adapters: dict[str, Adapter] = {}
    unparsed = list(grouped.unknown)
    counts: dict[str, int] = {}
    for prefix, tensors in grouped.modules.items():
        adapter = parse_module(tensors)
        if adapter is None:
            unparsed += grouped.source_keys[prefix]
            continue
        adapters[prefix] = adapter
        counts[adapter.name] = counts.get(adapter.name, 0) + 1
    if not adapters and not grouped.bundled_embeddings:
        raise unsupported_error(sorted(unparsed or list(state_dict)))
    default_alpha = peft_alpha(metadata)
    if default_alpha is not None:
        for prefix, adapter in adapters.items():
            if isinstance(adapter, LoraAdapter) and adapter.network_alpha is None:
                adapters[prefix] = dataclasses.replace(adapter, network_alpha=default_alpha)
    source_keys = {prefix: grouped.source_keys[prefix] for prefix in adapters}
    return ParsedLora(
        path,
        dict(metadata),
        adapters,
        source_keys,
        sorted(unparsed),
        grouped.bundled_embeddings,
        detect_base(grouped.modules, metadata),
        identity,
        counts,
    )
