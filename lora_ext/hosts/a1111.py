"""The AUTOMATIC1111 WebUI adapter: the only core-side file that imports ``modules.*``.

Every WebUI import is inside a function, so this file can be imported (and its
pure parts tested) without the WebUI. The model is read from the live
``shared.sd_model`` on every use, because the user can switch checkpoints at
any time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lora_ext.errors import HostUnavailable
from lora_ext.host import GenerationRequest, HostCapabilities
from lora_ext.hosts.ldm import LdmHost, vae_in_fp32

SETTINGS_SECTION = ("train_tools", "Train Tools")


def _webui():
    from modules import devices, paths, sd_unet, shared

    return shared, devices, paths, sd_unet


class A1111Host(LdmHost):
    """The ``Host`` protocol over the WebUI's loaded model, options and sampler."""

    def __init__(self) -> None:
        shared, _, paths, _ = _webui()
        super().__init__(sd_model=None, lora_dir=Path(shared.cmd_opts.lora_dir or Path(paths.models_path) / "Lora"))
        self.lora_takeover = None  # set by scripts/train_tools.py when our loader may own <lora:…>
        self._training = False

    @property
    def sd_model(self):
        shared, *_ = _webui()
        model = shared.sd_model
        if model is None:
            raise HostUnavailable("no checkpoint is loaded in the WebUI", hint="pick one in the checkpoint dropdown")
        return model

    def identity(self) -> tuple[str, str | None, str | None, bool]:
        model = self.sd_model
        info = getattr(model, "sd_checkpoint_info", None)
        name = getattr(info, "name_for_extra", None) or "model"
        return name, getattr(model, "sd_model_hash", None), getattr(info, "hash", None), False

    @property
    def lora_dir(self) -> Path:
        shared, _, paths, _ = _webui()
        return Path(shared.cmd_opts.lora_dir or Path(paths.models_path) / "Lora")

    @property
    def models_dir(self) -> Path:
        _, _, paths, _ = _webui()
        return Path(paths.models_path)

    @property
    def outputs_dir(self) -> Path:
        """``outputs/train_tools`` under the WebUI's data folder."""
        _, _, paths, _ = _webui()
        return Path(paths.data_path) / "outputs" / "train_tools"

    def capabilities(self) -> HostCapabilities:
        shared, devices, _, sd_unet = _webui()
        reasons: list[str] = []
        if getattr(shared.cmd_opts, "lowvram", False):
            reasons.append(
                "the WebUI runs with --lowvram, which moves UNet blocks off the GPU between forward "
                "and backward; restart without --lowvram to train"
            )
        if getattr(devices, "fp8", False):
            reasons.append("FP8 weight storage is enabled (Settings → Optimizations); turn it off to train")
        if getattr(sd_unet, "current_unet", None) is not None:
            reasons.append("an alternate UNet (e.g. TensorRT) is active; set Settings → SD Unet to None to train")
        model = getattr(shared, "sd_model", None)
        if model is None:
            reasons.append("no checkpoint is loaded")
        medvram = getattr(shared.cmd_opts, "medvram", False) or (
            getattr(shared.cmd_opts, "medvram_sdxl", False) and getattr(model, "is_sdxl", False)
        )
        capabilities = HostCapabilities(can_train=not reasons, can_generate=model is not None, reasons=reasons)
        if medvram:
            capabilities.can_train_text_encoder = False
            capabilities.reasons.append("--medvram: the text encoder cannot be trained (UNet-only training works)")
        return capabilities

    def setting(self, key: str, default: Any = None) -> Any:
        """A value from the WebUI's Settings (its default when unset), read on each use."""
        shared, *_ = _webui()
        return getattr(shared.opts, key, default)

    @contextlib.contextmanager
    def training_session(self, config) -> Iterator[None]:
        """Everything the WebUI needs around a training run (``train_lora`` wraps the run in it).

        - holds ``call_queue.queue_lock`` (generation and checkpoint switches wait; previews
          call ``process_images`` directly, since the lock is not re-entrant);
        - makes the built-in Lora and our own loader restore every merged LoRA first, so
          the run sees the clean checkpoint and nothing ``copy_``s into weights mid-graph;
        - previews run with extra networks disabled and the checkpoint pinned;
        - the VAE runs in fp32 when ``config.vae_fp32`` (cast back exactly afterwards);
        - SDXL text encoders get ``is_trainable`` while the TE is trained (sgm runs
          untrainable embedders under ``no_grad``);
        - the WebUI's Interrupt button stops the run after the current step;
        - afterwards the cached prompt conditioning is dropped if the TE was trained.
        """
        from modules import call_queue, processing

        shared, *_ = _webui()
        capabilities = self.capabilities()
        if not capabilities.can_train:
            raise HostUnavailable("the WebUI cannot train right now: " + "; ".join(capabilities.reasons))
        with call_queue.queue_lock:
            shared.state.begin(job="train_tools: training")
            model = self.sd_model
            self._restore_merged_loras(model)
            trainable = self._sdxl_embedders(model) if getattr(config, "train_text_encoder", False) else []
            previous = [getattr(embedder, "is_trainable", False) for embedder in trainable]
            self._training = True
            try:
                for embedder in trainable:
                    embedder.is_trainable = True
                with vae_in_fp32(model.first_stage_model, getattr(config, "vae_fp32", False)):
                    yield
            finally:
                self._training = False
                for embedder, flag in zip(trainable, previous, strict=True):
                    embedder.is_trainable = flag
                if getattr(config, "train_text_encoder", False):
                    processing.StableDiffusionProcessing.cached_c = [None, None]
                    processing.StableDiffusionProcessing.cached_uc = [None, None]
                shared.state.end()

    def report_progress(self, step: int, total: int, text: str) -> None:
        """Mirror training progress into ``shared.state`` (the WebUI's progress API and console)."""
        shared, *_ = _webui()
        WebUIJob(shared.state).progress(step, total, text)

    def interrupted(self) -> bool:
        """Whether the WebUI's Interrupt button was pressed during the current job."""
        shared, *_ = _webui()
        return WebUIJob(shared.state).interrupted()

    def _restore_merged_loras(self, model) -> None:
        from lora_ext.hosts.a1111_loader import make_builtin_inert

        if self.lora_takeover is not None:
            self.lora_takeover.restore()
        make_builtin_inert(model)

    @staticmethod
    def _sdxl_embedders(model) -> list:
        conditioner = getattr(model, "conditioner", None)
        return list(getattr(conditioner, "embedders", []))[:2] if conditioner is not None else []

    @contextlib.contextmanager
    def exclusive(self, job: str) -> Iterator[WebUIJob]:
        """Hold the WebUI's queue lock and ``shared.state`` for a UI job (test generations):

        generation and checkpoint switches wait for it, the progress shows in the
        WebUI's own progress API, and the Interrupt button stops it.
        """
        from modules import call_queue

        shared, *_ = _webui()
        with call_queue.queue_lock:
            shared.state.begin(job=f"train_tools: {job}")
            try:
                yield WebUIJob(shared.state)
            finally:
                shared.state.end()

    def generate(self, request: GenerationRequest) -> list:
        """Images from the WebUI's own pipeline; ``<lora:…>`` is handled by whichever loader owns it.

        The caller must already hold the queue lock (it is not re-entrant).
        """
        from modules import processing

        shared, *_ = _webui()
        model = self.sd_model
        info = getattr(model, "sd_checkpoint_info", None)
        override = {"sd_model_checkpoint": info.title} if info is not None and getattr(info, "title", None) else {}
        p = processing.StableDiffusionProcessingTxt2Img(
            sd_model=model,
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            seed=request.seed,
            steps=request.steps,
            cfg_scale=request.cfg_scale,
            width=request.width,
            height=request.height,
            batch_size=request.batch_size,
            do_not_save_grid=True,
            do_not_save_samples=True,
            override_settings=override,
        )
        # While training, previews show the network being trained (live through hooks),
        # not whatever <lora:…> tokens would merge into the weights under autograd.
        p.disable_extra_networks = self._training
        with p:
            processed = processing.process_images(p)
        if processed.images:
            shared.state.assign_current_image(processed.images[0])
        return list(processed.images)


