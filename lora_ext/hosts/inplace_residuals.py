"""Training through transformer blocks that add their residuals in place (Forge's and Neo's ``backend.nn.unet``).

Forge's ``BasicTransformerBlock._forward`` reads ``x`` through ``norm1`` and then writes ``x += n`` into that
same tensor (again through ``norm2``). A LayerNorm keeps its input for backward, so a training step through
such a block fails ("one of the variables needed for gradient computation has been modified by an inplace
operation"); Forge's own gradient checkpointing there raises ``NotImplementedError``. For the length of a
training session each of these norms gets a forward pre-hook that hands it a copy of ``x`` while gradients
are recorded: the block's arithmetic, its results and Forge's files stay as they are, inference (previews,
other extensions) runs the blocks untouched (no copy without autograd), and our own checkpointing
(``training/inject.py``) recomputes through the same hooks. Cost: one activation copy per hooked norm.
See ``docs/hosts.md``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

BLOCK_CLASS = "BasicTransformerBlock"
# the norms whose input the block later changes in place (norm3's input is only read: x_skip = x)
NORMS_BEFORE_INPLACE_ADD = ("norm1", "norm2")


def _copy_input(_module: nn.Module, args: tuple):
    if args and isinstance(args[0], torch.Tensor) and args[0].requires_grad and torch.is_grad_enabled():
        return (args[0].clone(), *args[1:])
    return None


def hooked_norms(unet: nn.Module) -> list[nn.Module]:
    """The norms of ``unet``'s transformer blocks whose input the block then changes in place."""
    norms = []
    for module in unet.modules():
        if type(module).__name__ == BLOCK_CLASS:
            norms += [getattr(module, name) for name in NORMS_BEFORE_INPLACE_ADD if hasattr(module, name)]
    return norms


@contextlib.contextmanager
def copied_norm_inputs(unet: nn.Module) -> Iterator[int]:
    """For the ``with`` block, ``hooked_norms(unet)`` read a copy of their input under autograd; yields how many."""
    handles = [norm.register_forward_pre_hook(_copy_input) for norm in hooked_norms(unet)]
    try:
        yield len(handles)
    finally:
        for handle in handles:
            handle.remove()
