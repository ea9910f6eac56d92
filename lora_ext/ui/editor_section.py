"""Tag editor: frequency chips, positive/negative filters, batch edits, per-image edit, undo/redo, save.

Every handler re-applies the filter shown in the page before editing, so what a
batch edit touches is always what the gallery shows. Keyboard shortcuts and
chip clicks live in ``javascript/train_tools.js``; they only press these
buttons and fill these boxes.
"""

from __future__ import annotations

import html
from typing import Any

from lora_ext.app import recent, tagging
from lora_ext.app.context import Context, EditorSession
from lora_ext.dataset.captions import SORT_KEYS, join_tags, parse_tags
from lora_ext.dataset.editor import REPLACE_SCOPES
from lora_ext.dataset.files import CaptionsChangedOnDisk
from lora_ext.dataset.table import LOGICS, TagFilter
from lora_ext.errors import DatasetError
from lora_ext.locking import dataset_lock
from lora_ext.ui.common import Outputs, message
from lora_ext.ui.registry import Registry

GALLERY_LIMIT = 120
CHIP_LIMIT = 300
FILTER_NAMES = ("filter_positive", "positive_logic", "filter_negative", "negative_logic")


def view_outputs(ui: Registry) -> dict[str, Any]:
    """The components ``view`` fills."""
    return ui.pick("gallery", "gallery_note", "chips", "editor_state")


def _filter(filter_positive: str, positive_logic: str, filter_negative: str, negative_logic: str) -> TagFilter:
    return TagFilter(
        positive=frozenset(parse_tags(filter_positive or "")),
        positive_logic=positive_logic or "AND",
        negative=frozenset(parse_tags(filter_negative or "")),
        negative_logic=negative_logic or "OR",
    )


def _session(ctx: Context, project: str | None, version: str | None, filters: dict[str, str]) -> EditorSession:
    session = ctx.session(project, version)
    session.editor.set_filter(_filter(**filters))
    return session


def chips_html(session: EditorSession) -> str:
    """Tag chips with counts over the shown images; filter tags are marked."""
    editor = session.editor
    counts = editor.tag_counts()
    tag_filter = editor.filter
    if not counts:
        return '<div class="tt-chips tt-empty" id="train_tools_chips_body">No tags yet.</div>'
    chips = []
    for tag, count in counts.most_common(CHIP_LIMIT):
        state = " tt-chip-on" if tag in tag_filter.positive else " tt-chip-off" if tag in tag_filter.negative else ""
        escaped = html.escape(tag, quote=True)
        chips.append(
            f'<button type="button" class="tt-chip{state}" data-tag="{escaped}">'
            f'{escaped}<span class="tt-count">{count}</span></button>'
        )
    more = f'<span class="tt-more">+{len(counts) - CHIP_LIMIT} more</span>' if len(counts) > CHIP_LIMIT else ""
    hint = (
        '<div class="tt-hint">Click: show only · Shift+click: hide · Ctrl+click: put in the tag box · '
        "Ctrl+Z / Ctrl+Y: undo / redo · Ctrl+S: save</div>"
    )
    return f'<div class="tt-chips" id="train_tools_chips_body">{"".join(chips)}{more}</div>{hint}'


def state_html(session: EditorSession, note: str = "") -> str:
    editor = session.editor
    unsaved = len(editor.unsaved_keys())
    parts = [f"{len(editor.table)} images, {len(editor.tag_counts(visible_only=False))} tags"]
    parts.append(f"{unsaved} unsaved" if unsaved else "saved")
    history = editor.history()
    if history:
        parts.append(f"undo: {history[-1]}")
    if note:
        parts.append(note)
    kind = "warn" if unsaved else "info"
    notices = "".join(message(text, "warn") for text in session.notices)
    return message(" · ".join(parts), kind) + notices


