"""Following long jobs and reopening where the user left off: the page's two short, repeatable events.

A job runs on the server (``lora_ext.app.jobs``); the page never waits for it in a
long event (a dropped connection would end that event and show red "Error"
pills). Instead ``javascript/train_tools.js`` presses two hidden buttons:

- *restore*, once when the page loads: fills the project and version lists with
  the last-used version selected, the gallery, editor, result, the training form
  (the version's saved settings) and plan, and re-attaches to the latest job of
  each kind (running or finished);
- *poll*, every 1.5 s while a job runs (every 10 s otherwise, to notice a job
  started elsewhere): shows the current job's progress and, once, its end, and
  the model line again when the WebUI loaded or switched its checkpoint meanwhile
  (``ui/model_line.py``: Forge loads lazily, at the first generation).

Both are ordinary gradio events (``queue=False``: one short HTTP request each), so
they carry the page's login cookie like every other event, and a poll lost to a
dropped connection is simply followed by the next one. The hidden ``job_seen``
box holds ``"<job id>:running"`` or ``"<job id>:done"``: what this page has shown.
A job that failed is toasted once (``Job.announce_failure``) through the hidden
``job_failure`` box, whose change event is queued; its line stays in the section.

The standalone app's language switch runs *relabel*: the same views and job lines
in the new language, on the page's version, without touching the training form or
the caption box (what the user typed there is not saved anywhere yet). Choosing
another version fills the form from its saved settings, as a reload does
(``train_section.version_form``).
"""

from __future__ import annotations

from typing import Any

from lora_ext.app import grid, recent, tagging, training
from lora_ext.app.context import Context
from lora_ext.app.jobs import Job
from lora_ext.errors import LoraExtError
from lora_ext.ui import compat, editor_section, model_line, projects, result_section, tagger_section, train_section
from lora_ext.ui.common import Outputs, user_message
from lora_ext.ui.registry import Registry

FAILURE_SEPARATOR = ": "  # job_failure holds "<job id>: <line>", so two failures with the same line both toast
RENDERERS = {
    training.JOB_NAME: train_section.render_job,
    tagging.JOB_NAME: tagger_section.render_job,
    grid.JOB_NAME: result_section.render_job,
}


def seen_state(job: Job) -> str:
    return f"{job.id}:{'done' if job.finished else 'running'}"


def _render(ctx: Context, job: Job, project: str | None, version: str | None, final: bool) -> Outputs:
    out = RENDERERS[job.name](ctx, job)
    if final and job.finished and job.error is None:
        # What the finished job changed for the version the page shows (not another version's view).
        same = (job.data.get("project"), job.data.get("version")) == (project, version)
        if job.name == training.JOB_NAME:
            out.update(_quiet(result_section.run_view, ctx, project, version))
        elif job.name == grid.JOB_NAME and same:
            out.update(_quiet(result_section.refresh, ctx, project, version))
        elif job.name == tagging.JOB_NAME and same:
            out.update(_quiet(editor_section.view, ctx, project, version))
    return out


def _quiet(view: Any, ctx: Context, project: str | None, version: str | None) -> Outputs:
    """A view of the selected version, or nothing when it went away meanwhile (renamed, deleted)."""
    try:
        return view(ctx, project, version)
    except LoraExtError:
        return {}


def _announce(ctx: Context, job: Job | None) -> Outputs:
    """A failed job's line for the toast, the first time any page shows its end (``job_failure``'s change
    event shows it: a poll is not queued, and gradio only delivers toasts to queued events)."""
    if job is None or not job.announce_failure():
        return {}
    return {"job_failure": f"{job.id}{FAILURE_SEPARATOR}{ctx.tr(user_message(job.error))}"}


def toast_failure(ctx: Context, job_failure: str) -> Outputs:
    """The toast for a failed job (its line is in the section's status area as well)."""
    line = job_failure.partition(FAILURE_SEPARATOR)[2]
    if line:
        compat.toast(line)
    return {}


def poll(
    ctx: Context, project: str | None, version: str | None, job_seen: str, model_seen: str | None = None
) -> Outputs:
    """The current job's progress; its end once (``job_seen`` says what this page has shown already); the model
    line when it changed (``model_seen``: what the page shows of it; None: not asked)."""
    out = model_line.changes(ctx, model_seen) if model_seen is not None else {}
    job = ctx.jobs.current
    if job is None:
        return out
    state = seen_state(job)
    if job.finished and state == job_seen:
        return out  # shown already: an idle page's poll changes nothing else
    return {**out, **_render(ctx, job, project, version, final=True), "job_seen": state, **_announce(ctx, job)}


