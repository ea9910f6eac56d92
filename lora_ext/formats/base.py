"""What every adapter format shares: the interface, the scale rule and a trainable wrapper.

An adapter holds one module's tensors (in a frozen dataclass with named fields) and
turns them into that module's weight change. Deltas are always computed in fp32 for
the *original* base weight, so several adapters on one weight add up without
rounding in between (the patcher rounds once).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import nn


def lora_scale(alpha: float | None, rank: int | None, scale: float | None = None) -> float:
    """alpha/rank; an explicit ``scale`` key wins; a missing alpha (or rank) means 1.0 (kohya, A1111, diffusers)."""
    if scale is not None:
        return float(scale)
    if alpha is None or not rank or alpha == 0:
        return 1.0
    return float(alpha) / float(rank)


def scalar(tensors: Mapping[str, torch.Tensor], key: str) -> float | None:
    """A 0-d tensor (any float dtype, bf16 included) as a Python float, or None."""
    value = tensors.get(key)
    return None if value is None else float(value.float().reshape(-1)[0])


def fp32(tensor: torch.Tensor | None) -> torch.Tensor | None:
    return None if tensor is None else tensor.to(torch.float32)


class Adapter:
    """One module's adapter. Subclasses are frozen dataclasses with tensor fields."""

    name: ClassVar[str]
    identifying_keys: ClassVar[tuple[str, ...]]
    needs_base: ClassVar[bool] = False  # True when ΔW depends on the base weight (IA³, OFT, GLoRA, DoRA)

    @classmethod
    def from_state_dict(cls, tensors: Mapping[str, torch.Tensor]) -> Adapter | None:
        """The adapter for one module's canonical tensors, or None if this format does not apply."""
        raise NotImplementedError

    def delta_weight(self, base_weight: torch.Tensor, multiplier: float = 1.0) -> torch.Tensor:
        """ΔW (fp32, shaped like ``base_weight``) that this adapter adds at strength ``multiplier``."""
        raise NotImplementedError

    def delta_bias(self, base_bias: torch.Tensor, multiplier: float = 1.0) -> torch.Tensor | None:
        """Δb for the module's bias, or None."""
        return None

    @property
    def has_bias(self) -> bool:
        return False

    def accumulate(self, into: torch.Tensor, base_weight: torch.Tensor, multiplier: float = 1.0) -> None:
        """``into += delta_weight(base_weight, multiplier)``; formats override this to avoid a temporary."""
        into.add_(self.delta_weight(base_weight, multiplier))

    def low_rank_factors(self, multiplier: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, float] | None:
        """(up (out, r), down (r, in·k), scale) in fp32 when ΔW = scale·up@down exactly, else None.

        The patcher merges such adapters in row blocks that stay in cache."""
        return None

    def to_state_dict(self) -> dict[str, torch.Tensor]:
        """The adapter as canonical (kohya/LyCORIS) state-dict entries, relative to the module prefix."""
        raise NotImplementedError

    def fits(self, base_shape: torch.Size | tuple[int, ...]) -> bool:
        """Whether ΔW can be formed for a base weight of this shape."""
        return True

    def truncated(self, dyn: int | None) -> Adapter:
        """The first ``dyn`` ranks (DyLoRA); formats without a rank axis return themselves."""
        return self

    @property
    def rank(self) -> int | None:
        return None

    @property
    def alpha(self) -> float | None:
        return None

    @classmethod
    def initial(
        cls, base_weight: torch.Tensor, rank: int, alpha: float | None = None, generator: torch.Generator | None = None
    ) -> Adapter:
        """A freshly initialised adapter for ``base_weight`` whose ΔW is exactly zero."""
        raise NotImplementedError

    def trainable(self) -> TrainableAdapter:
        """An ``nn.Module`` holding this adapter's tensors as fp32 parameters."""
        return TrainableAdapter(self)


class TrainableAdapter(nn.Module):
    """Trainable tensors of one adapter; ``forward(base_weight)`` returns ΔW through the format's maths."""

    def __init__(self, adapter: Adapter) -> None:
        super().__init__()
        self._template = adapter
        self._tensor_fields: list[str] = []
        for field in dataclasses.fields(adapter):  # type: ignore[arg-type]
            value = getattr(adapter, field.name)
            if isinstance(value, torch.Tensor):
                self.register_parameter(field.name, nn.Parameter(value.detach().to(torch.float32).clone()))
                self._tensor_fields.append(field.name)

    def adapter(self) -> Adapter:
        """The adapter with the current parameter values (gradients flow through)."""
        values = {name: getattr(self, name) for name in self._tensor_fields}
        return dataclasses.replace(self._template, **values)  # type: ignore[type-var]

    def forward(self, base_weight: torch.Tensor, multiplier: float = 1.0) -> torch.Tensor:
        return self.adapter().delta_weight(base_weight, multiplier)

    def frozen(self) -> Adapter:
        """A detached copy for saving."""
        values = {name: getattr(self, name).detach().clone() for name in self._tensor_fields}
        return dataclasses.replace(self._template, **values)  # type: ignore[type-var]
