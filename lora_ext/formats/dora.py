"""DoRA (weight decomposition) around another adapter: ``dora_scale`` / PEFT ``lora_magnitude_vector``.

V = W + s·ΔW (alpha inside the norm), n = ‖V‖ along the axis the magnitude's shape
names — 1-D (out,) or (out, 1, …) means per output row, (1, in, …) means per input
column — W_dora = magnitude · V / n, and strength interpolates:
W′ = W + m·(W_dora − W) (LyCORIS, A1111 ≥ PR #16151).

Trained DoRA keeps its magnitude per input column, (1, in[, 1, 1]) — LyCORIS'
``wd_on_out=False`` layout: A1111's built-in only decomposes along that axis, and
ComfyUI and Forge normalise the output axis by ‖W‖ instead of ‖W + ΔW‖, so only this
layout merges the same everywhere. It starts at ‖W‖ per column, so W_dora = W.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import ClassVar

import torch
from torch import nn

from lora_ext.formats.base import Adapter, DropoutDraws, Dropouts, LayerOp, TrainableAdapter


def dora_weight(base_weight: torch.Tensor, delta: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """magnitude · V / ‖V‖ with V = W + ΔW, the norm taken along the magnitude's axis."""
    merged = base_weight.to(torch.float32) + delta
    magnitude = magnitude.to(torch.float32)
    # (out,) and (out, 1, …) are per output row; (1, in, …) is per input column
    on_output = magnitude.dim() == 1 or (magnitude.shape[1] == 1 and magnitude.shape[0] != 1)
    if on_output:
        dims = tuple(range(1, merged.dim()))
        norm = torch.linalg.vector_norm(merged, dim=dims, keepdim=True)
        return magnitude.reshape(-1, *([1] * (merged.dim() - 1))) * merged / norm
    dims = (0, *range(2, merged.dim()))  # a 3-axis norm: ``Tensor.norm`` would take it for a matrix norm
    norm = torch.linalg.vector_norm(merged, dim=dims, keepdim=True)
    return magnitude.reshape(1, -1, *([1] * (merged.dim() - 2))) * merged / norm


@dataclass(frozen=True)
class DoraAdapter(Adapter):
    name: ClassVar[str] = "dora"
    identifying_keys: ClassVar[tuple[str, ...]] = ("dora_scale",)
    needs_base: ClassVar[bool] = True

    inner: Adapter
    magnitude: torch.Tensor

    @classmethod
    def wrap(cls, inner: Adapter, tensors: Mapping[str, torch.Tensor]) -> Adapter:
        """``inner`` wrapped when the module carries a magnitude, else ``inner`` itself."""
        magnitude = tensors.get("dora_scale")
        return inner if magnitude is None else cls(inner=inner, magnitude=magnitude)

    @classmethod
    def from_state_dict(cls, tensors: Mapping[str, torch.Tensor]) -> Adapter | None:
        return None  # never on its own; see ``wrap``

    @property
    def rank(self) -> int | None:
        return self.inner.rank

    @property
    def alpha(self) -> float | None:
        return self.inner.alpha

    def fits(self, base_shape) -> bool:
        return self.inner.fits(base_shape)

    def truncated(self, dyn: int | None) -> Adapter:
        return DoraAdapter(inner=self.inner.truncated(dyn), magnitude=self.magnitude)

    def delta_weight(self, base_weight: torch.Tensor, multiplier: float = 1.0) -> torch.Tensor:
        base = base_weight.to(torch.float32)
        decomposed = dora_weight(base, self.inner.delta_weight(base, 1.0), self.magnitude)
        return (decomposed - base) * multiplier

    def to_state_dict(self) -> dict[str, torch.Tensor]:
        return {**self.inner.to_state_dict(), "dora_scale": self.magnitude}

    @classmethod
    def initial(cls, base_weight, rank, alpha=None, generator=None, inner: type[Adapter] | None = None) -> DoraAdapter:
        """``inner`` (LoRA by default) freshly initialised, with the magnitude ‖W‖ per input column."""
        from lora_ext.formats.lora import LoraAdapter

        return cls(
            inner=(inner or LoraAdapter).initial(base_weight, rank, alpha, generator),
            magnitude=input_column_norms(base_weight),
        )

    def trainable(
        self,
        op: LayerOp | None = None,
        dropouts: Dropouts | None = None,
        draws: DropoutDraws | torch.Generator | None = None,
    ) -> TrainableAdapter:
        return TrainableDora(self, op, dropouts, draws)


def input_column_norms(base_weight: torch.Tensor) -> torch.Tensor:
    """‖W‖ over everything but the input axis, shaped (1, in[, 1, 1]) (fp32)."""
    base = base_weight.detach().to(torch.float32)
    return torch.linalg.vector_norm(base, dim=(0, *range(2, base.dim())), keepdim=True)


class TrainableDora(TrainableAdapter):
    """DoRA in training: the inner format's trainable module plus the magnitude, merged through ``dora_weight``.

    What it adds to the layer's output is ``op(x, W_dora − W)`` for the layer's own W, so
    the base weight must reach it (the injector passes it); dropouts act inside the inner module.
    """

    def __init__(
        self,
        adapter: DoraAdapter,
        op: LayerOp | None = None,
        dropouts: Dropouts | None = None,
        draws: DropoutDraws | torch.Generator | None = None,
    ) -> None:
        nn.Module.__init__(self)
        self.op = op or LayerOp()
        self.dropouts = dropouts or Dropouts()
        self.draws = draws if isinstance(draws, DropoutDraws) else DropoutDraws(draws)
        self.batch_axis = 0
        self.multiplier = 1.0
        self._tensor_fields = ["magnitude"]
        inner_dropouts = Dropouts(self.dropouts.dropout, self.dropouts.rank_dropout)  # module dropout: ours, once
        self.inner = adapter.inner.trainable(op, inner_dropouts, self.draws)
        self.magnitude = nn.Parameter(adapter.magnitude.detach().to(torch.float32).clone())
        self._template = replace(adapter, inner=self.inner._template, magnitude=self.magnitude)

    def adapter(self) -> DoraAdapter:
        return DoraAdapter(inner=self.inner.adapter(), magnitude=self.magnitude)

    def frozen(self) -> DoraAdapter:
        return DoraAdapter(inner=self.inner.frozen(), magnitude=self.magnitude.detach().clone())

    def load(self, tensors: Mapping[str, torch.Tensor]) -> bool:
        magnitude = tensors.get("dora_scale")
        if magnitude is None or magnitude.shape != self.magnitude.shape or not self.inner.load(tensors):
            return False
        with torch.no_grad():
            self.magnitude.copy_(magnitude)
        return True

    def output_parameters(self) -> list[nn.Parameter]:
        return self.inner.output_parameters()

    def delta_weight(self, base_weight: torch.Tensor) -> torch.Tensor | None:
        if self.off():
            return None
        base = base_weight.to(torch.float32)
        inner = self.inner.delta_weight(base)
        if inner is None:  # the inner module's own dropout: V = W, the magnitude alone rescales
            inner = torch.zeros_like(base)
        return (dora_weight(base, inner, self.magnitude) - base) * self.multiplier
