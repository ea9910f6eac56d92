"""Forge's model patchers (``backend/patcher``)."""
