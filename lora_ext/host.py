"""The host interface: the only thing the core knows about a model.

A host is whatever owns the loaded Stable Diffusion model: the A1111 WebUI
(``hosts/a1111.py``), a diffusers pipeline (``hosts/standalone.py``) or the tiny
test models (``tests/tinyhost.py``). The core trains, patches and previews
through this protocol and never imports a host's own modules.

Module names are given in the host's own naming (``ldm``: ``input_blocks.1.1…``;
``diffusers``: ``down_blocks.0.attentions.0…``) relative to the part's root, so
that key mapping is a pure function of (family, naming, part kind, name).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch
    from PIL import Image

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


ProgressCallback = Callable[[int, int, str], None]

# Called with a raw prompt before generation: applies the ``<lora:…>`` networks it
# names to the model (or restores when there are none) and returns the prompt.
PromptHook = Callable[[str], str]


@runtime_checkable
class Host(Protocol):
    """The loaded model and its surroundings, as the core sees them."""

    @property
    def info(self) -> ModelInfo: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the model's weights are stored in."""
        ...

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """The training noise schedule, (1000,) float32 on the CPU."""
        ...

    @property
    def lora_dir(self) -> Path: ...

    def parts(self) -> ModelParts: ...

    def capabilities(self) -> HostCapabilities: ...

    def tokenizer(self) -> object | None:
        """The first text encoder's Hugging Face CLIP tokenizer, or None (for caption token counts)."""
        ...

    def encode_images(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] → scaled latents (B, 4, H/8, W/8): a posterior sample drawn from ``generator``.

        A CPU ``generator``; ``None`` draws from torch's global one (shared by every thread of the process).
        """
        ...

    def encode_prompts(self, prompts: Sequence[str], sizes: Sequence[SizeCondition] | None = None) -> Conditioning:
        """Captions → conditioning; ``sizes`` is used by SDXL only."""
        ...

    def predict(self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, conditioning: Conditioning) -> torch.Tensor:
        """The denoiser's output (ε or v, per ``info.prediction``)."""
        ...

    def generate(self, request: GenerationRequest) -> list[Image.Image]:
        """Images for a prompt, with ``<lora:…>`` tokens honoured by the host."""
        ...
