"""Project / version picker: create, rename, duplicate, delete (after asking; deleted items go to a trash folder).

The picker says what is selected in one hidden box, ``selection``: the project and the version
together (``selection_key``). Every handler here that changes the selection sets it; every view
follows its change (``ui/selection.py``), so choosing "My Cat" v1 after "Dog" v1 is a change even
though the version's name is the same.
"""

from __future__ import annotations

import json
from typing import Any

from lora_ext.app import recent, trash
from lora_ext.app.context import Context
from lora_ext.ui.common import Outputs, choose, message
from lora_ext.ui.registry import Registry

FIRST_STEP = "Create a project first: type a name above and press Create project."


def first_step_html(projects: list[str], restored: bool = False) -> str:
    """The line saying what to do first while there is no project; ``data-ready`` greys out the sections.

    ``data-restored`` marks the page as reopened by ``ui/live.py`` since it loaded.
    """
    ready = "1" if projects else "0"
    text = "" if projects else message(FIRST_STEP, "warn")
    marks = f'data-ready="{ready}"' + (' data-restored="1"' if restored else "")
    return f'<div class="tt-first-step" {marks}>{text}</div>'


def selection_key(project: str | None, version: str | None) -> str:
    """The selection as the hidden box holds it: ``["project", "version"]`` (JSON keeps any name intact)."""
    return json.dumps([project or "", version or ""], ensure_ascii=False)


def parse_selection(selection: str | None) -> tuple[str | None, str | None]:
    """(project, version) from ``selection_key``'s text; (None, None) for an empty or foreign value."""
    try:
        project, version = json.loads(selection or "")
    except (ValueError, TypeError):
        return None, None
    return (str(project) if project else None), (str(version) if version else None)


def _choices(ctx: Context, project: str | None, version: str | None = None) -> Outputs:
    import gradio as gr

    store = ctx.store
    projects = store.list_projects()
    project = choose(project, projects)
    versions = store.list_versions(project) if project else []
    version = choose(version, versions)
    return {
        "project": gr.update(choices=projects, value=project),
        "version": gr.update(choices=versions, value=version),
        "selection": selection_key(project, version),
        "first_step": first_step_html(projects),
    }


def refresh(ctx: Context, project: str | None, version: str | None) -> Outputs:
    """Re-read the project list, keeping the selection when it still exists."""
    return _choices(ctx, project, version)


def select_project(ctx: Context, project: str | None) -> Outputs:
    """Show the chosen project's versions (the last one selected)."""
    import gradio as gr

    versions = ctx.store.list_versions(project) if project else []
    version = versions[-1] if versions else None
    return {"version": gr.update(choices=versions, value=version), "selection": selection_key(project, version)}


def select_version(ctx: Context, project: str | None, version: str | None) -> Outputs:
    """The selection after the version list changed (the user chose a version, or a handler set one)."""
    return {"selection": selection_key(project, version)}


def create_project(ctx: Context, name: str) -> Outputs:
    created = ctx.store.create_project(name)
    return {**_choices(ctx, created, "v1"), "name": "", "project_status": message(f"Created project {created}", "ok")}


def rename_project(ctx: Context, project: str | None, name: str) -> Outputs:
    old = _need(project)
    ctx.jobs.require_not_on(old)
    renamed = ctx.store.rename_project(old, name)
    ctx.forget(old)
    return {**_choices(ctx, renamed), "name": "", "project_status": message(f"Renamed {old} → {renamed}", "ok")}


def duplicate_project(ctx: Context, project: str | None, name: str) -> Outputs:
    copy = ctx.store.duplicate_project(_need(project), name)
    return {**_choices(ctx, copy), "name": "", "project_status": message(f"Copied {project} → {copy}", "ok")}


def create_version(ctx: Context, project: str | None, name: str) -> Outputs:
    paths = ctx.store.create_version(_need(project), name)
    return {
        **_choices(ctx, paths.project, paths.version),
        "name": "",
        "project_status": message(f"Created version {paths.version}", "ok"),
    }


