"""Every view follows the selection: one change of project and version, one handler that shows them all.

The picker (``ui/projects.py``) keeps the selected project and version together in the
hidden ``selection`` box; choosing a project or a version, create, rename, duplicate,
delete and the page load all set it. Its change runs ``show``, which fills every view
for that version: the gallery and the tag editor, the training form (the settings the
version last trained with) and its plan, the Result section, and each section's job
lines (the version's own jobs only). There is no other path to a view, so no view
can stay on the previous project.

gradio 3 drops an event fired while the same event is still waiting or running (a quick
second choice while the first version is being shown). ``show`` therefore also writes
the selection it showed into the hidden ``shown`` box; while ``shown`` and ``selection``
(or the picker and ``selection``) disagree for a moment, ``javascript/train_tools.js``
presses *reshow* (or *reselect*): the page always ends on the selected version.
"""

from __future__ import annotations

from typing import Any

from lora_ext.app.context import Context
from lora_ext.errors import LoraExtError
from lora_ext.ui import editor_section, live, result_section, train_section
from lora_ext.ui.common import Outputs, ShownOnce
from lora_ext.ui.projects import parse_selection
from lora_ext.ui.registry import Registry

# The per-image box and its confidences: emptied, since the image shown there was the previous version's.
EDITOR_BOX = ("selected_key", "caption", "caption_base", "caption_note", "confidences", "confidence_scores")


def show(ctx: Context, selection: str, page_id: str = "", grid_forms: ShownOnce | None = None) -> Outputs:
    """Every view of the selected version but the plan (which follows, for the form as this left it); the grid
    form once per run and page (``grid_forms``, see ``common.ShownOnce``)."""
    project, version = parse_selection(selection)
    out: Outputs = {}
    try:
        out.update(editor_section.load_version(ctx, project, version))
    except LoraExtError:  # gone meanwhile (renamed or deleted in another tab): nothing of it to show
        out.update(editor_section.load_version(ctx, None, None))
    out.update(live.job_sections(ctx, project, version))
    try:
        out.update(train_section.version_settings(ctx, project, version))
    except LoraExtError:
        out.update(train_section.form_source(None, None, trained=False))
    out.update(result_section.for_version(ctx, project, version))
    # The previous version's plan goes at once; the plan that follows writes this one's.
    out = result_section.grid_form_once(out, selection, page_id, grid_forms)
    return {**out, "plan": "", "shown": selection}


def outputs(ui: Registry) -> dict[str, Any]:
    """The components ``show`` fills."""
    return {
        **editor_section.view_outputs(ui),
        **ui.pick(*EDITOR_BOX),
        **live.outputs(ui),
        **train_section.field_components(ui),
        **ui.pick("plan", "form_source", "train_status", "shown"),
        **result_section.refresh_outputs(ui),
    }


def wire(ctx: Context, ui: Registry) -> None:
    from lora_ext.ui.common import wire as on

    status = ui["job_status"]
    shown = {name: component for name, component in outputs(ui).items() if name not in ("job_seen", "job_failure")}
    inputs = {**ui.pick("selection", "preset"), **train_section.field_components(ui)}

    def show_page(context: Context, **values: Any) -> Outputs:
        return show(context, grid_forms=ui["grid_forms"], **values)

    for event in (ui["selection"].change, ui["reshow"].click):
        shown_now = on(
            event,
            show_page,
            ui.pick("selection", "page_id"),
            shown,
            ctx,
            status=status,
            show_progress="hidden",
            queue=False,
        )
        # Then the plan, for the form as ``show`` left it: a separate event, since the first plan may time steps
        # on the model (seconds), and a slow ``show`` would land after the plans of the form's later changes.
        train_section.plan_on(ctx, ui, shown_now.then, inputs)
