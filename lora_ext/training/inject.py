"""Attach a ``LoraNetwork`` to the host's own modules with hooks, and hand the model back untouched.

Nothing is replaced: module names stay what the WebUI and its built-in Lora map
by name. Linear and convolution layers get a forward hook that adds the LoRA
output. ``nn.MultiheadAttention`` (OpenCLIP) never calls its projection layers,
so for it a forward pre-hook *shadows* ``in_proj_weight`` and ``out_proj.weight``
with ``base + delta`` in the instance ``__dict__`` — which Python's attribute
lookup finds before ``nn.Module.__getattr__`` reaches ``_parameters`` — and the
forward hook removes the shadows again. The parameters themselves are never
written to.

``attached(...)`` snapshots ``requires_grad`` and ``training`` of every base
module and parameter; on exit (normal, cancel or exception) every hook and
shadow is removed and the snapshot restored.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from lora_ext.host import ModelParts
from lora_ext.training.network import FusedAttentionTarget, LoraNetwork

SHADOWED = ("in_proj_weight",)


@dataclass
class Attachment:
    """What ``attach`` changed, so that ``detach`` can undo exactly that."""

    handles: list[torch.utils.hooks.RemovableHandle] = field(default_factory=list)
    shadowed: list[tuple[nn.Module, str]] = field(default_factory=list)
    forwards: list[nn.Module] = field(default_factory=list)
    requires_grad: list[tuple[nn.Parameter, bool]] = field(default_factory=list)
    training: list[tuple[nn.Module, bool]] = field(default_factory=list)


def _roots(parts: ModelParts) -> list[nn.Module]:
    return [parts.unet, *(encoder.root for encoder in parts.text_encoders)]


def _output_hook(lora):
    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        delta = lora(inputs[0], module.weight)
        return output if delta is None else output + delta.to(output.dtype)

    return hook


def _fused_hooks(target: FusedAttentionTarget, network: LoraNetwork, attachment: Attachment):
    module = target.module
    loras = {projection: network.loras[name] for projection, name in target.lora_names.items()}
    attachment.shadowed += [(module, "in_proj_weight"), (module.out_proj, "weight")]

    def pre_hook(mod: nn.MultiheadAttention, inputs: tuple) -> None:
        base = mod._parameters["in_proj_weight"]
        deltas = [loras[p].delta_weight(chunk) for p, chunk in zip(("q", "k", "v"), base.chunk(3), strict=True)]
        if any(delta is not None for delta in deltas):
            stacked = torch.cat(
                [
                    torch.zeros_like(base, dtype=torch.float32).chunk(3)[i] if d is None else d
                    for i, d in enumerate(deltas)
                ]
            )
            mod.__dict__["in_proj_weight"] = base + stacked.to(base.dtype)
        out_base = mod.out_proj._parameters["weight"]
        out_delta = loras["out"].delta_weight(out_base)
        if out_delta is not None:
            mod.out_proj.__dict__["weight"] = out_base + out_delta.to(out_base.dtype)

    def post_hook(mod: nn.MultiheadAttention, inputs: tuple, output):
        mod.__dict__.pop("in_proj_weight", None)
        mod.out_proj.__dict__.pop("weight", None)
        return output

    return pre_hook, post_hook


def attach(network: LoraNetwork, parts: ModelParts, gradient_checkpointing: bool = False) -> Attachment:
    """Freeze the base model and hook the network in; returns what ``detach`` needs."""
    attachment = Attachment()
    try:
        for root in _roots(parts):
            for parameter in root.parameters():
                attachment.requires_grad.append((parameter, parameter.requires_grad))
                parameter.requires_grad_(False)
            for module in root.modules():
                attachment.training.append((module, module.training))
        for target in network.hook_targets:
            attachment.handles.append(
                target.module.register_forward_hook(_output_hook(network.loras[target.lora_name]))
            )
        for target in network.fused_targets:
            pre_hook, post_hook = _fused_hooks(target, network, attachment)
            attachment.handles.append(target.module.register_forward_pre_hook(pre_hook))
            attachment.handles.append(target.module.register_forward_hook(post_hook))
        if gradient_checkpointing:
            for block in checkpointed_blocks(parts.unet):
                _wrap_with_checkpoint(block, attachment, network.generator)
    except BaseException:
        detach(attachment)
        raise
    return attachment


def detach(attachment: Attachment) -> None:
    """Undo ``attach``: hooks, shadows, wrapped forwards, ``requires_grad`` and train/eval modes."""
    for handle in attachment.handles:
        handle.remove()
    for module, name in attachment.shadowed:
        module.__dict__.pop(name, None)
    for module in attachment.forwards:
        module.__dict__.pop("forward", None)
    for parameter, flag in attachment.requires_grad:
        parameter.requires_grad_(flag)
    for module, flag in attachment.training:
        module.training = flag
    attachment.handles.clear()
    attachment.shadowed.clear()
    attachment.forwards.clear()


@contextlib.contextmanager
def attached(network: LoraNetwork, parts: ModelParts, gradient_checkpointing: bool = False) -> Iterator[Attachment]:
    """``attach`` for the duration of a ``with`` block; always detached on the way out."""
    attachment = attach(network, parts, gradient_checkpointing)
    try:
        yield attachment
    finally:
        detach(attachment)


def checkpointed_blocks(unet: nn.Module) -> list[nn.Module]:
    """The UNet's top-level blocks (ldm ``input_blocks``/``middle_block``/``output_blocks`` or diffusers'), in order."""
    blocks: list[nn.Module] = []
    for name in ("input_blocks", "down_blocks"):
        blocks += list(getattr(unet, name, []))
    for name in ("middle_block", "mid_block"):
        block = getattr(unet, name, None)
        if block is not None:
            blocks.append(block)
    for name in ("output_blocks", "up_blocks"):
        blocks += list(getattr(unet, name, []))
    return blocks


def _wrap_with_checkpoint(block: nn.Module, attachment: Attachment, generator: torch.Generator) -> None:
    """Route the block's forward through non-reentrant ``torch.utils.checkpoint``.

    Non-reentrant checkpointing gives gradients to every parameter used inside,
    including the LoRA modules the hooks call; the reentrant kind and ldm's own
    ``CheckpointFunction`` drop them. The override is an instance attribute, so
    the block (and its name) stay the same and ``detach`` simply deletes it.
    ``checkpoint`` replays only torch's global generators, so the recomputation
    restarts the network's dropout ``generator`` where the first pass found it:
    backward sees the masks the forward used.
    """
    original = block.forward

    def forward(*args, **kwargs):
        if not torch.is_grad_enabled():
            return original(*args, **kwargs)
        state = generator.get_state()

        def replay(*inner_args, **inner_kwargs):
            generator.set_state(state)
            return original(*inner_args, **inner_kwargs)

        return checkpoint(replay, *args, use_reentrant=False, **kwargs)

    block.__dict__["forward"] = forward
    attachment.forwards.append(block)
