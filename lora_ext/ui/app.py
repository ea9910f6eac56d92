"""The standalone app: the Train Tools tab plus a small Generate tab, served on loopback."""

from __future__ import annotations

from lora_ext.host import GenerationRequest, Host
from lora_ext.ui.tab import build_tab


def build_app(host: Host):
    import gradio as gr

    with gr.Blocks(title="Train Tools", analytics_enabled=False) as app:
        with gr.Tab("Train Tools"):
            build_tab(lambda: host).render()
        with gr.Tab("Generate"):
            prompt = gr.Textbox(label="Prompt", value="a photo <lora:name:0.8>", elem_id="generate_prompt")
            with gr.Row():
                seed = gr.Number(label="Seed", value=0, precision=0)
                steps = gr.Slider(label="Steps", minimum=1, maximum=100, step=1, value=20)
                size = gr.Slider(label="Size", minimum=64, maximum=1536, step=64, value=512)
            button = gr.Button("Generate", variant="primary", elem_id="generate_button")
            image = gr.Image(label="Result", type="pil", elem_id="generate_image")

            def generate(prompt: str, seed: float, steps: float, size: float):
                request = GenerationRequest(
                    prompt=prompt, seed=int(seed), steps=int(steps), width=int(size), height=int(size)
                )
                return host.generate(request)[0]

            button.click(fn=generate, inputs=[prompt, seed, steps, size], outputs=[image])
    return app


def serve(host: Host, address: str = "127.0.0.1", port: int = 7861, block: bool = True):
    """Launch on ``address:port`` (loopback by default); returns the app when not blocking."""
    app = build_app(host)
    app.queue()
    app.launch(
        server_name=address,
        server_port=port,
        prevent_thread_lock=not block,
        show_api=False,
        inbrowser=False,
        quiet=True,
    )
    return app
