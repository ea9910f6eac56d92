"""``backend.loader.forge_loader``: a checkpoint → a Forge engine, every weight made under ``torch.inference_mode()``.

Forge's ``forge_loader(sd, additional_state_dicts=None)`` reads a state dict; the fake's ``sd`` is a
tiny test model (``tests/tiny_models.TinySdModel``) standing in for the file, and ``engine`` picks
the engine Forge would guess (``"sd1"``, ``"sdxl"``, ``"flux"``). As in Forge, the layers are
``ForgeOperations`` (a Linear that is not ``nn.Linear``), the UNet's storage dtype comes from
``dynamic_args['forge_unet_storage_dtype']`` (a torch dtype, or ``'nf4'``/``'fp4'``/``'gguf'``,
whose weights carry Forge's markers ``bnb_quantized``/``quant_type``/``gguf_cls``), and
``parameters_manual_cast`` is on where storage ≠ computation dtype. The UNet's transformer blocks are Forge's
(``backend.nn.unet.BasicTransformerBlock``: residuals added in place).
"""

import copy
from types import SimpleNamespace

import torch

from backend import memory_management
from backend.args import dynamic_args
from backend.modules.k_prediction import Prediction, PredictionFlux
from backend.nn.unet import forge_blocks
from backend.operations import to_forge_operations

QUANTIZED = ("nf4", "fp4", "gguf")


class IntegratedAutoencoderKL(torch.nn.Module):
    """Forge's VAE module: the autoencoder plus ``process_in``/``process_out`` (the latent scaling)."""

    def __init__(self, autoencoder, scaling_factor):
        super().__init__()
        self.encoder, self.decoder = autoencoder.encoder, autoencoder.decoder
        self.quant_conv, self.post_quant_conv = autoencoder.quant_conv, autoencoder.post_quant_conv
        self.scaling_factor = scaling_factor
        self.shift_factor = 0.0

    def encode(self, x, regulation=None):
        from ldm.modules.distributions.distributions import DiagonalGaussianDistribution

        posterior = DiagonalGaussianDistribution(self.quant_conv(self.encoder(x)))
        return regulation(posterior) if regulation is not None else posterior.sample()

    def decode(self, z):
        return self.decoder(self.post_quant_conv(z))

    def process_in(self, latent):
        return (latent - self.shift_factor) * self.scaling_factor

    def process_out(self, latent):
        return (latent / self.scaling_factor) + self.shift_factor


def _place(module, storage_dtype, computation_dtype):
    device = memory_management.get_torch_device()
    module.storage_dtype, module.computation_dtype = storage_dtype, computation_dtype
    module.load_device = module.offload_device = module.initial_device = device
    return module


def _unet(sd, storage_dtype):
    computation_dtype = torch.float32
    unet = forge_blocks(copy.deepcopy(sd.model.diffusion_model))
    if isinstance(storage_dtype, torch.dtype):
        unet.to(storage_dtype)
    to_forge_operations(
        unet, manual_cast=storage_dtype not in (None, computation_dtype) and storage_dtype not in QUANTIZED
    )
    if storage_dtype in QUANTIZED:
        for module in unet.modules():
            weight = getattr(module, "weight", None)
            if type(module).__name__ == "Linear" and weight is not None:
                if storage_dtype == "gguf":
                    weight.gguf_cls = "Q4_0"
                else:
                    weight.bnb_quantized, weight.quant_type = True, storage_dtype
    return _place(unet, storage_dtype or computation_dtype, computation_dtype)


def _text_encoder(embedder):
    return to_forge_operations(copy.deepcopy(getattr(embedder, "wrapped", embedder)))


def _clip_g(tokenizer):
    from tiny_models import FrozenCLIPEmbedderLike

    generator_state = torch.random.get_rng_state()
    torch.manual_seed(4321)  # bigG in HF layout (Forge loads every text encoder as transformers' CLIP)
    encoder = FrozenCLIPEmbedderLike(tokenizer)
    width = encoder.transformer.config.hidden_size
    encoder.text_projection = torch.nn.Parameter(torch.randn(width, width) * width**-0.5)
    torch.random.set_rng_state(generator_state)
    return to_forge_operations(encoder)


@torch.inference_mode()
def forge_loader(sd, additional_state_dicts=None, engine="sd1"):
    from backend.diffusion_engine.flux import Flux
    from backend.diffusion_engine.sd15 import StableDiffusion
    from backend.diffusion_engine.sdxl import StableDiffusionXL
    from backend.patcher.unet import UnetPatcher

    storage_dtype = dynamic_args.get("forge_unet_storage_dtype")
    config = SimpleNamespace(size_embedding_dim=8, inpaint_model=lambda: False)
    prediction = "v_prediction" if getattr(sd, "parameterization", "eps") == "v" else "epsilon"
    scheduler = Prediction(prediction_type=prediction, alphas_cumprod=sd.alphas_cumprod.detach().clone())
    vae = IntegratedAutoencoderKL(copy.deepcopy(sd.first_stage_model), sd.scale_factor)
    components = {"unet": _unet(sd, storage_dtype), "vae": to_forge_operations(vae), "scheduler": scheduler}
    if engine == "flux":
        components["unet"] = UnetPatcher.from_model(components["unet"], PredictionFlux(), config)
        return Flux(config, components)
    if engine == "sdxl":
        clip_l = sd.conditioner.embedders[0].wrapped
        components.update(
            text_encoder=_text_encoder(clip_l),
            tokenizer=clip_l.tokenizer,
            text_encoder_2=_clip_g(clip_l.tokenizer),
            tokenizer_2=clip_l.tokenizer,
        )
        return StableDiffusionXL(config, components)
    embedder = sd.cond_stage_model
    components.update(text_encoder=_text_encoder(embedder), tokenizer=getattr(embedder, "wrapped", embedder).tokenizer)
    return StableDiffusion(config, components)
