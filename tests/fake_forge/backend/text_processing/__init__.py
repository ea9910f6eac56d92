"""Forge's prompt → conditioning engines (``backend/text_processing``)."""
