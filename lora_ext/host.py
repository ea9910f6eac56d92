"""The host interface: the only thing the core knows about a model.

A host is whatever owns the loaded Stable Diffusion model: the A1111 WebUI
(``hosts/a1111.py``), a WebUI we cannot train on yet (``hosts/unsupported.py``),
a diffusers pipeline (``hosts/standalone.py``) or a bare ``sd_model`` such as the
tiny test models (``hosts/ldm.py``). Every host derives from ``Host``: the model
calls are abstract, and everything a host *may* offer around the model (a
training session, a job slot, progress mirroring, an interrupt flag, settings,
data folders, a ``<lora:…>`` prompt hook) is a method with a default here. The
core calls those methods; it never probes a host with ``getattr``/``hasattr`` nor
sets attributes on it, and it never imports a host's own modules.

Module names are given in the host's own naming (``ldm``: ``input_blocks.1.1…``;
``diffusers``: ``down_blocks.0.attentions.0…``) relative to the part's root, so
that key mapping is a pure function of (family, naming, part kind, name).
"""

from __future__ import annotations

import abc
import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from lora_ext.config import TrainConfig

Family = Literal["sd1", "sd2", "sdxl"]
Prediction = Literal["eps", "v"]
Naming = Literal["ldm", "diffusers"]
TextEncoderKind = Literal["hf_clip", "open_clip"]

FAMILIES: tuple[Family, ...] = ("sd1", "sd2", "sdxl")


@dataclass(frozen=True)
class ModelInfo:
    """What the UI shows about the loaded model and what metadata records."""

    name: str
    family: Family
    prediction: Prediction
    naming: Naming
    short_hash: str | None = None  # A1111's 10-hex sha256 prefix, when known
    legacy_hash: str | None = None  # A1111's old 8-hex hash, when known
    is_demo: bool = False
    # The model was trained with a zero-terminal-SNR schedule (v-prediction only; ``lora_ext/noise_schedule.py``).
    zero_terminal_snr: bool = False


@dataclass(frozen=True)
class TextEncoderPart:
    """One text encoder and how its modules are named.

    ``root.named_modules()`` yields names such as
    ``transformer.text_model.encoder.layers.0.self_attn.q_proj`` (A1111's HF CLIP
    wrapper), ``text_model.encoder.layers.0.self_attn.q_proj`` (diffusers) or
    ``model.transformer.resblocks.0.attn`` (OpenCLIP, a fused MultiheadAttention).
    """

    index: int  # 0 for SD1/SD2's only TE and SDXL's CLIP-L; 1 for SDXL's bigG
    kind: TextEncoderKind
    root: torch.nn.Module


@dataclass(frozen=True)
class ModelParts:
    """The trainable and patchable parts of the loaded model."""

    unet: torch.nn.Module
    text_encoders: tuple[TextEncoderPart, ...]
    naming: Naming


@dataclass(frozen=True)
class SizeCondition:
    """SDXL's micro-conditioning for one sample, all as (height, width)."""

    original_size: tuple[int, int]
    crop_top_left: tuple[int, int]
    target_size: tuple[int, int]


@dataclass
class Conditioning:
    """Text conditioning for a batch.

    ``crossattn`` is (B, tokens, width). ``vector`` is SDXL's extra vector in the
    host's own form (ldm/sgm: the 2816-d ``y``; diffusers: pooled text embeds
    concatenated with the 6 raw size/crop ids) and ``None`` for SD1/SD2.
    """

    crossattn: torch.Tensor
    vector: torch.Tensor | None = None

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Conditioning:
        vector = None if self.vector is None else self.vector.to(device, dtype)
        return Conditioning(self.crossattn.to(device, dtype), vector)

    def index(self, rows: Sequence[int] | slice) -> Conditioning:
        vector = None if self.vector is None else self.vector[rows]
        return Conditioning(self.crossattn[rows], vector)


