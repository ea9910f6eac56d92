"""The Forge host (Forge main, "Forge2"): training on the model Forge has loaded, no second copy.

Forge's ``shared.sd_model`` is a ``backend`` engine whose torch modules sit in ``forge_objects``
(``shared/reference/forge-host.md``): the UNet at ``forge_objects.unet.model.diffusion_model``
(ldm names), the schedule at ``….model.predictor`` (``alphas_cumprod``, ``prediction_type``), the text
encoders at ``forge_objects.clip.cond_stage_model.clip_l/clip_g`` (HF CLIP layout), the VAE at
``forge_objects.vae.first_stage_model``. The WebUI-generic half (Settings, queue lock, progress,
Interrupt, previews through ``process_images``) is ``WebUIHostBase``'s.

A training session (``training_session``):

- refuses with one line what cannot train soundly: the placeholder before the first generation,
  non-SD engines (Flux, SD3.5, Chroma…), nf4/fp4/GGUF and fp8 UNet storage, a UNet or text encoder
  that Forge's memory manager keeps partly in CPU swap;
- holds the queue lock, has the memory manager load the UNet and text encoders (inside inference
  mode, as Forge itself does), and swaps their inference tensors for ordinary copies
  (``OrdinaryTensors``); weights a Forge LoRA merged are copied from ``LoraLoader.backup`` instead,
  and online LoRAs are set aside, so the run sees the clean checkpoint while Forge's patch state
  is not touched;
- pins the checkpoint: a preview runs with the ``forge_loading_parameters`` the run started with
  (Forge's dropdown only records a new choice, which is kept for after the run);
- after every preview re-loads and re-checks (Forge makes moved weights inference tensors again);
- hands the original tensor objects back, bit-exact, on every exit (finish, cancel, error).

Conditioning and latents are computed outside inference mode (Forge's own ``get_learned_conditioning``
and ``encode_first_stage`` are inference-mode functions); SDXL's size/crop vector is built per sample
with the engine's own ``embedder``, as the A1111 host's conditioner does. Every WebUI import is
inside a function.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

from lora_ext.errors import HostUnavailable
from lora_ext.host import (
    Conditioning,
    Family,
    HostCapabilities,
    ModelInfo,
    ModelParts,
    SizeCondition,
    TextEncoderPart,
    training_capabilities,
)
from lora_ext.hosts.ordinary_tensors import OrdinaryTensors
from lora_ext.hosts.webui import WebUIHostBase, _webui, is_placeholder
from lora_ext.noise_schedule import is_zero_terminal

NOT_LOADED = "no checkpoint loaded yet"
PLACEHOLDER_REASON = (
    "Forge has not loaded the checkpoint yet (it loads on the first generation): generate one image, then train"
)
QUANTIZED_STORAGE = {"nf4": "nf4", "fp4": "fp4", "gguf": "GGUF"}
FP8_STORAGE = (torch.float8_e4m3fn, torch.float8_e5m2)
ENGINE_NAMES = {
    "Flux": "Flux",
    "StableDiffusion3": "SD3.5",
    "Chroma": "Chroma",
    "StableDiffusionXLRefiner": "SDXL refiner",
}


def forge_family(engine) -> Family | None:
    """SD1 / SD2 / SDXL from the engine's flags; None for every other engine (Flux, SD3.5, Chroma, the refiner…)."""
    if type(engine).__name__ in ENGINE_NAMES:
        return None
    for flag, family in (("is_sdxl", "sdxl"), ("is_sd2", "sd2"), ("is_sd1", "sd1")):
        if getattr(engine, flag, False):
            return family
    return None


def unsupported_engine_reason(engine) -> str:
    name = ENGINE_NAMES.get(type(engine).__name__, type(engine).__name__)
    return f"the loaded model is a {name} model; Train Tools trains LoRAs for SD1, SD2 and SDXL checkpoints only"


def _loaded_entries(kmodels: Sequence[torch.nn.Module]) -> list:
    """Forge's ``LoadedModel`` entries for these modules (by the patcher's ``.model``)."""
    from backend import memory_management

    return [entry for entry in memory_management.current_loaded_models if entry.model.model in kmodels]


def _storage_reason(storage) -> str | None:
    if isinstance(storage, str) and storage in QUANTIZED_STORAGE:
        return (
            f"the UNet is stored as {QUANTIZED_STORAGE[storage]} (Forge's “Diffusion in Low Bits”), which a LoRA "
            "cannot be trained on exactly; set it to Automatic and reload the checkpoint to train"
        )
    if storage in FP8_STORAGE:
        return (
            "the UNet is stored in fp8 (Forge's “Diffusion in Low Bits”); set it to Automatic (fp16/bf16) and "
            "reload the checkpoint to train"
        )
    return None


