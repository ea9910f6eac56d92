"""Full difference: ΔW = ``diff`` (the target's shape), Δb = ``diff_b``. No scale."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch

from lora_ext.formats.base import Adapter


@dataclass(frozen=True)
class FullAdapter(Adapter):
    name: ClassVar[str] = "full"
    identifying_keys: ClassVar[tuple[str, ...]] = ("diff",)

    diff: torch.Tensor
    diff_b: torch.Tensor | None = None

    @classmethod
    def from_state_dict(cls, tensors: Mapping[str, torch.Tensor]) -> FullAdapter | None:
        if "diff" not in tensors:
            return None
        return cls(diff=tensors["diff"], diff_b=tensors.get("diff_b"))

    @property
    def has_bias(self) -> bool:
        return self.diff_b is not None

    def fits(self, base_shape) -> bool:
        return self.diff.numel() == math.prod(base_shape) and self.diff.shape[0] == base_shape[0]

    def delta_weight(self, base_weight: torch.Tensor, multiplier: float = 1.0) -> torch.Tensor:
        return self.diff.to(torch.float32).reshape(base_weight.shape) * multiplier

    def delta_bias(self, base_bias: torch.Tensor, multiplier: float = 1.0) -> torch.Tensor | None:
        return None if self.diff_b is None else self.diff_b.to(torch.float32).reshape(base_bias.shape) * multiplier

    def to_state_dict(self) -> dict[str, torch.Tensor]:
        state = {"diff": self.diff}
        if self.diff_b is not None:
            state["diff_b"] = self.diff_b
        return state

    @classmethod
    def initial(cls, base_weight, rank=0, alpha=None, generator=None) -> FullAdapter:
        return cls(diff=torch.zeros_like(base_weight, dtype=torch.float32))
