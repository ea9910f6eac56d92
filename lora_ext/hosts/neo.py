"""Forge Neo (Haoming02/sd-webui-forge-classic, branch ``neo``): the Forge host and takeover with Neo's differences.

Neo continues Forge 2 (``backend``, ``forge_objects``, lazy loading, the same UNet with in-place residuals, the same
``JointTextEncoder``), so ``NeoHost`` and ``NeoLoraTakeover`` are Forge's with what Neo changed
(``docs/hosts.md``; checked in the real Neo by ``tests/contracts/neo.py``):

- Neo's ``ModelPatcher`` is ComfyUI's: there is no ``LoraLoader``; the originals of merged weights are in the
  patcher's ``backup`` dict, shared by every clone, as ``(weight, inplace_update)``; an online LoRA is a
  ``weight_function`` (``bias_function``) list on its layer;
- its ``merge_lora_to_weight`` takes ComfyUI weight-adapter objects (``LoRAAdapter``, ``LoHaAdapter``,
  ``LoKrAdapter``), ``diff`` and ``set`` — a Forge ``("lora", …)`` tuple fails the whole generation;
- its memory manager is ComfyUI's: a partly loaded model has ``model_offloaded_memory() > 0``;
- online mode is asked for in any storage (``dynamic_args.online_lora``);
- engines we do not handle (Flux, Flux.2, Chroma, Qwen-Image, Z-Image, Anima, Wan, Lumina…) and quantised storage
  stay with Neo's built-in LoRA, as on Forge.
"""

from __future__ import annotations

import torch

from lora_ext.hosts.forge import ForgeHost, _memory_patchers, sources_below
from lora_ext.hosts.forge_engine import forge_family
from lora_ext.hosts.forge_loader import ForgeLoraTakeover, forge_patch
from lora_ext.loading.patcher import ParamPatch

# Neo's adapter classes by Forge's patch type: the weights tuples are laid out the same (ComfyUI's order)
ADAPTER_CLASSES = {"lora": "LoRAAdapter", "loha": "LoHaAdapter", "lokr": "LoKrAdapter"}


class NeoHost(ForgeHost):
    """``ForgeHost`` over Neo's ComfyUI-style patcher and memory manager."""

    label = "Forge Neo"
    ONLINE_ATTRIBUTES = ("weight_function", "bias_function")

    def register_callbacks(self) -> None:
        """Settings, and our loader owning ``<lora:…>`` through Neo's patcher."""
        from lora_ext.hosts.a1111_loader import register_callbacks as register_lora_takeover

        self.lora_takeover = register_lora_takeover(lambda: self, NeoLoraTakeover)
        super(ForgeHost, self).register_callbacks()

    @staticmethod
    def _swapped(entry) -> bool:
        return entry.model_offloaded_memory() > 0

    @staticmethod
    def _merged_sources(engine, roots: list[torch.nn.Module]) -> dict[int, dict[str, torch.Tensor]]:
        """Per root, the originals of weights a Neo LoRA merged (the patcher's ``backup``, keyed below its model)."""
        backups = [
            (patcher.model, {key: saved.weight for key, saved in patcher.backup.items()})
            for patcher in _memory_patchers(engine)
        ]
        return sources_below(roots, backups)


class NeoLoraTakeover(ForgeLoraTakeover):
    """``ForgeLoraTakeover`` handing Neo its own weight-adapter objects."""

    def handles(self, sd_model) -> bool:
        """SD1 / SDXL engines whose UNet is stored as a torch dtype; every other engine and quantised storage
        (nf4, GGUF, int8, SVDQuant…) stay with Neo's built-in."""
        if forge_family(sd_model) is None:
            return False
        return isinstance(sd_model.forge_objects.unet.model.storage_dtype, torch.dtype)

    def patch_value(self, patches: list[ParamPatch], shape: tuple[int, ...], base: torch.Tensor | None):
        kind, values = forge_patch(patches, shape, base)
        if kind == "diff":
            return (kind, values)
        from backend.patcher.lora import weight_adapter

        if kind == "lora":
            values = (*values, None)  # LoRAAdapter's weights end with a reshape, which we never need
        return getattr(weight_adapter, ADAPTER_CLASSES[kind])(set(), values)

    @staticmethod
    def online_mode(sd_model) -> bool:
        """Neo's rule: online ("on the fly") whenever its setting asks for it."""
        from backend.args import dynamic_args

        return bool(dynamic_args.get("online_lora", False))

    @staticmethod
    def base_weight(patcher, key: str) -> torch.Tensor:
        """The unpatched weight: the original Neo's patchers keep in ``backup`` (one dict for every clone) while a
        LoRA is merged, else the weight itself."""
        saved = patcher.backup.get(key)
        if saved is not None:
            return saved.weight
        from backend import utils

        return utils.get_attr(patcher.model, key)
