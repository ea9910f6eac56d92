"""Tiny real models in the WebUI's own layout, built offline in seconds.

- ``ldm_unet(layout)``: the real CompVis ``ldm`` ``UNetModel`` (the code A1111
  runs) at 32 channels, in SD1 layout (1×1-conv proj, attention on the first
  three levels), SD2 layout (linear proj) or an SDXL-like layout (three levels,
  attention on the deeper two, linear proj, an ``label_emb.0.0`` ADM embedding).
- ``FrozenCLIPEmbedderLike``: a ``transformers`` ``CLIPTextModel`` under
  ``.transformer`` — A1111's naming ``transformer.text_model.encoder.layers.N…``.
- ``OpenClipTextLike``: an OpenCLIP-shaped text tower in A1111 naming
  (``model.transformer.resblocks.N.attn`` is an ``nn.MultiheadAttention`` with a
  fused ``in_proj_weight``; ``mlp.c_fc``, ``mlp.c_proj``, ``ln_1``, ``ln_2``).
- ``TinyAutoencoderKL``: the real ``ldm`` Encoder/Decoder (``first_stage_model.*``).
- ``TinySdModel``: the surface of A1111's ``shared.sd_model`` that the ldm host
  uses (``model.diffusion_model``, ``cond_stage_model``/``conditioner``,
  ``get_learned_conditioning``, ``apply_model``, ``encode_first_stage``…).
- ``checkpoint_state_dict(model)``: a single-file checkpoint in A1111 key layout.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from lora_ext.demo import MAX_TOKENS, TINY_WIDTH, tiny_clip_config, write_tiny_clip_tokenizer

Layout = Literal["sd1", "sd2", "sdxl"]
ADM_SIZE_DIM = 8  # sgm's ConcatTimestepEmbedderND uses 256 per number; tiny uses 8
ADM_IN_CHANNELS = TINY_WIDTH + 6 * ADM_SIZE_DIM


def scaled_linear_alphas_cumprod(steps: int = 1000) -> torch.Tensor:
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, steps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).to(torch.float32)


def ldm_unet(layout: Layout) -> nn.Module:
    from ldm.modules.diffusionmodules.openaimodel import UNetModel

    common = dict(
        image_size=8,
        in_channels=4,
        out_channels=4,
        model_channels=32,
        num_res_blocks=2,
        num_head_channels=8,
        use_spatial_transformer=True,
        transformer_depth=1,
        legacy=False,
    )
    if layout == "sd1":
        return UNetModel(attention_resolutions=[4, 2, 1], channel_mult=[1, 2, 2, 2], context_dim=TINY_WIDTH, **common)
    if layout == "sd2":
        return UNetModel(
            attention_resolutions=[4, 2, 1],
            channel_mult=[1, 2, 2, 2],
            context_dim=TINY_WIDTH,
            use_linear_in_transformer=True,
            **common,
        )
    unet = UNetModel(
        attention_resolutions=[4, 2],
        channel_mult=[1, 2, 2],
        context_dim=TINY_WIDTH * 2,
        use_linear_in_transformer=True,
        **common,
    )
    # sgm's UNet takes num_classes="sequential" and builds label_emb.0.{0,2}; the
    # ldm class in the SD2 repo does not, so give it the same module and flag.
    time_embed_dim = 32 * 4
    unet.num_classes = "sequential"
    unet.label_emb = nn.Sequential(
        nn.Sequential(nn.Linear(ADM_IN_CHANNELS, time_embed_dim), nn.SiLU(), nn.Linear(time_embed_dim, time_embed_dim))
    )
    return unet


def tiny_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(write_tiny_clip_tokenizer(folder)))


class FrozenCLIPEmbedderLike(nn.Module):
    """ldm's FrozenCLIPEmbedder: an HF CLIPTextModel at ``.transformer``."""

    def __init__(self, tokenizer, layer: Literal["last", "penultimate"] = "last") -> None:
        super().__init__()
        from transformers import CLIPTextModel

        self.tokenizer = tokenizer
        self.transformer = CLIPTextModel(tiny_clip_config())
        self.layer = layer

    def tokens(self, prompts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(
            prompts, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt"
        )
        return batch.input_ids.to(self.transformer.device)

    def forward(self, prompts: list[str]) -> torch.Tensor:
        out = self.transformer(input_ids=self.tokens(prompts), output_hidden_states=self.layer != "last")
        return out.last_hidden_state if self.layer == "last" else out.hidden_states[-2]


class _ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                [("c_fc", nn.Linear(width, width * 4)), ("gelu", nn.GELU()), ("c_proj", nn.Linear(width * 4, width))]
            )
        )

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=attn_mask)[0]
        return x + self.mlp(self.ln_2(x))


