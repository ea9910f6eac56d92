"""Norm layers (LayerNorm/GroupNorm): ΔW = ``w_norm``, Δb = ``b_norm``. No scale."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch

from lora_ext.formats.base import Adapter


@dataclass(frozen=True)
class NormAdapter(Adapter):
    name: ClassVar[str] = "norm"
    identifying_keys: ClassVar[tuple[str, ...]] = ("w_norm",)

    w_norm: torch.Tensor
    b_norm: torch.Tensor | None = None

    @classmethod
    def from_state_dict(cls, tensors: Mapping[str, torch.Tensor]) -> NormAdapter | None:
        if "w_norm" not in tensors:
            return None
        return cls(w_norm=tensors["w_norm"], b_norm=tensors.get("b_norm"))

    @property
    def has_bias(self) -> bool:
        return self.b_norm is not None

    def fits(self, base_shape) -> bool:
        return tuple(self.w_norm.shape) == tuple(base_shape)

    def delta_weight(self, base_weight: torch.Tensor, multiplier: float = 1.0) -> torch.Tensor:
        return self.w_norm.to(torch.float32).reshape(base_weight.shape) * multiplier

    def delta_bias(self, base_bias: torch.Tensor, multiplier: float = 1.0) -> torch.Tensor | None:
        return None if self.b_norm is None else self.b_norm.to(torch.float32).reshape(base_bias.shape) * multiplier

    def to_state_dict(self) -> dict[str, torch.Tensor]:
        state = {"w_norm": self.w_norm}
        if self.b_norm is not None:
            state["b_norm"] = self.b_norm
        return state

    @classmethod
    def initial(cls, base_weight, rank=0, alpha=None, generator=None) -> NormAdapter:
        return cls(w_norm=torch.zeros_like(base_weight, dtype=torch.float32), b_norm=torch.zeros(base_weight.shape[0]))
