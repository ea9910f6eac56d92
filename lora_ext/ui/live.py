"""Following long jobs and reopening where the user left off: the page's short, repeatable events.

A job runs on the server (``lora_ext.app.jobs``); the page never waits for it in a
long event (a dropped connection would end that event and show red "Error"
pills). Instead ``javascript/train_tools.js`` presses hidden buttons:

- *restore*, when the page loads (again until it has answered): fills the project
  and version lists with the last-used version selected and sets the selection,
  whose change shows every view of that version (``ui/selection.py``); and
  re-attaches to the current job;
- *poll*, every 1.5 s while a job runs (every 10 s otherwise, to notice a job
  started elsewhere): shows the current job in the bar at the top of the page
  (``job_bar``, with a button that jumps to it) and, when it works on the
  selected version, in its section; its end, once; and the model line again
  when the WebUI loaded or switched its checkpoint meanwhile
  (``ui/model_line.py``: Forge loads lazily, at the first generation);
- *show_job*, from the bar's button: selects the version the job works on.

Each section shows the jobs of the selected version only: a training of "My Cat"
v1 is in the bar, not under "Dog" v1's form (``job_sections``).

These are ordinary gradio events (``queue=False``: one short HTTP request each), so
they carry the page's login cookie like every other event, and a poll lost to a
dropped connection is simply followed by the next one. The hidden ``job_seen``
box holds ``"<job id>:running"`` or ``"<job id>:done"``: what this page has shown.
A job that failed is toasted once (``Job.announce_failure``) through the hidden
``job_failure`` box, whose change event is queued; its line stays in the section.

The standalone app's language switch runs *relabel*: the same views and job lines
in the new language, on the page's version, without touching the training form or
the caption box (what the user typed there is not saved anywhere yet).
"""

from __future__ import annotations

import html
from typing import Any

from lora_ext.app import grid, recent, tagging, training
from lora_ext.app.context import Context
from lora_ext.app.jobs import Job
from lora_ext.errors import LoraExtError
from lora_ext.ui import compat, editor_section, model_line, projects, result_section, tagger_section, train_section
from lora_ext.ui.common import Outputs, ShownOnce, user_message
from lora_ext.ui.projects import parse_selection, selection_key
from lora_ext.ui.registry import Registry

FAILURE_SEPARATOR = ": "  # job_failure holds "<job id>: <line>", so two failures with the same line both toast
RENDERERS = {
    training.JOB_NAME: train_section.render_job,
    tagging.JOB_NAME: tagger_section.render_job,
    grid.JOB_NAME: result_section.render_job,
}
IDLE = {
    training.JOB_NAME: train_section.idle_outputs,
    tagging.JOB_NAME: tagger_section.idle_outputs,
    grid.JOB_NAME: result_section.idle_outputs,
}
# Each kind of job: the output holding its progress line, and the section it is shown in (the bar's jump target).
PROGRESS = {
    training.JOB_NAME: ("train_progress", "train_tools_section_train"),
    tagging.JOB_NAME: ("tag_progress", "train_tools_section_tagger"),
    grid.JOB_NAME: ("compare_progress", "train_tools_section_result"),
}


def seen_state(job: Job) -> str:
    return f"{job.id}:{'done' if job.finished else 'running'}"


def shown_with(job: Job, project: str | None, version: str | None) -> bool:
    """Whether ``job`` belongs in the sections of the selected version (a job without a version: everywhere)."""
    return job.subject is None or job.subject == (project, version)


def _render(ctx: Context, job: Job, project: str | None, version: str | None, final: bool) -> Outputs:
    out = RENDERERS[job.name](ctx, job)
    if final and job.finished and job.error is None:
        # What the finished job changed for the version the page shows.
        if job.name == training.JOB_NAME:
            out.update(_quiet(result_section.run_view, ctx, project, version))
        elif job.name == grid.JOB_NAME:
            out.update(_quiet(result_section.refresh, ctx, project, version))
        elif job.name == tagging.JOB_NAME:
            out.update(_quiet(editor_section.view, ctx, project, version))
    return out


def _quiet(view: Any, ctx: Context, project: str | None, version: str | None) -> Outputs:
    """A view of the selected version, or nothing when it went away meanwhile (renamed, deleted)."""
    try:
        return view(ctx, project, version)
    except LoraExtError:
        return {}


