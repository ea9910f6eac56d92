"""A host for a WebUI whose model stack Train Tools cannot train on yet (reForge: ``hosts/reforge.py``).

It keeps what is WebUI-generic (``WebUIHostBase``: folders, Settings, queue lock,
progress, generation through the WebUI's own pipeline), answers ``capabilities()`` with
``can_train: false`` and one reason, and refuses every model call a trainer makes. On
reForge the weights are inference tensors and its ComfyUI patcher keeps its own backups and
partial (low-VRAM) loading (``docs/hosts.md``); training there needs its
own host. The dataset, tagger and tag editor need none of it. (Forge has its own host,
``hosts/forge.py``.)
"""

from __future__ import annotations

from collections.abc import Sequence

from lora_ext.errors import HostUnavailable
from lora_ext.host import Conditioning, HostCapabilities, ModelInfo, ModelParts, SizeCondition, training_capabilities
from lora_ext.hosts.ldm import ldm_model_info
from lora_ext.hosts.webui import WebUIHostBase, _webui, is_placeholder

NOT_LOADED = "no checkpoint loaded yet"


class UnsupportedWebUIHost(WebUIHostBase):
    """The WebUI-generic host parts with training refused, for a WebUI we do not support yet."""

    def __init__(self, webui_label: str) -> None:
        super().__init__()
        self.webui_label = webui_label
        self.reason = (
            f"training on {webui_label} is not supported yet: its model stack (inference-mode weights, its own "
            "LoRA patcher) needs its own Train Tools host; the dataset, tagger and tag editor work"
        )

    def _refuse(self) -> HostUnavailable:
        return HostUnavailable(self.reason)

    @property
    def info(self) -> ModelInfo:
        """What the WebUI says about its checkpoint (flags and names only; nothing of the model is run)."""
        shared, *_ = _webui()
        model = shared.sd_model
        if model is None or is_placeholder(model):
            return ModelInfo(name=NOT_LOADED, family="sd1", prediction="eps", naming="ldm")
        return ldm_model_info(model, self.identity())

    def capabilities(self) -> HostCapabilities:
        return training_capabilities(refused=self.reason)

    # -- the model calls a trainer would make: all refused ---------------------------------------
    @property
    def device(self):
        raise self._refuse()

    @property
    def dtype(self):
        raise self._refuse()

    @property
    def alphas_cumprod(self):
        raise self._refuse()

    def parts(self) -> ModelParts:
        raise self._refuse()

    def encode_images(self, pixels):
        raise self._refuse()

    def encode_prompts(self, prompts: Sequence[str], sizes: Sequence[SizeCondition] | None = None) -> Conditioning:
        raise self._refuse()

    def predict(self, noisy_latents, timesteps, conditioning: Conditioning):
        raise self._refuse()

    def training_session(self, config):
        raise self._refuse()
