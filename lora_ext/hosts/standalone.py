"""The standalone host: a diffusers pipeline (a diffusers folder, a single-file checkpoint or the demo).

Module names are diffusers' own (``down_blocks.0.attentions.0…``,
``text_model.encoder.layers.N…``); SD2 and SDXL text encoders are HF CLIP here,
because diffusers converts OpenCLIP weights to the CLIP layout.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from lora_ext import paths
from lora_ext.demo import DEMO_MODELS
from lora_ext.errors import ModelLoadError
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
from lora_ext.hosts.ldm import strip_extra_networks, vae_in_fp32
from lora_ext.noise_schedule import is_zero_terminal, read_checkpoint_flags

# The hub repositories whose config files diffusers needs to build a pipeline
# around a single-file checkpoint; offline, these must be in a local folder.
CONFIG_REPOS: dict[Family, str] = {
    "sd1": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sd2": "stabilityai/stable-diffusion-2-1",
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
}
CONFIG_FILES = (
    "model_index.json",
    "scheduler/scheduler_config.json",
    "unet/config.json",
    "vae/config.json",
    "text_encoder/config.json",
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
)


def family_from_checkpoint_keys(keys: Sequence[str]) -> Family:
    """Tell SD1/SD2/SDXL from a single-file checkpoint's key names, as A1111 does."""
    if any(key.startswith("conditioner.embedders.1.") for key in keys):
        return "sdxl"
    if any(key.startswith("cond_stage_model.model.") for key in keys):
        return "sd2"
    return "sd1"


def scheduler_flags(scheduler) -> tuple[bool, bool]:
    """(v-prediction, zero terminal SNR) of a diffusers scheduler: its ``prediction_type`` and
    ``rescale_betas_zero_snr``, or a schedule that already ends at zero SNR."""
    config = scheduler.config
    v_prediction = config.get("prediction_type") == "v_prediction"
    alphas = getattr(scheduler, "alphas_cumprod", None)
    return v_prediction, v_prediction and (bool(config.get("rescale_betas_zero_snr")) or is_zero_terminal(alphas))


def with_checkpoint_flags(pipeline, v_prediction: bool, zero_terminal: bool):
    """The pipeline with its scheduler set to what a single file's ``v_pred`` / ``ztsnr`` keys say
    (diffusers' single-file loader builds an ε scheduler from the family's config), as Forge Neo reads them."""
    if not v_prediction:
        return pipeline
    pipeline.scheduler = type(pipeline.scheduler).from_config(
        pipeline.scheduler.config, prediction_type="v_prediction", rescale_betas_zero_snr=zero_terminal
    )
    return pipeline


def _pipeline_family(pipeline) -> Family:
    if hasattr(pipeline, "text_encoder_2"):
        return "sdxl"
    return "sd2" if pipeline.unet.config.cross_attention_dim == 1024 else "sd1"


def load_pipeline(model: str, config_dir: Path | None = None, dtype: torch.dtype | None = None):
    """A diffusers pipeline for a demo model (``demo``, ``demo-vpred``), a diffusers folder, or a single file."""
    from diffusers import DiffusionPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline

    dtype = dtype or torch.float32
    if model in DEMO_MODELS:
        folder = _ensure_demo(model)
        return DiffusionPipeline.from_pretrained(
            str(folder), torch_dtype=dtype, safety_checker=None, use_safetensors=True
        )
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelLoadError(f"{path} is not a diffusers model folder (it has no model_index.json)")
        try:
            return DiffusionPipeline.from_pretrained(
                str(path), torch_dtype=dtype, local_files_only=True, use_safetensors=True
            )
        except (OSError, ValueError) as error:
            raise ModelLoadError(f"could not load the diffusers folder {path}: {error}") from error
    if not path.is_file():
        raise ModelLoadError(
            f"model not found: {path}",
            hint="give a diffusers folder, a .safetensors checkpoint, 'demo' or 'demo-vpred'",
        )
    family = _checkpoint_family(path)
    pipeline_class = StableDiffusionXLPipeline if family == "sdxl" else StableDiffusionPipeline
    config = str(config_dir) if config_dir else CONFIG_REPOS[family]
    try:
        pipeline = pipeline_class.from_single_file(
            str(path), config=config, torch_dtype=dtype, local_files_only=config_dir is not None
        )
        return with_checkpoint_flags(pipeline, *read_checkpoint_flags(str(path)))
    except (OSError, ValueError) as error:
        where = config_dir or "a local folder passed as --config-dir"
        raise ModelLoadError(
            f"could not build a {family} pipeline around {path.name}: the config files of {CONFIG_REPOS[family]} "
            f"({', '.join(CONFIG_FILES)}) are not available offline",
            hint=f"download them once from the hub repo {CONFIG_REPOS[family]} into {where}",
        ) from error