def duplicate_version(ctx: Context, project: str | None, version: str | None, name: str) -> Outputs:
    source = ctx.version(project, version)
    paths = ctx.store.duplicate_version(source.project, source.version, name)
    return {
        **_choices(ctx, paths.project, paths.version),
        "name": "",
        "project_status": message(f"Copied {source.version} → {paths.version} (dataset and settings)", "ok"),
    }


def rename_version(ctx: Context, project: str | None, version: str | None, name: str) -> Outputs:
    source = ctx.version(project, version)
    ctx.jobs.require_not_on(source.project, source.version)
    paths = ctx.store.rename_version(source.project, source.version, name)
    ctx.forget(source.project)
    return {
        **_choices(ctx, paths.project, paths.version),
        "name": "",
        "project_status": message(f"Renamed {source.version} → {paths.version}", "ok"),
    }


def ask_delete(ctx: Context, kind: str, project: str | None, version: str | None) -> Outputs:
    """Show the confirmation row for deleting the selected project or version."""
    import gradio as gr

    if kind == "project":
        target = _need(project)
        ctx.jobs.require_not_on(target)
        question = f"Move project {target} with all its versions to the trash?"
    else:
        paths = ctx.version(project, version)
        ctx.jobs.require_not_on(paths.project, paths.version)
        target = f"{paths.project}/{paths.version}"
        question = f"Move version {target} to the trash?"
    return {
        "confirm_row": gr.update(visible=True),
        "confirm_text": message(question, "warn"),
        "delete_target": f"{kind}:{target}",
    }


def cancel_delete(ctx: Context) -> Outputs:
    import gradio as gr

    return {"confirm_row": gr.update(visible=False), "confirm_text": "", "delete_target": ""}


def confirm_delete(ctx: Context, delete_target: str, project: str | None, version: str | None) -> Outputs:
    """Move what ``ask_delete`` named to the trash folder."""
    kind, _, target = delete_target.partition(":")
    if kind == "project":  # a job may have started since the question: asked again there
        where = trash.trash_project(ctx, target)
        project = version = None
    elif kind == "version":
        project_name, _, version_name = target.rpartition("/")
        where = trash.trash_version(ctx, project_name, version_name)
        version = None
    else:
        return cancel_delete(ctx)
    return {
        **cancel_delete(ctx),
        **_choices(ctx, project, version),
        "project_status": message(f"Moved {target} to the trash: {where}", "ok"),
    }


def _need(project: str | None) -> str:
    from lora_ext.errors import DatasetError

    if not project:
        raise DatasetError("No project is selected.", hint="create or pick a project first")
    return project


