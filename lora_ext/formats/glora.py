"""GLoRA (LyCORIS), both layouts, told apart by shape.

New layout: a1 (in, r), a2 (r, in), b1 (out, r), b2 (r, in): ΔW = s·(b1@b2 + (W@a1)@a2).
Old layout (what A1111 supports): a1 (r, in), a2 (in, r), b1 (r, in), b2 (out, r):
ΔW = s·(b2@b1 + (W@a2)@a1). In both, the rank is the smaller side of a1, so
"a1 is taller than wide" marks the new layout. For convs the W products contract
over the input-channel axis. s = alpha/rank.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch

from lora_ext.formats.base import Adapter, lora_scale, scalar


def glora_delta(
    base_weight: torch.Tensor, a_in: torch.Tensor, a_out: torch.Tensor, b_left: torch.Tensor, b_right: torch.Tensor
) -> torch.Tensor:
    """b_left @ b_right + (W @ a_in) @ a_out with a_in (in, r), a_out (r, in), b_left (out, r), b_right (r, in·k)."""
    base = base_weight.to(torch.float32)
    a_in, a_out = a_in.float().flatten(1), a_out.float().flatten(1)
    weight_part = torch.einsum("o i ..., i r -> o r ...", base, a_in)
    weight_part = torch.einsum("o r ..., r j -> o j ...", weight_part, a_out)
    low_rank = (b_left.float().flatten(1) @ b_right.float().flatten(1)).reshape(base.shape)
    return low_rank + weight_part


@dataclass(frozen=True)
class GloraAdapter(Adapter):
    name: ClassVar[str] = "glora"
    identifying_keys: ClassVar[tuple[str, ...]] = ("a1.weight", "a2.weight", "b1.weight", "b2.weight")
    needs_base: ClassVar[bool] = True

    a1: torch.Tensor
    a2: torch.Tensor
    b1: torch.Tensor
    b2: torch.Tensor
    network_alpha: float | None = None

    @classmethod
    def from_state_dict(cls, tensors: Mapping[str, torch.Tensor]) -> GloraAdapter | None:
        if not all(key in tensors for key in cls.identifying_keys):
            return None
        return cls(
            a1=tensors["a1.weight"],
            a2=tensors["a2.weight"],
            b1=tensors["b1.weight"],
            b2=tensors["b2.weight"],
            network_alpha=scalar(tensors, "alpha"),
        )

    @property
    def old_layout(self) -> bool:
        return self.a1.shape[0] < self.a1.flatten(1).shape[1]

    @property
    def rank(self) -> int:
        return int(self.a1.shape[0] if self.old_layout else self.a2.shape[0])

    @property
    def alpha(self) -> float | None:
        return self.network_alpha

    def _factors(self):
        if self.old_layout:
            return self.a2, self.a1, self.b2, self.b1
        return self.a1, self.a2, self.b1, self.b2

    def fits(self, base_shape) -> bool:
        a_in, _, b_left, _ = self._factors()
        return b_left.shape[0] == base_shape[0] and a_in.shape[0] == base_shape[1]

    def delta_weight(self, base_weight: torch.Tensor, multiplier: float = 1.0) -> torch.Tensor:
        delta = glora_delta(base_weight, *self._factors())
        return delta * (lora_scale(self.network_alpha, self.rank) * multiplier)

    def to_state_dict(self) -> dict[str, torch.Tensor]:
        state = {"a1.weight": self.a1, "a2.weight": self.a2, "b1.weight": self.b1, "b2.weight": self.b2}
        if self.network_alpha is not None:
            state["alpha"] = torch.tensor(float(self.network_alpha))
        return state

    @classmethod
    def initial(cls, base_weight, rank, alpha=None, generator=None) -> GloraAdapter:
        out_dim, in_dim = base_weight.shape[0], base_weight.shape[1]
        in_numel = base_weight[0].numel()
        return cls(
            a1=torch.randn(in_dim, rank, generator=generator) * 0.1,
            a2=torch.zeros(rank, in_dim),
            b1=torch.zeros(out_dim, rank),
            b2=torch.randn(rank, in_numel, generator=generator) * 0.1,
            network_alpha=alpha if alpha is not None else float(rank),
        )
