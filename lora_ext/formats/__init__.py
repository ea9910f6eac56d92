"""LoRA-family formats: one module per algorithm, one ordered registry.

``FORMATS`` is checked in order and the first class whose ``from_state_dict``
accepts a module's tensors wins. Most specific first: LoRA's up/down pair is the
commonest; (IA)³ needs ``on_input`` beside a bare ``weight``; full ``diff`` and
``w_norm`` come last because trainers may add them next to other types. DoRA is
not in the list: it wraps whichever adapter it decorates (``dora.DoraAdapter.wrap``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from lora_ext.errors import UnsupportedLoraFormat
from lora_ext.formats.base import Adapter
from lora_ext.formats.dora import DoraAdapter
from lora_ext.formats.full import FullAdapter
from lora_ext.formats.glora import GloraAdapter
from lora_ext.formats.ia3 import Ia3Adapter
from lora_ext.formats.loha import LohaAdapter
from lora_ext.formats.lokr import LokrAdapter
from lora_ext.formats.lora import LoraAdapter
from lora_ext.formats.norm import NormAdapter
from lora_ext.formats.oft import OftAdapter

FORMATS: tuple[type[Adapter], ...] = (
    LoraAdapter,
    LohaAdapter,
    LokrAdapter,
    GloraAdapter,
    OftAdapter,
    Ia3Adapter,
    FullAdapter,
    NormAdapter,
)


def parse_module(tensors: Mapping[str, torch.Tensor]) -> Adapter | None:
    """The first registered format that accepts one module's canonical tensors (DoRA-wrapped if needed)."""
    for format_class in FORMATS:
        adapter = format_class.from_state_dict(tensors)
        if adapter is not None:
            return DoraAdapter.wrap(adapter, tensors)
    return None


def unsupported_error(samples: list[str]) -> UnsupportedLoraFormat:
    tried = ", ".join(cls.name for cls in FORMATS)
    return UnsupportedLoraFormat(
        f"no LoRA format accepts these tensors (tried {tried}); sample keys: {', '.join(samples[:5])}",
        hint="the file may be a full checkpoint, an embedding, or a format this version does not know",
    )


__all__ = ["FORMATS", "Adapter", "parse_module", "unsupported_error"]