def job_sections(ctx: Context, project: str | None, version: str | None) -> Outputs:
    """Each section's job lines for the selected version: its latest job of that kind, or nothing."""
    out: Outputs = {}
    for name, idle in IDLE.items():
        job = ctx.jobs.latest(name)
        shown = job is not None and shown_with(job, project, version)
        out.update(_render(ctx, job, project, version, final=False) if shown else idle())
    return out


def job_bar(ctx: Context, job: Job | None) -> str:
    """The bar at the top of the page: the current job's version and progress line, and a button to jump to it."""
    if job is None:
        return ""
    key, section = PROGRESS[job.name]
    line = RENDERERS[job.name](ctx, job).get(key, "")
    subject = ""
    if job.subject is not None:
        subject = f'<span class="tt-jobbar-subject">{html.escape(" / ".join(job.subject))}</span>'
    selection = html.escape(selection_key(*job.subject) if job.subject else "", quote=True)
    state = "done" if job.finished else "running"
    return (
        f'<div class="tt-jobbar tt-jobbar-{state}" data-section="{section}" data-selection="{selection}">'
        f'{subject}<div class="tt-jobbar-line">{line}</div>'
        f'<button type="button" class="tt-jump">{html.escape(ctx.tr("Show"))}</button></div>'
    )


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
    ctx: Context,
    selection: str,
    job_seen: str,
    model_seen: str | None = None,
    page_id: str = "",
    ends: ShownOnce | None = None,
    grid_forms: ShownOnce | None = None,
) -> Outputs:
    """The current job in the bar, and in its section when it works on the selected version; its end once
    (``job_seen`` says what this page has shown already, ``ends`` what an overlapping poll of the same page is
    showing, ``grid_forms`` which run's grid form it holds, typed over perhaps); the model line when it changed
    (``model_seen``: what the page shows of it; None: not asked)."""
    out = model_line.changes(ctx, model_seen) if model_seen is not None else {}
    job = ctx.jobs.current
    if job is None:
        return out
    state = seen_state(job)
    if job.finished and state == job_seen:
        return out  # shown already: an idle page's poll changes nothing else
    # Another poll of this page already shows this end: only the job's lines (should that answer be lost), not
    # what the end changed, which that answer brings.
    final = not (job.finished and ends is not None and not ends.first(page_id, state))
    project, version = parse_selection(selection)
    out.update({"job_bar": job_bar(ctx, job), "job_seen": state, **_announce(ctx, job)})
    if shown_with(job, project, version):
        out.update(_render(ctx, job, project, version, final=final))
    return result_section.grid_form_once(out, selection, page_id, grid_forms)


def select_job(ctx: Context) -> Outputs:
    """The bar's button for a job of another version: select that version (every view follows the selection)."""
    import gradio as gr

    job = ctx.jobs.current
    if job is None or job.subject is None:
        return {}
    project, version = job.subject
    store = ctx.store
    if project not in store.list_projects() or version not in store.list_versions(project):
        return {}  # renamed or deleted since the job started
    return {
        "project": gr.update(choices=store.list_projects(), value=project),
        "version": gr.update(choices=store.list_versions(project), value=version),
        "selection": selection_key(project, version),
    }


def restore(ctx: Context) -> Outputs:
    """The page as the user left it: the last-used version selected (its views follow the selection), the jobs."""
    import gradio as gr

    choices, project, versions, version = recent.opening_selection(ctx.store)
    return {
        "project": gr.update(choices=choices, value=project),
        "version": gr.update(choices=versions, value=version),
        "selection": selection_key(project, version),
        **_reopened(ctx, choices),
    }


def relabel(ctx: Context, project: str | None, version: str | None, **cfg: Any) -> Outputs:
    """After a language switch: the page's views, plan and job lines again, in the new language.

    Unlike a change of selection it leaves the training form and the caption box alone: what the user
    typed there and has not saved yet stays."""
    out: Outputs = _quiet(editor_section.view, ctx, project, version)
    try:
        out.update(train_section.plan(ctx, project, version, **cfg))
    except LoraExtError:
        pass
    out.update(train_section.form_source_now(ctx, project, version))
    out.update(result_section.for_version(ctx, project, version))
    out.update(job_sections(ctx, project, version))
    return {**out, **_reopened(ctx, ctx.store.list_projects())}


