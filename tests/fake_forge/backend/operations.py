"""``backend.operations.ForgeOperations``: Forge's layer classes (its layout and flags, not its code).

As in Forge, ``Linear`` is a plain ``torch.nn.Module`` (not an ``nn.Linear`` subclass) with
``in_features``/``out_features``/``weight``/``bias``/``scale_weight``; the convolution and
norm layers subclass torch's. Every layer has ``parameters_manual_cast``: when set (CPU swap,
or storage dtype ≠ computation dtype) the forward casts the weights to the input's device
and dtype first. ``to_forge_operations(module)`` is the fake's stand-in for Forge building a
model under ``using_forge_operations(...)``: it swaps torch's layers for these, keeping the
parameter objects.
"""

import fake_flavor
import torch

current_manual_cast_enabled = False


def get_weight_and_bias(layer, weight_args=None, bias_args=None, weight_fn=None, bias_fn=None):
    scale_weight = getattr(layer, "scale_weight", None)
    weight, bias = layer.weight, layer.bias
    if weight is not None:
        if weight_args is not None:
            weight = weight.to(**weight_args)
        if scale_weight is not None:
            weight = weight * scale_weight.to(device=weight.device, dtype=weight.dtype)
    if bias is not None and bias_args is not None:
        bias = bias.to(**bias_args)
    return weight, bias


def weights_manual_cast(layer, x, skip_weight_dtype=False, skip_bias_dtype=False, weight_fn=None, bias_fn=None):
    weight_args = dict(device=x.device, dtype=None if skip_weight_dtype else x.dtype)
    bias_args = dict(device=x.device, dtype=None if skip_bias_dtype else x.dtype)
    return get_weight_and_bias(layer, weight_args, bias_args)


class ForgeWeights:
    """Neo's mixin: online LoRAs as ``weight_function`` (``bias_function``) lists applied to the weight in forward."""

    parameters_manual_cast = False
    weight_function = []  # noqa: RUF012  (Neo's class default, replaced per layer)
    bias_function = []  # noqa: RUF012


class ForgeOperations:
    class Linear(torch.nn.Module):
        def __init__(self, in_features, out_features, *args, **kwargs):
            super().__init__()
            self.in_features = in_features
            self.out_features = out_features
            self.weight = None
            self.scale_weight = None
            self.bias = None
            self.parameters_manual_cast = current_manual_cast_enabled

        def forward(self, x):
            if self.parameters_manual_cast:
                weight, bias = weights_manual_cast(self, x)
            else:
                weight, bias = get_weight_and_bias(self)
            return torch.nn.functional.linear(x, weight, bias)

    class Conv2d(torch.nn.Conv2d):
        def forward(self, x):
            if self.parameters_manual_cast:
                weight, bias = weights_manual_cast(self, x)
                return self._conv_forward(x, weight, bias)
            return super().forward(x)

    class GroupNorm(torch.nn.GroupNorm):
        def forward(self, x):
            if self.parameters_manual_cast:
                weight, bias = weights_manual_cast(self, x)
                return torch.nn.functional.group_norm(x, self.num_groups, weight, bias, self.eps)
            return super().forward(x)

    class LayerNorm(torch.nn.LayerNorm):
        def forward(self, x):
            if self.parameters_manual_cast:
                weight, bias = weights_manual_cast(self, x)
                return torch.nn.functional.layer_norm(x, self.normalized_shape, weight, bias, self.eps)
            return super().forward(x)


if fake_flavor.NEO:

    class NeoLinear(torch.nn.Linear, ForgeWeights):  # Neo: an nn.Linear
        def __init__(self, in_features, out_features, *args, **kwargs):
            super().__init__(in_features, out_features, bias=False)
            self.parameters_manual_cast = current_manual_cast_enabled

        def forward(self, x):
            weight, bias = weights_manual_cast(self, x) if self.parameters_manual_cast else (self.weight, self.bias)
            for function in self.weight_function:
                weight = function(weight)
            return torch.nn.functional.linear(x, weight, bias)

    ForgeOperations.Linear = NeoLinear


_SUBCLASSED = {
    torch.nn.Conv2d: ForgeOperations.Conv2d,
    torch.nn.GroupNorm: ForgeOperations.GroupNorm,
    torch.nn.LayerNorm: ForgeOperations.LayerNorm,
}


def to_forge_operations(module: torch.nn.Module, manual_cast: bool = False) -> torch.nn.Module:
    """Swap ``module``'s torch layers for Forge's (same parameter objects), as Forge's loader builds them."""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear:
                layer = ForgeOperations.Linear(child.in_features, child.out_features)
                layer.weight, layer.bias = child.weight, child.bias
                layer.parameters_manual_cast = manual_cast
                setattr(parent, name, layer)
            else:
                for torch_class, forge_class in _SUBCLASSED.items():
                    if isinstance(child, torch_class) and not isinstance(child, forge_class):  # ldm's GroupNorm32 too
                        child.__class__ = forge_class
                        child.parameters_manual_cast = manual_cast
    return module