class ForgeHost(WebUIHostBase):
    """The ``Host`` protocol over Forge's ``forge_objects``."""

    def __init__(self) -> None:
        super().__init__()
        self._tensors: OrdinaryTensors | None = None  # set while a training session runs
        self._pinned: dict | None = None  # forge_loading_parameters at the session's start

    def register_callbacks(self) -> None:
        """Settings, and our loader owning ``<lora:…>`` through Forge's patcher (``hosts/forge_loader.py``)."""
        from lora_ext.hosts.a1111_loader import register_callbacks as register_lora_takeover
        from lora_ext.hosts.forge_loader import ForgeLoraTakeover

        self.lora_takeover = register_lora_takeover(lambda: self, ForgeLoraTakeover)
        super().register_callbacks()

    # -- the model ------------------------------------------------------------------------------------
    @property
    def engine(self):
        """The loaded engine; ``HostUnavailable`` for the placeholder and for engines we do not train."""
        model = self.sd_model
        if forge_family(model) is None:
            raise HostUnavailable(unsupported_engine_reason(model))
        return model

    @property
    def info(self) -> ModelInfo:
        shared, *_ = _webui()
        if shared.sd_model is None or is_placeholder(shared.sd_model):
            return ModelInfo(name=NOT_LOADED, family="sd1", prediction="eps", naming="ldm")
        engine = self.engine
        name, short_hash, legacy_hash, is_demo = self.identity()
        predictor = engine.forge_objects.unet.model.predictor
        v = predictor.prediction_type == "v_prediction"
        # zero terminal SNR: Neo's ``sd_model.ztsnr`` (the checkpoint's key), else the predictor's own schedule
        ztsnr = v and (
            bool(getattr(engine, "ztsnr", False))
            or is_zero_terminal(getattr(predictor, "alphas_cumprod", None), getattr(predictor, "sigmas", None))
        )
        family = forge_family(engine)
        return ModelInfo(name, family, "v" if v else "eps", "ldm", short_hash, legacy_hash, is_demo, ztsnr)

    @property
    def kmodel(self) -> torch.nn.Module:
        return self.engine.forge_objects.unet.model

    @property
    def unet(self) -> torch.nn.Module:
        return self.kmodel.diffusion_model

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self.kmodel.predictor.alphas_cumprod.detach().to("cpu", torch.float32).clone()

    def _text_encoders(self, engine) -> list[torch.nn.Module]:
        encoders = engine.forge_objects.clip.cond_stage_model
        names = ("clip_l", "clip_g") if forge_family(engine) == "sdxl" else ("clip_l", "clip_h")
        return [encoders[name] for name in names if name in encoders]

    def parts(self) -> ModelParts:
        encoders = self._text_encoders(self.engine)
        return ModelParts(
            unet=self.unet,
            text_encoders=tuple(TextEncoderPart(i, "hf_clip", root) for i, root in enumerate(encoders)),
            naming="ldm",
        )

    def tokenizer(self) -> object | None:
        """CLIP-L's tokenizer from the engine's text processing (None until a supported model is loaded)."""
        try:
            engine = self.engine
        except HostUnavailable:
            return None
        text = getattr(engine, "text_processing_engine", None) or engine.text_processing_engine_l
        return text.tokenizer

    # -- what can train -----------------------------------------------------------------------------
    def _refusal(self) -> str | None:
        shared, *_ = _webui()
        model = shared.sd_model
        if model is None:
            return None  # training_capabilities says "no checkpoint is loaded"
        if is_placeholder(model):
            return PLACEHOLDER_REASON
        if forge_family(model) is None:
            return unsupported_engine_reason(model)
        kmodel = model.forge_objects.unet.model
        storage = _storage_reason(getattr(kmodel, "storage_dtype", None))
        if storage:
            return storage
        return self._swap_reason(model)

    @staticmethod
    def _swap_reason(engine) -> str | None:
        swapped = [entry for entry in _loaded_entries(_memory_modules(engine)) if entry.model_accelerated]
        if swapped:
            part = (
                "UNet"
                if any(entry.model.model is engine.forge_objects.unet.model for entry in swapped)
                else "text encoder"
            )
            return (
                f"Forge keeps part of the {part} in CPU swap (not enough free VRAM for the whole model); raise "
                "“GPU Weights” in Forge's top bar or free VRAM, then train"
            )
        return None

    def capabilities(self) -> HostCapabilities:
        shared, *_ = _webui()
        return training_capabilities(model_loaded=shared.sd_model is not None, refused=self._refusal())

    # -- model calls (outside inference mode) ---------------------------------------------------------
    def _load(self, patchers: list) -> None:
        """Have Forge's memory manager load these (inside inference mode, as Forge does); no-op when loaded."""
        from backend import memory_management

        with torch.inference_mode():
            memory_management.load_models_gpu(patchers)

    def encode_images(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        vae = self.engine.forge_objects.vae
        self._load([vae.patcher])
        model = vae.first_stage_model
        parameter = next(model.parameters())

        def sample(posterior):
            if generator is None:
                return posterior.sample()
            noise = torch.randn(posterior.mean.shape, generator=generator).to(posterior.mean.device)
            return posterior.mean + posterior.std * noise

        with torch.no_grad():
            latents = model.encode(pixels.to(parameter.device, parameter.dtype), regulation=sample)
            return model.process_in(latents).float()

    def encode_prompts(self, prompts: Sequence[str], sizes: Sequence[SizeCondition] | None = None) -> Conditioning:
        engine = self.engine
        self._load([engine.forge_objects.clip.patcher])
        if forge_family(engine) != "sdxl":
            return Conditioning(engine.text_processing_engine(list(prompts)))
        if sizes is None:
            sizes = [SizeCondition((1024, 1024), (0, 0), (1024, 1024))] * len(prompts)
        cond_l = engine.text_processing_engine_l(list(prompts))
        cond_g, pooled = engine.text_processing_engine_g(list(prompts))
        rows = []
        for size in sizes:  # (h, w), (top, left), (h, w): sgm's order, and Forge's
            numbers = [*size.original_size, *size.crop_top_left, *size.target_size]
            rows.append(torch.cat([engine.embedder(torch.tensor([float(n)])) for n in numbers]).flatten())
        vector = torch.stack(rows).to(pooled)
        return Conditioning(torch.cat([cond_l, cond_g], dim=2), torch.cat([pooled, vector], dim=1))

    def predict(self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, conditioning: Conditioning) -> torch.Tensor:
        """The UNet's raw ε/v (Forge's ``KModel.apply_model`` takes sigmas and returns x0, so it is not used)."""
        kmodel = self.kmodel
        device, dtype = self.device, kmodel.computation_dtype
        cond = conditioning.to(device, dtype)
        extra = {} if cond.vector is None else {"y": cond.vector}
        return kmodel.diffusion_model(
            noisy_latents.to(device, dtype), timesteps.to(device), context=cond.crossattn, **extra
        )

    def generate(self, request) -> list:
        """A preview through Forge's ``process_images``, with the checkpoint pinned during a run; re-checks after."""
        with self._pinned_checkpoint():
            images = super().generate(request)
        if self._tensors is not None:
            self._prepare(self.engine)
        return images

    # -- the training session -----------------------------------------------------------------------
    @contextlib.contextmanager
    def _pinned_checkpoint(self) -> Iterator[None]:
        if self._pinned is None:
            yield
            return
        from modules import sd_models

        chosen = sd_models.model_data.forge_loading_parameters
        sd_models.model_data.forge_loading_parameters = self._pinned
        try:
            yield
        finally:
            sd_models.model_data.forge_loading_parameters = chosen

    def _prepare(self, engine) -> None:
        """Load what the run uses, refuse CPU swap, and give every inference tensor an ordinary copy."""
        self._load(_memory_patchers(engine))
        reason = self._swap_reason(engine)
        if reason:
            raise HostUnavailable("Forge's memory manager cannot hold the training set-up: " + reason)
        self._tensors.ensure()

    @contextlib.contextmanager
    def training_session(self, config) -> Iterator[None]:
        from modules import sd_models

        with self.training_turn("Forge"):
            engine = self.engine
            roots = [engine.forge_objects.unet.model.diffusion_model, *self._text_encoders(engine)]
            self._tensors = OrdinaryTensors(roots, _merged_sources(engine, roots))
            self._pinned = sd_models.model_data.forge_loading_parameters
            self._training = True
            online = []
            try:
                online = _set_aside_online_loras(roots)
                self._prepare(engine)
                yield
            finally:
                self._training = False
                self._pinned = None
                self._tensors.restore()
                self._tensors = None
                for module, loras in online:
                    module.forge_online_loras = loras
                if config.train_text_encoder:
                    self.drop_cached_conditioning()


def _memory_patchers(engine) -> list:
    """The patchers Forge last loaded for the UNet and the text encoders (loading a clone would reload)."""
    objects = engine.forge_objects
    return [objects.unet, objects.clip.patcher]


def _memory_modules(engine) -> list:
    return [patcher.model for patcher in _memory_patchers(engine)]


def _merged_sources(engine, roots: list[torch.nn.Module]) -> dict[int, dict[str, torch.Tensor]]:
    """Per root, the pre-merge weights Forge's ``LoraLoader`` keeps in ``backup`` (keys relative to the root)."""
    sources: dict[int, dict[str, torch.Tensor]] = {}
    for module in _memory_modules(engine):
        backup = getattr(getattr(module, "lora_loader", None), "backup", None) or {}
        for key, tensor in backup.items():
            for root in roots:
                prefix = prefix_of(module, root)
                if prefix is not None and key.startswith(prefix):
                    sources.setdefault(id(root), {})[key[len(prefix) :]] = tensor
    return sources


def prefix_of(parent: torch.nn.Module, root: torch.nn.Module) -> str | None:
    for name, module in parent.named_modules():
        if module is root:
            return f"{name}." if name else ""
    return None


def _set_aside_online_loras(roots: list[torch.nn.Module]) -> list[tuple[torch.nn.Module, dict]]:
    """Forge's online-mode LoRAs (``forge_online_loras`` on a layer, merged per forward), removed for the run."""
    found = []
    for root in roots:
        for module in root.modules():
            loras = module.__dict__.pop("forge_online_loras", None)
            if loras is not None:
                found.append((module, loras))
    return found
