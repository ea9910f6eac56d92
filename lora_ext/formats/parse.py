"""A LoRA file's tensors → per-module adapters, plus everything that did not parse."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lora_ext.errors import FileFormatError
from lora_ext.formats import Adapter, parse_module, unsupported_error
from lora_ext.formats.detect import Detection, detect_base
from lora_ext.formats.dora import DoraAdapter
from lora_ext.formats.keys import group_keys
from lora_ext.formats.lora import LoraAdapter
from lora_ext.formats.peft_config import PeftSettings, read_peft_settings


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


def _with_peft_scale(adapter: Adapter, prefix: str, settings: PeftSettings) -> Adapter:
    """A LoRA (or a DoRA around one) without its own alpha takes the PEFT config's scale."""
    if isinstance(adapter, DoraAdapter):
        inner = _with_peft_scale(adapter.inner, prefix, settings)
        return adapter if inner is adapter.inner else dataclasses.replace(adapter, inner=inner)
    if not isinstance(adapter, LoraAdapter) or adapter.network_alpha is not None or adapter.scale_override is not None:
        return adapter
    config = settings.config_for(prefix)
    alpha = None if config is None else config.alpha_for(prefix)
    if alpha is None:
        return adapter
    if config.use_rslora:  # alpha/√r: not expressible as an alpha over the rank
        return dataclasses.replace(adapter, network_alpha=alpha, scale_override=alpha / math.sqrt(adapter.rank))
    return dataclasses.replace(adapter, network_alpha=alpha)


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
    settings = read_peft_settings(path, metadata)
    if settings is not None:
        adapters = {prefix: _with_peft_scale(adapter, prefix, settings) for prefix, adapter in adapters.items()}
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
