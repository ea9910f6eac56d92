"""The AUTOMATIC1111 WebUI adapter: the ldm model surface over the WebUI-generic half.

Every WebUI import is inside a function, so this file can be imported (and its
pure parts tested) without the WebUI. The model is read from the live
``shared.sd_model`` on every use, because the user can switch checkpoints at
any time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator

from lora_ext.host import HostCapabilities, ModelInfo, training_capabilities
from lora_ext.hosts.ldm import LdmHost, vae_in_fp32
from lora_ext.hosts.webui import (  # noqa: F401  (re-exported: the A1111 names of the generic parts)
    LORA_LOADER_CHOICES,
    SETTINGS_SECTION,
    WebUIHostBase,
    WebUIJob,
    _webui,
    register_settings,
)
from lora_ext.noise_schedule import read_checkpoint_flags

# A1111's Settings → Sampler parameters → "Noise schedule for sampling" value for ZTSNR models
ZERO_TERMINAL_SCHEDULE = "Zero Terminal SNR"


class A1111Host(WebUIHostBase, LdmHost):
    """The ``Host`` protocol over the WebUI's loaded model, options and sampler."""

    def __init__(self) -> None:
        WebUIHostBase.__init__(self)
        LdmHost.__init__(self, sd_model=None, lora_dir=self.lora_dir)
        self._checkpoint_flags: dict[tuple, tuple[bool, bool]] = {}  # (file, size, mtime) → its v_pred/ztsnr keys

    @property
    def info(self) -> ModelInfo:
        """The ldm model's own flags, plus what A1111 1.10 does not read itself: the checkpoint's ``v_pred`` /
        ``ztsnr`` keys, and the "Zero Terminal SNR" noise schedule chosen in Settings for a v-prediction model."""
        info = LdmHost.info.fget(self)
        v_key, ztsnr_key = self._file_flags()
        v_prediction = info.prediction == "v" or v_key
        zero_terminal = v_prediction and (
            info.zero_terminal_snr or ztsnr_key or self.setting("sd_noise_schedule") == ZERO_TERMINAL_SCHEDULE
        )
        return dataclasses.replace(info, prediction="v" if v_prediction else "eps", zero_terminal_snr=zero_terminal)

    def _file_flags(self) -> tuple[bool, bool]:
        """The loaded checkpoint file's ``v_pred`` / ``ztsnr`` keys (its header read once per file version)."""
        filename = getattr(getattr(self.sd_model, "sd_checkpoint_info", None), "filename", None)
        try:
            stat = os.stat(filename) if filename else None
        except OSError:
            return False, False
        if stat is None:
            return False, False
        key = (filename, stat.st_size, stat.st_mtime_ns)
        if key not in self._checkpoint_flags:
            self._checkpoint_flags[key] = read_checkpoint_flags(filename)
        return self._checkpoint_flags[key]

    def register_callbacks(self) -> None:
        """Settings, and our loader taking over ``<lora:…>`` (setting "LoRA loader")."""
        from lora_ext.hosts.a1111_loader import register_callbacks as register_lora_takeover

        # training restores the takeover's patches through the host
        self.lora_takeover = register_lora_takeover(lambda: self)
        super().register_callbacks()

    def capabilities(self) -> HostCapabilities:
        """``training_capabilities`` over the WebUI's flags: memory modes, fp8 storage, an alternate UNet."""
        shared, devices, _, sd_unet = _webui()
        model = getattr(shared, "sd_model", None)
        alternate = getattr(sd_unet, "current_unet", None)
        return training_capabilities(
            lowvram=bool(getattr(shared.cmd_opts, "lowvram", False)),
            medvram=bool(
                getattr(shared.cmd_opts, "medvram", False)
                or (getattr(shared.cmd_opts, "medvram_sdxl", False) and getattr(model, "is_sdxl", False))
            ),
            fp8_weights=bool(getattr(devices, "fp8", False)),
            alternate_unet=None if alternate is None else type(alternate).__name__,
            model_loaded=model is not None,
        )

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

        with self.training_turn("the WebUI"):
            model = self.sd_model
            self._restore_merged_loras(model)
            trainable = self._sdxl_embedders(model) if config.trains_text_encoder else []
            previous = [getattr(embedder, "is_trainable", False) for embedder in trainable]
            self._training = True
            try:
                for embedder in trainable:
                    embedder.is_trainable = True
                with vae_in_fp32(model.first_stage_model, config.vae_fp32):
                    yield
            finally:
                self._training = False
                for embedder, flag in zip(trainable, previous, strict=True):
                    embedder.is_trainable = flag
                if config.trains_text_encoder:
                    self.drop_cached_conditioning()

    def restore_prompt_networks(self) -> None:
        """Put back every weight a ``<lora:…>`` merged, ours and the built-in's (after a grid, say)."""
        self._restore_merged_loras(self.sd_model)

    def _restore_merged_loras(self, model) -> None:
        from lora_ext.hosts.a1111_loader import make_builtin_inert

        if self.lora_takeover is not None:
            self.lora_takeover.restore()
        make_builtin_inert(model)

    @staticmethod
    def _sdxl_embedders(model) -> list:
        conditioner = getattr(model, "conditioner", None)
        return list(getattr(conditioner, "embedders", []))[:2] if conditioner is not None else []
