"""``Flux``: one of Forge's non-SD engines (no ``is_sd*`` flag; ``is_webui_legacy_model()`` is False)."""

from backend.diffusion_engine.base import ForgeDiffusionEngine, ForgeObjects


class Flux(ForgeDiffusionEngine):
    def __init__(self, estimated_config, huggingface_components):
        super().__init__(estimated_config, huggingface_components)
        self.forge_objects = ForgeObjects(unet=huggingface_components["unet"], clip=None, vae=None, clipvision=None)
        self.forge_objects_original = self.forge_objects.shallow_copy()
        self.forge_objects_after_applying_lora = self.forge_objects.shallow_copy()
        self.use_distilled_cfg_scale = True
