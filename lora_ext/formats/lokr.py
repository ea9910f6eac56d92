"""LoKr: Kronecker product of two factors, each full or low-rank (w2 optionally Tucker).

ΔW = s · kron(w1, w2) reshaped to the target; for convs w1 gets two trailing
singleton dims. rank = w1_b.shape[0] if w1 is factorised, else w2_b.shape[0];
if both factors are full matrices there is no rank and the scale is 1 (LyCORIS
forces alpha = rank in that case; A1111 and ComfyUI find no rank).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch

from lora_ext.formats.base import Adapter, lora_scale, scalar
from lora_ext.formats.loha import tucker_factor


def kron_delta(w1: torch.Tensor, w2: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """kron(w1, w2) reshaped to ``shape``; w1 is widened to w2's rank for convs."""
    if w2.dim() == 4 and w1.dim() == 2:
        w1 = w1[:, :, None, None]
    return torch.kron(w1.contiguous(), w2.contiguous()).reshape(shape)


@dataclass(frozen=True)
class LokrAdapter(Adapter):
    name: ClassVar[str] = "lokr"
    identifying_keys: ClassVar[tuple[str, ...]] = ("lokr_w1", "lokr_w1_a", "lokr_w2", "lokr_w2_a")

    w1: torch.Tensor | None = None
    w1a: torch.Tensor | None = None
    w1b: torch.Tensor | None = None
    w2: torch.Tensor | None = None
    w2a: torch.Tensor | None = None
    w2b: torch.Tensor | None = None
    t2: torch.Tensor | None = None
    network_alpha: float | None = None
    scale_override: float | None = None

    @classmethod
    def from_state_dict(cls, tensors: Mapping[str, torch.Tensor]) -> LokrAdapter | None:
        has_w1 = "lokr_w1" in tensors or ("lokr_w1_a" in tensors and "lokr_w1_b" in tensors)
        has_w2 = "lokr_w2" in tensors or ("lokr_w2_a" in tensors and "lokr_w2_b" in tensors)
        if not (has_w1 and has_w2):
            return None
        get = tensors.get
        return cls(
            w1=get("lokr_w1"),
            w1a=get("lokr_w1_a"),
            w1b=get("lokr_w1_b"),
            w2=get("lokr_w2"),
            w2a=get("lokr_w2_a"),
            w2b=get("lokr_w2_b"),
            t2=get("lokr_t2"),
            network_alpha=scalar(tensors, "alpha"),
            scale_override=scalar(tensors, "scale"),
        )

    @property
    def rank(self) -> int | None:
        if self.w1 is None and self.w1b is not None:
            return int(self.w1b.shape[0])
        if self.w2 is None and self.w2b is not None:
            return int(self.w2b.shape[0])
        return None

    @property
    def alpha(self) -> float | None:
        return self.network_alpha

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        w1 = self.w1.float() if self.w1 is not None else self.w1a.float() @ self.w1b.float()
        if self.w2 is not None:
            w2 = self.w2.float()
        elif self.t2 is not None:
            w2 = tucker_factor(self.t2, self.w2b, self.w2a)
        else:
            w2 = self.w2a.float() @ self.w2b.float().flatten(1)
        return w1, w2

    def fits(self, base_shape) -> bool:
        w1, w2 = self.factors()
        return w1.shape[0] * w2.shape[0] == base_shape[0] and w1.numel() * w2.numel() == math.prod(base_shape)

    @property
    def scale(self) -> float:
        if self.rank is None:  # both factors full: no rank, scale 1 (an explicit scale key still wins)
            return 1.0 if self.scale_override is None else self.scale_override
        return lora_scale(self.network_alpha, self.rank, self.scale_override)

    def delta_weight(self, base_weight: torch.Tensor, multiplier: float = 1.0) -> torch.Tensor:
        w1, w2 = self.factors()
        return kron_delta(w1, w2, base_weight.shape) * (self.scale * multiplier)

    def to_state_dict(self) -> dict[str, torch.Tensor]:
        names = {
            "w1": "lokr_w1",
            "w1a": "lokr_w1_a",
            "w1b": "lokr_w1_b",
            "w2": "lokr_w2",
            "w2a": "lokr_w2_a",
            "w2b": "lokr_w2_b",
            "t2": "lokr_t2",
        }
        state = {key: getattr(self, field) for field, key in names.items() if getattr(self, field) is not None}
        if self.network_alpha is not None:
            state["alpha"] = torch.tensor(float(self.network_alpha))
        return state

    @classmethod
    def initial(cls, base_weight, rank, alpha=None, generator=None, factor: int = 4) -> LokrAdapter:
        out_dim, in_dim = base_weight.shape[0], math.prod(base_weight.shape[1:])
        out1 = math.gcd(out_dim, factor)
        in1 = math.gcd(in_dim, factor)
        return cls(
            w1=torch.randn(out1, in1, generator=generator) * 0.1,
            w2a=torch.zeros(out_dim // out1, rank),
            w2b=torch.randn(rank, in_dim // in1, generator=generator) * 0.1,
            network_alpha=alpha if alpha is not None else float(rank),
        )
