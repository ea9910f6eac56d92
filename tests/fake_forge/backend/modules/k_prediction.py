"""``backend.modules.k_prediction.Prediction``: the discrete schedule as a module with an ``alphas_cumprod`` buffer."""

import torch


class Prediction(torch.nn.Module):
    def __init__(self, sigma_data=1.0, prediction_type="epsilon", alphas_cumprod=None):
        super().__init__()
        assert prediction_type in ["epsilon", "const", "v_prediction", "edm"]
        self.sigma_data = sigma_data
        self.prediction_type = prediction_type
        self.register_buffer("alphas_cumprod", alphas_cumprod.float())
        self.register_buffer("sigmas", ((1 - self.alphas_cumprod) / self.alphas_cumprod) ** 0.5)

    def timestep(self, sigma):
        return (sigma.to(self.sigmas.device)[..., None] - self.sigmas).abs().argmin(dim=-1).view(sigma.shape)


class PredictionFlux(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.prediction_type = "const"
