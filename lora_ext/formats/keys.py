"""File key spellings → (module prefix, canonical parameter name).

Every LoRA-family file is a flat state dict of ``<module prefix><suffix>``. The
suffix spellings differ by trainer (kohya ``lora_down.weight``, PEFT
``lora_A.weight`` / ``lora_A.default.weight``, diffusers ``.lora.down.weight``,
attention processors ``to_q_lora.down.weight``, old diffusers TE
``lora_linear_layer.down.weight`` …); they are normalised here to the kohya/LyCORIS
names the formats read. Longest suffix first, so ``.lora_A.weight`` is never read
as an (IA)³ ``.weight``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

_LORA_SPELLINGS: tuple[tuple[str, str], ...] = (
    (".lora_down.weight", "lora_down.weight"),
    (".lora_up.weight", "lora_up.weight"),
    (".lora_mid.weight", "lora_mid.weight"),
    (".lora_A.default.weight", "lora_down.weight"),
    (".lora_B.default.weight", "lora_up.weight"),
    (".lora_A.weight", "lora_down.weight"),
    (".lora_B.weight", "lora_up.weight"),
    (".lora_A", "lora_down.weight"),
    (".lora_B", "lora_up.weight"),
    (".lora_linear_layer.down.weight", "lora_down.weight"),
    (".lora_linear_layer.up.weight", "lora_up.weight"),
    (".lora.down.weight", "lora_down.weight"),
    (".lora.up.weight", "lora_up.weight"),
    ("_lora.down.weight", "lora_down.weight"),
    ("_lora.up.weight", "lora_up.weight"),
    (".lora_magnitude_vector.default.weight", "dora_scale"),
    (".lora_magnitude_vector.default", "dora_scale"),
    (".lora_magnitude_vector.weight", "dora_scale"),
    (".lora_magnitude_vector", "dora_scale"),
)
_PLAIN = (
    "alpha",
    "scale",
    "dora_scale",
    "hada_w1_a",
    "hada_w1_b",
    "hada_w2_a",
    "hada_w2_b",
    "hada_t1",
    "hada_t2",
    "lokr_w1",
    "lokr_w1_a",
    "lokr_w1_b",
    "lokr_w2",
    "lokr_w2_a",
    "lokr_w2_b",
    "lokr_t2",
    "a1.weight",
    "a2.weight",
    "b1.weight",
    "b2.weight",
    "bm.weight",
    "oft_blocks",
    "oft_diag",
    "rescale",
    "on_input",
    "diff",
    "diff_b",
    "w_norm",
    "b_norm",
    "weight",
)
SUFFIXES: tuple[tuple[str, str], ...] = tuple(
    sorted(_LORA_SPELLINGS + tuple((f".{name}", name) for name in _PLAIN), key=lambda item: -len(item[0]))
)
BUNDLE_PREFIX = "bundle_emb."


def split_key(key: str) -> tuple[str, str] | None:
    """``'lora_unet_x.lora_down.weight'`` → ``('lora_unet_x', 'lora_down.weight')``; None if no known suffix."""
    for suffix, canonical in SUFFIXES:
        if key.endswith(suffix) and len(key) > len(suffix):
            return key[: -len(suffix)], canonical
    return None


@dataclass
class GroupedKeys:
    """A file's tensors grouped by module prefix, plus what could not be grouped."""

    modules: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    source_keys: dict[str, list[str]] = field(default_factory=dict)  # prefix → original keys
    unknown: list[str] = field(default_factory=list)
    bundled_embeddings: dict[str, list[str]] = field(default_factory=dict)


def group_keys(state_dict: Mapping[str, torch.Tensor]) -> GroupedKeys:
    """Group tensors by module; never modifies ``state_dict``."""
    grouped = GroupedKeys()
    for key, tensor in state_dict.items():
        if key.startswith(BUNDLE_PREFIX):
            name = key[len(BUNDLE_PREFIX) :].split(".", 1)[0]
            grouped.bundled_embeddings.setdefault(name, []).append(key)
            continue
        split = split_key(key)
        if split is None:
            grouped.unknown.append(key)
            continue
        prefix, param = split
        grouped.modules.setdefault(prefix, {})[param] = tensor
        grouped.source_keys.setdefault(prefix, []).append(key)
    return grouped


def key_style(key: str) -> str:
    """A short name for the naming convention of one file key (for ``inspect`` and reports)."""
    if key.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_", "oft_unet_")):
        return "kohya"
    if key.startswith("lycoris_"):
        return "lycoris"
    if key.startswith("base_model.model."):
        return "peft"
    if key.startswith(("unet.", "text_encoder.", "text_encoder_2.")):
        return "diffusers"
    if key.startswith(("diffusion_model.", "text_encoders.")):
        return "comfyui"
    if key.startswith(BUNDLE_PREFIX):
        return "bundled-embedding"
    return "other"
