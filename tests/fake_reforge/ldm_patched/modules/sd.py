"""``ldm_patched.modules.sd.CLIP`` (fake): the text encoder and its ``ModelPatcher``."""

from ldm_patched.modules.model_patcher import ModelPatcher


class CLIP:
    def __init__(self, cond_stage_model=None, load_device=None, offload_device=None, no_init=False):
        if no_init:
            return
        self.cond_stage_model = cond_stage_model
        self.patcher = ModelPatcher(cond_stage_model, load_device=load_device, offload_device=offload_device)

    def clone(self):
        n = CLIP(no_init=True)
        n.patcher = self.patcher.clone()
        n.cond_stage_model = self.cond_stage_model
        return n

    def add_patches(self, patches, strength_patch=1.0, strength_model=1.0):
        return self.patcher.add_patches(patches, strength_patch, strength_model)
