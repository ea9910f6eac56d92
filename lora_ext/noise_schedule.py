"""What a model predicts and whether its noise schedule ends at zero SNR: the rules every host shares.

Hosts read these facts from what their WebUI or library exposes (``docs/training.md``
lists the sources per host); the rules themselves live here once:

- A single-file checkpoint marks v-prediction with a ``v_pred`` key and zero terminal
  SNR with a ``ztsnr`` key (NoobAI's convention, read by ComfyUI, A1111 dev and Forge
  Neo). ``ztsnr`` only counts beside ``v_pred``, as ComfyUI reads it.
- A schedule whose last ᾱ is (about) zero *is* a zero-terminal-SNR schedule: hosts keep
  a tiny last value so their samplers' σ stays finite (A1111/Forge: 4.9e-8, diffusers'
  Euler: 2⁻²⁴), and ComfyUI-style predictors rescale σ and keep ᾱ as it was.
- ``rescale_zero_terminal_snr`` is Lin et al. 2023, "Common Diffusion Noise Schedules
  and Sample Steps are Flawed", Algorithm 1 (kohya's ``--zero_terminal_snr``): shift
  √ᾱ so its last value is 0 and scale it so the first keeps its value.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

# A last SNR below this is zero in all but the samplers' nudge (the standard SD schedule ends at ≈ 0.0047).
TERMINAL_SNR = 1e-4
V_PRED_KEY = "v_pred"
ZTSNR_KEY = "ztsnr"


def checkpoint_flags(keys: Iterable[str]) -> tuple[bool, bool]:
    """(v-prediction, zero terminal SNR) from a single-file checkpoint's tensor names."""
    names = set(keys)
    v_prediction = V_PRED_KEY in names
    return v_prediction, v_prediction and ZTSNR_KEY in names


def is_zero_terminal(alphas_cumprod: torch.Tensor | None = None, sigmas: torch.Tensor | None = None) -> bool:
    """Whether a schedule ends at (about) zero SNR, from its ᾱ or its k-diffusion σ (either may be given)."""
    if alphas_cumprod is not None and alphas_cumprod.numel():
        last = float(alphas_cumprod.reshape(-1)[-1])
        if last / max(1.0 - last, 1e-12) < TERMINAL_SNR:
            return True
    if sigmas is not None and sigmas.numel():
        last_sigma = float(sigmas.reshape(-1)[-1])
        return last_sigma > 0 and 1.0 / last_sigma**2 < TERMINAL_SNR
    return False


def rescale_zero_terminal_snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """The schedule rescaled to zero terminal SNR: last ᾱ exactly 0, first ᾱ unchanged; float32 on the CPU.

    A schedule that already ends at about zero (a host's sampler nudge on the last
    value only) just gets its exact last value back, so rescaling twice changes nothing.
    """
    alphas = alphas_cumprod.detach().to("cpu", torch.float64)
    if is_zero_terminal(alphas):
        rescaled = alphas.clone()
    else:
        root = alphas.sqrt()
        first, last = root[0].clone(), root[-1].clone()
        root = (root - last) * (first / (first - last))
        rescaled = root**2
    rescaled[-1] = 0.0
    return rescaled.to(torch.float32)


def snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """ᾱ / (1 − ᾱ) per timestep (float64); 0 at a zero-terminal step."""
    alphas = alphas_cumprod.to(torch.float64)
    return alphas / (1.0 - alphas)


def read_checkpoint_flags(path: str | None) -> tuple[bool, bool]:
    """``checkpoint_flags`` of a ``.safetensors`` file's header (nothing else is read); (False, False) when
    there is no such file or it cannot be read (a pickled ``.ckpt`` is never opened)."""
    if not path or not str(path).lower().endswith(".safetensors"):
        return False, False
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return checkpoint_flags(handle.keys())
    except Exception:  # noqa: BLE001 - safetensors raises its own untyped errors; no flags is the safe answer
        return False, False
