"""``backend.nn.unet``: Forge's UNet pieces the fake needs.

- ``Timestep``: the sinusoidal embedder SDXL's engine uses for its size/crop numbers.
- ``checkpoint``: Forge's gradient checkpointing, which raises when enabled.
- ``BasicTransformerBlock``: Forge's block adds its residuals **in place** (``x += n``) into the tensor its
  ``norm1``/``norm2`` read, so autograd through it fails unless those norms get a copy. The fake loader turns
  every ldm ``BasicTransformerBlock`` of the tiny UNet into this class (same parameters and names).
"""

import math

import torch
from ldm.modules.attention import BasicTransformerBlock as LdmBasicTransformerBlock


class Timestep(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, t):
        half = self.dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t[:, None].float() * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def checkpoint(f, args, parameters, enable=False):
    if enable:
        raise NotImplementedError("Gradient Checkpointing is not implemented.")
    return f(*args)


class BasicTransformerBlock(LdmBasicTransformerBlock):
    def forward(self, x, context=None, transformer_options={}):  # noqa: B006  (Forge's signature)
        return checkpoint(self._forward, (x, context, transformer_options), None, self.checkpoint)

    def _forward(self, x, context=None, transformer_options={}):  # noqa: B006
        n = self.norm1(x)
        n = self.attn1(n, context=context if self.disable_self_attn else None)
        x += n
        n = self.norm2(x)
        n = self.attn2(n, context=context)
        x += n
        x_skip = x
        x = self.ff(self.norm3(x))
        x += x_skip
        return x


def forge_blocks(unet: torch.nn.Module) -> torch.nn.Module:
    """Make ``unet``'s ldm transformer blocks Forge's (in-place residuals, checkpointing off as Forge loads them)."""
    for module in unet.modules():
        if isinstance(module, LdmBasicTransformerBlock):
            module.__class__ = BasicTransformerBlock
            module.checkpoint = False
    return unet
