"""A host over an A1111-style ``sd_model`` (CompVis ``ldm`` / Stability ``sgm`` objects).

This holds everything that depends only on the model object's surface —
``model.diffusion_model``, ``cond_stage_model`` / ``conditioner``,
``get_learned_conditioning``, ``apply_model``, ``encode_first_stage`` — and so
serves both the WebUI adapter (``hosts/a1111.py`` adds the WebUI's options,
queue and sampler) and the tests, which run it over tiny real ``ldm`` models.
It imports nothing from the WebUI.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from lora_ext.host import (
    Conditioning,
    Family,
    GenerationRequest,
    Host,
    ModelInfo,
    ModelParts,
    PromptHook,
    SizeCondition,
    TextEncoderPart,
)
from lora_ext.noise_schedule import is_zero_terminal
from lora_ext.sampling import euler_sample, latents_to_pil


def ldm_model_info(model, identity: tuple[str, str | None, str | None, bool]) -> ModelInfo:
    """``ModelInfo`` of an A1111-style model object from its flags and ``identity`` (name, hashes, is_demo)."""
    name, short_hash, legacy_hash, is_demo = identity
    v_prediction = getattr(model, "parameterization", "eps") == "v"
    # A1111 dev sets ``ztsnr`` from the checkpoint's key; its "Zero Terminal SNR" noise schedule leaves ᾱ rescaled
    zero_terminal = v_prediction and (
        bool(getattr(model, "ztsnr", False)) or is_zero_terminal(getattr(model, "alphas_cumprod", None))
    )
    return ModelInfo(
        name=name,
        family=detect_family(model),
        prediction="v" if v_prediction else "eps",
        naming="ldm",
        short_hash=short_hash,
        legacy_hash=legacy_hash,
        is_demo=is_demo,
        zero_terminal_snr=zero_terminal,
    )


def detect_family(sd_model) -> Family:
    """SDXL has a ``conditioner``; SD2's text encoder has ``.model`` (OpenCLIP); else SD1 (A1111's rule)."""
    if getattr(sd_model, "is_sdxl", False) or hasattr(sd_model, "conditioner"):
        return "sdxl"
    if getattr(sd_model, "is_sd2", False):
        return "sd2"
    cond = getattr(sd_model, "cond_stage_model", None)
    wrapped = getattr(cond, "wrapped", cond)
    return "sd2" if hasattr(wrapped, "model") else "sd1"


def _text_encoder(index: int, embedder) -> TextEncoderPart:
    wrapped = getattr(embedder, "wrapped", embedder)
    kind = "open_clip" if hasattr(wrapped, "model") and not hasattr(wrapped, "transformer") else "hf_clip"
    return TextEncoderPart(index=index, kind=kind, root=wrapped)


def ldm_parts(sd_model) -> ModelParts:
    """The UNet and text encoders of an A1111-style model object (A1111, reForge)."""
    if detect_family(sd_model) == "sdxl":
        embedders = sd_model.conditioner.embedders
        encoders = tuple(_text_encoder(i, embedders[i]) for i in range(min(2, len(embedders))))
    else:
        encoders = (_text_encoder(0, sd_model.cond_stage_model),)
    return ModelParts(unet=sd_model.model.diffusion_model, text_encoders=encoders, naming="ldm")


class LdmHost(Host):
    """A ``Host`` over an A1111-style ``sd_model``."""

    def __init__(
        self,
        sd_model,
        lora_dir: Path,
        name: str = "model",
        short_hash: str | None = None,
        legacy_hash: str | None = None,
        is_demo: bool = False,
        prompt_hook: PromptHook | None = None,
    ) -> None:
        self._sd_model = sd_model
        self._lora_dir = Path(lora_dir)
        self._identity = (name, short_hash, legacy_hash, is_demo)
        self.set_prompt_hook(prompt_hook)

    @property
    def sd_model(self):
        """The model object; the WebUI adapter reads the live ``shared.sd_model`` here."""
        return self._sd_model

    def identity(self) -> tuple[str, str | None, str | None, bool]:
        """(name, short hash, legacy hash, is demo) of the loaded checkpoint."""
        return self._identity

    # -- identity -----------------------------------------------------------------
    @property
    def info(self) -> ModelInfo:
        return ldm_model_info(self.sd_model, self.identity())

    @property
    def unet(self) -> torch.nn.Module:
        return self.sd_model.model.diffusion_model

    @property
    def device(self) -> torch.device:
        elsewhere = self._seen_elsewhere()
        return elsewhere[0] if elsewhere else next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        elsewhere = self._seen_elsewhere()
        return elsewhere[1] if elsewhere else next(self.unet.parameters()).dtype

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self.sd_model.alphas_cumprod.detach().to("cpu", torch.float32)

    @property
    def lora_dir(self) -> Path:
        return self._lora_dir

    def parts(self) -> ModelParts:
        return ldm_parts(self.sd_model)

    def tokenizer(self) -> object | None:
        """ldm's FrozenCLIPEmbedder (SD1, SDXL's CLIP-L) keeps its HF tokenizer at ``.tokenizer``."""
        return getattr(self.parts().text_encoders[0].root, "tokenizer", None)

    # -- model calls -----------------------------------------------------------------
    def encode_images(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        vae_dtype = next(self.sd_model.first_stage_model.parameters()).dtype
        posterior = self.sd_model.encode_first_stage(pixels.to(self.device, vae_dtype))
        if generator is not None and not isinstance(posterior, torch.Tensor):
            # ldm's DiagonalGaussianDistribution.sample(), with the noise from ``generator``. (sgm's
            # encode_first_stage samples inside and hands back a tensor: that draw stays global.)
            noise = torch.randn(posterior.mean.shape, generator=generator).to(posterior.mean.device)
            posterior = posterior.mean + posterior.std * noise
        return self.sd_model.get_first_stage_encoding(posterior).float()

    def encode_prompts(self, prompts: Sequence[str], sizes: Sequence[SizeCondition] | None = None) -> Conditioning:
        if self.info.family != "sdxl":
            return Conditioning(self.sd_model.get_learned_conditioning(list(prompts)))
        if sizes is None:
            default = SizeCondition((1024, 1024), (0, 0), (1024, 1024))
            sizes = [default] * len(prompts)

        def column(attribute: str) -> torch.Tensor:
            return torch.tensor([list(getattr(size, attribute)) for size in sizes], device=self.device)

        batch = {
            "txt": list(prompts),
            "original_size_as_tuple": column("original_size"),
            "crop_coords_top_left": column("crop_top_left"),
            "target_size_as_tuple": column("target_size"),
        }
        output = self.sd_model.conditioner(batch)
        return Conditioning(output["crossattn"], output["vector"])

    def _cond_for_model(self, conditioning: Conditioning):
        if conditioning.vector is None:
            return conditioning.crossattn
        return {"crossattn": conditioning.crossattn, "vector": conditioning.vector}

    def predict(self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, conditioning: Conditioning) -> torch.Tensor:
        cond = conditioning.to(self.device, self.dtype)
        return self.sd_model.apply_model(
            noisy_latents.to(self.device, self.dtype), timesteps.to(self.device), self._cond_for_model(cond)
        )

    @torch.no_grad()
    def generate(self, request: GenerationRequest) -> list:
        """Euler sampling with CFG.

        The prompt hook (installed by whoever owns ``<lora:…>`` here) sees the raw
        prompt first and applies its networks; any tokens left are then removed.
        """
        prompt = self.apply_prompt_hook(request.prompt)
        prompts = [strip_extra_networks(prompt)] * request.batch_size
        negatives = [strip_extra_networks(request.negative_prompt)] * request.batch_size
        size = SizeCondition((request.height, request.width), (0, 0), (request.height, request.width))
        cond = self.encode_prompts(prompts, [size] * len(prompts))
        uncond = self.encode_prompts(negatives, [size] * len(prompts))
        generator = torch.Generator("cpu").manual_seed(request.seed)
        noise = torch.randn((request.batch_size, 4, request.height // 8, request.width // 8), generator=generator)

        def cat(a: Conditioning, b: Conditioning) -> Conditioning:
            vector = None if a.vector is None else torch.cat([a.vector, b.vector])
            return Conditioning(torch.cat([a.crossattn, b.crossattn]), vector)

        latents = euler_sample(
            self.predict,
            self.alphas_cumprod,
            self.info.prediction,
            noise.to(self.device),
            request.steps,
            cond,
            uncond,
            request.cfg_scale,
            cat,
        )
        vae_dtype = next(self.sd_model.first_stage_model.parameters()).dtype
        return latents_to_pil(self.sd_model.decode_first_stage(latents.to(vae_dtype)))


@contextlib.contextmanager
def vae_in_fp32(vae: torch.nn.Module, enabled: bool) -> Iterator[None]:
    """Run the VAE in fp32 for the duration (SDXL's fp16 VAE overflows); fp16/bf16 → fp32 → back is exact."""
    dtype = next(vae.parameters()).dtype
    if not enabled or dtype == torch.float32:
        yield
        return
    vae.to(torch.float32)
    try:
        yield
    finally:
        vae.to(dtype)


def strip_extra_networks(prompt: str) -> str:
    """Remove ``<name:args>`` tokens (the WebUI's extra-network syntax) from a prompt."""
    import re

    return re.sub(r"<(\w+):([^>]+)>", "", prompt)
