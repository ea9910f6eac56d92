"""What every AUTOMATIC1111-style WebUI offers a host, whatever model stack sits behind it.

Folders, Settings, the queue lock and ``shared.state`` (progress, Interrupt) and
generation through ``processing.process_images`` exist with the same meaning in
A1111, Forge and reForge (``docs/hosts.md``), so they live
here once: ``A1111Host`` adds the ldm model surface on top, and
``UnsupportedWebUIHost`` (``hosts/unsupported.py``) uses them as they are while it
refuses to train. Every WebUI import is inside a function.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lora_ext import settings
from lora_ext.errors import HostUnavailable
from lora_ext.host import GenerationRequest, Host
from lora_ext.settings import LORA_LOADER_CHOICES  # noqa: F401  (re-exported)
from lora_ext.settings import SECTION as SETTINGS_SECTION

# Forge's placeholder in ``shared.sd_model`` until the first generation loads the checkpoint
PLACEHOLDER_MODELS = ("FakeInitialModel",)


def _webui():
    from modules import devices, paths, sd_unet, shared

    return shared, devices, paths, sd_unet


def is_placeholder(model) -> bool:
    """Whether ``shared.sd_model`` is Forge's stand-in for "nothing loaded yet"."""
    return type(model).__name__ in PLACEHOLDER_MODELS


class WebUIHostBase(Host):
    """The WebUI-generic half of a host: folders, settings, queue lock, progress, ``process_images``."""

    def __init__(self) -> None:
        self.lora_takeover = None  # set by register_callbacks() when our loader owns <lora:…>
        self._training = False
        # Whether this thread holds the queue lock through ``model_at_rest`` (the WebUI's lock is not reentrant: a
        # plan's measurement there enters ``training_session``, which takes it again)
        self._at_rest = threading.local()

    def register_callbacks(self) -> None:
        """Our part of the WebUI's callbacks besides the tab and the API: the Settings section."""
        from modules import script_callbacks

        script_callbacks.on_ui_settings(self.register_settings)

    def register_settings(self) -> None:
        """``on_ui_settings``: our section; the loader's options only where our loader owns ``<lora:…>``."""
        register_settings(lora_loader=self.lora_takeover is not None)

    @property
    def sd_model(self):
        shared, *_ = _webui()
        model = shared.sd_model
        if model is None or is_placeholder(model):
            raise HostUnavailable("no checkpoint is loaded in the WebUI", hint="pick one in the checkpoint dropdown")
        return model

    def identity(self) -> tuple[str, str | None, str | None, bool]:
        model = self.sd_model
        info = getattr(model, "sd_checkpoint_info", None)
        name = getattr(info, "name_for_extra", None) or "model"
        return name, getattr(model, "sd_model_hash", None), getattr(info, "hash", None), False

    @property
    def lora_dir(self) -> Path:
        shared, _, paths, _ = _webui()
        return Path(shared.cmd_opts.lora_dir or Path(paths.models_path) / "Lora")

    @property
    def models_dir(self) -> Path:
        _, _, paths, _ = _webui()
        return Path(paths.models_path)

    @property
    def outputs_dir(self) -> Path:
        """``outputs/train_tools`` under the WebUI's data folder."""
        _, _, paths, _ = _webui()
        return Path(paths.data_path) / "outputs" / "train_tools"

    def logins(self) -> list:
        """The WebUI's logins, for ``api.parse_credentials``: ``--api-auth`` (its API) and ``--gradio-auth`` /
        ``--gradio-auth-path`` (its page, read by the WebUI's own ``get_gradio_auth_creds``). Our routes take any."""
        shared, *_ = _webui()
        try:
            from modules.initialize_util import get_gradio_auth_creds
        except ImportError:  # an older WebUI: the flag alone, in the same "user:pass,…" form
            return [shared.cmd_opts.api_auth, getattr(shared.cmd_opts, "gradio_auth", None)]
        return [shared.cmd_opts.api_auth, [pair for pair in get_gradio_auth_creds() if len(pair) == 2]]

    def setting(self, key: str, default: Any = None) -> Any:
        """A value from the WebUI's Settings (its default when unset), read on each use."""
        shared, *_ = _webui()
        return getattr(shared.opts, key, default)

    def report_progress(self, step: int, total: int, text: str) -> None:
        """Mirror training progress into ``shared.state`` (the WebUI's progress API and console)."""
        shared, *_ = _webui()
        WebUIJob(shared.state).progress(step, total, text)

    def interrupted(self) -> bool:
        """Whether the WebUI's Interrupt button was pressed during the current job."""
        shared, *_ = _webui()
        return WebUIJob(shared.state).interrupted()

    def restore_prompt_networks(self) -> None:
        """Put back what our ``<lora:…>`` loader merged (after a grid, say); the built-in restores its own at
        its next generation (A1111's host also makes it inert now)."""
        if self.lora_takeover is not None:
            self.lora_takeover.restore()

    @contextlib.contextmanager
    def exclusive(self, job: str) -> Iterator[WebUIJob]:
        """Hold the WebUI's queue lock and ``shared.state`` for a UI job (test generations):

        generation and checkpoint switches wait for it, the progress shows in the
        WebUI's own progress API, and the Interrupt button stops it.
        """
        from modules import call_queue

        shared, *_ = _webui()
        held = getattr(self._at_rest, "held", False)  # by this thread, for a plan's measurement
        with contextlib.nullcontext() if held else call_queue.queue_lock:
            shared.state.begin(job=f"train_tools: {job}")
            try:
                yield WebUIJob(shared.state)
            finally:
                shared.state.end()

    @contextlib.contextmanager
    def model_at_rest(self) -> Iterator[bool]:
        """The WebUI's queue lock if it is free now (never waited for: a generation, or one of our jobs, holds
        it for long); generations and checkpoint switches wait for its release."""
        from modules import call_queue

        free = call_queue.queue_lock.acquire(blocking=False)
        self._at_rest.held = free
        try:
            yield free
        finally:
            self._at_rest.held = False
            if free:
                call_queue.queue_lock.release()

    @contextlib.contextmanager
    def training_turn(self, who: str) -> Iterator[None]:
        """Refuse with the capabilities' reasons, else hold ``exclusive("training")``; drops the WebUI's cached
        prompt conditioning afterwards (a trained text encoder makes it stale). ``who`` names the WebUI."""
        capabilities = self.capabilities()
        if not capabilities.can_train:
            raise HostUnavailable(f"{who} cannot train right now: " + "; ".join(capabilities.reasons))
        with self.exclusive("training"):
            yield

    @staticmethod
    def drop_cached_conditioning() -> None:
        """Forget the conditioning the WebUI caches between generations (keyed by prompt text, not by weights).

        Emptied in place: every processing object refers to the class's lists (``persistent_cond_cache``), including
        the one being set up when our loader runs, so new lists would leave that generation the stale entries."""
        from modules import processing

        for cls in (processing.StableDiffusionProcessing, processing.StableDiffusionProcessingTxt2Img):
            for name in ("cached_c", "cached_uc", "cached_hr_c", "cached_hr_uc"):
                cache = vars(cls).get(name)
                if isinstance(cache, list):
                    cache[:] = [None] * len(cache)

    def generate(self, request: GenerationRequest) -> list:
        """Images from the WebUI's own pipeline; ``<lora:…>`` is handled by whichever loader owns it.

        The caller must already hold the queue lock (it is not re-entrant).
        """
        from modules import processing

        shared, *_ = _webui()
        model = self.sd_model
        info = getattr(model, "sd_checkpoint_info", None)
        override = {"sd_model_checkpoint": info.title} if info is not None and getattr(info, "title", None) else {}
        p = processing.StableDiffusionProcessingTxt2Img(
            sd_model=model,
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            seed=request.seed,
            steps=request.steps,
            cfg_scale=request.cfg_scale,
            width=request.width,
            height=request.height,
            batch_size=request.batch_size,
            do_not_save_grid=True,
            do_not_save_samples=True,
            override_settings=override,
        )
        # While training, previews show the network being trained (live through hooks),
        # not whatever <lora:…> tokens would merge into the weights under autograd.
        p.disable_extra_networks = self._training
        with contextlib.closing(p):  # the WebUIs' processing objects have close() and no __enter__
            with _sampler_steps(shared.state, request):
                processed = processing.process_images(p)
        if processed.images:
            shared.state.assign_current_image(processed.images[0])
        return list(processed.images)


