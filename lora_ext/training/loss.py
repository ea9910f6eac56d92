"""The diffusion training loss, from the host's own noise schedule (docs/training.md, "The loss").

x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε; the target is ε, or v = √ᾱ_t·ε − √(1−ᾱ_t)·x0 for
v-prediction models. Min-SNR-γ weights are min(snr, γ)/snr for ε and
min(snr, γ)/(snr + 1) for v; debiased estimation (Yu et al. 2024) weighs 1/√snr for ε
and 1/(snr + 1) for v, snr capped at 1000 (sd-scripts' forms).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sample_noise(latents: torch.Tensor, generator: torch.Generator, noise_offset: float = 0.0) -> torch.Tensor:
    """ε ~ N(0, I) like ``latents`` (drawn on the CPU generator), plus the per-channel noise offset."""
    noise = torch.randn(latents.shape, generator=generator)
    if noise_offset > 0:
        noise = noise + noise_offset * torch.randn((*latents.shape[:2], 1, 1), generator=generator)
    return noise.to(latents.device)


def sample_timesteps(batch: int, generator: torch.Generator, min_timestep: int, max_timestep: int) -> torch.Tensor:
    """Uniform integer timesteps in [min, max)."""
    return torch.randint(min_timestep, max_timestep, (batch,), generator=generator)


def _per_sample(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    values = alphas_cumprod.to(like.device)[timesteps.to(like.device)].float()
    return values.reshape(-1, *([1] * (like.dim() - 1)))


def add_noise(
    latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor, alphas_cumprod: torch.Tensor
) -> torch.Tensor:
    alpha = _per_sample(alphas_cumprod, timesteps, latents)
    return alpha.sqrt() * latents + (1 - alpha).sqrt() * noise


def target(
    latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor, alphas_cumprod: torch.Tensor, prediction: str
) -> torch.Tensor:
    """ε for ε-prediction, v for v-prediction."""
    if prediction != "v":
        return noise
    alpha = _per_sample(alphas_cumprod, timesteps, latents)
    return alpha.sqrt() * noise - (1 - alpha).sqrt() * latents


def min_snr_weights(
    timesteps: torch.Tensor, alphas_cumprod: torch.Tensor, gamma: float, prediction: str
) -> torch.Tensor:
    """Per-sample min-SNR-γ weights (Hang et al. 2023), in sd-scripts' ε and v forms."""
    alpha = alphas_cumprod.to(timesteps.device)[timesteps].double()
    snr = alpha / (1 - alpha)
    clipped = snr.clamp(max=gamma)
    weights = clipped / (snr + 1) if prediction == "v" else clipped / snr
    return weights.float()


DEBIASED_SNR_CAP = 1000.0


def debiased_weights(timesteps: torch.Tensor, alphas_cumprod: torch.Tensor, prediction: str) -> torch.Tensor:
    """Per-sample debiased-estimation weights, in sd-scripts' ε and v forms (ε needs snr > 0)."""
    alpha = alphas_cumprod.to(timesteps.device)[timesteps].double()
    snr = (alpha / (1 - alpha)).clamp(max=DEBIASED_SNR_CAP)
    weights = 1 / (snr + 1) if prediction == "v" else 1 / snr.sqrt()
    return weights.float()


def diffusion_loss(
    prediction: torch.Tensor,
    target_value: torch.Tensor,
    sample_weights: torch.Tensor,
    masks: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over the batch of the per-sample MSE (masked when ``masks`` is given) times ``sample_weights``."""
    loss = F.mse_loss(prediction.float(), target_value.float(), reduction="none")
    if masks is not None:
        loss = loss * masks.to(loss.device)
    per_sample = loss.mean(dim=list(range(1, loss.dim())))
    return (per_sample * sample_weights.to(per_sample.device)).mean()
