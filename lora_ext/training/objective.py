"""What the UNet is trained to predict, on which noise schedule, with which loss weights.

The model says what it is (``ModelInfo.prediction`` and ``.zero_terminal_snr``, read by
each host); ``auto`` trains exactly that. A setting that contradicts the model is
refused unless ``override_detection`` is on: a LoRA trained for ε on a v-prediction
model, or without the zero-terminal-SNR schedule on a model trained with it, loads
without an error and gives empty or washed-out images (kohya_ss #2956).

Zero terminal SNR (Lin et al. 2023) rescales the host's schedule so the last ᾱ is 0
(``noise_schedule.rescale_zero_terminal_snr``); it needs v-prediction, since an
ε-prediction model has nothing to predict from pure noise. Loss weights follow
sd-scripts: min-SNR-γ is min(snr, γ)/snr for ε and min(snr, γ)/(snr + 1) for v;
debiased estimation is 1/√snr for ε and 1/(snr + 1) for v, with snr capped at 1000.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lora_ext.config import TrainConfig
from lora_ext.errors import ConfigError
from lora_ext.host import Host, ModelInfo, Prediction
from lora_ext.noise_schedule import rescale_zero_terminal_snr
from lora_ext.training import loss as losses

DESCRIPTIONS = {
    ("eps", False): "ε-prediction",
    ("v", False): "v-prediction",
    ("eps", True): "ε-prediction, zero-terminal-SNR schedule",
    ("v", True): "v-prediction, zero-terminal-SNR schedule",
}


@dataclass(frozen=True)
class Choice:
    """The prediction and schedule a run trains, and whether they are the model's own."""

    prediction: Prediction
    zero_terminal_snr: bool
    matches_model: bool

    def describe(self) -> str:
        """``v-prediction, zero-terminal-SNR schedule`` / ``ε-prediction``."""
        return DESCRIPTIONS[(self.prediction, self.zero_terminal_snr)]


def model_choice(info: ModelInfo) -> Choice:
    """What the model itself is (what ``auto`` trains)."""
    return Choice(info.prediction, info.prediction == "v" and info.zero_terminal_snr, True)


def choose(config: TrainConfig, info: ModelInfo) -> Choice:
    """The run's prediction and schedule from ``config`` over the model's; ``ConfigError`` when they contradict
    the model without ``override_detection``, or when zero terminal SNR is asked for with ε-prediction."""
    model = model_choice(info)
    prediction = model.prediction if config.prediction == "auto" else config.prediction
    zero_terminal = model.zero_terminal_snr if config.zero_terminal_snr == "auto" else config.zero_terminal_snr == "on"
    if zero_terminal and prediction != "v":
        raise ConfigError(
            "zero terminal SNR needs v-prediction: at the last timestep an ε-prediction model sees only noise",
            hint="set prediction to v, or zero_terminal_snr to off",
        )
    chosen = Choice(
        prediction, zero_terminal, (prediction, zero_terminal) == (model.prediction, model.zero_terminal_snr)
    )
    if not chosen.matches_model and not config.override_detection:
        raise ConfigError(
            f"the loaded model is {model.describe()}; training it as {chosen.describe()} gives a LoRA that "
            "does not match it",
            hint="set prediction and zero_terminal_snr to auto, or turn on override_detection",
        )
    return chosen


def describe_choice(chosen: Choice, info: ModelInfo) -> str:
    """The page's line: what the run will train, and what the model is when that differs."""
    if chosen.matches_model:
        return f"Training objective: {chosen.describe()} (as the model)"
    return f"Training objective: {chosen.describe()} — the model is {model_choice(info).describe()}"


def objective_note(config: TrainConfig, info: ModelInfo) -> tuple[str, str]:
    """(line, kind) for the page: ``describe_choice`` (ok, or warn when overridden), or why it is refused."""
    try:
        chosen = choose(config, info)
    except ConfigError as error:
        return error.one_line(), "error"
    return describe_choice(chosen, info), "ok" if chosen.matches_model else "warn"


@dataclass(frozen=True)
class Objective:
    """The training target and per-sample weights over the run's schedule."""

    prediction: Prediction
    zero_terminal_snr: bool
    alphas_cumprod: torch.Tensor = field(compare=False)  # (1000,) float32 on the CPU: the training schedule
    min_snr_gamma: float = 0.0
    debiased: bool = False

    def target(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return losses.target(latents, noise, timesteps, self.alphas_cumprod, self.prediction)

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return losses.add_noise(latents, noise, timesteps, self.alphas_cumprod)

    def weights(self, timesteps: torch.Tensor) -> torch.Tensor:
        """Per-sample loss weights (B,): min-SNR-γ, then debiased estimation, each when on (sd-scripts' order)."""
        weights = torch.ones(timesteps.shape[0])
        if self.min_snr_gamma > 0:
            weights = losses.min_snr_weights(timesteps, self.alphas_cumprod, self.min_snr_gamma, self.prediction)
        if self.debiased:
            weights = weights * losses.debiased_weights(timesteps, self.alphas_cumprod, self.prediction)
        return weights


def objective_for(config: TrainConfig, info: ModelInfo, host_alphas_cumprod: torch.Tensor) -> Objective:
    """The run's objective: ``choose``'s prediction and schedule over the host's ᾱ (rescaled for zero terminal SNR)."""
    chosen = choose(config, info)
    alphas = host_alphas_cumprod.detach().to("cpu", torch.float32)
    if chosen.zero_terminal_snr:
        alphas = rescale_zero_terminal_snr(alphas)
    return Objective(
        chosen.prediction, chosen.zero_terminal_snr, alphas, config.min_snr_gamma, config.debiased_estimation
    )


def model_objective(host: Host, config: TrainConfig) -> Objective:
    """The model's own objective (what ``auto`` trains), with ``config``'s loss weights; never refused."""
    info = host.info
    chosen = model_choice(info)
    alphas = host.alphas_cumprod.detach().to("cpu", torch.float32)
    if chosen.zero_terminal_snr:
        alphas = rescale_zero_terminal_snr(alphas)
    return Objective(
        chosen.prediction, chosen.zero_terminal_snr, alphas, config.min_snr_gamma, config.debiased_estimation
    )
