"""The UI edge: wiring named handlers to Gradio events and turning errors into one-line messages.

Handlers are plain functions of named values that return ``{output name: value
or gr.update(...)}``; ``wire`` maps components to those names, so reordering
inputs can never shift values (no positional ``*args`` anywhere). This is the
only place that catches errors: a ``LoraExtError`` becomes its one-line message,
anything else is logged with its traceback and shown as one line too.

An error is a line, not a pill: with a ``status`` component (the section's status
area) the line goes there once, in red, with a toast, and every other output keeps
its last good content. (Raising ``gr.Error`` would turn every output into a red
"Error" pill, one of them over the message itself.)
"""

from __future__ import annotations

import functools
import html
import inspect
import itertools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from lora_ext.errors import LoraExtError
from lora_ext.ui import compat
from lora_ext.ui.i18n import I18n

log = logging.getLogger("train_tools.ui")

Outputs = dict[str, Any]


def user_message(error: BaseException) -> str:
    """The one line shown for ``error``."""
    if isinstance(error, LoraExtError):
        return error.one_line()
    return f"Unexpected error: {type(error).__name__}: {' '.join(str(error).split())} (details in the console)"


def ui_error(error: BaseException, language: I18n | None = None) -> Exception:
    """A ``gr.Error`` (a toast in the page) for ``error``; unexpected errors are logged with a traceback."""
    import gradio as gr

    if not isinstance(error, LoraExtError):
        log.error("Train Tools: unexpected error in the UI", exc_info=error)
    line = user_message(error)
    return gr.Error(language(line) if language is not None else line)


def message(text: str, kind: str = "info") -> str:
    """A status line as HTML (kind: info, ok, warn, error)."""
    return f'<div class="tt-msg tt-msg-{kind}">{html.escape(text)}</div>' if text else ""


def page_language(context: Any) -> I18n | None:
    """The page's translator, from the handlers' context (None: English, as built)."""
    from lora_ext.app.context import Context

    if isinstance(context, Context) and isinstance(context.i18n, I18n):
        return context.i18n
    return None


def _map_outputs(
    result: Mapping[str, Any] | None, outputs: Mapping[str, Any], language: I18n | None = None
) -> dict[Any, Any]:
    """``{name: value}`` → ``{component: value}``; nothing to change → "no change" for every output.

    Status lines are built in English everywhere; ``language`` renders them in the page's language
    (``I18n.status``), so handlers and the app layer never translate. (Gradio reads an empty dict as
    one value, not as "no outputs".)
    """
    import gradio as gr

    unknown = set(result or {}) - set(outputs)
    assert not unknown, f"handler returned outputs that are not wired: {sorted(unknown)}"
    if not result:
        return {component: gr.update() for component in outputs.values()}
    if language is None:
        return {outputs[name]: value for name, value in result.items()}
    return {outputs[name]: language.status(value) for name, value in result.items()}


def _failed(
    error: BaseException, outputs: Mapping[str, Any], status: Any, language: I18n | None = None
) -> dict[Any, Any]:
    """The outputs after ``error``: one line in ``status`` (and a toast), no change anywhere else."""
    import gradio as gr

    if status is None:
        raise ui_error(error, language) from error
    if not isinstance(error, LoraExtError):
        log.error("Train Tools: unexpected error in the UI", exc_info=error)
    line = user_message(error)
    line = language(line) if language is not None else line
    compat.toast(line)
    return {**{component: gr.update() for component in outputs.values()}, status: message(line, "error")}


