"""The Forge host (Forge main, "Forge2"): training on the model Forge has loaded, no second copy.

Forge's ``shared.sd_model`` is a ``backend`` engine whose torch modules sit in ``forge_objects``
(``docs/hosts.md``): the UNet at ``forge_objects.unet.model.diffusion_model``
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
    HostCapabilities,
    ModelInfo,
    ModelParts,
    SizeCondition,
    TextEncoderPart,
    training_capabilities,
)
from lora_ext.hosts.forge_engine import ENGINE_NAMES, FP8_STORAGE, QUANTIZED_STORAGE, forge_family, prefix_of
from lora_ext.hosts.inplace_residuals import copied_norm_inputs
from lora_ext.hosts.ordinary_tensors import OrdinaryTensors
from lora_ext.hosts.webui import WebUIHostBase, _webui, is_placeholder
from lora_ext.noise_schedule import is_zero_terminal
from lora_ext.training.network import UNET_ATTENTION_CLASSES

NOT_LOADED = "no checkpoint loaded yet"
PLACEHOLDER_REASON = (
    "Forge has not loaded the checkpoint yet (it loads on the first generation): generate one image, then train"
)


def unsupported_engine_reason(engine) -> str:
    name = ENGINE_NAMES.get(type(engine).__name__, type(engine).__name__)
    return f"the loaded model is a {name} model; Train Tools trains LoRAs for SD1, SD2 and SDXL checkpoints only"


TEXT_ENCODER_NAMES = {"sd1": ("clip_l",), "sd2": ("clip_h",), "sdxl": ("clip_l", "clip_g")}


def text_encoders(engine) -> list[torch.nn.Module]:
    """The engine's text encoders, in kohya's order (``te1``, ``te2``).

    Forge's ``forge_objects.clip.cond_stage_model`` is a ``JointTextEncoder``: a plain ``nn.Module`` whose
    children are added by name (``clip_l``, ``clip_g``; ``clip_h`` on SD2), not a ``torch.nn.ModuleDict``
    (no ``in``, no ``[name]``), so its children are read by name."""
    children = dict(engine.forge_objects.clip.cond_stage_model.named_children())
    return [children[name] for name in TEXT_ENCODER_NAMES[forge_family(engine)] if name in children]


def layout_reason(engine) -> str | None:
    """What a training run needs from a Forge engine and does not find there (None: all of it is there).

    Checked, not assumed: the text encoders by name, the UNet's ldm blocks and attention layers, the
    noise schedule, the VAE's ``encode`` and the engine's text processing."""
    family = forge_family(engine)
    objects = engine.forge_objects
    children = dict(objects.clip.cond_stage_model.named_children())
    missing = [name for name in TEXT_ENCODER_NAMES[family] if name not in children]
    if missing:
        return f"its text encoders are named {sorted(children)} (expected {', '.join(missing)})"
    unet = objects.unet.model.diffusion_model
    blocks = [name for name in ("input_blocks", "middle_block", "output_blocks") if not hasattr(unet, name)]
    if blocks:
        return f"its UNet ({type(unet).__name__}) has no {', '.join(blocks)}"
    if not any(type(module).__name__ in UNET_ATTENTION_CLASSES for module in unet.modules()):
        return f"its UNet ({type(unet).__name__}) has no attention blocks Train Tools knows"
    schedule = getattr(getattr(objects.unet.model, "predictor", None), "alphas_cumprod", None)
    if not isinstance(schedule, torch.Tensor) or schedule.numel() != 1000:
        return "its noise schedule (predictor.alphas_cumprod, 1000 steps) was not found"
    engines = (
        ("text_processing_engine_l", "text_processing_engine_g", "embedder")
        if family == "sdxl"
        else ("text_processing_engine",)
    )
    absent = [name for name in engines if getattr(engine, name, None) is None]
    if absent:
        return f"the engine has no {', '.join(absent)}"
    return None


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

    label = "Forge"

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
        elsewhere = self._seen_elsewhere()
        return elsewhere[0] if elsewhere else next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        elsewhere = self._seen_elsewhere()
        return elsewhere[1] if elsewhere else next(self.unet.parameters()).dtype

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self.kmodel.predictor.alphas_cumprod.detach().to("cpu", torch.float32).clone()

    def parts(self) -> ModelParts:
        encoders = text_encoders(self.engine)
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
        layout = layout_reason(model)
        if layout:
            return f"Train Tools does not know this {self.label}'s model layout: {layout}"
        return self._swap_reason(model)

    def _swap_reason(self, engine) -> str | None:
        swapped = [entry for entry in _loaded_entries(_memory_modules(engine)) if self._swapped(entry)]
        if swapped:
            part = (
                "UNet"
                if any(entry.model.model is engine.forge_objects.unet.model for entry in swapped)
                else "text encoder"
            )
            return (
                f"{self.label} keeps part of the {part} in CPU swap (not enough free VRAM for the whole model); "
                "raise “GPU Weights” in the top bar or free VRAM, then train"
            )
        return None

    @staticmethod
    def _swapped(entry) -> bool:
        """Whether Forge's memory manager keeps part of this loaded model off the GPU (its "CPU swap")."""
        return bool(entry.model_accelerated)

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
        """Latents from the engine's VAE modules, sampled with ``generator`` (Forge's and Neo's ``encode`` draw from
        the global one): its encoder and ``quant_conv`` give the posterior's moments, ``process_in`` the scaling."""
        from backend.nn.vae import DiagonalGaussianDistribution

        vae = self.engine.forge_objects.vae
        self._load([vae.patcher])
        model = vae.first_stage_model
        parameter = next(model.parameters())
        with torch.no_grad():
            moments = model.encoder(pixels.to(parameter.device, parameter.dtype))
            if model.quant_conv is not None:
                moments = model.quant_conv(moments)
            posterior = DiagonalGaussianDistribution(moments)
            if generator is None:
                latents = posterior.sample()
            else:
                noise = torch.randn(posterior.mean.shape, generator=generator).to(posterior.mean.device)
                latents = posterior.mean + posterior.std * noise
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

        with self.training_turn(self.label):
            engine = self.engine
            roots = [engine.forge_objects.unet.model.diffusion_model, *text_encoders(engine)]
            self._tensors = OrdinaryTensors(roots, self._merged_sources(engine, roots))
            self._pinned = sd_models.model_data.forge_loading_parameters
            self._training = True
            online = []
            try:
                online = self._set_aside_online_loras(roots)
                self._prepare(engine)
                with copied_norm_inputs(roots[0]):
                    yield
            finally:
                self._training = False
                self._pinned = None
                self._tensors.restore()
                self._tensors = None
                for module, name, loras in online:
                    setattr(module, name, loras)
                if config.trains_text_encoder:
                    self.drop_cached_conditioning()

    @staticmethod
    def _merged_sources(engine, roots: list[torch.nn.Module]) -> dict[int, dict[str, torch.Tensor]]:
        """Per root, the pre-merge weights Forge's ``LoraLoader`` keeps in ``backup`` (keys relative to the root)."""
        backups = [
            (module, getattr(getattr(module, "lora_loader", None), "backup", None) or {})
            for module in _memory_modules(engine)
        ]
        return sources_below(roots, backups)

    ONLINE_ATTRIBUTES: tuple[str, ...] = ("forge_online_loras",)  # where a layer holds LoRAs merged per forward

    def _set_aside_online_loras(self, roots: list[torch.nn.Module]) -> list[tuple[torch.nn.Module, str, object]]:
        """Online-mode LoRAs (held by each layer, merged on every forward), taken off the layers for the run."""
        found = []
        for root in roots:
            for module in root.modules():
                for name in self.ONLINE_ATTRIBUTES:
                    if module.__dict__.get(name):  # the layer's own non-empty holder (a class default stays)
                        found.append((module, name, module.__dict__.pop(name)))
        return found


def _memory_patchers(engine) -> list:
    """The patchers Forge last loaded for the UNet and the text encoders (loading a clone would reload)."""
    objects = engine.forge_objects
    return [objects.unet, objects.clip.patcher]


def _memory_modules(engine) -> list:
    return [patcher.model for patcher in _memory_patchers(engine)]


def sources_below(roots: list[torch.nn.Module], backups) -> dict[int, dict[str, torch.Tensor]]:
    """``(module, {key: tensor})`` backups re-keyed per root found below ``module`` (names relative to the root)."""
    sources: dict[int, dict[str, torch.Tensor]] = {}
    for module, backup in backups:
        for key, tensor in backup.items():
            for root in roots:
                prefix = prefix_of(module, root)
                if prefix is not None and key.startswith(prefix):
                    sources.setdefault(id(root), {})[key[len(prefix) :]] = tensor
    return sources
