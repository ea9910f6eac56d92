"""``StableDiffusion``: Forge's SD1 engine over a tiny ldm model's modules, weights made in inference mode.

Forge builds (and moves) its weights under ``torch.inference_mode()``, so they are
inference tensors: an in-place write or ``requires_grad_`` outside inference mode
raises, and ``param._version`` raises even inside it.
"""

import copy

import torch

from backend.diffusion_engine.base import ForgeDiffusionEngine, ForgeObjects


class Predictor(torch.nn.Module):
    def __init__(self, alphas_cumprod):
        super().__init__()
        self.register_buffer("alphas_cumprod", alphas_cumprod)
        self.prediction_type = "epsilon"


class KModel(torch.nn.Module):
    def __init__(self, diffusion_model, predictor):
        super().__init__()
        self.diffusion_model = diffusion_model
        self.predictor = predictor
        self.storage_dtype = self.computation_dtype = torch.float32


class UnetPatcher:
    """Holds the model and the LoRA patches Forge's loader would merge at load time (here: applied online)."""

    def __init__(self, model, lora_patches=None):
        self.model = model
        self.lora_patches = dict(lora_patches or {})

    def clone(self):
        return UnetPatcher(self.model, self.lora_patches)


class CLIP:
    def __init__(self, cond_stage_model):
        self.cond_stage_model = cond_stage_model  # ModuleDict(clip_l=…)
        self.patcher = UnetPatcher(cond_stage_model)


class VAE:
    def __init__(self, first_stage_model, scale_factor):
        self.first_stage_model = first_stage_model
        self.scale_factor = scale_factor


class StableDiffusion(ForgeDiffusionEngine):
    def __init__(self, tiny_ldm_model):
        super().__init__()
        with torch.inference_mode():  # as Forge's loader: every weight is an inference tensor
            source = copy.deepcopy(tiny_ldm_model)
        unet = UnetPatcher(KModel(source.model.diffusion_model, Predictor(source.alphas_cumprod)))
        clip = CLIP(torch.nn.ModuleDict({"clip_l": source.cond_stage_model.wrapped}))
        vae = VAE(source.first_stage_model, source.scale_factor)
        self.forge_objects = ForgeObjects(unet, clip, vae, None)
        self.forge_objects_original = self.forge_objects.shallow_copy()
        self.forge_objects_after_applying_lora = self.forge_objects.shallow_copy()
        self.is_sd1 = True

    def modules_for_tests(self):
        """Every torch module Forge holds for this model (tests compare their tensors)."""
        objects = self.forge_objects_original
        return {"unet": objects.unet.model, "clip": objects.clip.cond_stage_model, "vae": objects.vae.first_stage_model}

    @torch.inference_mode()
    def get_learned_conditioning(self, prompts):
        return self.forge_objects.clip.cond_stage_model["clip_l"](list(prompts))

    @torch.inference_mode()
    def decode_first_stage(self, x):
        return self.forge_objects.vae.first_stage_model.decode(x / self.forge_objects.vae.scale_factor)