def bind(
    handler: Callable[..., Any],
    input_names: list[str],
    outputs: Mapping[str, Any],
    context: Any = None,
    event_arg: str | None = None,
    status: Any = None,
) -> Callable[..., Any]:
    """A Gradio ``fn`` calling ``handler(context, **named inputs)`` and mapping its named outputs.

    ``event_arg`` passes Gradio's ``SelectData`` to the handler under that name. ``status``
    (a component among ``outputs``) receives the one-line error; without one an error is a toast.
    """
    call = functools.partial(handler, context) if context is not None else handler
    language = page_language(context)

    def named(values: tuple[Any, ...]) -> dict[str, Any]:
        return dict(zip(input_names, values, strict=True))

    if inspect.isgeneratorfunction(handler):

        def run_generator(*values: Any, **event: Any) -> Iterator[dict[Any, Any]]:
            try:
                for result in call(**named(values), **event):
                    yield _map_outputs(result, outputs, language)
            except Exception as error:  # noqa: BLE001 - the UI edge: every error becomes one line
                yield _failed(error, outputs, status, language)

        fn: Callable[..., Any] = run_generator
    else:

        def run(*values: Any, **event: Any) -> dict[Any, Any]:
            try:
                return _map_outputs(call(**named(values), **event), outputs, language)
            except Exception as error:  # noqa: BLE001 - the UI edge: every error becomes one line
                return _failed(error, outputs, status, language)

        fn = run
    if event_arg is None:
        return fn
    import gradio as gr

    inner = fn
    if inspect.isgeneratorfunction(handler):

        def with_event_gen(evt: gr.SelectData, *values: Any) -> Iterator[dict[Any, Any]]:
            yield from inner(*values, **{event_arg: evt})

        with_event_gen.__annotations__ = {"evt": gr.SelectData}
        return with_event_gen

    def with_event(evt: gr.SelectData, *values: Any) -> dict[Any, Any]:
        return inner(*values, **{event_arg: evt})

    with_event.__annotations__ = {"evt": gr.SelectData}
    return with_event


def wire(
    event: Callable[..., Any],
    handler: Callable[..., Any],
    inputs: Mapping[str, Any] | None = None,
    outputs: Mapping[str, Any] | None = None,
    context: Any = None,
    event_arg: str | None = None,
    status: Any = None,
    **kwargs: Any,
):
    """``event(fn, inputs, outputs)`` with ``handler`` called by input name and returning outputs by name.

    ``status``: the section's status component, where an error is shown as one line (added to the outputs).
    """
    inputs = dict(inputs or {})
    outputs = dict(outputs or {})
    if status is not None and all(component is not status for component in outputs.values()):
        outputs["__status__"] = status
    fn = bind(handler, list(inputs), outputs, context, event_arg, status)
    return event(fn=fn, inputs=list(inputs.values()), outputs=list(outputs.values()), **kwargs)


class NewestOnly:
    """Lets only a page's newest request write its outputs.

    Events of one page may finish out of order (the queue runs several at once; a plan that times
    steps on the model takes seconds, the next one milliseconds), and gradio shows whichever answer
    comes last. ``wrap(handler)`` gives a handler that takes the page's ``page_id`` and answers
    "no change" when a newer request of that page began while it ran.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = itertools.count(1)
        self._newest: dict[str, int] = {}

    def wrap(self, handler: Callable[..., Outputs]) -> Callable[..., Outputs]:
        def newest(context: Any, page_id: str = "", **values: Any) -> Outputs:
            with self._lock:
                ticket = self._newest[page_id] = next(self._count)
            out = handler(context, **values)
            return out if self._newest.get(page_id) == ticket else {}

        newest.__name__ = newest.__qualname__ = handler.__name__
        newest.__doc__ = handler.__doc__
        return newest


class ShownOnce:
    """What each page was last shown of one kind, so that it is shown once. Events of a page overlap on a busy
    machine and the last answer to arrive wins: a poll sent before the answer showing a job's end arrived still
    says the job was running, and a ``show`` that waited for the model lands after that end. Without this each
    would fill the grid form again (or the captions) over what the user typed since. Kept: a job's end per page
    (``poll``'s ``ends``), and which run's grid form each page was given (``grid_forms``)."""

    PAGES = 256  # the most recent pages remembered; an older page shows an end again, nothing worse

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shown: OrderedDict[str, str] = OrderedDict()

    def first(self, page_id: str, state: str) -> bool:
        """Whether ``page_id`` is shown ``state`` for the first time since it was shown another one (always, for an
        unnamed page)."""
        if not page_id:
            return True
        with self._lock:
            if self._shown.get(page_id) == state:
                return False
            self._shown[page_id] = state
            self._shown.move_to_end(page_id)
            if len(self._shown) > self.PAGES:
                self._shown.popitem(last=False)
            return True


def choose(current: str | None, choices: list[str]) -> str | None:
    """Keep ``current`` if it is still a choice, else the first choice (or None)."""
    if current in choices:
        return current
    return choices[0] if choices else None


def progress_html(fraction: float, text: str, state: str = "running") -> str:
    """A progress bar (styled by style.css) with one line of text."""
    percent = f"{100 * max(0.0, min(1.0, fraction)):.1f}"
    return (
        f'<div class="tt-progress tt-progress-{state}" data-fraction="{percent}">'
        f'<div class="tt-progress-bar" style="width:{percent}%"></div>'
        f'<div class="tt-progress-text">{html.escape(text)}</div></div>'
    )