def view(ctx: Context, project: str | None, version: str | None, note: str = "") -> Outputs:
    """Gallery, chips and editor state for a version (empty when none is selected)."""
    if not project or not version:
        return {"gallery": [], "gallery_note": "", "chips": "", "editor_state": ""}
    session = ctx.session(project, version)
    editor = session.editor
    keys = editor.visible_keys()
    dataset = session.paths.dataset
    gallery = [
        (str(dataset / key), join_tags(editor.table.tags(key)) or "(no caption)") for key in keys[:GALLERY_LIMIT]
    ]
    shown = f"Showing {min(len(keys), GALLERY_LIMIT)} of {len(keys)} images"
    if len(keys) != len(editor.table):
        shown += f" (filtered from {len(editor.table)})"
    return {
        "gallery": gallery,
        "gallery_note": message(shown),
        "chips": chips_html(session),
        "editor_state": state_html(session, note),
    }


def _done(ctx: Context, session: EditorSession, text: str) -> Outputs:
    """The views after an edit; an error line from an earlier edit goes."""
    return {**view(ctx, session.paths.project, session.paths.version, text), "editor_status": ""}


def load_version(ctx: Context, project: str | None, version: str | None) -> Outputs:
    """Open the selected version (re-reading its captions unless edits are pending); the page reopens on it."""
    if project and version:
        session = ctx.editors.get((project, version))
        ctx.session(project, version, reload=session is None or not session.editor.is_dirty)
        recent.remember(ctx.workspace.projects_root, project, version)
    return {**view(ctx, project, version), "selected_key": "", "caption": "", "confidences": None}


def apply_filter(ctx: Context, project: str | None, version: str | None, **filters: str) -> Outputs:
    if not project or not version:
        return view(ctx, project, version)
    _session(ctx, project, version, filters)
    return view(ctx, project, version)


def add_tags(
    ctx: Context, project: str | None, version: str | None, tags_text: str, position: str, **filters: str
) -> Outputs:
    session = _session(ctx, project, version, filters)
    result = session.editor.add_tags(_tags(tags_text), position)
    return _done(ctx, session, f"{result.label}: {result.changed} image(s) changed")


def remove_tags(ctx: Context, project: str | None, version: str | None, tags_text: str, **filters: str) -> Outputs:
    session = _session(ctx, project, version, filters)
    result = session.editor.remove_tags(_tags(tags_text))
    return _done(ctx, session, f"{result.label}: {result.changed} image(s) changed")


def replace(
    ctx: Context,
    project: str | None,
    version: str | None,
    search: str,
    replacement: str,
    regex: bool,
    scope: str,
    **filters: str,
) -> Outputs:
    if not search:
        raise DatasetError("The search text is empty.", hint="type what to replace")
    session = _session(ctx, project, version, filters)
    result = session.editor.replace(search, replacement, regex=regex, scope=scope)
    return _done(ctx, session, f"{result.label}: {result.changed} image(s) changed")


def sort_tags(ctx: Context, project: str | None, version: str | None, sort_key: str, **filters: str) -> Outputs:
    session = _session(ctx, project, version, filters)
    result = session.editor.sort(sort_key)
    return _done(ctx, session, f"{result.label}: {result.changed} image(s) changed")


def dedupe(ctx: Context, project: str | None, version: str | None, **filters: str) -> Outputs:
    session = _session(ctx, project, version, filters)
    result = session.editor.dedupe()
    return _done(ctx, session, f"{result.label}: {result.changed} image(s) changed")


def trigger_first(ctx: Context, project: str | None, version: str | None, trigger: str, **filters: str) -> Outputs:
    session = _session(ctx, project, version, filters)
    result = session.editor.trigger_first(trigger)
    return _done(ctx, session, f"{result.label}: {result.changed} image(s) changed")


def undo(ctx: Context, project: str | None, version: str | None, **filters: str) -> Outputs:
    session = _session(ctx, project, version, filters)
    label = session.editor.undo()
    return _done(ctx, session, f"undid {label}" if label else "nothing to undo")


def redo(ctx: Context, project: str | None, version: str | None, **filters: str) -> Outputs:
    session = _session(ctx, project, version, filters)
    label = session.editor.redo()
    return _done(ctx, session, f"redid {label}" if label else "nothing to redo")


