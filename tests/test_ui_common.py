"""The UI edge: named wiring, one-line errors, background jobs, and the standalone Generate tab."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from lora_ext.app.jobs import JobRunner, format_seconds
from lora_ext.errors import DatasetError, HostUnavailable
from lora_ext.ui.common import bind, progress_html, user_message


def test_bind_passes_inputs_by_name_and_maps_outputs_by_name() -> None:
    seen = {}

    def handler(ctx, *, b: int, a: int) -> dict:
        seen.update(ctx=ctx, a=a, b=b)
        return {"sum": a + b}

    outputs = {"sum": "SUM-COMPONENT", "other": "OTHER"}
    fn = bind(handler, ["a", "b"], outputs, context="CTX")
    assert fn(1, 10) == {"SUM-COMPONENT": 11}
    assert seen == {"ctx": "CTX", "a": 1, "b": 10}


def test_nothing_returned_means_no_change_for_every_output() -> None:
    import gradio as gr

    fn = bind(lambda ctx: {}, [], {"x": "X", "y": "Y"}, context=object())
    result = fn()
    assert set(result) == {"X", "Y"} and all(value == gr.update() for value in result.values())


def test_user_errors_become_one_line_toasts_and_bugs_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    import gradio as gr

    def refuse(ctx) -> dict:
        raise DatasetError("The project  is\nempty.", hint="type a name")

    with pytest.raises(gr.Error) as raised:
        bind(refuse, [], {}, context=1)()
    assert raised.value.message == "The project is empty. (type a name)"

    def crash(ctx) -> dict:
        raise KeyError("boom")

    with pytest.raises(gr.Error, match="Unexpected error: KeyError"):
        bind(crash, [], {}, context=1)()
    assert "unexpected error" in caplog.text


def test_with_a_status_area_an_error_is_one_line_there_and_every_other_output_keeps_its_content() -> None:
    import gradio as gr

    def refuse(ctx, *, name: str) -> dict:
        raise DatasetError("The project  is\nempty.", hint="type a name")

    outputs = {"gallery": "GALLERY", "name": "NAME", "status": "STATUS"}
    shown = bind(refuse, ["name"], outputs, context=1, status="STATUS")("")
    assert shown["STATUS"] == '<div class="tt-msg tt-msg-error">The project is empty. (type a name)</div>'
    assert shown["GALLERY"] == gr.update() and shown["NAME"] == gr.update()


def test_generator_handlers_stream_named_outputs_and_errors() -> None:
    import gradio as gr

    def steps(ctx, *, count: int):
        for number in range(count):
            yield {"n": number}
        raise HostUnavailable("the model went away")

    stream = bind(steps, ["count"], {"n": "N"}, context=1)(2)
    assert next(stream) == {"N": 0} and next(stream) == {"N": 1}
    with pytest.raises(gr.Error, match="the model went away"):
        next(stream)


def test_select_events_reach_the_handler_by_name() -> None:
    fn = bind(lambda ctx, *, x, evt: {"out": (x, evt.index)}, ["x"], {"out": "OUT"}, context=1, event_arg="evt")
    assert fn(SimpleNamespace(index=3), "a") == {"OUT": ("a", 3)}
    assert "evt" in fn.__annotations__  # how gradio knows to pass SelectData


def test_one_job_at_a_time_cancel_and_errors_are_kept() -> None:
    runner = JobRunner()
    started = threading.Event()

    def slow(job) -> str:
        started.set()
        while not job.cancelled():
            time.sleep(0.01)
        return "stopped"

    job = runner.start("Training", slow)
    assert started.wait(5) and runner.model_busy() == "Training"
    with pytest.raises(Exception, match="Training is still running"):
        runner.start("Auto-tagging", slow)
    assert runner.cancel() and job.finished_event.wait(5) and job.result == "stopped"
    assert not runner.cancel()  # nothing running any more

    def broken(job) -> None:
        raise DatasetError("no images")

    failed = runner.start("Auto-tagging", broken, uses_model=False)
    assert failed.finished_event.wait(5) and isinstance(failed.error, DatasetError)
    assert user_message(failed.error) == "no images"


def test_progress_text_helpers() -> None:
    assert format_seconds(75) == "1:15" and format_seconds(3700) == "1:01:40"
    html = progress_html(0.5, "step <1>")
    assert 'data-fraction="50.0"' in html and "step &lt;1&gt;" in html


@pytest.fixture
def generate_ctx(make_standalone_host, tmp_path: Path):
    from lora_ext.app.context import Context, Workspace
    from lora_ext.loading.loader import NetworkLoader

    host = make_standalone_host("sd1")
    loader = NetworkLoader.for_host(host)
    return Context(lambda: host, Workspace(tmp_path / "p", tmp_path / "t")), loader


GEN = {"gen_negative": "", "gen_seed": 1, "gen_steps": 2, "gen_width": 64, "gen_height": 64, "gen_cfg": 7.0}


def test_generate_tab_shows_loader_warnings_for_a_missing_lora(generate_ctx) -> None:
    from lora_ext.ui.app import generate

    ctx, loader = generate_ctx
    out = generate(ctx, loader, gen_prompt="a cat <lora:missing:1>", **GEN)
    assert out["gen_image"].size == (64, 64)
    assert "missing" in out["gen_info"] and "tt-msg-warn" in out["gen_info"]


def test_generate_refuses_while_training_uses_the_model(generate_ctx) -> None:
    from lora_ext.ui.app import generate

    ctx, loader = generate_ctx
    release = threading.Event()
    job = ctx.jobs.start("Training", lambda job: release.wait(5))
    try:
        with pytest.raises(HostUnavailable, match="Training is using the model"):
            generate(ctx, loader, gen_prompt="a cat", **GEN)
    finally:
        release.set()
        job.finished_event.wait(5)


def test_a_slow_answer_never_lands_after_the_newer_request_of_the_same_page() -> None:
    import threading

    from lora_ext.ui.common import NewestOnly

    began, release = threading.Event(), threading.Event()

    def plan(context, steps: int) -> dict:
        if steps == 1:  # the first plan times steps on the model
            began.set()
            release.wait(10)
        return {"plan": f"max steps {steps}"}

    newest = NewestOnly().wrap(plan)
    answers: dict[str, dict] = {}
    slow = threading.Thread(target=lambda: answers.update(old=newest(None, page_id="a", steps=1)))
    slow.start()
    assert began.wait(10)
    assert newest(None, page_id="a", steps=4) == {"plan": "max steps 4"}  # the page's newer request
    assert newest(None, page_id="b", steps=2) == {"plan": "max steps 2"}  # another page: its own newest
    release.set()
    slow.join(10)
    assert answers["old"] == {}  # "no change": the plan of max steps 4 stays
    assert newest(None, page_id="a", steps=5) == {"plan": "max steps 5"}


def test_a_measurement_on_the_model_waits_for_another_one_but_not_for_a_job() -> None:
    runner = JobRunner()
    seen: list[bool] = []

    def measure() -> None:
        with runner.model_at_rest() as free:
            seen.append(free)

    with runner.model_at_rest() as first:
        other = threading.Thread(target=measure)
        other.start()
        other.join(0.5)
        assert first and other.is_alive() and seen == []  # the second measurement waits for the first
    other.join(10)
    assert seen == [True]

    holding, done = threading.Event(), threading.Event()
    job = runner.start("Training", lambda _job: (holding.set(), done.wait(10)))
    assert holding.wait(10)
    with runner.model_at_rest() as free:
        assert free is False  # a job's long hold is not waited for
    done.set()
    assert job.finished_event.wait(10)