def restore(ctx: Context, **cfg: Any) -> Outputs:
    """The page as the user left it: last-used version, its views, its saved settings and the latest jobs."""
    import gradio as gr

    choices, project, versions, version = recent.opening_selection(ctx.store)
    out: Outputs = {
        "project": gr.update(choices=choices, value=project),
        "version": gr.update(choices=versions, value=version),
        **_quiet(editor_section.load_version, ctx, project, version),
    }
    try:  # the form as the version's last training had it, and its plan
        out.update(train_section.version_form(ctx, project, version, **cfg))
    except LoraExtError:
        pass  # the version went away between listing and planning: the next change plans again
    return {**out, **_reopened(ctx, choices, project, version)}


def relabel(ctx: Context, project: str | None, version: str | None, **cfg: Any) -> Outputs:
    """After a language switch: the page's views, plan and job lines again, in the new language.

    Unlike ``restore`` it stays on the page's version and leaves the training form and the caption
    box alone: what the user typed there and has not saved yet stays."""
    out: Outputs = _quiet(editor_section.view, ctx, project, version)
    try:
        out.update(train_section.plan(ctx, project, version, **cfg))
    except LoraExtError:
        pass
    return {**out, **_reopened(ctx, ctx.store.list_projects(), project, version)}


def _reopened(ctx: Context, choices: list[str], project: str | None, version: str | None) -> Outputs:
    """What ``restore`` and ``relabel`` both show: the host's line, the first step, the result, the jobs."""
    out: Outputs = {
        **model_line.shown(ctx),
        "first_step": projects.first_step_html(choices, restored=True),
        **_quiet(result_section.run_view, ctx, project, version),
    }
    for name in RENDERERS:
        job = ctx.jobs.latest(name)
        if job is not None:
            out.update(_render(ctx, job, project, version, final=False))
    current = ctx.jobs.current
    out["job_seen"] = seen_state(current) if current is not None else ""
    return {**out, **_announce(ctx, current)}


def outputs(ui: Registry) -> dict[str, Any]:
    """Everything a job's progress or end can change."""
    return {
        **train_section.job_outputs(ui),
        **tagger_section.job_outputs(ui),
        **result_section.job_outputs(ui),
        **result_section.refresh_outputs(ui),
        **editor_section.view_outputs(ui),
        **ui.pick("job_seen", "job_failure", "model_line", "capabilities", "model_seen"),
    }


def build(ctx: Context, ui: Registry) -> None:
    """The hidden buttons the page's script presses, and the box saying which job the page has shown."""
    import gradio as gr

    # Hidden by style.css, not ``visible=False``: gradio 4 leaves invisible components out of the page.
    hidden = ["tt-hidden"]
    ui["job_seen"] = gr.Textbox(value="", elem_id="train_tools_job_seen", elem_classes=hidden, show_label=False)
    ui["job_failure"] = gr.Textbox(value="", elem_id="train_tools_job_failure", elem_classes=hidden, show_label=False)
    ui["model_seen"] = gr.Textbox(value="", elem_id="train_tools_model_seen", elem_classes=hidden, show_label=False)
    ui["poll"] = gr.Button("", elem_id="train_tools_poll", elem_classes=hidden)
    ui["restore"] = gr.Button("", elem_id="train_tools_restore", elem_classes=hidden)


def wire(ctx: Context, ui: Registry) -> None:
    from lora_ext.ui.common import wire as on

    quiet = {"queue": False, "show_progress": "hidden"}
    status = ui["job_status"]
    polled = ui.pick("project", "version", "job_seen", "model_seen")
    on(ui["poll"].click, poll, polled, outputs(ui), ctx, status=status, **quiet)
    restore_on(ctx, ui, ui["restore"].click)
    # Queued (the default), unlike the polls: gradio delivers a toast only to a queued event.
    on(ui["job_failure"].change, toast_failure, ui.pick("job_failure"), {}, ctx, show_progress="hidden")


def restore_on(ctx: Context, ui: Registry, event: Any) -> None:
    """``restore`` on ``event`` (the page load: the hidden button)."""
    from lora_ext.ui.common import wire as on

    restored = {
        **outputs(ui),
        **train_section.field_components(ui),
        **ui.pick("capabilities", "project", "version", "first_step", "plan"),
        **ui.pick("selected_key", "caption", "caption_base", "caption_note", "confidences", "confidence_scores"),
    }
    plan_inputs = {**ui.pick("preset"), **train_section.field_components(ui)}
    on(event, restore, plan_inputs, restored, ctx, status=ui["job_status"], queue=False, show_progress="hidden")


def relabel_on(ctx: Context, ui: Registry, event: Any) -> None:
    """``relabel`` on ``event`` (the standalone app's language switch): the form is read, never written."""
    from lora_ext.ui.common import wire as on

    relabelled = {**outputs(ui), **ui.pick("capabilities", "first_step", "plan")}
    inputs = {**ui.pick("project", "version", "preset"), **train_section.field_components(ui)}
    on(event, relabel, inputs, relabelled, ctx, status=ui["job_status"], queue=False, show_progress="hidden")
