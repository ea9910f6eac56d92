"""Japanese labels: visible English text → Japanese (the WebUI localisation convention)."""

from __future__ import annotations

JA: dict[str, str] = {}