def _reopened(ctx: Context, choices: list[str]) -> Outputs:
    """What ``restore`` and ``relabel`` both show: the host's line, the first step, the job bar."""
    current = ctx.jobs.current
    return {
        **model_line.shown(ctx),
        "first_step": projects.first_step_html(choices, restored=True),
        "job_bar": job_bar(ctx, current),
        "job_seen": seen_state(current) if current is not None else "",
        **_announce(ctx, current),
    }


def outputs(ui: Registry) -> dict[str, Any]:
    """Everything a job's progress or end can change."""
    return {
        **train_section.job_outputs(ui),
        **tagger_section.job_outputs(ui),
        **result_section.job_outputs(ui),
        **result_section.refresh_outputs(ui),
        **editor_section.view_outputs(ui),
        **ui.pick("job_bar", "job_seen", "job_failure", "model_line", "capabilities", "model_seen"),
    }


def build(ctx: Context, ui: Registry) -> None:
    """The job bar, the hidden buttons the page's script presses, and the box saying which job the page has shown."""
    import gradio as gr

    ui["job_bar"] = gr.HTML(elem_id="train_tools_job_bar")
    # Hidden by style.css, not ``visible=False``: gradio 4 leaves invisible components out of the page.
    hidden = ["tt-hidden"]
    ui["job_seen"] = gr.Textbox(value="", elem_id="train_tools_job_seen", elem_classes=hidden, show_label=False)
    ui["job_failure"] = gr.Textbox(value="", elem_id="train_tools_job_failure", elem_classes=hidden, show_label=False)
    ui["model_seen"] = gr.Textbox(value="", elem_id="train_tools_model_seen", elem_classes=hidden, show_label=False)
    ui["poll"] = gr.Button("", elem_id="train_tools_poll", elem_classes=hidden)
    ui["restore"] = gr.Button("", elem_id="train_tools_restore", elem_classes=hidden)
    ui["show_job"] = gr.Button("", elem_id="train_tools_show_job", elem_classes=hidden)
    # This page among the pages open on the app (set by the page's script), for ``common.NewestOnly``.
    ui["page_id"] = gr.Textbox(value="", elem_id="train_tools_page_id", elem_classes=hidden, show_label=False)
    ui["grid_forms"] = ShownOnce()  # which run's grid form each page holds (``show`` and ``poll`` fill it once)


def wire(ctx: Context, ui: Registry) -> None:
    from lora_ext.ui.common import wire as on

    quiet = {"queue": False, "show_progress": "hidden"}
    status = ui["job_status"]
    ends = ShownOnce()

    def poll_page(context: Context, **values: Any) -> Outputs:
        return poll(context, ends=ends, grid_forms=ui["grid_forms"], **values)

    polled = ui.pick("selection", "job_seen", "model_seen", "page_id")
    on(ui["poll"].click, poll_page, polled, outputs(ui), ctx, status=status, **quiet)
    restore_on(ctx, ui, ui["restore"].click)
    on(ui["show_job"].click, select_job, {}, ui.pick("project", "version", "selection"), ctx, status=status, **quiet)
    # Queued (the default), unlike the polls: gradio delivers a toast only to a queued event.
    on(ui["job_failure"].change, toast_failure, ui.pick("job_failure"), {}, ctx, show_progress="hidden")


def restore_on(ctx: Context, ui: Registry, event: Any) -> None:
    """``restore`` on ``event`` (the page load: the hidden button)."""
    from lora_ext.ui.common import wire as on

    restored = ui.pick("project", "version", "selection", "first_step", "job_bar", "job_seen", "job_failure")
    restored = {**restored, **ui.pick("model_line", "capabilities", "model_seen")}
    on(event, restore, {}, restored, ctx, status=ui["job_status"], queue=False, show_progress="hidden")


def relabel_on(ctx: Context, ui: Registry, event: Any) -> None:
    """``relabel`` on ``event`` (the standalone app's language switch): the form is read, never written."""
    from lora_ext.ui.common import wire as on

    relabelled = {**outputs(ui), **ui.pick("capabilities", "first_step", "plan", "form_source")}
    inputs = {**ui.pick("project", "version", "preset"), **train_section.field_components(ui)}
    on(event, relabel, inputs, relabelled, ctx, status=ui["job_status"], queue=False, show_progress="hidden")
