"""LoHa (Hadamard product of two low-rank products), with optional Tucker cores.

ΔW = s · (w1a @ w1b) ⊙ (w2a @ w2b); with Tucker each factor is
einsum('i j k l, j r, i p -> p r k l', t, w_b, w_a). rank = hada_w1_b.shape[0].
A fresh LoHa starts as LyCORIS starts one: w1a ~ N(0, 0.1²), w1b and w2b ~ N(0, 1),
w2a = 0, so ΔW is zero and every factor gets a gradient from the first step on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch

from lora_ext.formats.base import Adapter, lora_scale, scalar


def tucker_factor(core: torch.Tensor, w_b: torch.Tensor, w_a: torch.Tensor) -> torch.Tensor:
    """Rebuild one (out, in, kh, kw) factor from a Tucker core (r, r, kh, kw), w_b (r, in), w_a (r, out)."""
    return torch.einsum("i j k l, j r, i p -> p r k l", core.float(), w_b.float().flatten(1), w_a.float().flatten(1))


def hadamard_delta(w1a, w1b, w2a, w2b, t1=None, t2=None) -> torch.Tensor:
    """(w1a @ w1b) ⊙ (w2a @ w2b), or the Tucker form; unscaled, fp32, un-reshaped."""
    if t1 is not None and t2 is not None:
        return tucker_factor(t1, w1b, w1a) * tucker_factor(t2, w2b, w2a)
    return (w1a.float() @ w1b.float().flatten(1)) * (w2a.float() @ w2b.float().flatten(1))


@dataclass(frozen=True)
class LohaAdapter(Adapter):
    name: ClassVar[str] = "loha"
    identifying_keys: ClassVar[tuple[str, ...]] = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")
    output_factors: ClassVar[tuple[str, ...]] = ("w1a", "w2a")

    w1a: torch.Tensor
    w1b: torch.Tensor
    w2a: torch.Tensor
    w2b: torch.Tensor
    t1: torch.Tensor | None = None
    t2: torch.Tensor | None = None
    network_alpha: float | None = None
    scale_override: float | None = None

    @classmethod
    def from_state_dict(cls, tensors: Mapping[str, torch.Tensor]) -> LohaAdapter | None:
        if not all(key in tensors for key in cls.identifying_keys):
            return None
        return cls(
            w1a=tensors["hada_w1_a"],
            w1b=tensors["hada_w1_b"],
            w2a=tensors["hada_w2_a"],
            w2b=tensors["hada_w2_b"],
            t1=tensors.get("hada_t1"),
            t2=tensors.get("hada_t2"),
            network_alpha=scalar(tensors, "alpha"),
            scale_override=scalar(tensors, "scale"),
        )

    @property
    def rank(self) -> int:
        return int(self.w1b.shape[0])

    @property
    def alpha(self) -> float | None:
        return self.network_alpha

    def fits(self, base_shape) -> bool:
        if self.t1 is not None:
            numel = self.w1a.shape[1] * self.w1b.shape[1] * math.prod(self.t1.shape[2:])
            return self.w1a.shape[1] == base_shape[0] and numel == math.prod(base_shape)
        return self.w1a.shape[0] == base_shape[0] and self.w1a.shape[0] * self.w1b.flatten(1).shape[1] == math.prod(
            base_shape
        )

    @property
    def scale(self) -> float:
        return lora_scale(self.network_alpha, self.rank, self.scale_override)

    def delta_weight(self, base_weight: torch.Tensor, multiplier: float = 1.0) -> torch.Tensor:
        delta = hadamard_delta(self.w1a, self.w1b, self.w2a, self.w2b, self.t1, self.t2)
        return delta.reshape(base_weight.shape) * (self.scale * multiplier)

    def to_state_dict(self) -> dict[str, torch.Tensor]:
        state = {"hada_w1_a": self.w1a, "hada_w1_b": self.w1b, "hada_w2_a": self.w2a, "hada_w2_b": self.w2b}
        if self.t1 is not None and self.t2 is not None:
            state.update(hada_t1=self.t1, hada_t2=self.t2)
        if self.network_alpha is not None:
            state["alpha"] = torch.tensor(float(self.network_alpha))
        return state

    @classmethod
    def initial(cls, base_weight, rank, alpha=None, generator=None) -> LohaAdapter:
        out_dim, in_numel = base_weight.shape[0], math.prod(base_weight.shape[1:])
        alpha = float(alpha) if alpha is not None else float(rank)
        return cls(
            w1a=torch.randn(out_dim, rank, generator=generator) * 0.1,
            w1b=torch.randn(rank, in_numel, generator=generator),
            w2a=torch.zeros(out_dim, rank),
            w2b=torch.randn(rank, in_numel, generator=generator),
            network_alpha=float(torch.tensor(alpha)),  # as the saved file stores it (fp32)
        )