class _Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList([_ResidualAttentionBlock(width, heads) for _ in range(layers)])


class _OpenClipTextTower(nn.Module):
    def __init__(self, vocab: int, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, width)
        self.positional_embedding = nn.Parameter(torch.randn(MAX_TOKENS, width) * 0.01)
        self.transformer = _Transformer(width, layers, heads)
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.randn(width, width) * width**-0.5)
        self.register_buffer("attn_mask", torch.full((MAX_TOKENS, MAX_TOKENS), float("-inf")).triu(1), persistent=False)


class OpenClipTextLike(nn.Module):
    """ldm/sgm's FrozenOpenCLIPEmbedder: an open_clip text tower at ``.model``, penultimate layer."""

    def __init__(self, tokenizer, return_pooled: bool = False) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.model = _OpenClipTextTower(tokenizer.vocab_size + 2, TINY_WIDTH, layers=2, heads=2)
        self.return_pooled = return_pooled

    def forward(self, prompts: list[str]):
        batch = self.tokenizer(
            prompts, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt"
        )
        tokens = batch.input_ids.to(self.model.token_embedding.weight.device)
        x = self.model.token_embedding(tokens) + self.model.positional_embedding
        x = x.permute(1, 0, 2)  # (tokens, batch, width): open_clip's MHA is not batch_first
        blocks = self.model.transformer.resblocks
        for block in blocks[:-1]:  # penultimate layer, as the SD2 / SDXL-bigG embedders take
            x = block(x, self.model.attn_mask)
        penultimate = x.permute(1, 0, 2)
        if not self.return_pooled:
            return penultimate
        last = self.model.ln_final(blocks[-1](x, self.model.attn_mask).permute(1, 0, 2))
        pooled = last[torch.arange(last.shape[0]), tokens.argmax(dim=-1)] @ self.model.text_projection
        return penultimate, pooled


