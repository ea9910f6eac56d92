"""Kohya LoRA: linear, 1×1 conv, 3×3 "LoCon", Tucker ``lora_mid``; DyLoRA through ``dyn``.

ΔW = alpha/rank · up @ down (reshaped to the target), or with a Tucker core
ΔW[o,i,h,w] = s · Σ up[o,a]·mid[a,b,h,w]·down[b,i]. rank = down.shape[0].
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch

from lora_ext.formats.base import Adapter, lora_scale, scalar


def lora_delta(up: torch.Tensor, down: torch.Tensor, mid: torch.Tensor | None, shape: torch.Size) -> torch.Tensor:
    """Unscaled up @ down (or the Tucker product) reshaped to ``shape``, fp32."""
    up2 = up.to(torch.float32).flatten(1)  # (out, r)
    if mid is None:
        return (up2 @ down.to(torch.float32).flatten(1)).reshape(shape)
    down2 = down.to(torch.float32).flatten(1)  # (r, in)
    delta = torch.einsum("n m k l, i n, m j -> i j k l", mid.to(torch.float32), up2, down2)
    return delta.reshape(shape)


@dataclass(frozen=True)
class LoraAdapter(Adapter):
    name: ClassVar[str] = "lora"
    identifying_keys: ClassVar[tuple[str, ...]] = ("lora_up.weight", "lora_down.weight")

    down: torch.Tensor  # (r, in[, kh, kw])
    up: torch.Tensor  # (out, r[, 1, 1])
    mid: torch.Tensor | None = None  # (r, r, kh, kw)
    network_alpha: float | None = None
    scale_override: float | None = None
    full_rank: int | None = None  # set when truncated by dyn: A1111 keeps alpha/full_rank

    @classmethod
    def from_state_dict(cls, tensors: Mapping[str, torch.Tensor]) -> LoraAdapter | None:
        if "lora_up.weight" not in tensors or "lora_down.weight" not in tensors:
            return None
        return cls(
            down=tensors["lora_down.weight"],
            up=tensors["lora_up.weight"],
            mid=tensors.get("lora_mid.weight"),
            network_alpha=scalar(tensors, "alpha"),
            scale_override=scalar(tensors, "scale"),
        )

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    @property
    def alpha(self) -> float | None:
        return self.network_alpha

    @property
    def scale(self) -> float:
        return lora_scale(self.network_alpha, self.full_rank or self.rank, self.scale_override)

    def fits(self, base_shape) -> bool:
        return int(self.up.shape[0]) == int(base_shape[0]) and self._in_numel() == math.prod(base_shape[1:])

    def _in_numel(self) -> int:
        if self.mid is None:
            return math.prod(self.down.shape[1:])
        return int(self.down.shape[1]) * math.prod(self.mid.shape[2:])

    def delta_weight(self, base_weight: torch.Tensor, multiplier: float = 1.0) -> torch.Tensor:
        return lora_delta(self.up, self.down, self.mid, base_weight.shape) * (self.scale * multiplier)

    def accumulate(self, into: torch.Tensor, base_weight: torch.Tensor, multiplier: float = 1.0) -> None:
        if self.mid is not None:
            return super().accumulate(into, base_weight, multiplier)
        # one fused fp32 GEMM into the weight; no ΔW temporary
        flat = into.view(into.shape[0], -1)
        flat.addmm_(
            self.up.to(torch.float32).flatten(1), self.down.to(torch.float32).flatten(1), alpha=self.scale * multiplier
        )

    def low_rank_factors(self, multiplier: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, float] | None:
        if self.mid is not None:
            return None
        return self.up.to(torch.float32).flatten(1), self.down.to(torch.float32).flatten(1), self.scale * multiplier

    def truncated(self, dyn: int | None) -> LoraAdapter:
        if dyn is None or self.mid is not None or dyn >= self.rank or dyn <= 0:
            return self
        return LoraAdapter(
            down=self.down[:dyn],
            up=self.up[:, :dyn],
            network_alpha=self.network_alpha,
            scale_override=self.scale_override,
            full_rank=self.rank,
        )

    def to_state_dict(self) -> dict[str, torch.Tensor]:
        state = {"lora_down.weight": self.down, "lora_up.weight": self.up}
        if self.mid is not None:
            state["lora_mid.weight"] = self.mid
        if self.network_alpha is not None:
            state["alpha"] = torch.tensor(float(self.network_alpha))
        if self.scale_override is not None:
            state["scale"] = torch.tensor(float(self.scale_override))
        return state

    @classmethod
    def initial(
        cls, base_weight: torch.Tensor, rank: int, alpha: float | None = None, generator: torch.Generator | None = None
    ) -> LoraAdapter:
        out_dim, in_shape = base_weight.shape[0], tuple(base_weight.shape[1:])
        down = torch.randn((rank, *in_shape), generator=generator) / math.sqrt(math.prod(in_shape))
        up = torch.zeros((out_dim, rank, *([1] * (len(in_shape) - 1))))
        return cls(down=down, up=up, network_alpha=alpha if alpha is not None else float(rank))

    def bypass(self, layer_output: torch.Tensor, layer_input: torch.Tensor, multiplier: float = 1.0) -> torch.Tensor:
        """Linear layers only: y + m·s·up(down(x)) without touching the weight."""
        hidden = layer_input.to(torch.float32) @ self.down.to(torch.float32).flatten(1).T
        return layer_output + (hidden @ self.up.to(torch.float32).flatten(1).T) * (self.scale * multiplier)
