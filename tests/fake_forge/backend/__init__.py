"""Forge2's model stack (replaces the ldm/sgm objects of A1111)."""
