"""The standalone app: the Train Tools tab, a small Generate tab and a language switch, served on loopback.

The WebUI loads ``javascript/*.js`` and ``style.css`` itself; here they are added
to the page by the app (gradio 3: a ``load`` event with ``_js``; gradio 4: ``head``).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lora_ext.app.context import Context, Workspace
from lora_ext.errors import HostUnavailable
from lora_ext.host import GenerationRequest, Host
from lora_ext.ui import compat
from lora_ext.ui.common import Outputs, message
from lora_ext.ui.i18n import LANGUAGES, I18n
from lora_ext.ui.labels_ja import GRADIO_JA
from lora_ext.ui.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "javascript" / "train_tools.js"
STYLE = ROOT / "style.css"


def generate(
    ctx: Context,
    loader: Any,
    gen_prompt: str,
    gen_negative: str,
    gen_seed: float,
    gen_steps: float,
    gen_width: float,
    gen_height: float,
    gen_cfg: float,
    on_step: Callable[[int, int], None] | None = None,
) -> Outputs:
    """One image from the host; ``<lora:…>`` tokens are applied by the loader's prompt hook.

    ``on_step(i, n)`` hears each sampler step where the host reports them (the standalone host does).
    """
    busy = ctx.jobs.model_busy()
    if busy:
        raise HostUnavailable(f"{busy} is using the model", hint="generate when it has finished")
    request = GenerationRequest(
        prompt=gen_prompt,
        negative_prompt=gen_negative or "",
        seed=int(gen_seed),
        steps=int(gen_steps),
        width=int(gen_width),
        height=int(gen_height),
        cfg_scale=float(gen_cfg),
        on_step=on_step,
    )
    image = ctx.host.generate(request)[0]
    notes = []
    if loader is None:
        notes.append(message("<lora:…> tokens are not applied: the network loader is not available.", "warn"))
    else:
        report = loader.last_report
        notes += [message(text, "warn") for text in report.warnings]
        if report.infotext():
            notes.append(message(f"Lora hashes: {report.infotext()}", "ok"))
    return {"gen_image": image, "gen_info": "".join(notes) or message("No <lora:…> token in the prompt.")}


def generate_with_progress(ctx: Context, loader: Any, interval: float = 0.5, **values: Any) -> Iterator[Outputs]:
    """``generate`` in a thread, showing "sampler step i/n" in the info line until the image is there."""
    from lora_ext.app.jobs import Job
    from lora_ext.ui.common import progress_html

    job = Job("Generate")

    def target() -> None:
        try:
            job.result = generate(ctx, loader, on_step=lambda i, n: job.report(i, n, f"sampler step {i}/{n}"), **values)
        except BaseException as error:  # noqa: BLE001 - re-raised below, in the handler's thread
            job.error = error
        finally:
            job.finished_event.set()

    threading.Thread(target=target, name="train-tools-generate", daemon=True).start()
    while not job.finished_event.wait(interval):
        yield {"gen_info": progress_html(job.fraction, f"Generating: {job.text or 'starting…'}")}
    if job.error is not None:
        raise job.error
    yield job.result


DEFAULT_PROMPT = "1girl"


def prompt_with_token(prompt: str, old_token: str, new_token: str) -> str:
    """``prompt`` with the token put there for the previous version (``old_token``) replaced by ``new_token``.

    Tokens the user typed stay; an empty ``new_token`` (a version with no LoRA yet) leaves no token."""
    text = re.sub(r"\s*" + re.escape(old_token), "", prompt or "") if old_token else (prompt or "")
    text = " ".join(text.split())
    if new_token and new_token not in text:
        text = f"{text} {new_token}".strip()
    return text


def follow_token(ctx: Context, gen_prompt: str, gen_token: str, lora_token: str) -> Outputs:
    """The Generate tab's prompt with the selected version's ``<lora:name:0.8>`` (the Result section's token)."""
    return {"gen_prompt": prompt_with_token(gen_prompt, gen_token, lora_token), "gen_token": lora_token or ""}


def switch_language(ctx: Context, language: str) -> dict[Any, Any]:
    """Relabel the whole app (returns updates keyed by component)."""
    code = next((key for key, name in LANGUAGES.items() if name == language or key == language), "en")
    return ctx.i18n.switch(code)


def reopened_language(ctx: Context, ui: Registry, built: str) -> dict[Any, Any]:
    """On page load: the language picker and every label in the app's current language (``built``: the page's)."""
    import gradio as gr

    if ctx.i18n.language == built:
        return {component: gr.update() for component in [ui["language"], *ctx.i18n.components]}
    updates = ctx.i18n.switch(ctx.i18n.language)
    updates[ui["language"]] = {**updates.get(ui["language"], gr.update()), "value": LANGUAGES[ctx.i18n.language]}
    return updates


def _build_generate(ctx: Context, ui: Registry, loader: Any) -> None:
    import gradio as gr

    from lora_ext.ui.common import wire

    with gr.Column(elem_id="train_tools_generate"):
        # The selected version's LoRA token joins the prompt when the Result section shows it (``follow_token``).
        ui["gen_prompt"] = gr.Textbox(label="Prompt", value=DEFAULT_PROMPT, lines=2, elem_id="train_tools_gen_prompt")
        ui["gen_token"] = gr.State("")
        ui["gen_negative"] = gr.Textbox(label="Negative prompt", elem_id="train_tools_gen_negative")
        with gr.Row():
            ui["gen_seed"] = gr.Number(label="Seed", value=1234, precision=0, elem_id="train_tools_gen_seed")
            ui["gen_steps"] = gr.Slider(1, 100, value=20, step=1, label="Steps", elem_id="train_tools_gen_steps")
            ui["gen_width"] = gr.Slider(64, 2048, value=512, step=64, label="Width", elem_id="train_tools_gen_width")
            ui["gen_height"] = gr.Slider(64, 2048, value=512, step=64, label="Height", elem_id="train_tools_gen_height")
            ui["gen_cfg"] = gr.Slider(1, 20, value=7, step=0.5, label="CFG scale", elem_id="train_tools_gen_cfg")
        ui["gen_button"] = gr.Button("Generate", variant="primary", elem_id="train_tools_gen_button")
        ui["gen_info"] = gr.HTML(elem_id="train_tools_gen_info")
        ui["gen_image"] = gr.Image(label="Result", type="pil", elem_id="train_tools_gen_image")

    def run(ctx: Context, **values: Any) -> Iterator[Outputs]:
        yield from generate_with_progress(ctx, loader, **values)

    names = ("gen_prompt", "gen_negative", "gen_seed", "gen_steps", "gen_width", "gen_height", "gen_cfg")
    outputs = ui.pick("gen_image", "gen_info")
    wire(ui["gen_button"].click, run, ui.pick(*names), outputs, ctx, status=ui["gen_info"])
    following = ui.pick("gen_prompt", "gen_token", "lora_token")
    wire(ui["lora_token"].change, follow_token, following, ui.pick("gen_prompt", "gen_token"), ctx)


def build_app(host: Host, loader: Any = None, language: str = "en", workspace: Workspace | None = None):
    """The standalone Blocks: language switch, Train Tools tab, Generate tab."""
    import gradio as gr

    from lora_ext.ui import live
    from lora_ext.ui.tab import build_sections

    script = SCRIPT.read_text(encoding="utf-8") if SCRIPT.is_file() else ""
    if script:  # gradio's own texts (upload hints, tab buttons): relabelled in the browser by the script
        script = f"window.trainToolsPageText = {json.dumps(GRADIO_JA, ensure_ascii=False)};\n{script}"
    css = STYLE.read_text(encoding="utf-8") if STYLE.is_file() else ""
    ctx = Context(lambda: host, workspace or Workspace.standalone(), i18n=I18n(language))
    ui = Registry()
    # System fonts: Gradio's default theme would fetch Google Fonts, and the page makes no outside requests.
    theme = gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )
    with gr.Blocks(
        title="Train Tools", analytics_enabled=False, css=css, theme=theme, **compat.head_kwargs(script)
    ) as app:
        with gr.Row():
            gr.Markdown("## Train Tools")
            ui["language"] = gr.Radio(
                list(LANGUAGES.values()),
                value=LANGUAGES[ctx.i18n.language],
                label="Language",
                elem_id="train_tools_language",
            )
        with gr.Tab("Train Tools", elem_id="tab_train_tools"):
            build_sections(ctx, ui)
        with gr.Tab("Generate", elem_id="tab_train_tools_generate"):
            _build_generate(ctx, ui, loader)
        ctx.i18n.localize(app)
        switched = ui["language"].change(
            fn=lambda language: switch_language(ctx, language),
            inputs=[ui["language"]],
            outputs=ctx.i18n.components,
        )
        live.relabel_on(ctx, ui, switched.then)  # the views and the jobs' lines, again in the new language
        # The page is built once, in the language of the start; a reload reopens it in the current one.
        built = ctx.i18n.language
        relabelled = [ui["language"], *ctx.i18n.components]
        app.load(fn=lambda: reopened_language(ctx, ui, built), inputs=None, outputs=relabelled)
        compat.run_on_load(app, script)  # gradio 3 has no ``head``
    app.train_tools = (ctx, ui)
    return app


