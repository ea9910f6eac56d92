"""Kohya LoRA: linear, 1×1 conv, 3×3 "LoCon", Tucker ``lora_mid``; DyLoRA through ``dyn``.

ΔW = alpha/rank · up @ down (reshaped to the target), or with a Tucker core
ΔW[o,i,h,w] = s · Σ up[o,a]·mid[a,b,h,w]·down[b,i]. rank = down.shape[0].
The bypass form never builds ΔW: y + s · up(down(x)), where ``down`` is applied as
the layer is (linear, or a convolution with its kernel, stride and padding) and
``up`` pointwise. The loader merges with the first, the trainer hooks the second.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from lora_ext.formats.base import Adapter, DropoutDraws, Dropouts, LayerOp, TrainableAdapter, lora_scale, scalar


def lora_delta(up: torch.Tensor, down: torch.Tensor, mid: torch.Tensor | None, shape: torch.Size) -> torch.Tensor:
    """Unscaled up @ down (or the Tucker product) reshaped to ``shape``, fp32."""
    up2 = up.to(torch.float32).flatten(1)  # (out, r)
    if mid is None:
        return (up2 @ down.to(torch.float32).flatten(1)).reshape(shape)
    down2 = down.to(torch.float32).flatten(1)  # (r, in)
    delta = torch.einsum("n m k l, i n, m j -> i j k l", mid.to(torch.float32), up2, down2)
    return delta.reshape(shape)


def lora_bypass(
    x: torch.Tensor,
    down: torch.Tensor,
    up: torch.Tensor,
    scale: float,
    op: LayerOp,
    between: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """``scale · up(between(down(x)))``: what the LoRA adds to the layer's output, in the tensors' dtype.

    ``down`` is applied by ``op`` (the layer's own linear or convolution), ``up`` pointwise;
    ``between`` acts on the rank-r hidden (the trainer's dropout)."""
    if not op.conv:
        down, up = down.flatten(1), up.flatten(1)
    hidden = op(x, down)
    if between is not None:
        hidden = between(hidden)
    return op.pointwise()(hidden, up) * scale


def lora_initial(
    base_shape: torch.Size | tuple[int, ...], rank: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(down, up) for a base weight of this shape: kohya's init, down kaiming-uniform (a=√5), up zero, fp32."""
    out_dim, in_shape = base_shape[0], tuple(base_shape[1:])
    down = torch.empty((rank, *in_shape))
    nn.init.kaiming_uniform_(down, a=math.sqrt(5), generator=generator)
    up = torch.zeros((out_dim, rank, *([1] * (len(in_shape) - 1))))
    return down, up


@dataclass(frozen=True)
class LoraAdapter(Adapter):
    name: ClassVar[str] = "lora"
    identifying_keys: ClassVar[tuple[str, ...]] = ("lora_up.weight", "lora_down.weight")
    output_factors: ClassVar[tuple[str, ...]] = ("up",)

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
        down, up = lora_initial(base_weight.shape, rank, generator)
        alpha = float(alpha) if alpha is not None else float(rank)
        # alpha as the saved file stores it (fp32), so training and loading scale alike
        return cls(down=down, up=up, network_alpha=float(torch.tensor(alpha)))

    def bypass(self, layer_output: torch.Tensor, layer_input: torch.Tensor, multiplier: float = 1.0) -> torch.Tensor:
        """Linear layers only: y + m·s·up(down(x)) without touching the weight."""
        added = lora_bypass(
            layer_input.to(torch.float32),
            self.down.to(torch.float32),
            self.up.to(torch.float32),
            self.scale * multiplier,
            LayerOp(),
        )
        return layer_output + added

    def trainable(
        self,
        op: LayerOp | None = None,
        dropouts: Dropouts | None = None,
        draws: DropoutDraws | torch.Generator | None = None,
    ) -> TrainableAdapter:
        if self.mid is not None:  # Tucker: trained through ΔW
            return super().trainable(op, dropouts, draws)
        return TrainableLora(self, op, dropouts, draws)


class TrainableLora(TrainableAdapter):
    """LoRA / LoCon in training: forward is the bypass with kohya's dropouts on the hidden, never a full ΔW."""

    down: nn.Parameter
    up: nn.Parameter

    def _scale(self, rank_dropout: bool) -> float:
        scale = self.adapter().scale * self.multiplier
        return scale / (1 - self.dropouts.rank_dropout) if rank_dropout else scale

    def forward(self, x: torch.Tensor, base_weight: torch.Tensor | None = None) -> torch.Tensor | None:
        if self.off():
            return None
        rank_dropout = self.training and self.dropouts.rank_dropout > 0
        return lora_bypass(x.to(self.down.dtype), self.down, self.up, self._scale(rank_dropout), self.op, self._drop)

    def _drop(self, hidden: torch.Tensor) -> torch.Tensor:
        """Neuron dropout, then rank dropout (one mask per sample over the rank channels)."""
        dropout, rank_dropout = self.dropouts.dropout, self.dropouts.rank_dropout
        if self.training and dropout > 0:
            keep = (self.draws.uniform(tuple(hidden.shape), hidden.device, self.batch_axis) >= dropout).to(hidden.dtype)
            hidden = hidden * keep / (1 - dropout)
        if self.training and rank_dropout > 0:
            rank = self.down.shape[0]
            # the mask's shape broadcasts over tokens or pixels; its first axis is the samples' (or,
            # sequence first, the tokens': one mask then serves every sample)
            shape = (
                (hidden.shape[0], rank, 1, 1)
                if self.op.conv
                else (hidden.shape[0],) + (1,) * (hidden.dim() - 2) + (rank,)
            )
            per_sample = 0 if self.batch_axis == 0 else None
            hidden = hidden * (self.draws.uniform(shape, hidden.device, per_sample) > rank_dropout).to(hidden.dtype)
        return hidden

    def delta_weight(self, base_weight: torch.Tensor) -> torch.Tensor | None:
        """ΔW for layers that cannot take an output hook (OpenCLIP's fused q/k/v); rank dropout masks down's rows."""
        if self.off():
            return None
        down = self.down.flatten(1)
        rank_dropout = self.training and self.dropouts.rank_dropout > 0
        if rank_dropout:
            mask = (self.draws.uniform((down.shape[0],), down.device) > self.dropouts.rank_dropout).to(down.dtype)
            down = down * mask[:, None]
        return lora_delta(self.up, down, None, base_weight.shape) * self._scale(rank_dropout)
