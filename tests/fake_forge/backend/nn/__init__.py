"""Forge's own network modules (``backend/nn``)."""
