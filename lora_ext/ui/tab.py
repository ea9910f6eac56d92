"""The Train Tools tab: one Blocks UI for the WebUI and the standalone app."""

from __future__ import annotations

from collections.abc import Callable

from lora_ext.errors import LoraExtError
from lora_ext.host import Host

ELEM_ID = "train_tools"


def describe_host(host: Host) -> str:
    """One Markdown line about the loaded model (or why there is none)."""
    try:
        info = host.info
    except LoraExtError as error:
        return f"**Model:** none — {error.one_line()}"
    label = f"**Model:** {info.name}"
    if info.is_demo:
        label += " — *demo model: tiny, random weights, generated locally; for trying the flow, not for real LoRAs*"
    details = f"family `{info.family}`, prediction `{info.prediction}`, naming `{info.naming}`"
    if info.short_hash:
        details += f", hash `{info.short_hash}`"
    return f"{label} ({details})"


def build_tab(host_provider: Callable[[], Host]):
    """Build the Train Tools Blocks. ``host_provider`` returns the current host on each call."""
    import gradio as gr

    with gr.Blocks(analytics_enabled=False, elem_id=ELEM_ID) as blocks:
        model_line = gr.Markdown(describe_host(host_provider()), elem_id=f"{ELEM_ID}_model")
        refresh = gr.Button("Refresh model info", elem_id=f"{ELEM_ID}_refresh_model")
        refresh.click(fn=lambda: describe_host(host_provider()), inputs=[], outputs=[model_line])
    return blocks
