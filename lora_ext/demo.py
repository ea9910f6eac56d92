"""The embedded demo model: tiny diffusers pipelines with random weights, built locally.

The standalone app must start on a fresh offline machine, so when no checkpoint
is given it builds a clearly labelled tiny SD1-layout pipeline (random weights,
64-px images, a byte-level CLIP tokenizer written here) in a few seconds. The
same builders make the tiny diffusers fixtures the tests use. Nothing here
downloads anything.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Literal

from lora_ext.fileio import temp_name_for

DEMO_NAME = "demo (tiny random model)"
# ``--model`` names of the demo models → (family, prediction, zero terminal SNR): the SD1 demo, and a tiny SDXL
# v-prediction zero-terminal-SNR one laid out like NoobAI-XL V-Pred (to try what such models train with).
DEMO_MODELS: dict[str, tuple[Literal["sd1", "sdxl"], Literal["eps", "v"], bool]] = {
    "demo": ("sd1", "eps", False),
    "demo-vpred": ("sdxl", "v", True),
}
TINY_WIDTH = 32  # text-encoder width and the UNet's first level
MAX_TOKENS = 77


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte → printable-character table."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {byte: chr(code) for byte, code in zip(printable, codes, strict=True)}


def write_tiny_clip_tokenizer(folder: Path) -> Path:
    """Write a byte-level CLIP tokenizer (no merges: one token per character).

    Its vocabulary begins exactly like the real CLIP vocabulary (each byte
    character, then each with ``</w>``, then the two special tokens), so the
    real ``CLIPTokenizer`` loads it unchanged.
    """
    folder.mkdir(parents=True, exist_ok=True)
    characters = list(_bytes_to_unicode().values())
    vocab_list = characters + [c + "</w>" for c in characters] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(vocab_list)}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    config = {
        "model_max_length": MAX_TOKENS,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "tokenizer_class": "CLIPTokenizer",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(
        json.dumps({k: config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")}), encoding="utf-8"
    )
    return folder


def tiny_vocab_size() -> int:
    return 256 * 2 + 2


def tiny_clip_config(projection_dim: int | None = None, hidden_act: str = "quick_gelu"):
    """A 2-layer, 32-wide CLIP text config with the tiny tokenizer's vocabulary."""
    from transformers import CLIPTextConfig

    kwargs = {"projection_dim": projection_dim} if projection_dim else {}
    return CLIPTextConfig(
        vocab_size=tiny_vocab_size(),
        hidden_size=TINY_WIDTH,
        intermediate_size=TINY_WIDTH * 2,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=MAX_TOKENS,
        bos_token_id=tiny_vocab_size() - 2,
        eos_token_id=tiny_vocab_size() - 1,
        pad_token_id=tiny_vocab_size() - 1,
        hidden_act=hidden_act,
        **kwargs,
    )


def tiny_vae():
    """A diffusers AutoencoderKL with the real 8× downscale, 32–64 channels."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(32, 32, 64, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=64,
    )


def _tiny_unet(family: Literal["sd1", "sdxl"]):
    from diffusers import UNet2DConditionModel

    if family == "sd1":
        return UNet2DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            block_out_channels=(32, 64, 64, 64),
            layers_per_block=2,
            cross_attention_dim=TINY_WIDTH,
            attention_head_dim=8,
            norm_num_groups=32,
        )
    # SDXL layout: three levels, no attention on the first, linear projections,
    # two text encoders concatenated (32 + 32) and the text_time extra embedding.
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64, 64),
        layers_per_block=2,
        transformer_layers_per_block=(1, 1, 2),
        cross_attention_dim=TINY_WIDTH * 2,
        attention_head_dim=(2, 4, 8),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=TINY_WIDTH + 6 * 8,
        norm_num_groups=32,
    )


def _scheduler(prediction: Literal["eps", "v"], zero_terminal_snr: bool = False):
    from diffusers import EulerDiscreteScheduler

    # a zero-terminal-SNR model samples from its last timestep ("trailing"), as Lin et al. 2023 ask
    return EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon" if prediction == "eps" else "v_prediction",
        timestep_spacing="trailing" if zero_terminal_snr else "leading",
        steps_offset=0 if zero_terminal_snr else 1,
        rescale_betas_zero_snr=zero_terminal_snr,
    )


def build_tiny_pipeline(
    family: Literal["sd1", "sdxl"] = "sd1",
    prediction: Literal["eps", "v"] = "eps",
    seed: int = 0,
    zero_terminal_snr: bool = False,
):
    """A tiny diffusers pipeline with random (seeded) weights; ``zero_terminal_snr`` needs v-prediction."""
    import torch
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from lora_ext import paths

    torch.manual_seed(seed)
    tokenizer_dir = write_tiny_clip_tokenizer(paths.scratch_dir("tiny-tokenizer"))
    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir))
    unet = _tiny_unet(family)
    vae = tiny_vae()
    if family == "sd1":
        return StableDiffusionPipeline(
            vae=vae,
            text_encoder=CLIPTextModel(tiny_clip_config()),
            tokenizer=tokenizer,
            unet=unet,
            scheduler=_scheduler(prediction, zero_terminal_snr),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(tiny_clip_config()),
        text_encoder_2=CLIPTextModelWithProjection(tiny_clip_config(projection_dim=TINY_WIDTH, hidden_act="gelu")),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=_scheduler(prediction, zero_terminal_snr),
        force_zeros_for_empty_prompt=True,
    )


def ensure_demo_model(folder: Path, model: str = "demo") -> Path:
    """Build the demo pipeline ``model`` (a ``DEMO_MODELS`` name) into ``folder`` once (a diffusers folder).

    The pipeline is saved into a temp folder beside ``folder`` and renamed into
    place, so an interrupted build never leaves a half-written model behind.
    """
    if (folder / "model_index.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.with_name(temp_name_for(folder))
    staging.mkdir()  # not mkdtemp: its 0700 would hide the model from another user
    try:
        family, prediction, zero_terminal_snr = DEMO_MODELS[model]
        pipeline = build_tiny_pipeline(family, prediction, zero_terminal_snr=zero_terminal_snr)
        pipeline.save_pretrained(str(staging), safe_serialization=True)
        (staging / "DEMO_MODEL.txt").write_text(
            "Train Tools demo model: tiny, random weights, generated locally. Its images look like noise by design.\n",
            encoding="utf-8",
        )
        if folder.exists():  # an earlier build that never finished (it has no model_index.json)
            shutil.rmtree(folder)
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder
