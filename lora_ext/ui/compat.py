"""What differs between gradio 3.41.2 (A1111 v1.10.1) and gradio 4 (Forge: 4.40): the one place that knows.

Everything else in ``lora_ext/ui`` is written against the API both share; a
difference goes here as one small function with a note on which version does what.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# An option of a Radio/Dropdown: a plain value, or ``(shown label, value)``.
Choice = Any


@functools.cache
def gradio_major() -> int:
    import gradio as gr

    return int(gr.__version__.split(".")[0])


def head_kwargs(script: str) -> dict[str, Any]:
    """``Blocks(head=…)`` adds a ``<script>`` in gradio 4; gradio 3 has no such argument (see ``run_on_load``)."""
    return {"head": f"<script>{script}</script>"} if gradio_major() >= 4 else {}


def js_kwargs(function: str) -> dict[str, Any]:
    """An event's browser-side function: ``js=`` in gradio 4, ``_js=`` in gradio 3."""
    return {"js": function} if gradio_major() >= 4 else {"_js": function}


def run_on_load(app: Any, script: str) -> None:
    """Run ``script`` once when the page loads, where ``head_kwargs`` could not add it (gradio 3)."""
    if script and not head_kwargs(script):
        app.load(fn=None, inputs=None, outputs=None, **js_kwargs(f"() => {{ {script}\n }}"))


def takes_labels(component: str) -> bool:
    """Whether a ``Radio``/``Dropdown`` shows ``(label, value)`` options: Radio on both, Dropdown on gradio 4 only.

    gradio 3.41.2's Dropdown keeps plain strings (``str()`` of a pair would become the option).
    """
    return component == "Radio" or (component == "Dropdown" and gradio_major() >= 4)


def choices(options: Iterable[Choice], component: str = "Radio") -> list[Choice]:
    """``choices=`` for a ``component`` (its class name), at build time or in ``gr.update``.

    Options are plain values or ``(label, value)`` pairs; the value is what handlers get
    and return. Where the component cannot show a label (gradio 3's Dropdown) the option
    is its value.
    """
    pairs = [tuple(option) if isinstance(option, (tuple, list)) else (str(option), option) for option in options]
    if takes_labels(component):
        return pairs
    return [value for _label, value in pairs]


def choice_pairs(block: Any) -> list[tuple[str, Any]]:
    """The ``(label, value)`` options of a built Radio/Dropdown (gradio 3's Dropdown keeps values: label = value)."""
    return [tuple(option) if isinstance(option, (tuple, list)) else (str(option), option) for option in block.choices]


def plot_titles(x: str, y: str, legend: str) -> dict[str, str]:
    """A line plot's axis and legend titles: gradio 3's LinePlot names the legend's ``color_legend_title``,
    gradio 4.40's (a native plot) ``color_title``."""
    return {"x_title": x, "y_title": y, ("color_title" if gradio_major() >= 4 else "color_legend_title"): legend}


def plots_drawn_on_server() -> bool:
    """gradio 3 draws a plot (Altair) on the server from the component's attributes, so a new title is set
    there; gradio 4's native plot draws in the browser from its props, so a new title is an update."""
    return gradio_major() < 4


def file_path(item: Any) -> str:
    """A path from what ``gr.File`` hands over: a temp-file wrapper in gradio 3, a path string in gradio 4."""
    return str(getattr(item, "name", item))


def toast(text: str) -> None:
    """A warning toast for the event being handled (``gr.Warning``: gradio 3.41+ and 4; shown for queued events).

    gradio 3 drops it with a Python warning when the event is not queued; the status line still says it.
    """
    import warnings

    import gradio as gr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gr.Warning(text)


def enable_queue(app: Any, concurrency: int) -> None:
    """Several events at once (gradio 4: ``default_concurrency_limit``; gradio 3: ``concurrency_count``)."""
    if gradio_major() >= 4:
        app.queue(default_concurrency_limit=concurrency)
    else:
        app.queue(concurrency_count=concurrency)


def session_user(app: Any, cookies: dict[str, str]) -> str | None:
    """The user logged in through gradio's login page, from the request's cookies; None when none is.

    Both versions keep ``app.tokens`` (token → user) and set a secure and an
    "unsecure" cookie at login; gradio 4 suffixes their names with ``app.cookie_id``.
    Checked against ``app.tokens`` here because gradio 3.41.2's own websocket check
    accepts any cookie value.
    """
    suffix = f"-{app.cookie_id}" if getattr(app, "cookie_id", None) else ""
    tokens = getattr(app, "tokens", None) or {}
    for name in (f"access-token{suffix}", f"access-token-unsecure{suffix}"):
        token = cookies.get(name)
        if token and token in tokens:
            return tokens[token]
    return None


# What the login page itself loads before anyone has logged in (both versions):
# the page (gradio answers it with the login form), the login form's POST, the
# built frontend and theme, and ``/startup-events``, which ``launch`` requests
# itself (without a cookie) to start the queue.
PUBLIC_PATHS = frozenset({"/", "/login", "/login/", "/theme.css", "/favicon.ico", "/robots.txt", "/startup-events"})
PUBLIC_PREFIXES = ("/assets/", "/static/")

# The routes that serve a file by path (both versions: ``/file=`` and the deprecated ``/file/``). Every other
# route (gradio 4's ``/queue/join``, ``/queue/data``, ``/heartbeat/…``, ``/stream/…``, ``/upload_progress``, ``/info``,
# ``/config`` …; gradio 3's ``/queue/join`` websocket, ``/api/predict`` …) is simply not public.
FILE_ROUTE_PREFIXES = ("/file=", "/file/")


def served_folder(app: Any) -> Path:
    """The one folder the file route may serve: gradio's upload/cache folder.

    Every file a component shows (gallery, image, file list, previews) is copied
    there by gradio (3: ``make_temp_copy_if_needed``; 4: ``move_files_to_cache``)
    and the page asks for that copy; uploads land there too.
    """
    folder = getattr(app, "uploaded_file_dir", None)
    return Path(folder) if folder else _cache_folder()


def file_route_paths(shown: list[Path], private: list[Path]) -> dict[str, list[str]]:
    """``allowed_paths``/``blocked_paths`` for ``launch``: gradio's own second line behind the app's gate.

    gradio 3 serves the working folder by default and needs nothing allowed: it copies
    what it shows into its cache, which it serves. gradio 4 copies into its cache only
    from the working folder, the temp folder or ``allowed_paths``, so the folders the UI
    shows are allowed there. A private folder holding one gradio needs cannot be blocked
    without breaking the page; the gate still keeps the file route to the cache.
    """
    modern = gradio_major() >= 4
    needed = [_cache_folder().resolve(), *(folder.resolve() for folder in shown if modern)]
    blocked = [folder.resolve() for folder in private]
    blocked = [folder for folder in blocked if not any(_inside(keep, folder) for keep in needed)]
    allowed = [str(folder.resolve()) for folder in shown] if modern else []
    return {"allowed_paths": allowed, "blocked_paths": [str(folder) for folder in blocked]}


def _cache_folder() -> Path:
    """gradio's default upload/cache folder (the same rule in 3 and 4)."""
    import tempfile

    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents
