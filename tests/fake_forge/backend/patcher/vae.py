"""``VAE`` (``backend/patcher/vae.py``): ``first_stage_model`` with ``process_in``/``process_out`` and its patcher."""

import torch

from backend import memory_management
from backend.patcher.base import ModelPatcher


class VAE:
    def __init__(self, model=None, no_init=False):
        if no_init:
            return
        device = memory_management.get_torch_device()
        self.first_stage_model = model.eval()
        self.patcher = ModelPatcher(self.first_stage_model, load_device=device, offload_device=device)

    @torch.inference_mode()
    def encode(self, pixel_samples):
        """(B, H, W, 3) in [0, 1] → unscaled latents (a posterior sample; Forge's draws from the global generator)."""
        memory_management.load_model_gpu(self.patcher)
        x = pixel_samples.movedim(-1, 1) * 2.0 - 1.0
        return self.first_stage_model.encode(x).float()

    @torch.inference_mode()
    def decode(self, samples_in):
        memory_management.load_model_gpu(self.patcher)
        return ((self.first_stage_model.decode(samples_in) + 1.0) / 2.0).clamp(0, 1).movedim(1, -1)