def serve(
    host: Host,
    address: str = "127.0.0.1",
    port: int = 7861,
    block: bool = True,
    loader: Any = None,
    language: str = "en",
    api_credentials: dict[str, str] | None = None,
):
    """Launch on ``address:port`` (loopback by default) with the REST API; returns the app when not blocking.

    With ``api_credentials`` every route asks for them: the page shows gradio's login
    form (same users), the REST API takes HTTP Basic; see ``lora_ext.ui.gate``.
    """
    from lora_ext.api import build_router, credentials_match

    credentials = dict(api_credentials or {})
    app = build_app(host, loader, language)
    # Several events at once: a long job's progress poll must not hold up Cancel or the editor.
    compat.enable_queue(app, concurrency=4)
    ctx, _ui = app.train_tools
    login = {}
    if credentials:
        login = {
            "auth": lambda user, password: credentials_match(credentials, user, password),
            "auth_message": "Train Tools: sign in with a user given to --api-auth.",
        }
    try:
        _launch(app, address, port, credentials, login, ctx)
    except OSError as error:  # gradio's own message points at GRADIO_SERVER_PORT, which our users never set
        from lora_ext.errors import UsageError

        raise UsageError(port_busy_message(port)) from error
    # gradio 3 serves ``server_app`` (made at launch); ``app.app`` is another FastAPI instance.
    server = getattr(app, "server_app", None) or app.app
    server.include_router(build_router(lambda: host, credentials, context=ctx, loader=loader))
    if block:
        app.block_thread()
    return app


def port_busy_message(port: int) -> str:
    return f"port {port} is busy: use --port N (make run PORT=N)"


def _launch(app: Any, address: str, port: int, credentials: dict[str, str], login: dict, ctx: Context) -> None:
    from starlette.middleware import Middleware

    from lora_ext.ui.gate import Gate

    app.launch(
        server_name=address,
        server_port=port,
        prevent_thread_lock=True,
        show_api=False,
        inbrowser=False,
        quiet=True,
        # The gate is built into the server app, so no request ever reaches a route before it.
        app_kwargs={"middleware": [Middleware(Gate, credentials=credentials)]},
        **login,
        **compat.file_route_paths(shown=shown_folders(ctx), private=private_folders(ctx)),
    )


def shown_folders(ctx: Context) -> list[Path]:
    """Where the files the page shows live: datasets, previews and results (projects), LoRAs (Lora folder)."""
    return [ctx.workspace.projects_root, Path(ctx.host.lora_dir)]


def private_folders(ctx: Context) -> list[Path]:
    """Folders the file route must never serve: the working folder (gradio 3's default) and the data folder."""
    from lora_ext import paths

    return [Path.cwd(), paths.data_dir(), ctx.workspace.projects_root]
