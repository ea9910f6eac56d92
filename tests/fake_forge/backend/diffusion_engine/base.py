"""``ForgeObjects`` and ``ForgeDiffusionEngine`` with Forge main's attribute layout (not its code)."""


class ForgeObjects:
    def __init__(self, unet, clip, vae, clipvision):
        self.unet = unet
        self.clip = clip
        self.vae = vae
        self.clipvision = clipvision

    def shallow_copy(self):
        return ForgeObjects(self.unet, self.clip, self.vae, self.clipvision)


class ForgeDiffusionEngine:
    """Not an ``nn.Module``: no ``.modules()``, no ``.model``, no ``apply_model``/``alphas_cumprod``."""

    def __init__(self):
        self.forge_objects = None
        self.forge_objects_original = None
        self.forge_objects_after_applying_lora = None
        self.current_lora_hash = str([])
        # fix_for_webui_backward_compatibility()
        self.tiling_enabled = False
        self.first_stage_model = None
        self.cond_stage_model = None
        self.is_sd1 = self.is_sd2 = self.is_sdxl = self.is_sd3 = False

    def get_first_stage_encoding(self, x):
        return x

    def is_webui_legacy_model(self):
        return self.is_sd1 or self.is_sd2 or self.is_sdxl or self.is_sd3
