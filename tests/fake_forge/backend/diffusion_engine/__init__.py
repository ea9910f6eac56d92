"""Forge2's diffusion engines."""
