"""What every adapter format shares: the interface, the scale rule, the layer op and a trainable wrapper.

An adapter holds one module's tensors (in a frozen dataclass with named fields) and
turns them into that module's weight change. Deltas are always computed in fp32 for
the *original* base weight, so several adapters on one weight add up without
rounding in between (the patcher rounds once).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
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
    # The factors on the output side that start at zero (LoRA's ``up``): LoRA+ trains them at a higher rate.
    output_factors: ClassVar[tuple[str, ...]] = ()

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

    def trainable(
        self,
        op: LayerOp | None = None,
        dropouts: Dropouts | None = None,
        draws: DropoutDraws | torch.Generator | None = None,
    ) -> TrainableAdapter:
        """An ``nn.Module`` holding this adapter's tensors as fp32 parameters, for a layer applied by ``op``."""
        return TrainableAdapter(self, op, dropouts, draws)


@dataclass(frozen=True)
class LayerOp:
    """How the adapted layer applies a weight: ``F.linear``, or ``F.conv2d`` with the layer's stride and padding."""

    conv: bool = False
    stride: int | tuple[int, ...] = 1
    padding: int | str | tuple[int, ...] = 0

    @classmethod
    def of(cls, module: nn.Module) -> LayerOp:
        if isinstance(module, nn.Conv2d):
            return cls(conv=True, stride=module.stride, padding=module.padding)
        return cls()

    def __call__(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if self.conv:
            return F.conv2d(x, weight, None, self.stride, self.padding)
        return F.linear(x, weight)

    def pointwise(self) -> LayerOp:
        """The same kind of layer at stride 1 without padding (a LoRA's up projection)."""
        return LayerOp(conv=self.conv)


@dataclass(frozen=True)
class Dropouts:
    """Training-time dropout of a trainable adapter (kohya's ``dropout``, ``rank_dropout``, ``module_dropout``)."""

    dropout: float = 0.0  # elements of the hidden (rank-r) activations
    rank_dropout: float = 0.0  # whole rank channels, per sample
    module_dropout: float = 0.0  # the whole adapter, per call


class DropoutDraws:
    """Where dropout masks come from: one CPU generator, and the rows of the batch this process holds.

    The generator is on the CPU, so the stream is the same on every device and never
    shared with another thread. A process of a data-parallel run holds ``rows`` of a
    batch of ``total`` samples: a per-sample mask is drawn for all ``total`` samples and
    cut to its rows, and every other draw (module dropout, a mask shared by the whole
    batch) is the same in every process, so N processes drop what one process drops.
    """

    def __init__(self, generator: torch.Generator | None = None) -> None:
        self.generator = generator if generator is not None else torch.Generator()
        self.rows: range | None = None
        self.total = 0

    def reseed(self, seed: int, rows: range | None = None, total: int = 0) -> None:
        """Restart the stream at ``seed`` for a micro-batch of ``total`` samples, of which this process has ``rows``."""
        self.generator.manual_seed(seed)
        self.rows, self.total = (rows, total) if rows is not None and len(rows) != total else (None, 0)

    def uniform(self, shape: tuple[int, ...], device: torch.device, batch_axis: int | None = None) -> torch.Tensor:
        """Uniform [0, 1) draws, moved to ``device``; ``batch_axis``: the axis of the samples (None: shared by all)."""
        if self.rows is None or batch_axis is None:
            return torch.rand(shape, generator=self.generator).to(device)
        whole = list(shape)
        whole[batch_axis] = self.total
        draws = torch.rand(tuple(whole), generator=self.generator)
        return draws.narrow(batch_axis, self.rows.start, len(self.rows)).to(device)

    def scalar(self) -> float:
        """One draw shared by the whole batch (module dropout)."""
        return float(torch.rand((), generator=self.generator))


class TrainableAdapter(nn.Module):
    """Trainable tensors of one adapter, computed through the format's maths.

    ``delta_weight(base_weight)`` is ΔW; ``forward(x, base_weight)`` is what the adapter
    adds to the layer's output for input ``x`` (``None`` for either when the adapter is
    off or dropped). Dropout masks come from ``draws`` (``DropoutDraws``; a bare generator
    is wrapped). ``batch_axis``: the axis of the samples in the layer's input (1 for
    OpenCLIP's sequence-first layers). The generic forward applies ΔW with the layer's op;
    formats with a cheaper bypass (LoRA) override both.
    """

    def __init__(
        self,
        adapter: Adapter,
        op: LayerOp | None = None,
        dropouts: Dropouts | None = None,
        draws: DropoutDraws | torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.op = op or LayerOp()
        self.dropouts = dropouts or Dropouts()
        self.draws = draws if isinstance(draws, DropoutDraws) else DropoutDraws(draws)
        self.batch_axis = 0
        self.multiplier = 1.0
        self._tensor_fields: list[str] = []
        for field in dataclasses.fields(adapter):  # type: ignore[arg-type]
            value = getattr(adapter, field.name)
            if isinstance(value, torch.Tensor):
                self.register_parameter(field.name, nn.Parameter(value.detach().to(torch.float32).clone()))
                self._tensor_fields.append(field.name)
        # The template keeps the other fields; its tensors are the parameters, so the initial values are not
        # held a second time for the whole run.
        self._template = dataclasses.replace(adapter, **{name: getattr(self, name) for name in self._tensor_fields})

    def adapter(self) -> Adapter:
        """The adapter with the current parameter values (gradients flow through)."""
        values = {name: getattr(self, name) for name in self._tensor_fields}
        return dataclasses.replace(self._template, **values)  # type: ignore[type-var]

    def frozen(self) -> Adapter:
        """A detached copy for saving."""
        values = {name: getattr(self, name).detach().clone() for name in self._tensor_fields}
        return dataclasses.replace(self._template, **values)  # type: ignore[type-var]

    def to_state_dict(self) -> dict[str, torch.Tensor]:
        """The current values as the format's state-dict entries (detached)."""
        return self.frozen().to_state_dict()

    def load(self, tensors: Mapping[str, torch.Tensor]) -> bool:
        """Take one module's saved tensors of this format; False (nothing changed) when they do not fit.

        A scalar the file sets (alpha) replaces ours; one it leaves out keeps ours."""
        saved = type(self._template).from_state_dict(tensors)
        if saved is None:
            return False
        values = {name: getattr(saved, name) for name in self._tensor_fields}
        if any(not _same_layout(values[name], getattr(self, name)) for name in self._tensor_fields):
            return False
        with torch.no_grad():
            for name, value in values.items():
                getattr(self, name).copy_(value.reshape(getattr(self, name).shape))
        scalars = {
            field.name: getattr(saved, field.name)
            for field in dataclasses.fields(saved)  # type: ignore[arg-type]
            if field.name not in self._tensor_fields and getattr(saved, field.name) is not None
        }
        self._template = dataclasses.replace(self._template, **scalars)  # type: ignore[type-var]
        return True

    def output_parameters(self) -> list[nn.Parameter]:
        """The parameters of the format's ``output_factors`` (LoRA+'s "B" matrices)."""
        factors = type(self._template).output_factors
        return [getattr(self, name) for name in self._tensor_fields if name in factors]

    def off(self) -> bool:
        """Whether this call adds nothing: strength 0, or module dropout (one draw) says skip."""
        if self.multiplier == 0:
            return True
        rate = self.dropouts.module_dropout
        return self.training and rate > 0 and self.draws.scalar() < rate

    def delta_weight(self, base_weight: torch.Tensor) -> torch.Tensor | None:
        if self.off():
            return None
        return self.adapter().delta_weight(base_weight, self.multiplier)

    def forward(self, x: torch.Tensor, base_weight: torch.Tensor) -> torch.Tensor | None:
        delta = self.delta_weight(base_weight)
        return None if delta is None else self.op(x.to(delta.dtype), delta)


def _same_layout(saved: torch.Tensor | None, parameter: torch.Tensor) -> bool:
    """Same tensor up to trailing 1×1 axes (a linear up of ``(out, r)`` against ``(out, r, 1, 1)``)."""
    if saved is None:
        return False
    if saved.shape == parameter.shape:
        return True
    return saved.dim() > 1 and parameter.dim() > 1 and saved.flatten(1).shape == parameter.flatten(1).shape
