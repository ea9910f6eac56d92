"""Where an adapter's ΔW lands inside a target weight.

Usually the whole weight. Three cases are not:

- OpenCLIP's fused ``in_proj_weight``: a q, k or v adapter owns one third of the rows;
- an inpainting UNet's ``conv_in`` takes 9 input channels (latent, mask, masked image)
  where the LoRA was trained on 4: ΔW covers the first 4 and the rest stay as they
  are (A1111 zero-pads ΔW to the same effect);
- OpenCLIP's ``text_projection`` is a bare parameter used as ``x @ P``, stored
  (in, out) where a Linear (and every LoRA) is (out, in): ΔW goes in transposed.

The patcher and the ``merge`` CLI both add ΔW through ``Placement.region``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lora_ext.formats.base import Adapter

LATENT_CHANNELS = 4
CONV_IN = "unet:input_blocks.0.0"


@dataclass(frozen=True)
class Placement:
    rows: tuple[int, int] | None = None
    columns: tuple[int, int] | None = None
    transposed: bool = False

    @property
    def whole(self) -> bool:
        return self.rows is None and self.columns is None and not self.transposed

    def region(self, weight: torch.Tensor) -> torch.Tensor:
        """The view of ``weight`` (or of a bias, which only ever has rows) that ΔW is added to, (out, in, …)."""
        view = weight if self.rows is None else weight[slice(*self.rows)]
        if weight.dim() < 2:
            return view
        if self.columns is not None:
            view = view[:, slice(*self.columns)]
        return view.t() if self.transposed else view


WHOLE = Placement()


def place(adapter: Adapter, target) -> Placement | None:
    """How ``adapter`` lands on ``target`` (a ``keymap.Target``), or None if its shape does not fit."""
    shape = tuple(target.shape)
    if adapter.fits(shape):
        return Placement(target.rows, None, target.transposed)
    if target.canonical == CONV_IN and len(shape) == 4 and shape[1] > LATENT_CHANNELS:
        if adapter.fits((shape[0], LATENT_CHANNELS, *shape[2:])):
            return Placement(target.rows, (0, LATENT_CHANNELS), target.transposed)
    return None
