"""A small Euler sampler over a host's denoiser, for hosts without their own sampler.

It follows k-diffusion's discrete wrappers (CompVisDenoiser / CompVisVDenoiser):
σ_t = √((1 − ᾱ_t) / ᾱ_t), the model sees x·c_in and the integer DDPM timestep.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Denoiser = Callable[[torch.Tensor, torch.Tensor, object], torch.Tensor]


def sigmas_from_alphas(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    return ((1 - alphas_cumprod) / alphas_cumprod).sqrt()


@torch.no_grad()
def euler_sample(
    denoiser: Denoiser,
    alphas_cumprod: torch.Tensor,
    prediction: str,
    noise: torch.Tensor,
    steps: int,
    cond: object,
    uncond: object | None = None,
    cfg_scale: float = 1.0,
    cat_cond: Callable[[object, object], object] | None = None,
) -> torch.Tensor:
    """Sample latents from ``noise`` (standard normal, (B, 4, h, w)) in ``steps`` Euler steps.

    With ``uncond`` and ``cat_cond``, classifier-free guidance runs both halves in one batch.
    """
    alphas = alphas_cumprod.to(noise.device, torch.float32)
    all_sigmas = sigmas_from_alphas(alphas)
    timesteps = torch.linspace(len(alphas) - 1, 0, steps, device=noise.device).round().long()
    sigmas = torch.cat([all_sigmas[timesteps], torch.zeros(1, device=noise.device)])
    x = noise * sigmas[0]
    guided = uncond is not None and cfg_scale != 1.0 and cat_cond is not None
    for index, timestep in enumerate(timesteps):
        sigma = sigmas[index]
        c_in = 1 / (sigma**2 + 1).sqrt()
        t = timestep.expand(x.shape[0] * (2 if guided else 1))
        if guided:
            output = denoiser(torch.cat([x, x]) * c_in, t, cat_cond(uncond, cond)).float()
            out_uncond, out_cond = output.chunk(2)
            output = out_uncond + cfg_scale * (out_cond - out_uncond)
        else:
            output = denoiser(x * c_in, t, cond).float()
        if prediction == "v":
            denoised = x / (sigma**2 + 1) - output * sigma / (sigma**2 + 1).sqrt()
        else:
            denoised = x - output * sigma
        derivative = (x - denoised) / sigma
        x = x + derivative * (sigmas[index + 1] - sigma)
    return x


def latents_to_pil(decoded: torch.Tensor) -> list:
    """Decoded images in [-1, 1], (B, 3, H, W) → PIL images."""
    from PIL import Image

    pixels = ((decoded.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(image.permute(1, 2, 0).cpu().numpy()) for image in pixels]