@contextlib.contextmanager
def _sampler_steps(state: Any, request: GenerationRequest) -> Iterator[None]:
    """Report the sampler's step (``shared.state.sampling_step``) to ``request.on_step`` while a render runs:
    the WebUI's samplers count in ``shared.state``, which a thread reads a few times a second."""
    if request.on_step is None:
        yield
        return
    import threading

    done = threading.Event()

    def watch() -> None:
        seen = -1
        while not done.wait(0.25):
            step = int(getattr(state, "sampling_step", 0) or 0)
            if step != seen:
                seen = step
                request.on_step(step, int(getattr(state, "sampling_steps", 0) or request.steps))

    watcher = threading.Thread(target=watch, name="train-tools-sampler-steps", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


class WebUIJob:
    """What a UI job sees of ``shared.state`` while it holds the queue lock."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def interrupted(self) -> bool:
        return bool(self.state.interrupted)

    def interrupt(self) -> None:
        self.state.interrupt()

    def progress(self, done: int, total: int, text: str) -> None:
        self.state.job_count = total
        self.state.job_no = done
        self.state.textinfo = text


def register_settings(lora_loader: bool = True) -> None:
    """The Train Tools section of the WebUI's Settings (``on_ui_settings``), from ``lora_ext/settings.py``.

    ``lora_loader``: also the options of our ``<lora:…>`` loader (only where it owns the token).
    """
    import gradio as gr
    from modules import shared

    for setting in settings.SETTINGS:
        if setting.loader_only and not lora_loader:
            continue
        component, component_args = None, None
        if setting.choices:
            component, component_args = gr.Radio, {"choices": list(setting.choices)}
        elif setting.slider is not None:
            minimum, maximum, step = setting.slider
            component, component_args = gr.Slider, {"minimum": minimum, "maximum": maximum, "step": step}
        option = shared.OptionInfo(setting.default, setting.label, component, component_args, section=SETTINGS_SECTION)
        shared.opts.add_option(setting.key, option.info(setting.info) if setting.info else option)
