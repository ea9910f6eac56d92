"""Forge's own package (its presence is what tells Forge and reForge from A1111)."""
