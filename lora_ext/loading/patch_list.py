"""What a ``<lora:…>`` request wants of each model parameter, named, without touching a weight.

For a host whose own patcher writes the weights (Forge: ``hosts/forge_loader.py``),
``NetworkLoader.patch_list(specs)`` resolves names, aliases, formats, ``te/unet/dyn/lbw`` and
warnings exactly as ``NetworkLoader.apply`` does, and returns per requested file the parameters
it patches, by name (``ParamRef``), with their ``ParamPatch``es. ``delta`` is the ΔW our own
merge adds for them (``patcher.add_deltas``: fp32, computed against the unpatched weight), so a
host that adds it to the weight in fp32 and rounds once gets our merge.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lora_ext.loading.patcher import ParamPatch, add_deltas
from lora_ext.loading.resolve import LoadReport


@dataclass(frozen=True)
class ParamRef:
    """One model parameter by name: ``part`` ("unet", "te0", "te1"), its dotted name below that part's root."""

    part: str
    name: str  # e.g. "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"
    shape: tuple[int, ...]  # the parameter's own shape (a transposed or sliced target keeps the full one)


@dataclass
class FilePatches:
    """One requested file's patches, per parameter, in the order the file's modules matched."""

    name: str  # as the prompt wrote it
    path: Path
    params: list[tuple[ParamRef, list[ParamPatch]]] = field(default_factory=list)


@dataclass
class PatchList:
    """A request resolved to named patches: what happened (``report``) and what each file wants."""

    report: LoadReport
    files: list[FilePatches] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not any(item.params for item in self.files)

    def signature(self) -> str:
        """A short digest of everything the patches depend on (files' identities, modules, multipliers…)."""
        digest = hashlib.sha1()
        for item in self.files:
            for ref, patches in item.params:
                digest.update(repr((ref, [patch.signature for patch in patches])).encode())
        return digest.hexdigest()[:16]


def group_by_param(patches: Sequence[tuple[ParamRef, ParamPatch]]) -> list[tuple[ParamRef, list[ParamPatch]]]:
    """A file's (parameter, patch) pairs as one entry per parameter, its patches in order."""
    grouped: dict[ParamRef, list[ParamPatch]] = {}
    for ref, patch in patches:
        grouped.setdefault(ref, []).append(patch)
    return list(grouped.items())


def needs_base(patches: Sequence[ParamPatch]) -> bool:
    """Whether ΔW depends on the base weight's values (IA³, OFT, GLoRA, DoRA), not only on its shape."""
    return any(patch.adapter.needs_base for patch in patches)


def delta(patches: Sequence[ParamPatch], shape: tuple[int, ...], base: torch.Tensor | None = None) -> torch.Tensor:
    """Σ ΔW of ``patches`` for a parameter of ``shape`` (fp32, on ``base``'s device or the CPU).

    ``base`` is the unpatched weight; it is only read when ``needs_base(patches)``."""
    device = base.device if base is not None else torch.device("cpu")
    work = torch.zeros(shape, dtype=torch.float32, device=device)
    if needs_base(patches):
        if base is None:
            raise ValueError("these patches need the base weight")  # internal: callers check needs_base
        original = base.to(torch.float32)
    else:
        original = work  # read for its shape only
    add_deltas(work, original, patches)
    return work