@dataclass(frozen=True)
class GenerationRequest:
    """One preview or test image request. Extra-network tokens stay in the prompt."""

    prompt: str
    negative_prompt: str = ""
    seed: int = 0
    width: int = 512
    height: int = 512
    steps: int = 20
    cfg_scale: float = 7.0
    batch_size: int = 1
    # Called with (sampler step done, steps) by hosts that can report it (the standalone host does).
    on_step: Callable[[int, int], None] | None = field(default=None, compare=False, repr=False)


@dataclass
class HostCapabilities:
    """What the host can do right now; ``reasons`` says why something is refused."""

    can_train: bool = True
    can_train_text_encoder: bool = True
    can_generate: bool = True
    reasons: list[str] = field(default_factory=list)


def training_capabilities(
    *,
    lowvram: bool = False,
    medvram: bool = False,
    fp8_weights: bool = False,
    alternate_unet: str | None = None,
    model_loaded: bool = True,
    refused: str | None = None,
) -> HostCapabilities:
    """What a host may do, as pure rules over its memory and weight-storage modes (every host answers with this).

    Refuse what cannot work; under medvram allow UNet-only training (conditioning is
    computed first). ``refused``: the host cannot train at all, and this says why.
    """
    reasons: list[str] = []
    if refused:
        reasons.append(refused)
    if lowvram:
        reasons.append(
            "the WebUI runs with --lowvram, which moves UNet blocks off the GPU between forward and "
            "backward; restart without --lowvram to train"
        )
    if fp8_weights:
        reasons.append(
            "the model's weights are stored in fp8 (Settings → Optimizations → FP8 weight); "
            "turn it off and reload the model to train"
        )
    if alternate_unet:
        reasons.append(
            f"an alternate UNet ({alternate_unet}) replaces the model's own; set Settings → SD Unet to None to train"
        )
    if not model_loaded:
        reasons.append("no checkpoint is loaded")
    can_train = not reasons
    if medvram and can_train:
        reasons.append("--medvram swaps the text encoder out while the UNet runs, so only the UNet can be trained")
    return HostCapabilities(
        can_train=can_train,
        can_train_text_encoder=can_train and not medvram,
        can_generate=model_loaded,
        reasons=reasons,
    )


ProgressCallback = Callable[[int, int, str], None]

# Called with a raw prompt before generation: applies the ``<lora:…>`` networks it
# names to the model (or restores when there are none) and returns the prompt.
PromptHook = Callable[[str], str]


class HostJob(Protocol):
    """What ``Host.exclusive(job)`` yields while a UI job holds the host's job slot (A1111: ``shared.state``)."""

    def interrupted(self) -> bool: ...

    def interrupt(self) -> None:
        """Stop the host's work in progress for this job (a render ends at its next sampler step)."""

    def progress(self, done: int, total: int, text: str) -> None: ...


