"""``StableDiffusionXL``: Forge's SDXL engine (``backend/diffusion_engine/sdxl.py``), same layout and signatures.

``get_learned_conditioning`` builds the 6 size/crop numbers from **one** width/height per batch
(``prompt.width``/``.height``, default 1024) and ``opts.sdxl_crop_left/top``, embeds each with
``self.embedder`` (a ``Timestep``) and returns ``{"crossattn": cat(l, g), "vector": cat(pooled, sizes)}``.
"""

import torch

from backend import memory_management
from backend.diffusion_engine.base import ForgeDiffusionEngine, ForgeObjects
from backend.nn.unet import Timestep
from backend.patcher.clip import CLIP
from backend.patcher.unet import UnetPatcher
from backend.patcher.vae import VAE
from backend.text_processing.classic_engine import ClassicTextProcessingEngine


class StableDiffusionXL(ForgeDiffusionEngine):
    def __init__(self, estimated_config, huggingface_components):
        super().__init__(estimated_config, huggingface_components)
        clip = CLIP(
            model_dict={
                "clip_l": huggingface_components["text_encoder"],
                "clip_g": huggingface_components["text_encoder_2"],
            },
            tokenizer_dict={
                "clip_l": huggingface_components["tokenizer"],
                "clip_g": huggingface_components["tokenizer_2"],
            },
        )
        vae = VAE(model=huggingface_components["vae"])
        unet = UnetPatcher.from_model(
            model=huggingface_components["unet"],
            diffusers_scheduler=huggingface_components["scheduler"],
            config=estimated_config,
        )
        self.text_processing_engine_l = ClassicTextProcessingEngine(
            text_encoder=clip.cond_stage_model.clip_l,
            tokenizer=clip.tokenizer.clip_l,
            embedding_key="clip_l",
            text_projection=False,
            minimal_clip_skip=2,
            clip_skip=2,
            return_pooled=False,
            final_layer_norm=False,
        )
        self.text_processing_engine_g = ClassicTextProcessingEngine(
            text_encoder=clip.cond_stage_model.clip_g,
            tokenizer=clip.tokenizer.clip_g,
            embedding_key="clip_g",
            text_projection=True,
            minimal_clip_skip=2,
            clip_skip=2,
            return_pooled=True,
            final_layer_norm=False,
        )
        self.embedder = Timestep(estimated_config.size_embedding_dim)
        self.forge_objects = ForgeObjects(unet=unet, clip=clip, vae=vae, clipvision=None)
        self.forge_objects_original = self.forge_objects.shallow_copy()
        self.forge_objects_after_applying_lora = self.forge_objects.shallow_copy()
        self.is_sdxl = True

    def set_clip_skip(self, clip_skip):
        self.text_processing_engine_l.clip_skip = clip_skip
        self.text_processing_engine_g.clip_skip = clip_skip

    @torch.inference_mode()
    def get_learned_conditioning(self, prompt: list[str]):
        from modules.shared import opts

        memory_management.load_model_gpu(self.forge_objects.clip.patcher)
        cond_l = self.text_processing_engine_l(prompt)
        cond_g, clip_pooled = self.text_processing_engine_g(prompt)
        width = getattr(prompt, "width", 1024) or 1024
        height = getattr(prompt, "height", 1024) or 1024
        crop_w = getattr(opts, "sdxl_crop_left", 0)
        crop_h = getattr(opts, "sdxl_crop_top", 0)
        out = [self.embedder(torch.Tensor([v])) for v in (height, width, crop_h, crop_w, height, width)]
        flat = torch.flatten(torch.cat(out)).unsqueeze(dim=0).repeat(clip_pooled.shape[0], 1).to(clip_pooled)
        return dict(crossattn=torch.cat([cond_l, cond_g], dim=2), vector=torch.cat([clip_pooled, flat], dim=1))

    @torch.inference_mode()
    def encode_first_stage(self, x):
        sample = self.forge_objects.vae.encode(x.movedim(1, -1) * 0.5 + 0.5)
        sample = self.forge_objects.vae.first_stage_model.process_in(sample)
        return sample.to(x)

    @torch.inference_mode()
    def decode_first_stage(self, x):
        sample = self.forge_objects.vae.first_stage_model.process_out(x)
        sample = self.forge_objects.vae.decode(sample).movedim(-1, 1) * 2.0 - 1.0
        return sample.to(x)