class TinyAutoencoderKL(nn.Module):
    """ldm's AutoencoderKL reduced to its parts (the Lightning wrapper is not needed)."""

    def __init__(self) -> None:
        super().__init__()
        from ldm.modules.diffusionmodules.model import Decoder, Encoder

        ddconfig = dict(
            ch=32,
            out_ch=3,
            ch_mult=(1, 2, 2, 2),
            num_res_blocks=1,
            attn_resolutions=[],
            in_channels=3,
            resolution=64,
            z_channels=4,
            double_z=True,
        )
        self.encoder = Encoder(**ddconfig)
        self.decoder = Decoder(**ddconfig)
        self.quant_conv = nn.Conv2d(8, 8, 1)
        self.post_quant_conv = nn.Conv2d(4, 4, 1)

    def encode(self, x: torch.Tensor):
        from ldm.modules.distributions.distributions import DiagonalGaussianDistribution

        return DiagonalGaussianDistribution(self.quant_conv(self.encoder(x)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(z))


class _CustomWordsLike(nn.Module):
    """A1111's ``*WithCustomWords`` hijack wrapper: the real embedder sits at ``.wrapped``."""

    def __init__(self, wrapped: nn.Module) -> None:
        super().__init__()
        self.wrapped = wrapped
        self.is_trainable = False

    def forward(self, prompts: list[str]):
        return self.wrapped(prompts)


class _SizeEmbedder(nn.Module):
    """sgm's ConcatTimestepEmbedderND: sinusoidal features of each number, concatenated."""

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        from ldm.modules.diffusionmodules.util import timestep_embedding

        batch = values.shape[0]
        return timestep_embedding(values.flatten().float(), ADM_SIZE_DIM).reshape(batch, -1)


class TinyConditioner(nn.Module):
    """sgm's GeneralConditioner after A1111's hijack: embedders 0 (CLIP-L) and 1 (bigG)."""

    def __init__(self, tokenizer) -> None:
        super().__init__()
        self.embedders = nn.ModuleList(
            [
                _CustomWordsLike(FrozenCLIPEmbedderLike(tokenizer, layer="penultimate")),
                _CustomWordsLike(OpenClipTextLike(tokenizer, return_pooled=True)),
            ]
        )
        self.size_embedder = _SizeEmbedder()
        self.wrapped = nn.Module()

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        prompts = batch["txt"]
        clip_l = self.embedders[0](prompts)
        big_g, pooled = self.embedders[1](prompts)
        sizes = [
            self.size_embedder(batch[key])
            for key in ("original_size_as_tuple", "crop_coords_top_left", "target_size_as_tuple")
        ]
        return {"crossattn": torch.cat([clip_l, big_g], dim=-1), "vector": torch.cat([pooled, *sizes], dim=-1)}


class _DiffusionWrapper(nn.Module):
    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.diffusion_model = unet


class TinySdModel(nn.Module):
    """The part of A1111's ``shared.sd_model`` surface that the ldm host touches."""

    def __init__(self, layout: Layout, tokenizer_dir: Path, prediction: Literal["eps", "v"] = "eps") -> None:
        super().__init__()
        tokenizer = tiny_tokenizer(tokenizer_dir)
        self.model = _DiffusionWrapper(ldm_unet(layout))
        self.first_stage_model = TinyAutoencoderKL()
        self.is_sd1, self.is_sd2, self.is_sdxl = layout == "sd1", layout == "sd2", layout == "sdxl"
        self.parameterization = prediction
        self.scale_factor = 0.13025 if layout == "sdxl" else 0.18215
        self.register_buffer("alphas_cumprod", scaled_linear_alphas_cumprod())
        if layout == "sdxl":
            self.conditioner = TinyConditioner(tokenizer)
            self.cond_stage_model = self.conditioner
        elif layout == "sd2":
            self.cond_stage_model = _CustomWordsLike(OpenClipTextLike(tokenizer))
        else:
            self.cond_stage_model = _CustomWordsLike(FrozenCLIPEmbedderLike(tokenizer))
        self.lowvram = False
        self.sd_model_hash = None

    def get_learned_conditioning(self, prompts):
        if self.is_sdxl:
            size = torch.tensor([[64, 64]] * len(prompts))
            return self.conditioner(
                {
                    "txt": list(prompts),
                    "original_size_as_tuple": size,
                    "crop_coords_top_left": torch.zeros_like(size),
                    "target_size_as_tuple": size,
                }
            )
        return self.cond_stage_model(list(prompts))

    def apply_model(self, x: torch.Tensor, t: torch.Tensor, cond):
        if isinstance(cond, dict):
            return self.model.diffusion_model(x, timesteps=t, context=cond["crossattn"], y=cond["vector"])
        return self.model.diffusion_model(x, timesteps=t, context=cond)

    @torch.no_grad()
    def encode_first_stage(self, x: torch.Tensor):
        return self.first_stage_model.encode(x)

    def get_first_stage_encoding(self, encoder_posterior) -> torch.Tensor:
        sample = encoder_posterior if isinstance(encoder_posterior, torch.Tensor) else encoder_posterior.sample()
        return self.scale_factor * sample

    @torch.no_grad()
    def decode_first_stage(self, z: torch.Tensor) -> torch.Tensor:
        return self.first_stage_model.decode(z / self.scale_factor)


def checkpoint_state_dict(model: TinySdModel) -> dict[str, torch.Tensor]:
    """A single-file checkpoint in A1111 key layout, as ``load_model_weights`` reads it."""
    state: dict[str, torch.Tensor] = {}
    for key, tensor in model.model.diffusion_model.state_dict().items():
        state[f"model.diffusion_model.{key}"] = tensor
    for key, tensor in model.first_stage_model.state_dict().items():
        state[f"first_stage_model.{key}"] = tensor
    if model.is_sdxl:
        for index, embedder in enumerate(model.conditioner.embedders):
            for key, tensor in embedder.wrapped.state_dict().items():
                state[f"conditioner.embedders.{index}.{key}"] = tensor
    else:
        for key, tensor in model.cond_stage_model.wrapped.state_dict().items():
            state[f"cond_stage_model.{key}"] = tensor
    state["alphas_cumprod"] = model.alphas_cumprod
    return {key: tensor.detach().clone().contiguous() for key, tensor in state.items()}
