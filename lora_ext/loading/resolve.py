"""One ``<lora:…>`` spec against one model: what happened to its file, its warnings, and the patches it wants.

Each step is a function that returns its result and its warnings; a refused LoRA stops at the
step that refused it (``Skip``), before any weight is touched, and the other LoRAs still apply.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lora_ext.errors import LoraExtError
from lora_ext.formats import Adapter
from lora_ext.formats.detect import incompatible
from lora_ext.formats.keymap import KeyMap, Target
from lora_ext.formats.parse import ParsedLora
from lora_ext.formats.placement import Placement, place
from lora_ext.loading.patcher import ParamPatch, PatchStats
from lora_ext.loading.prompt import BlockValue, BlockWeights, LoraToken, block_weights

UNMATCHED_EXAMPLES = 5

# the model's weight and bias for a target (found lazily: a zero multiplier never looks a module up)
ParamLookup = Callable[[Target], tuple[torch.Tensor, torch.Tensor | None]]


@dataclass
class FileReport:
    """What happened to one requested LoRA."""

    name: str
    path: Path | None = None
    matched: int = 0
    unmatched_keys: list[str] = field(default_factory=list)
    shape_mismatches: list[str] = field(default_factory=list)
    bundled_embeddings: list[str] = field(default_factory=list)
    skipped: str | None = None
    random_blocks: bool = False  # block weights drawn from R/U: drawn again next time
    hasher: Callable[[], str | None] | None = field(default=None, repr=False, compare=False)

    @property
    def applied(self) -> bool:
        return self.skipped is None and self.matched > 0

    @property
    def short_hash(self) -> str | None:
        """A1111's short hash: from the metadata, or hashed from the file on first use (then cached)."""
        return self.hasher() if self.hasher is not None else None


@dataclass
class Resolved:
    """One spec, resolved: its report, its warnings (in the order they arose) and its patches in order."""

    report: FileReport
    warnings: list[str] = field(default_factory=list)
    patches: list[tuple[torch.Tensor, ParamPatch]] = field(default_factory=list)


@dataclass(frozen=True)
class Skip:
    """Why a LoRA is not applied: ``reason`` for its report, ``warning`` for the user."""

    reason: str
    warning: str


@dataclass(frozen=True)
class Match:
    prefix: str
    target: Target
    placement: Placement
    adapter: Adapter


@dataclass(frozen=True)
class Matching:
    """A file's modules against the model's: the ones that land, the keys that match nothing, the wrong shapes."""

    matched: tuple[Match, ...]
    unmatched_keys: tuple[str, ...]
    shape_mismatches: tuple[str, ...]


def skipped(report: FileReport, warnings: Sequence[str], skip: Skip) -> Resolved:
    """The spec resolved to nothing: its report says why, its warnings end with the refusal."""
    report.skipped = skip.reason
    return Resolved(report, [*warnings, skip.warning])


@dataclass
class LoadReport:
    files: list[FileReport] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stats: PatchStats = field(default_factory=PatchStats)
    unchanged: bool = False  # the request equalled the previous one and nothing was touched
    changed_weights: bool = False  # weights (or a host's patches) now differ from before this request

    def infotext(self) -> str:
        """The value A1111 writes as "Lora hashes": ``name: hash, name: hash``."""
        return ", ".join(
            f"{f.name.replace(':', '').replace(',', '')}: {f.short_hash}"
            for f in self.files
            if f.applied and f.short_hash
        )


def not_found(spec: LoraToken, lora_dirs: Sequence[Path]) -> Resolved:
    looked = ", ".join(map(str, lora_dirs))
    return skipped(FileReport(spec.name), (), Skip("not found", f"LoRA not found: {spec.name} (looked in {looked})"))


def unreadable(spec: LoraToken, path: Path, error: LoraExtError) -> Resolved:
    """Gone, unreadable, truncated, corrupt: refused before any weight is touched."""
    reason = error.one_line()
    return skipped(FileReport(spec.name, path), (), Skip(reason, f"LoRA {spec.name} skipped: {reason}"))


def family_mismatch(name: str, parsed: ParsedLora, family: str) -> Skip | None:
    if not incompatible(parsed.detection, family):
        return None
    made_for = parsed.detection.family
    return Skip(
        f"made for {made_for}, the model is {family}",
        f"LoRA {name} skipped: it was made for {made_for.upper()} but the loaded model is {family.upper()}",
    )


def match_modules(parsed: ParsedLora, keymap: KeyMap) -> Matching:
    """Every file module looked up in the key map and placed on its target's shape."""
    matched: list[Match] = []
    unmatched: list[str] = []
    mismatched: list[str] = []
    for prefix, adapter in parsed.adapters.items():
        target = keymap.lookup(prefix)
        placement = None if target is None else place(adapter, target)
        if target is None:
            unmatched += parsed.source_keys[prefix]
        elif placement is None:
            mismatched.append(prefix)
        else:
            matched.append(Match(prefix, target, placement, adapter))
    return Matching(tuple(matched), (*unmatched, *parsed.unparsed_keys), tuple(mismatched))


