"""Ordinary (autograd-capable) tensors for a training run over modules a WebUI made under ``torch.inference_mode()``.

Forge builds and moves its weights inside inference mode, so they are *inference tensors*:
autograd cannot save them for backward, ``requires_grad_`` and in-place writes outside
inference mode raise, and they have no version counter (``docs/hosts.md``, "Inference tensors").
``OrdinaryTensors`` swaps every inference parameter and buffer of the given modules for an
ordinary copy (same values, dtype, device, ``requires_grad``) and afterwards puts the very same
original tensor objects back. While the copy is in place the original's storage is released
(inside inference mode) and refilled from the copy on the way out, so the run holds one copy
of the weights, not two (where a storage cannot be released — memory the tensor does not own,
such as a mapped file or an array shared with numpy — that tensor is kept and the run holds both). ``ensure()`` can be called again whenever the WebUI may have moved
the modules (a preview): slots it turned back into inference tensors get ordinary copies again.

``sources`` maps a module's dotted parameter name to the tensor the copy is taken from instead
of the current one (Forge's ``LoraLoader.backup``: the weights before a merged LoRA), so the run
sees the clean checkpoint while the merged originals wait, untouched, for the hand-back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class _Slot:
    module: nn.Module
    kind: str  # "_parameters" or "_buffers"
    name: str
    original: torch.Tensor
    copy: torch.Tensor
    nbytes: int  # the original's storage size before it was released; -1: not released


class OrdinaryTensors:
    """Inference tensors of ``roots`` swapped for ordinary copies until ``restore()``."""

    def __init__(self, roots: list[nn.Module], sources: dict[int, dict[str, torch.Tensor]] | None = None) -> None:
        self.roots = roots
        self.sources = sources or {}  # id(root) → {dotted parameter name → tensor to copy from}
        self.slots: dict[tuple[int, str, str], _Slot] = {}

    def _copy_of(self, root: nn.Module, key: str, tensor: torch.Tensor, kind: str) -> tuple[torch.Tensor, bool]:
        source = self.sources.get(id(root), {}).get(key)
        exact = source is None
        data = (tensor if exact else source.to(tensor.device, tensor.dtype)).detach().clone()
        if kind == "_parameters":
            return nn.Parameter(data, requires_grad=tensor.requires_grad), exact
        return data, exact

    def ensure(self) -> int:
        """Give every inference parameter/buffer of the roots an ordinary copy; returns how many were swapped."""
        swapped = 0
        by_original: dict[int, torch.Tensor] = {}  # tied weights (one tensor in two slots) share one copy
        for root in self.roots:
            for module_name, module in root.named_modules():
                for kind in ("_parameters", "_buffers"):
                    for name, tensor in list(getattr(module, kind).items()):
                        if tensor is None or not tensor.is_inference():
                            continue
                        key = f"{module_name}.{name}" if module_name else name
                        slot_key = (id(module), kind, name)
                        copy = by_original.get(id(tensor))
                        if copy is None:
                            copy, exact = self._copy_of(root, key, tensor, kind)
                            by_original[id(tensor)] = copy
                        else:
                            exact = False  # the storage is shared with another slot: release it once, there
                        if slot_key not in self.slots:
                            nbytes = _release(tensor) if exact else -1
                            self.slots[slot_key] = _Slot(module, kind, name, tensor, copy, nbytes)
                        else:  # the WebUI replaced our copy (a move): copy again, the first original stays the one
                            self.slots[slot_key].copy = copy
                        getattr(module, kind)[name] = copy
                        swapped += 1
        return swapped

    def restore(self) -> None:
        """Put every original tensor object back, its storage refilled bit-exactly from the copy."""
        for slot in self.slots.values():
            if slot.nbytes >= 0:
                with torch.inference_mode():
                    slot.original.untyped_storage().resize_(slot.nbytes)
                    slot.original.copy_(slot.copy)
            getattr(slot.module, slot.kind)[slot.name] = slot.original
        self.slots.clear()


def _release(tensor: torch.Tensor) -> int:
    """Free an inference tensor's storage (it is refilled in ``restore``); -1 where it is not safe to."""
    storage = tensor.untyped_storage()
    if (
        not storage.resizable()  # memory the tensor does not own (a mapped file, a shared block)
        or tensor.storage_offset() != 0
        or storage.nbytes() != tensor.numel() * tensor.element_size()  # a view into a larger storage
    ):
        return -1
    nbytes = storage.nbytes()
    with torch.inference_mode():
        storage.resize_(0)
    return nbytes
