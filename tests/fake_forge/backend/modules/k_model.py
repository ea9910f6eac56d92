"""``backend.modules.k_model.KModel``: ``diffusion_model`` + ``predictor`` + storage/computation dtypes.

``apply_model(x, t, c_crossattn=…, y=…)`` takes a **sigma** and returns the denoised x0 (k-diffusion),
as Forge's does; a trainer calls ``diffusion_model(x, timesteps, context=…, y=…)`` instead.
"""

import torch


class KModel(torch.nn.Module):
    def __init__(self, model, diffusers_scheduler, k_predictor=None, config=None):
        super().__init__()
        self.config = config
        self.storage_dtype = model.storage_dtype
        self.computation_dtype = model.computation_dtype
        self.diffusion_model = model
        self.predictor = k_predictor if k_predictor is not None else diffusers_scheduler

    def apply_model(self, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={}, **kwargs):  # noqa: B006  (Forge's signature)
        sigma = t
        sigma_ = sigma.view(sigma.shape[:1] + (1,) * (x.ndim - 1))
        xc = (x / (sigma_**2 + 1) ** 0.5).to(self.computation_dtype)
        timesteps = self.predictor.timestep(sigma).float()
        extra = {k: v.to(self.computation_dtype) if v.is_floating_point() else v for k, v in kwargs.items()}
        out = self.diffusion_model(xc, timesteps, context=c_crossattn.to(self.computation_dtype), **extra).float()
        return x - out * sigma_

    def get_dtype(self):
        return self.computation_dtype
