"""Which WebUI we run in, read once at start-up from what the WebUI itself exposes, and its host.

- **Forge** (main, "Forge2") ships ``modules_forge`` and its own ``backend`` package
  (``backend.diffusion_engine``); ``shared.sd_model`` is a ``backend`` engine with
  ``forge_objects`` and no ldm ``.model``, or the ``FakeInitialModel`` placeholder
  until the first generation. Its LoRA merges live in ``backend.patcher.lora.LoraLoader``.
- **Forge Neo** ships the same ``backend`` with ComfyUI's patcher instead: no ``LoraLoader``
  in ``backend.patcher.lora`` (what our Forge code would rely on), which tells the two apart.
- **reForge** (and the old Forge1) ship ``modules_forge`` and ``ldm_patched`` (a ComfyUI
  copy) behind the A1111 shell; its ldm ``sd_model`` also carries ``forge_objects``.
- Anything else is **AUTOMATIC1111**.

Packages are checked first (the model may not be loaded yet when scripts load);
the model's own attributes decide when no package says so.
"""

from __future__ import annotations

import enum
import importlib.util
import sys

from lora_ext.hosts.webui import WebUIHostBase, is_placeholder


class WebUI(enum.Enum):
    A1111 = "a1111"
    FORGE = "forge"
    NEO = "neo"
    REFORGE = "reforge"

    @property
    def label(self) -> str:
        return {"a1111": "AUTOMATIC1111", "forge": "Forge", "neo": "Forge Neo", "reforge": "reForge"}[self.value]


def _importable(name: str) -> bool:
    if name in sys.modules:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package is missing, or a module without a spec
        return False


def _has_lora_loader() -> bool:
    """Forge keeps LoRA merges in ``backend.patcher.lora.LoraLoader``; Neo (ComfyUI's patcher) has none."""
    import importlib

    return hasattr(importlib.import_module("backend.patcher.lora"), "LoraLoader")


def detect_webui() -> WebUI:
    """A1111, Forge, Forge Neo or reForge, from the WebUI's packages and then ``shared.sd_model``'s layout."""
    if _importable("modules_forge"):
        if _importable("backend.diffusion_engine"):
            return WebUI.FORGE if _has_lora_loader() else WebUI.NEO
        if _importable("ldm_patched"):
            return WebUI.REFORGE
        return WebUI.FORGE  # a Forge fork we do not know: the safe answer is "not A1111"
    from modules import shared

    model = getattr(shared, "sd_model", None)
    if is_placeholder(model):
        return WebUI.FORGE
    if getattr(model, "forge_objects", None) is not None:
        return WebUI.REFORGE if hasattr(model, "model") else WebUI.FORGE
    return WebUI.A1111


def host_for(webui: WebUI) -> WebUIHostBase:
    """The host for this WebUI: ``A1111Host``, ``ForgeHost``, ``NeoHost``, or ``ReForgeHost`` (our loader, training
    refused)."""
    if webui is WebUI.A1111:
        from lora_ext.hosts.a1111 import A1111Host

        return A1111Host()
    if webui is WebUI.FORGE:
        from lora_ext.hosts.forge import ForgeHost

        return ForgeHost()
    if webui is WebUI.NEO:
        from lora_ext.hosts.neo import NeoHost

        return NeoHost()
    from lora_ext.hosts.reforge import ReForgeHost

    return ReForgeHost()
