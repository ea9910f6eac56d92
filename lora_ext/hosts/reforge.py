"""reForge (main): our ``<lora:…>`` loader on its A1111 shell; training stays refused.

reForge keeps A1111's ldm model objects, so our exact in-place merge (``NetworkLoader.apply``)
works on ``sd_model.model.diffusion_model`` and the text encoders as on A1111, with two reForge
facts (``docs/hosts.md``, ``docs/loader.md``):

- its built-in Lora is Forge-style: it puts patched clones of ComfyUI ``ModelPatcher``s in
  ``sd_model.forge_objects_after_applying_lora`` (cached by ``current_lora_hash``), and the memory
  manager merges them into the weights when it loads the model, keeping its own backups (one dict
  shared by every clone). Made inert the reForge way: the engine's objects go back to the
  unpatched originals, the hash to "no LoRA", and a merge still in the weights is undone by the
  patcher itself (``unpatch_model``), before we take our backups;
- its weights become inference tensors (made or moved under ``torch.inference_mode()``): the
  patcher writes them inside inference mode and checks them without a version counter
  (``loading/patcher.py``).

Training on reForge is not supported yet (``UnsupportedWebUIHost``).
"""

from __future__ import annotations

import torch

from lora_ext.host import ModelParts
from lora_ext.hosts.a1111_loader import NO_LORA, LoraTakeover, forget_builtin_networks
from lora_ext.hosts.ldm import ldm_parts
from lora_ext.hosts.unsupported import UnsupportedWebUIHost


def make_reforge_builtin_inert(sd_model) -> int:
    """Reset reForge's built-in LoRA state on the model and unpatch what its patchers merged; returns how many
    weights went back to their originals."""
    forget_builtin_networks()
    original = getattr(sd_model, "forge_objects_original", None)
    if original is None:
        return 0
    restored = 0
    for patcher in (original.unet, original.clip.patcher):
        # the backup dict is shared by every clone: the original's unpatch restores what any clone merged
        # (the built-in's patches, or another extension's add_patches: both would sit under our merge)
        if patcher.backup:  # non-empty exactly while a clone's patches are merged into the weights
            restored += len(patcher.backup)
            with torch.inference_mode():  # reForge writes its weights there (they are inference tensors)
                patcher.unpatch_model(unpatch_weights=True)
    # only once the weights are back: an unpatch that fails leaves the state saying what is merged
    sd_model.forge_objects_after_applying_lora = original.shallow_copy()
    sd_model.current_lora_hash = NO_LORA
    return restored


class ReForgeLoraTakeover(LoraTakeover):
    """``LoraTakeover`` with reForge's way of making the built-in inert."""

    def make_builtin_inert(self, sd_model) -> None:
        if make_reforge_builtin_inert(sd_model) and self.loader is not None:
            # reForge may have put other Parameter objects in the modules: look the weights up again
            self.loader.invalidate()


class ReForgeHost(UnsupportedWebUIHost):
    """reForge: the WebUI-generic host, our ``<lora:…>`` loader over its ldm shell, training refused."""

    def __init__(self) -> None:
        super().__init__("reForge")
        self.reason = (
            "training on reForge is not supported yet: its model stack (inference-mode weights, its own "
            "memory manager and patcher) needs its own Train Tools host; the dataset, tagger, tag editor and "
            "<lora:…> work"
        )

    def register_callbacks(self) -> None:
        """Settings, and our loader owning ``<lora:…>`` (setting "LoRA loader", as on A1111)."""
        from lora_ext.hosts.a1111_loader import register_callbacks as register_lora_takeover

        self.lora_takeover = register_lora_takeover(lambda: self, ReForgeLoraTakeover)
        super().register_callbacks()

    def parts(self) -> ModelParts:
        """The ldm shell's UNet and text encoders, for our loader (the trainer never gets here)."""
        return ldm_parts(self.sd_model)
