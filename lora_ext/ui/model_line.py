"""The model line at the top of the tab and the Train section's capability lines, kept current by the page's poll.

A WebUI may load or switch its checkpoint without our page taking part (Forge and Neo load lazily, on the first
generation): ``changes`` compares what the page shows (``model_seen``, a digest of both texts) with the host now,
so the line follows by itself within one poll, no *Refresh model info* needed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from lora_ext.app.context import Context
from lora_ext.errors import LoraExtError
from lora_ext.host import Host
from lora_ext.ui.common import Outputs


def describe_host(host: Host) -> str:
    """One Markdown line about the loaded model (or why there is none)."""
    try:
        info = host.info
    except LoraExtError as error:
        return f"**Model:** none — {error.one_line()}"
    label = f"**Model:** {info.name}"
    if info.is_demo:
        label += " — *demo model: tiny, random weights, generated locally; for trying the flow, not for real LoRAs*"
    prediction = f"{info.prediction} + ztsnr" if info.zero_terminal_snr else info.prediction  # as read from the model
    details = f"family `{info.family}`, prediction `{prediction}`, naming `{info.naming}`"
    if info.short_hash:
        details += f", hash `{info.short_hash}`"
    return f"{label} ({details})"


def describe(host_provider: Callable[[], Host]) -> str:
    try:
        return describe_host(host_provider())
    except LoraExtError as error:
        return f"**Model:** none — {error.one_line()}"


def _texts(ctx: Context) -> tuple[str, str]:
    from lora_ext.ui.train_section import capabilities_html

    return describe(ctx.host_provider), capabilities_html(ctx)


def model_info(ctx: Context) -> tuple[str, str]:
    """The model line and the train section's capability lines, in the page's language."""
    from lora_ext.ui.common import page_language

    line, capabilities = _texts(ctx)
    language = page_language(ctx)
    return (language(line), language.status(capabilities)) if language is not None else (line, capabilities)


def _digest(line: str, capabilities: str) -> str:
    return hashlib.sha1(f"{line}\n{capabilities}".encode()).hexdigest()[:16]


def shown(ctx: Context) -> Outputs:
    """Both texts for the page, with the digest the page keeps of them (``model_seen``)."""
    line, capabilities = model_info(ctx)
    return {"model_line": line, "capabilities": capabilities, "model_seen": _digest(*_texts(ctx))}


def changes(ctx: Context, model_seen: str) -> Outputs:
    """``shown`` when the host's model or what it can do differs from what the page shows; else nothing."""
    if _digest(*_texts(ctx)) == model_seen:
        return {}
    return shown(ctx)
