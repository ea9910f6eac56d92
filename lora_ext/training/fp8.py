"""Frozen UNet weights in fp8 during training, upcast one layer at a time (sd-scripts' ``--fp8_base``).

Every ``nn.Linear`` / ``nn.Conv2d`` of the UNet (torch's own forward, not a subclass
with its own) keeps its weight as ``float8_e4m3fn`` on the device; its forward upcasts
the weight to the layer's original dtype, runs, and lets the upcast copy go. Backward
keeps only the fp8 weight and upcasts it again for the input's gradient (a custom
autograd function: a plain ``F.linear`` on the upcast copy would keep every layer's
copy alive until backward, which is as much memory as not using fp8 at all).

The originals are moved to the CPU for the duration (on a CPU host they stay where
they are, so fp8 saves nothing there) and put back bit for bit on the way out,
whatever happens. The UNet's first parameter keeps its dtype: hosts (and diffusers'
``ModelMixin.dtype``) read the model's dtype from it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0  # the largest finite e4m3 value; SD weights are far below it


class _UpcastLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight8, bias, dtype):
        ctx.save_for_backward(weight8)
        ctx.dtype = dtype
        return F.linear(x, weight8.to(dtype).to(x.dtype), None if bias is None else bias.to(x.dtype))

    @staticmethod
    def backward(ctx, grad):
        (weight8,) = ctx.saved_tensors
        grad_x = grad @ weight8.to(ctx.dtype).to(grad.dtype) if ctx.needs_input_grad[0] else None
        return grad_x, None, None, None


class _UpcastConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight8, bias, dtype, stride, padding, dilation, groups):
        ctx.save_for_backward(weight8)
        ctx.settings = (dtype, x.shape, stride, padding, dilation, groups)
        weight = weight8.to(dtype).to(x.dtype)
        return F.conv2d(x, weight, None if bias is None else bias.to(x.dtype), stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad):
        (weight8,) = ctx.saved_tensors
        dtype, shape, stride, padding, dilation, groups = ctx.settings
        grad_x = None
        if ctx.needs_input_grad[0]:
            weight = weight8.to(dtype).to(grad.dtype)
            grad_x = torch.nn.grad.conv2d_input(shape, weight, grad, stride, padding, dilation, groups)
        return grad_x, None, None, None, None, None, None, None


def _forward(module: nn.Module, weight8: torch.Tensor, dtype: torch.dtype):
    if isinstance(module, nn.Conv2d):

        def conv(x: torch.Tensor) -> torch.Tensor:
            if module.padding_mode != "zeros":  # not in any SD UNet; the plain path keeps the maths right
                return F.conv2d(
                    F.pad(x, module._reversed_padding_repeated_twice, mode=module.padding_mode),
                    weight8.to(dtype).to(x.dtype),
                    module.bias,
                    module.stride,
                    0,
                    module.dilation,
                    module.groups,
                )
            return _UpcastConv2d.apply(
                x, weight8, module.bias, dtype, module.stride, module.padding, module.dilation, module.groups
            )

        return conv

    def linear(x: torch.Tensor) -> torch.Tensor:
        return _UpcastLinear.apply(x, weight8, module.bias, dtype)

    return linear


@dataclass
class Fp8Weights:
    """What ``fp8_weights`` changed: each layer with its original weight tensor (on the CPU while converted)."""

    layers: list[tuple[nn.Module, torch.Tensor, torch.device]] = field(default_factory=list)

    @property
    def fp8_bytes(self) -> int:
        return sum(module.weight.numel() for module, _, _ in self.layers)


def convertible(module: nn.Module) -> bool:
    """A layer with torch's own Linear / Conv2d forward and a floating weight that is not fp8 yet."""
    if not isinstance(module, nn.Linear | nn.Conv2d):
        return False
    own = nn.Linear.forward if isinstance(module, nn.Linear) else nn.Conv2d.forward
    weight = module.weight
    return type(module).forward is own and weight.is_floating_point() and weight.element_size() > 1


@contextlib.contextmanager
def fp8_weights(root: nn.Module, enabled: bool = True) -> Iterator[Fp8Weights]:
    """Store ``root``'s frozen Linear/Conv2d weights in fp8 for the duration; the originals come back exactly."""
    converted = Fp8Weights()
    if not enabled:
        yield converted
        return
    first = next(root.parameters(), None)
    try:
        with torch.no_grad():
            for module in root.modules():
                if not convertible(module) or module.weight is first:
                    continue
                parameter = module._parameters["weight"]
                original = parameter.data
                device = original.device
                weight8 = original.clamp(-FP8_MAX, FP8_MAX).to(FP8)
                kept = original.to("cpu", copy=True) if device.type != "cpu" else original
                parameter.data = weight8
                converted.layers.append((module, kept, device))
                module.__dict__["forward"] = _forward(module, weight8, original.dtype)
        yield converted
    finally:
        with torch.no_grad():
            for module, kept, device in converted.layers:
                module.__dict__.pop("forward", None)
                module._parameters["weight"].data = kept.to(device) if kept.device != device else kept