def _checkpoint_family(path: Path) -> Family:
    from safetensors import safe_open

    if path.suffix.lower() != ".safetensors":
        raise ModelLoadError(
            f"{path.name}: only .safetensors checkpoints are loaded (pickled .ckpt files can run code)"
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
            return family_from_checkpoint_keys(list(handle.keys()))
    except Exception as error:  # noqa: BLE001 - safetensors raises its own untyped errors for bad files
        raise ModelLoadError(f"{path.name} is not a readable .safetensors file ({error})") from error


def _ensure_demo(model: str) -> Path:
    from lora_ext.demo import ensure_demo_model

    return ensure_demo_model(paths.demo_model_dir(model), model)


class StandaloneHost(Host):
    """A ``Host`` over a diffusers SD1/SD2/SDXL pipeline."""

    def __init__(
        self, pipeline, name: str, lora_dir: Path, is_demo: bool = False, prompt_hook: PromptHook | None = None
    ) -> None:
        self.pipeline = pipeline
        self.set_prompt_hook(prompt_hook)
        self._lora_dir = Path(lora_dir)
        v_prediction, zero_terminal = scheduler_flags(pipeline.scheduler)
        self._info = ModelInfo(
            name=name,
            family=_pipeline_family(pipeline),
            prediction="v" if v_prediction else "eps",
            naming="diffusers",
            is_demo=is_demo,
            zero_terminal_snr=zero_terminal,
        )

    @classmethod
    def load(
        cls, model: str, lora_dir: Path | None = None, config_dir: Path | None = None, device: str | None = None
    ) -> StandaloneHost:
        """Load ``model`` ('demo', a diffusers folder or a single file) on ``device``."""
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.float16 if device.startswith("cuda") else torch.float32
        pipeline = load_pipeline(model, config_dir, dtype).to(device)
        pipeline.set_progress_bar_config(disable=True)
        is_demo = model in DEMO_MODELS
        name = model if is_demo else Path(model).stem
        return cls(pipeline, name, lora_dir or paths.lora_dir(), is_demo=is_demo)

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def device(self) -> torch.device:
        elsewhere = self._seen_elsewhere()
        return elsewhere[0] if elsewhere else self.pipeline.unet.device

    @property
    def dtype(self) -> torch.dtype:
        elsewhere = self._seen_elsewhere()
        return elsewhere[1] if elsewhere else self.pipeline.unet.dtype

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self.pipeline.scheduler.alphas_cumprod.detach().to("cpu", torch.float32)

    @property
    def lora_dir(self) -> Path:
        return self._lora_dir

    def parts(self) -> ModelParts:
        encoders = [TextEncoderPart(0, "hf_clip", self.pipeline.text_encoder)]
        if self._info.family == "sdxl":
            encoders.append(TextEncoderPart(1, "hf_clip", self.pipeline.text_encoder_2))
        return ModelParts(unet=self.pipeline.unet, text_encoders=tuple(encoders), naming="diffusers")

    def tokenizer(self) -> object | None:
        return self.pipeline.tokenizer

    @contextlib.contextmanager
    def training_session(self, config) -> Iterator[None]:
        """Train on the clean model (our LoRAs restored first) with the VAE in fp32 when asked."""
        self.restore_prompt_networks()
        with vae_in_fp32(self.pipeline.vae, config.vae_fp32):
            yield

    def encode_images(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        vae = self.pipeline.vae
        posterior = vae.encode(pixels.to(self.device, vae.dtype)).latent_dist
        return (posterior.sample(generator=generator) * vae.config.scaling_factor).float()

    def _tokens(self, tokenizer, prompts: Sequence[str]) -> torch.Tensor:
        batch = tokenizer(
            list(prompts),
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        return batch.input_ids.to(self.device)

    def encode_prompts(self, prompts: Sequence[str], sizes: Sequence[SizeCondition] | None = None) -> Conditioning:
        pipe = self.pipeline
        if self._info.family != "sdxl":
            return Conditioning(pipe.text_encoder(self._tokens(pipe.tokenizer, prompts))[0])
        first = pipe.text_encoder(self._tokens(pipe.tokenizer, prompts), output_hidden_states=True)
        second = pipe.text_encoder_2(self._tokens(pipe.tokenizer_2, prompts), output_hidden_states=True)
        crossattn = torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1)
        if sizes is None:
            sizes = [SizeCondition((1024, 1024), (0, 0), (1024, 1024))] * len(prompts)
        time_ids = torch.tensor(
            [[*s.original_size, *s.crop_top_left, *s.target_size] for s in sizes],
            device=self.device,
            dtype=crossattn.dtype,
        )
        return Conditioning(crossattn, torch.cat([second.text_embeds, time_ids], dim=-1))

    def predict(self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, conditioning: Conditioning) -> torch.Tensor:
        cond = conditioning.to(self.device, self.dtype)
        extra = None
        if cond.vector is not None:
            extra = {"text_embeds": cond.vector[:, :-6], "time_ids": cond.vector[:, -6:]}
        return self.pipeline.unet(
            noisy_latents.to(self.device, self.dtype),
            timesteps.to(self.device),
            encoder_hidden_states=cond.crossattn,
            added_cond_kwargs=extra,
        ).sample

    @torch.no_grad()
    def generate(self, request: GenerationRequest) -> list:
        prompt = self.apply_prompt_hook(request.prompt)
        generator = torch.Generator("cpu").manual_seed(request.seed)
        extra = {}
        if request.on_step is not None:
            report = request.on_step

            def on_step_end(_pipeline, index: int, _timestep, tensors: dict) -> dict:
                report(index + 1, request.steps)
                return tensors

            extra["callback_on_step_end"] = on_step_end
        result = self.pipeline(
            prompt=strip_extra_networks(prompt),
            negative_prompt=strip_extra_networks(request.negative_prompt) or None,
            num_inference_steps=request.steps,
            guidance_scale=request.cfg_scale,
            width=request.width,
            height=request.height,
            num_images_per_prompt=request.batch_size,
            generator=generator,
            **extra,
        )
        return list(result.images)