def save(ctx: Context, project: str | None, version: str | None, overwrite: bool, **filters: str) -> Outputs:
    """Write every changed caption atomically, after a numbered backup."""
    session = _session(ctx, project, version, filters)
    # The snapshot is taken under the dataset's lock, so saves of this shared editor run one after the
    # other, each with a newer snapshot than the last: an older one never writes its stale rows over a
    # newer save. An edit made while a save runs stays unsaved and goes with the next save.
    with dataset_lock(session.paths.dataset):
        table = session.editor.table
        try:
            result = session.store.save(table, overwrite_external=bool(overwrite))
        except CaptionsChangedOnDisk as error:
            hint = "tick 'Overwrite changes made outside' and save again"
            raise DatasetError(error.user_message, hint=hint) from None
        session.editor.mark_saved(table)
    if not result.written:
        return _done(ctx, session, "nothing to save")
    return _done(ctx, session, f"saved {len(result.written)} caption(s), backup #{result.backup}")


def select_image(
    ctx: Context, project: str | None, version: str | None, evt: Any, tag_model: str | None = None, **filters: str
) -> Outputs:
    """Show the clicked image's caption for editing (and its tagger confidences when a tagger is loaded)."""
    session = _session(ctx, project, version, filters)
    keys = session.editor.visible_keys()
    index = evt.index if isinstance(evt.index, int) else evt.index[0]
    if not 0 <= index < len(keys):
        return {"selected_key": "", "caption": "", "confidences": None}
    key = keys[index]
    return {
        "selected_key": key,
        "caption": join_tags(session.editor.table.tags(key)),
        "confidences": tagging.confidences(ctx, session.paths.dataset / key, tag_model),
    }


def set_caption(
    ctx: Context, project: str | None, version: str | None, selected_key: str, caption: str, **filters: str
) -> Outputs:
    if not selected_key:
        raise DatasetError("No image is selected.", hint="click an image in the gallery first")
    session = _session(ctx, project, version, filters)
    result = session.editor.set_caption(selected_key, caption)
    return _done(ctx, session, f"{result.label}: {result.changed} image(s) changed")


def _tags(text: str) -> tuple[str, ...]:
    tags = parse_tags(text or "")
    if not tags:
        raise DatasetError("No tags given.", hint="type tags separated by commas, or Ctrl+click chips")
    return tags


def build_gallery(ctx: Context, ui: Registry) -> None:
    """The captioned gallery with the per-image editor beside it (shown in the Dataset section)."""
    import gradio as gr

    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            ui["gallery_note"] = gr.HTML(elem_id="train_tools_gallery_note")
            ui["gallery"] = gr.Gallery(
                label="Images and captions",
                elem_id="train_tools_gallery",
                columns=6,
                height=420,
                object_fit="contain",
                allow_preview=True,
            )
        with gr.Column(scale=2):
            ui["selected_key"] = gr.Textbox(label="Selected image", interactive=False, elem_id="train_tools_selected")
            ui["caption"] = gr.Textbox(label="Caption", lines=3, elem_id="train_tools_caption")
            ui["set_caption"] = gr.Button("Apply caption", elem_id="train_tools_set_caption")
            ui["confidences"] = gr.Label(
                label="Tagger confidence", num_top_classes=20, elem_id="train_tools_confidences"
            )


