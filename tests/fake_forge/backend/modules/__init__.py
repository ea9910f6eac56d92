"""Forge's model wrappers (``backend/modules``)."""
