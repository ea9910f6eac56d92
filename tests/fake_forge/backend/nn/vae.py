"""``backend.nn.vae.DiagonalGaussianDistribution``: the VAE posterior (mean, logvar clamped to [-30, 20], std),
the same maths as ldm's class, which the fake uses."""

from ldm.modules.distributions.distributions import DiagonalGaussianDistribution  # noqa: F401
