"""``ldm_patched.modules.lora.calculate_weight`` (fake): the patch types the fake built-in uses, ``diff`` and ``lora``.

Patches are ``(strength_patch, value, strength_model, offset, function)`` as reForge's ``add_patches``
stores them; the weight comes in as fp32 and goes back fp32 (the patcher rounds once).
"""

import torch


def calculate_weight(patches, weight, key, intermediate_dtype=torch.float32):
    for strength, value, strength_model, _offset, _function in patches:
        if strength_model != 1.0:
            weight *= strength_model
        kind, args = ("diff", value) if len(value) == 1 else value
        if kind == "diff":
            weight += strength * args[0].to(weight)
        elif kind == "lora":
            up, down, alpha, _mid, _dora = args
            scale = alpha / down.shape[0] if alpha is not None else 1.0
            weight += (strength * scale) * (up.flatten(1).to(weight) @ down.flatten(1).to(weight)).reshape(weight.shape)
        else:
            raise ValueError(f"patch type {kind} is not in the fake calculate_weight")
    return weight
