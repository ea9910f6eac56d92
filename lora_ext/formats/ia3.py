"""(IA)³: a learned per-channel rescaling, W′ = W ⊙ (1 + m·w).

``on_input`` = 0 scales output rows (w has shape (out,)), 1 scales input columns
(w has shape (in,)). Only recognised when ``on_input`` is present, because a bare
``weight`` key is otherwise ambiguous. No alpha.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch

from lora_ext.formats.base import Adapter, scalar


def ia3_delta(base_weight: torch.Tensor, scale_vector: torch.Tensor, on_input: bool) -> torch.Tensor:
    """ΔW = W·w broadcast along rows (on_input=False) or columns (on_input=True)."""
    base = base_weight.to(torch.float32)
    vector = scale_vector.to(torch.float32).reshape(-1)
    if on_input:
        return base * vector.reshape(1, -1, *([1] * (base.dim() - 2)))
    return base * vector.reshape(-1, *([1] * (base.dim() - 1)))


@dataclass(frozen=True)
class Ia3Adapter(Adapter):
    name: ClassVar[str] = "ia3"
    identifying_keys: ClassVar[tuple[str, ...]] = ("weight", "on_input")
    needs_base: ClassVar[bool] = True

    weight: torch.Tensor
    on_input: bool = False

    @classmethod
    def from_state_dict(cls, tensors: Mapping[str, torch.Tensor]) -> Ia3Adapter | None:
        if "weight" not in tensors or "on_input" not in tensors:
            return None
        return cls(weight=tensors["weight"], on_input=bool(scalar(tensors, "on_input")))

    def fits(self, base_shape) -> bool:
        return self.weight.numel() == int(base_shape[1 if self.on_input else 0])

    def delta_weight(self, base_weight: torch.Tensor, multiplier: float = 1.0) -> torch.Tensor:
        return ia3_delta(base_weight, self.weight, self.on_input) * multiplier

    def to_state_dict(self) -> dict[str, torch.Tensor]:
        return {"weight": self.weight, "on_input": torch.tensor(int(self.on_input))}

    @classmethod
    def initial(cls, base_weight, rank=0, alpha=None, generator=None) -> Ia3Adapter:
        return cls(weight=torch.zeros(base_weight.shape[0]), on_input=False)
