"""DoRA (weight decomposition) around another adapter: ``dora_scale`` / PEFT ``lora_magnitude_vector``.

V = W + s·ΔW (alpha inside the norm), n = ‖V‖ along the axis the magnitude's shape
names — 1-D (out,) or (out, 1, …) means per output row, (1, in, …) means per input
column — W_dora = magnitude · V / n, and strength interpolates:
W′ = W + m·(W_dora − W) (LyCORIS, A1111 ≥ PR #16151).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch

from lora_ext.formats.base import Adapter


def dora_weight(base_weight: torch.Tensor, delta: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """magnitude · V / ‖V‖ with V = W + ΔW, the norm taken along the magnitude's axis."""
    merged = base_weight.to(torch.float32) + delta
    magnitude = magnitude.to(torch.float32)
    # (out,) and (out, 1, …) are per output row; (1, in, …) is per input column
    on_output = magnitude.dim() == 1 or (magnitude.shape[1] == 1 and magnitude.shape[0] != 1)
    if on_output:
        dims = tuple(range(1, merged.dim()))
        norm = merged.norm(dim=dims, keepdim=True)
        return magnitude.reshape(-1, *([1] * (merged.dim() - 1))) * merged / norm
    dims = (0, *range(2, merged.dim()))
    norm = merged.norm(dim=dims, keepdim=True)
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
    def initial(cls, base_weight, rank, alpha=None, generator=None) -> DoraAdapter:
        from lora_ext.formats.lora import LoraAdapter

        base = base_weight.to(torch.float32)
        magnitude = base.norm(dim=tuple(range(1, base.dim())), keepdim=True)
        return cls(inner=LoraAdapter.initial(base_weight, rank, alpha, generator), magnitude=magnitude)