def build(ctx: Context, ui: Registry) -> None:
    """Filters, chips and batch edits."""
    import gradio as gr

    with gr.Row(equal_height=False):
        ui["filter_positive"] = gr.Textbox(
            label="Show images with tags", placeholder="tag, tag", elem_id="train_tools_filter_positive", scale=3
        )
        ui["positive_logic"] = gr.Radio(list(LOGICS), value="AND", label="Match", elem_id="train_tools_positive_logic")
        ui["filter_negative"] = gr.Textbox(
            label="Hide images with tags", placeholder="tag, tag", elem_id="train_tools_filter_negative", scale=3
        )
        ui["negative_logic"] = gr.Radio(list(LOGICS), value="OR", label="Match", elem_id="train_tools_negative_logic")
        ui["apply_filter"] = gr.Button("Apply filter", elem_id="train_tools_apply_filter", scale=0)
    ui["chips"] = gr.HTML(elem_id="train_tools_chips")
    with gr.Row(equal_height=False):
        ui["tags_text"] = gr.Textbox(label="Tags", placeholder="tag, tag", elem_id="train_tools_tags_text", scale=3)
        ui["position"] = gr.Radio(["append", "prepend"], value="append", label="Add at", elem_id="train_tools_position")
        ui["add_tags"] = gr.Button("Add tags", elem_id="train_tools_add_tags")
        ui["remove_tags"] = gr.Button("Remove tags", elem_id="train_tools_remove_tags")
    with gr.Row(equal_height=False):
        ui["search"] = gr.Textbox(label="Search", elem_id="train_tools_search")
        ui["replacement"] = gr.Textbox(label="Replace with", elem_id="train_tools_replacement")
        ui["regex"] = gr.Checkbox(label="Regular expression", value=False, elem_id="train_tools_regex")
        ui["scope"] = gr.Radio(list(REPLACE_SCOPES), value="each", label="In", elem_id="train_tools_scope")
        ui["replace"] = gr.Button("Replace", elem_id="train_tools_replace")
    with gr.Row(equal_height=False):
        ui["sort_key"] = gr.Radio(list(SORT_KEYS), value="frequency", label="Sort by", elem_id="train_tools_sort_key")
        ui["sort"] = gr.Button("Sort", elem_id="train_tools_sort")
        ui["dedupe"] = gr.Button("Remove duplicates", elem_id="train_tools_dedupe")
        ui["trigger"] = gr.Textbox(label="Trigger word", elem_id="train_tools_trigger")
        ui["trigger_first"] = gr.Button("Trigger word first", elem_id="train_tools_trigger_first")
    with gr.Row(equal_height=False):
        ui["undo"] = gr.Button("Undo", elem_id="train_tools_undo")
        ui["redo"] = gr.Button("Redo", elem_id="train_tools_redo")
        ui["save"] = gr.Button("Save captions", variant="primary", elem_id="train_tools_save")
        ui["overwrite"] = gr.Checkbox(
            label="Overwrite changes made outside", value=False, elem_id="train_tools_overwrite"
        )
    ui["editor_state"] = gr.HTML(elem_id="train_tools_editor_state")
    ui["editor_status"] = gr.HTML(elem_id="train_tools_editor_status")


def wire(ctx: Context, ui: Registry) -> None:
    from lora_ext.ui.common import wire

    def on(event: Any, handler: Any, inputs: dict, outputs: dict, context: Context, **kwargs: Any) -> None:
        wire(event, handler, inputs, outputs, context, status=ui["editor_status"], **kwargs)

    base = {**ui.pick("project", "version"), **ui.pick(*FILTER_NAMES)}
    out = {**view_outputs(ui), **ui.pick("editor_status")}
    selection = ui.pick("selected_key", "caption", "confidences")
    for name in ("filter_positive", "filter_negative"):
        on(ui[name].submit, apply_filter, base, out, ctx)
        on(ui[name].blur, apply_filter, base, out, ctx)
    for name in ("positive_logic", "negative_logic"):
        on(ui[name].change, apply_filter, base, out, ctx)
    # Chip clicks (JS) fill the filter boxes and press this button.
    on(ui["apply_filter"].click, apply_filter, base, out, ctx)
    on(ui["add_tags"].click, add_tags, {**base, **ui.pick("tags_text", "position")}, out, ctx)
    on(ui["remove_tags"].click, remove_tags, {**base, **ui.pick("tags_text")}, out, ctx)
    on(ui["replace"].click, replace, {**base, **ui.pick("search", "replacement", "regex", "scope")}, out, ctx)
    on(ui["sort"].click, sort_tags, {**base, **ui.pick("sort_key")}, out, ctx)
    on(ui["dedupe"].click, dedupe, base, out, ctx)
    on(ui["trigger_first"].click, trigger_first, {**base, **ui.pick("trigger")}, out, ctx)
    on(ui["undo"].click, undo, base, out, ctx)
    on(ui["redo"].click, redo, base, out, ctx)
    on(ui["save"].click, save, {**base, **ui.pick("overwrite")}, out, ctx)
    on(ui["gallery"].select, select_image, {**base, **ui.pick("tag_model")}, selection, ctx, event_arg="evt")
    on(ui["set_caption"].click, set_caption, {**base, **ui.pick("selected_key", "caption")}, out, ctx)
    on(ui["version"].change, load_version, ui.pick("project", "version"), {**out, **selection}, ctx)
