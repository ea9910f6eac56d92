"""LoKr: Kronecker product of two factors, each full or low-rank (w2 optionally Tucker).

ΔW = s · kron(w1, w2) reshaped to the target; for convs w1 gets two trailing
singleton dims. rank = w1_b.shape[0] if w1 is factorised, else w2_b.shape[0];
if both factors are full matrices there is no rank and the scale is 1 (LyCORIS
forces alpha = rank in that case; A1111 and ComfyUI find no rank).

A fresh LoKr is laid out as LyCORIS lays one out: each dimension split by
``factorization`` (the two divisors closest to its square root, the smaller at most
``factor``), w1 full and kaiming-initialised, w2 = w2a @ w2b with w2a = 0 — or w2 full
and zero when the rank reaches half of w2's larger side (then there is no rank).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from lora_ext.formats.base import Adapter, lora_scale, scalar
from lora_ext.formats.loha import tucker_factor


def factorization(dimension: int, factor: int = -1) -> tuple[int, int]:
    """(m, n) with m · n = ``dimension`` and m ≤ n: ``factor`` itself when it divides the dimension, else the
    divisors closest to the square root with m at most ``factor`` (any m when ``factor`` ≤ 0)."""
    if factor > 0 and dimension % factor == 0:
        m, n = factor, dimension // factor
        return (m, n) if m <= n else (n, m)
    limit = dimension if factor <= 0 else factor
    m, n = 1, dimension
    for candidate in range(2, math.isqrt(dimension) + 1):
        if candidate > limit:
            break
        if dimension % candidate == 0:
            m, n = candidate, dimension // candidate
    return m, n


def lokr_initial(
    base_shape: torch.Size | tuple[int, ...], rank: int, factor: int, generator: torch.Generator | None
) -> dict[str, torch.Tensor]:
    """Fresh LoKr factors (``w1`` and ``w2a``/``w2b`` or ``w2``) for a base weight of this shape; ΔW is zero."""
    out_dim, in_dim, kernel = int(base_shape[0]), int(base_shape[1]), tuple(int(k) for k in base_shape[2:])
    out_m, out_n = factorization(out_dim, factor)
    in_m, in_n = factorization(in_dim, factor)
    w1 = torch.empty(out_m, in_m)
    nn.init.kaiming_uniform_(w1, a=math.sqrt(5), generator=generator)
    if rank >= max(out_n, in_n) / 2:  # LyCORIS keeps w2 full: a factorised one would not be smaller
        return {"w1": w1, "w2": torch.zeros(out_n, in_n, *kernel)}
    w2b = torch.empty(rank, in_n * math.prod(kernel))
    nn.init.kaiming_uniform_(w2b, a=math.sqrt(5), generator=generator)
    return {"w1": w1, "w2a": torch.zeros(out_n, rank), "w2b": w2b}


def kron_delta(w1: torch.Tensor, w2: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """kron(w1, w2) reshaped to ``shape``; w1 is widened to w2's rank for convs."""
    if w2.dim() == 4 and w1.dim() == 2:
        w1 = w1[:, :, None, None]
    return torch.kron(w1.contiguous(), w2.contiguous()).reshape(shape)


@dataclass(frozen=True)
class LokrAdapter(Adapter):
    name: ClassVar[str] = "lokr"
    identifying_keys: ClassVar[tuple[str, ...]] = ("lokr_w1", "lokr_w1_a", "lokr_w2", "lokr_w2_a")
    output_factors: ClassVar[tuple[str, ...]] = ("w2a", "w2")

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
    def initial(cls, base_weight, rank, alpha=None, generator=None, factor: int = -1) -> LokrAdapter:
        tensors = lokr_initial(base_weight.shape, rank, factor, generator)
        alpha = float(alpha) if alpha is not None else float(rank)
        return cls(**tensors, network_alpha=float(torch.tensor(alpha)))  # alpha as the file stores it (fp32)