def build(ctx: Context, ui: Registry) -> None:
    """The picker row and its buttons."""
    import gradio as gr

    # The page is built once; on each load ``ui/live.py`` re-reads the lists and the last-used version.
    projects, first, versions, version = recent.opening_selection(ctx.store)
    with gr.Row(elem_id="train_tools_project_row"):
        ui["project"] = gr.Dropdown(
            label="Project", choices=projects, value=first, elem_id="train_tools_project", scale=2
        )
        ui["version"] = gr.Dropdown(label="Version", choices=versions, value=version, elem_id="train_tools_version")
        ui["name"] = gr.Textbox(
            label="Name",
            placeholder="New name for create / rename / duplicate (any language)",
            elem_id="train_tools_name",
            scale=2,
        )
        ui["refresh_projects"] = gr.Button("Refresh", elem_id="train_tools_refresh_projects", scale=0)
    with gr.Row(equal_height=False):
        ui["create_project"] = gr.Button("Create project", variant="primary", elem_id="train_tools_create_project")
        ui["rename_project"] = gr.Button("Rename project", elem_id="train_tools_rename_project")
        ui["duplicate_project"] = gr.Button("Duplicate project", elem_id="train_tools_duplicate_project")
        ui["delete_project"] = gr.Button("Delete project", variant="stop", elem_id="train_tools_delete_project")
    with gr.Row(equal_height=False):
        ui["create_version"] = gr.Button("New version", elem_id="train_tools_create_version")
        ui["rename_version"] = gr.Button("Rename version", elem_id="train_tools_rename_version")
        ui["duplicate_version"] = gr.Button("Duplicate version", elem_id="train_tools_duplicate_version")
        ui["delete_version"] = gr.Button("Delete version", variant="stop", elem_id="train_tools_delete_version")
    with gr.Row(visible=False, elem_id="train_tools_confirm_row") as confirm_row:
        ui["confirm_text"] = gr.HTML()
        ui["confirm_delete"] = gr.Button("Yes, move to trash", variant="stop", elem_id="train_tools_confirm_delete")
        ui["cancel_delete"] = gr.Button("Keep it", elem_id="train_tools_cancel_delete")
    ui["confirm_row"] = confirm_row
    ui["delete_target"] = gr.Textbox(visible=False)
    # Hidden by style.css, not ``visible=False``: gradio 4 leaves invisible components out of the page.
    hidden = ["tt-hidden"]
    ui["selection"] = gr.Textbox(value="", elem_id="train_tools_selection", elem_classes=hidden, show_label=False)
    # What the views show (``ui/selection.py``), and the buttons the page's script presses when an event was
    # dropped: the views are shown again, the picker's choice is made the selection again.
    ui["shown"] = gr.Textbox(value="", elem_id="train_tools_shown", elem_classes=hidden, show_label=False)
    ui["reshow"] = gr.Button("", elem_id="train_tools_reshow", elem_classes=hidden)
    ui["reselect"] = gr.Button("", elem_id="train_tools_reselect", elem_classes=hidden)
    ui["project_status"] = gr.HTML(elem_id="train_tools_project_status")
    ui["first_step"] = gr.HTML(first_step_html(projects), elem_id="train_tools_first_step")


def wire(ctx: Context, ui: Registry) -> None:
    from lora_ext.ui.common import wire

    def on(event: Any, handler: Any, inputs: dict, outputs: dict, context: Context, **kwargs: Any) -> None:
        wire(event, handler, inputs, outputs, context, status=ui["project_status"], **kwargs)

    picker = ui.pick("project", "version", "selection", "first_step")
    status = ui.pick("project", "version", "selection", "first_step", "name", "project_status")
    on(ui["refresh_projects"].click, refresh, ui.pick("project", "version"), picker, ctx)
    # Not queued: gradio 3 drops an event fired while the same one still waits or runs, so these answer at once
    # (and the page's script presses *reselect* when the picker and the selection still disagree).
    quick = {"queue": False}
    on(ui["project"].select, select_project, ui.pick("project"), ui.pick("version", "selection"), ctx, **quick)
    # Also after a handler set the version: the same key again is no change, so nothing runs twice.
    for event in (ui["version"].change, ui["reselect"].click):
        on(event, select_version, ui.pick("project", "version"), ui.pick("selection"), ctx, **quick)
    on(ui["create_project"].click, create_project, ui.pick("name"), status, ctx)
    on(ui["rename_project"].click, rename_project, ui.pick("project", "name"), status, ctx)
    on(ui["duplicate_project"].click, duplicate_project, ui.pick("project", "name"), status, ctx)
    on(ui["create_version"].click, create_version, ui.pick("project", "name"), status, ctx)
    on(ui["rename_version"].click, rename_version, ui.pick("project", "version", "name"), status, ctx)
    on(ui["duplicate_version"].click, duplicate_version, ui.pick("project", "version", "name"), status, ctx)
    confirm = ui.pick("confirm_row", "confirm_text", "delete_target")
    for kind in ("project", "version"):
        on(ui[f"delete_{kind}"].click, _asker(kind), ui.pick("project", "version"), confirm, ctx)
    on(ui["cancel_delete"].click, cancel_delete, {}, confirm, ctx)
    on(
        ui["confirm_delete"].click,
        confirm_delete,
        ui.pick("delete_target", "project", "version"),
        {**confirm, **ui.pick("project", "version", "selection", "first_step", "project_status")},
        ctx,
    )


def _asker(kind: str) -> Any:
    def ask(ctx: Context, project: str | None, version: str | None) -> Outputs:
        return ask_delete(ctx, kind, project, version)

    return ask