class Host(abc.ABC):
    """The loaded model and its surroundings, as the core sees them.

    The model members are abstract. The rest are what a host may offer, each with the
    default of a host that has nothing around its model (the standalone app, tests).
    """

    _prompt_hook: PromptHook | None = None  # set through set_prompt_hook / a host's constructor

    # -- the model: every host implements these --------------------------------------------------
    @property
    @abc.abstractmethod
    def info(self) -> ModelInfo: ...

    @property
    @abc.abstractmethod
    def device(self) -> torch.device: ...

    # (thread, device, dtype) while one thread holds the model's weights swapped for stand-ins
    _weights_away: tuple[int, torch.device, torch.dtype] | None = None

    @contextlib.contextmanager
    def weights_away(self) -> Iterator[None]:
        """Held by a thread that swaps the model's weights for stand-ins for a moment (the memory probe's meta
        tensors): other threads reading ``device`` and ``dtype`` meanwhile get the model's own."""
        self._weights_away = (threading.get_ident(), self.device, self.dtype)
        try:
            yield
        finally:
            self._weights_away = None

    def _seen_elsewhere(self) -> tuple[torch.device, torch.dtype] | None:
        """The model's own device and dtype for a thread other than the one holding ``weights_away``."""
        away = self._weights_away
        return away[1:] if away is not None and away[0] != threading.get_ident() else None

    @property
    @abc.abstractmethod
    def dtype(self) -> torch.dtype:
        """The dtype the model's weights are stored in."""

    @property
    @abc.abstractmethod
    def alphas_cumprod(self) -> torch.Tensor:
        """The training noise schedule, (1000,) float32 on the CPU."""

    @property
    @abc.abstractmethod
    def lora_dir(self) -> Path: ...

    @abc.abstractmethod
    def parts(self) -> ModelParts: ...

    @abc.abstractmethod
    def encode_images(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] → scaled latents (B, 4, H/8, W/8): a posterior sample drawn from ``generator``.

        A CPU ``generator``; ``None`` draws from torch's global one (shared by every thread of the process).
        """

    @abc.abstractmethod
    def encode_prompts(self, prompts: Sequence[str], sizes: Sequence[SizeCondition] | None = None) -> Conditioning:
        """Captions → conditioning; ``sizes`` is used by SDXL only."""

    @abc.abstractmethod
    def predict(self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, conditioning: Conditioning) -> torch.Tensor:
        """The denoiser's output (ε or v, per ``info.prediction``)."""

    @abc.abstractmethod
    def generate(self, request: GenerationRequest) -> list[Image.Image]:
        """Images for a prompt, with ``<lora:…>`` tokens honoured by the host."""

    # -- what a host may offer: the defaults ---------------------------------------------------------
    def capabilities(self) -> HostCapabilities:
        """What the host can do right now (default: everything)."""
        return training_capabilities()

    def tokenizer(self) -> object | None:
        """The first text encoder's Hugging Face CLIP tokenizer, or None (for caption token counts)."""
        return None

    @contextlib.contextmanager
    def training_session(self, config: TrainConfig) -> Iterator[None]:
        """Held around a whole training run: the host's own locks and state for the run.

        It also stands in for ``exclusive``: a training job takes no other job slot.
        Default: restore every LoRA the prompt hook merged, so the run sees the clean model.
        """
        self.restore_prompt_networks()
        yield

    @contextlib.contextmanager
    def exclusive(self, job: str) -> Iterator[HostJob | None]:
        """Held around a UI job that uses the model (test generations); default: no job slot (yields None)."""
        yield None

    @contextlib.contextmanager
    def model_at_rest(self) -> Iterator[bool]:
        """Held while we measure something on the model outside a job (the plan's probes): yields whether none
        of the host's own work (a generation) uses the model now, and keeps it from starting until the end;
        default: the host does no work of its own (True)."""
        yield True

    def report_progress(self, step: int, total: int, text: str) -> None:
        """Mirror training progress into the host's own progress display; default: nothing to mirror."""
        return None

    def interrupted(self) -> bool:
        """Whether the host's own Interrupt button was pressed during the current job; default: never."""
        return False

    def setting(self, key: str, default: Any = None) -> Any:
        """A value from the host's settings (``lora_ext/settings.py`` names them); default: ``default``."""
        return default

    @property
    def outputs_dir(self) -> Path | None:
        """The host's folder for our outputs (projects live under it); None: the standalone folders apply."""
        return None

    @property
    def models_dir(self) -> Path | None:
        """The host's models folder (the tagger folder lives under it); None: next to ``outputs_dir``."""
        return None

    # -- the <lora:…> prompt hook ------------------------------------------------------------------
    def drop_cached_conditioning(self) -> None:
        """Forget prompt conditioning the host caches by prompt text (a WebUI does); nothing to forget by default."""
        return None

    def set_prompt_hook(self, hook: PromptHook | None) -> None:
        """Install who applies ``<lora:…>`` tokens before this host generates (our ``NetworkLoader``)."""
        self._prompt_hook = hook

    def apply_prompt_hook(self, prompt: str) -> str:
        """The raw prompt through the prompt hook (which applies its networks); unchanged without a hook."""
        return self._prompt_hook(prompt) if self._prompt_hook is not None else prompt

    def restore_prompt_networks(self) -> None:
        """Put back every weight the prompt hook merged (an empty prompt names no network)."""
        if self._prompt_hook is not None:
            self._prompt_hook("")