class WebUIJob:
    """What a UI job sees of ``shared.state`` while it holds the queue lock."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def interrupted(self) -> bool:
        return bool(self.state.interrupted)

    def progress(self, done: int, total: int, text: str) -> None:
        self.state.job_count = total
        self.state.job_no = done
        self.state.textinfo = text


LORA_LOADER_CHOICES = ("Train Tools", "Built-in")


def register_settings() -> None:
    """The Train Tools section of the WebUI's Settings (``on_ui_settings``)."""
    from modules import shared

    def add(key: str, default, label: str, component=None, component_args=None, info: str | None = None) -> None:
        option = shared.OptionInfo(default, label, component, component_args, section=SETTINGS_SECTION)
        shared.opts.add_option(key, option.info(info) if info else option)

    import gradio as gr

    add(
        "train_tools_lora_loader",
        LORA_LOADER_CHOICES[0],
        "LoRA loader for <lora:…> prompts",
        gr.Radio,
        {"choices": list(LORA_LOADER_CHOICES)},
        info="Train Tools: more formats, block weights, exact fast switching; Built-in: the WebUI's own Lora",
    )
    add("train_tools_tagger_dir", "", "Tagger model folder (empty: models/wd14_tagger)")
    add("train_tools_default_preset", "auto", "Default training preset ('auto' picks by model family)")
    add("train_tools_gradient_checkpointing", True, "Gradient checkpointing while training (less VRAM, ~20% slower)")
    add("train_tools_cache_latents_to_disk", True, "Cache training latents on disk")
    add(
        "train_tools_keep_lora_backups",
        True,
        "Keep original weights after a LoRA is removed",
        info="the next LoRA applies without copying them again (as the built-in Lora does); off: less RAM",
    )
    add(
        "train_tools_lora_cache_size",
        4,
        "LoRA files kept parsed in memory",
        gr.Slider,
        {"minimum": 0, "maximum": 32, "step": 1},
    )