def matching_refusal(name: str, matching: Matching, family: str) -> Skip | None:
    """Nothing lands, or more modules have the wrong shape than land: most likely another base model."""
    matched, mismatched = len(matching.matched), len(matching.shape_mismatches)
    if matched and mismatched <= matched:
        return None
    return Skip(
        "shape mismatch" if mismatched else "matches no module of this model",
        f"LoRA {name} skipped: {matched} modules match and {mismatched} have the wrong shape "
        f"for this {family.upper()} model (made for another base model?)",
    )


def matching_warnings(name: str, matching: Matching) -> list[str]:
    if not (matching.unmatched_keys or matching.shape_mismatches):
        return []
    examples = ", ".join((*matching.unmatched_keys, *matching.shape_mismatches)[:UNMATCHED_EXAMPLES])
    return [
        f"LoRA {name}: {len(matching.unmatched_keys)} keys unmatched and {len(matching.shape_mismatches)} "
        f"modules with wrong shapes were ignored (e.g. {examples})"
    ]


def bundled_warnings(name: str, embeddings: Sequence[str]) -> list[str]:
    return [f"LoRA {name}: bundled embeddings ignored: {', '.join(embeddings)}"] if embeddings else []


def spec_blocks(
    spec: LoraToken, family: str, user_presets: Mapping[str, tuple[BlockValue, ...]]
) -> tuple[BlockWeights | None, list[str]]:
    """The spec's ``lbw=`` for this family (None: every block 1) and its warnings; a random draw is told."""
    if not spec.lbw:
        return None, []
    warnings: list[str] = []
    blocks = block_weights(spec.lbw, family, user_presets, warnings, x=spec.x)
    if blocks is not None and blocks.random:
        drawn = ", ".join(f"{block}={ratio:g}" for block, ratio in blocks.ratios.items())
        warnings.append(f"LoRA {spec.name}: random block weights this time: {drawn}")
    return blocks, warnings


def multiplier(spec: LoraToken, blocks: BlockWeights | None, target: Target) -> float:
    strength = spec.te if target.is_text_encoder else spec.unet_multiplier
    return strength * blocks.ratio(target.block) if blocks is not None else strength


def too_large(name: str, multipliers: Sequence[float]) -> Skip | None:
    """1e200 × a block weight of 1e200 is inf: merged, it would turn every image into NaN."""
    if all(math.isfinite(value) for value in multipliers):
        return None
    return Skip("weight too large", f"LoRA {name} skipped: its weight times a block weight is too large to merge")


def patches(
    spec: LoraToken, identity: tuple, matches: Sequence[Match], multipliers: Sequence[float], param: ParamLookup
) -> list[tuple[torch.Tensor, ParamPatch]]:
    """(model tensor, patch) for every matched module with a non-zero multiplier: weight, then bias."""
    wanted: list[tuple[torch.Tensor, ParamPatch]] = []
    for match, value in zip(matches, multipliers, strict=True):
        if value == 0:
            continue  # a zero block weight or strength: nothing to merge
        adapter = match.adapter.truncated(spec.dyn)
        weight, bias = param(match.target)
        source = (identity, match.prefix, spec.dyn)
        wanted.append((weight, ParamPatch(adapter, value, match.placement, False, source)))
        if adapter.has_bias and bias is not None:
            wanted.append((bias, ParamPatch(adapter, value, match.placement, True, source)))
    return wanted


def resolve_parsed(
    spec: LoraToken,
    path: Path,
    parsed: ParsedLora,
    keymap: KeyMap,
    user_presets: Mapping[str, tuple[BlockValue, ...]],
    param: ParamLookup,
) -> Resolved:
    """A readable file against the model: refused (with why) or the patches it wants."""
    report = FileReport(spec.name, path, bundled_embeddings=sorted(parsed.bundled_embeddings))
    warnings = bundled_warnings(spec.name, report.bundled_embeddings)
    if skip := family_mismatch(spec.name, parsed, keymap.family):
        return skipped(report, warnings, skip)
    matching = match_modules(parsed, keymap)
    report.unmatched_keys, report.shape_mismatches = list(matching.unmatched_keys), list(matching.shape_mismatches)
    if skip := matching_refusal(spec.name, matching, keymap.family):
        return skipped(report, warnings, skip)
    blocks, block_warnings = spec_blocks(spec, keymap.family, user_presets)
    warnings += matching_warnings(spec.name, matching) + block_warnings
    report.random_blocks = blocks is not None and blocks.random  # drawn again next time, even if refused now
    multipliers = [multiplier(spec, blocks, match.target) for match in matching.matched]
    if skip := too_large(spec.name, multipliers):
        return skipped(report, warnings, skip)
    report.matched = len(matching.matched)
    return Resolved(report, warnings, patches(spec, parsed.identity, matching.matched, multipliers, param))


def group_by_tensor(resolved: Sequence[Resolved]) -> list[tuple[torch.Tensor, list[ParamPatch]]]:
    """Every tensor some spec patches, with its patches in spec order (the patcher merges them at once)."""
    wanted: dict[int, tuple[torch.Tensor, list[ParamPatch]]] = {}
    for item in resolved:
        for tensor, patch in item.patches:
            wanted.setdefault(id(tensor), (tensor, []))[1].append(patch)
    return list(wanted.values())
