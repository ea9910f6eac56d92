"""OFT (diagonal blocks) and BOFT (butterfly), plus the old LyCORIS ``oft_diag``.

``oft_blocks`` (n, b, b) is diag-OFT, (m, n, b, b) is BOFT. Q = B − Bᵀ, clipped to
a Frobenius norm of c = alpha·out_dim when alpha > 0 (alpha is a constraint here,
not a scale); R = (I+Q)(I−Q)⁻¹ (Cayley). Strength blends R toward I:
R ← m·R + (1−m)·I. Diag-OFT rotates each group of b output rows: W′_k = R_kᵀ·W_k;
BOFT applies one butterfly stage per R_i on the output rows (A1111/LyCORIS
permutation). ``rescale`` (out, 1, …) multiplies W′. ΔW = W′ − W.
Old ``oft_diag`` tensors are used as R directly (A1111), without Cayley.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch

from lora_ext.formats.base import Adapter, scalar


def cayley(blocks: torch.Tensor, constraint: float | None) -> torch.Tensor:
    """Orthogonal R from skew-symmetric parts of ``blocks`` (…, b, b), with the norm constraint."""
    blocks = blocks.to(torch.float32)
    skew = blocks - blocks.transpose(-1, -2)
    if constraint:
        norm = torch.linalg.norm(skew) + 1e-8
        if norm > constraint:
            skew = skew * (constraint / norm)
    eye = torch.eye(blocks.shape[-1], dtype=torch.float32)
    return (eye + skew) @ torch.linalg.inv(eye - skew)


def blend(rotation: torch.Tensor, multiplier: float) -> torch.Tensor:
    eye = torch.eye(rotation.shape[-1], dtype=rotation.dtype)
    return rotation * multiplier + eye * (1.0 - multiplier)


def diag_rotate(base: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """W′ with each group k of b output rows replaced by R_kᵀ·W_k."""
    n_blocks, block = rotation.shape[0], rotation.shape[1]
    grouped = base.reshape(n_blocks, block, *base.shape[1:])
    return torch.einsum("k n m, k n ... -> k m ...", rotation, grouped).reshape(base.shape)


def butterfly_rotate(base: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Apply BOFT stages; rotations is (m, n, b, b), stage i pairs rows 2^i·b/2 apart."""
    stages, _, block, _ = rotations.shape
    half = block // 2
    rest = base.shape[1:]
    weight = base
    for stage in range(stages):
        group, span = 2, 2**stage * half
        # (c g k) … -> (c k g) …, then into (d, b) blocks
        weight = weight.reshape(-1, group, span, *rest).transpose(1, 2).reshape(-1, block, *rest)
        weight = torch.einsum("b i j, b j ... -> b i ...", rotations[stage], weight)
        weight = weight.reshape(-1, span, group, *rest).transpose(1, 2).reshape(base.shape)
    return weight


@dataclass(frozen=True)
class OftAdapter(Adapter):
    name: ClassVar[str] = "oft"
    identifying_keys: ClassVar[tuple[str, ...]] = ("oft_blocks", "oft_diag")
    needs_base: ClassVar[bool] = True

    blocks: torch.Tensor  # (n, b, b) diag-OFT, (m, n, b, b) BOFT
    network_alpha: float | None = None
    rescale: torch.Tensor | None = None
    legacy_diag: bool = False  # old LyCORIS ``oft_diag``: blocks are R itself

    @classmethod
    def from_state_dict(cls, tensors: Mapping[str, torch.Tensor]) -> OftAdapter | None:
        if "oft_blocks" in tensors:
            return cls(
                blocks=tensors["oft_blocks"], network_alpha=scalar(tensors, "alpha"), rescale=tensors.get("rescale")
            )
        if "oft_diag" in tensors:
            return cls(blocks=tensors["oft_diag"], network_alpha=scalar(tensors, "alpha"), legacy_diag=True)
        return None

    @property
    def is_boft(self) -> bool:
        return self.blocks.dim() == 4

    @property
    def alpha(self) -> float | None:
        return self.network_alpha

    @property
    def rank(self) -> int:
        return int(self.blocks.shape[-1])  # block size, reported as the "rank" by inspect

    def fits(self, base_shape) -> bool:
        n_blocks, block = self.blocks.shape[-3], self.blocks.shape[-1]
        return n_blocks * block == base_shape[0]

    def rotations(self, out_dim: int, multiplier: float) -> torch.Tensor:
        if self.legacy_diag:
            rotation = self.blocks.to(torch.float32)
        else:
            constraint = None if not self.network_alpha else self.network_alpha * out_dim
            rotation = cayley(self.blocks, constraint)
        return blend(rotation, multiplier)

    def delta_weight(self, base_weight: torch.Tensor, multiplier: float = 1.0) -> torch.Tensor:
        base = base_weight.to(torch.float32)
        rotations = self.rotations(base.shape[0], multiplier)
        rotated = butterfly_rotate(base, rotations) if self.is_boft else diag_rotate(base, rotations)
        if self.rescale is not None:
            rotated = rotated * self.rescale.to(torch.float32).reshape(-1, *([1] * (base.dim() - 1)))
        return rotated - base

    def to_state_dict(self) -> dict[str, torch.Tensor]:
        state = {("oft_diag" if self.legacy_diag else "oft_blocks"): self.blocks}
        if self.network_alpha is not None:
            state["alpha"] = torch.tensor(float(self.network_alpha))
        if self.rescale is not None:
            state["rescale"] = self.rescale
        return state

    @classmethod
    def initial(cls, base_weight, rank, alpha=None, generator=None) -> OftAdapter:
        out_dim = base_weight.shape[0]
        block = rank if out_dim % rank == 0 else 1
        return cls(blocks=torch.zeros(out_dim // block, block, block), network_alpha=alpha)
