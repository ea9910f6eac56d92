"""Tag editor: frequency chips, positive/negative filters, batch edits, per-image edit, undo/redo, save.

Every handler re-applies the filter shown in the page before editing, so what a
batch edit touches is always what the gallery shows. Keyboard shortcuts and
chip clicks live in ``javascript/train_tools.js``; they only press these
buttons and fill these boxes.
"""

from __future__ import annotations

import html
from typing import Any

from lora_ext.app import captions, recent, tagging
from lora_ext.app.context import Context, EditorSession
from lora_ext.dataset.captions import SORT_KEYS, join_tags, parse_tags
from lora_ext.dataset.editor import REPLACE_SCOPES
from lora_ext.dataset.files import CaptionsChangedOnDisk
from lora_ext.dataset.table import LOGICS, TagFilter
from lora_ext.errors import DatasetError
from lora_ext.ui import confidence_bars
from lora_ext.ui.common import Outputs, message
from lora_ext.ui.registry import Registry

GALLERY_LIMIT = 120
CHIP_LIMIT = 300
FILTER_NAMES = ("filter_positive", "positive_logic", "filter_negative", "negative_logic")
# The per-image box: ``caption_base`` (hidden) is the caption the box was loaded from, so an edit made
# since (a batch edit, undo, redo, another tab) is noticed before *Apply caption* writes over it.
BOX_NAMES = ("selected_key", "caption", "caption_base")


def view_outputs(ui: Registry) -> dict[str, Any]:
    """The components ``view`` fills."""
    return ui.pick("gallery", "gallery_note", "chips", "editor_state")


def edit_outputs(ui: Registry) -> dict[str, Any]:
    """The components an edit fills: the view and the per-image box, refreshed with the image's caption now."""
    return {**view_outputs(ui), **ui.pick(*BOX_NAMES, "caption_note")}


def _filter(filter_positive: str, positive_logic: str, filter_negative: str, negative_logic: str) -> TagFilter:
    return TagFilter(
        positive=frozenset(parse_tags(filter_positive or "")),
        positive_logic=positive_logic or "AND",
        negative=frozenset(parse_tags(filter_negative or "")),
        negative_logic=negative_logic or "OR",
    )


def _session(ctx: Context, project: str | None, version: str | None, filters: dict[str, str]) -> EditorSession:
    session = ctx.session(project, version)
    session.editor.set_filter(_filter(**{name: filters[name] for name in FILTER_NAMES}))
    return session


def _current_caption(session: EditorSession, key: str) -> str | None:
    """The image's caption as the editor holds it now; None when the image is no longer in the version."""
    try:
        return join_tags(session.editor.table.tags(key))
    except DatasetError:
        return None


def refreshed_box(session: EditorSession, selected_key: str = "", caption: str = "", caption_base: str = "") -> Outputs:
    """The per-image box after an edit: it shows the image's caption now, unless it holds typing not applied yet.

    Typing in the box is kept (never thrown away by a batch edit); its ``caption_base`` then stays the old
    caption, so *Apply caption* asks before writing it over the newer one.
    """
    if not selected_key:
        return {"selected_key": "", "caption": caption, "caption_base": caption_base, "caption_note": ""}
    current = _current_caption(session, selected_key)
    if current is None:
        note = message(f"{selected_key} is no longer in this version.", "warn")
        return {"selected_key": "", "caption": "", "caption_base": "", "caption_note": note}
    typed = parse_tags(caption or "") != parse_tags(caption_base or "")
    if not typed:
        return {"selected_key": selected_key, "caption": current, "caption_base": current, "caption_note": ""}
    note = ""
    if parse_tags(caption_base or "") != parse_tags(current):
        note = message(
            f"The caption of {selected_key} changed; the box keeps your text, not applied yet "
            "(Apply caption asks first).",
            "warn",
        )
    return {"selected_key": selected_key, "caption": caption, "caption_base": caption_base, "caption_note": note}


def chips_html(session: EditorSession) -> str:
    """Tag chips with counts over the shown images; filter tags are marked."""
    editor = session.editor
    counts = editor.tag_counts()
    tag_filter = editor.filter
    # A hidden tag (Shift+click) hides every image that has it, so it has no count among the shown ones:
    # it stays as a struck-through chip (first, never cut by the limit) that a click shows again.
    hidden = sorted(tag for tag in tag_filter.negative if tag not in counts)
    if not counts and not hidden:
        return '<div class="tt-chips tt-empty" id="train_tools_chips_body">No tags yet.</div>'
    totals = editor.tag_counts(visible_only=False) if hidden else counts
    chips = []
    for tag in hidden:
        escaped = html.escape(tag, quote=True)
        chips.append(
            f'<button type="button" class="tt-chip tt-chip-off tt-chip-hidden" data-tag="{escaped}" '
            f'data-hidden="1" title="hidden: click to show again">'
            f'{escaped}<span class="tt-count">{totals.get(tag, 0)}</span></button>'
        )
    for tag, count in counts.most_common(CHIP_LIMIT):
        state = " tt-chip-on" if tag in tag_filter.positive else " tt-chip-off" if tag in tag_filter.negative else ""
        escaped = html.escape(tag, quote=True)
        hidden_mark = ' data-hidden="1" title="hidden: click to show again"' if tag in tag_filter.negative else ""
        chips.append(
            f'<button type="button" class="tt-chip{state}" data-tag="{escaped}"{hidden_mark}>'
            f'{escaped}<span class="tt-count">{count}</span></button>'
        )
    more = f'<span class="tt-more">+{len(counts) - CHIP_LIMIT} more</span>' if len(counts) > CHIP_LIMIT else ""
    hint = (
        '<div class="tt-hint">Click: show only · Shift+click: hide (click the struck-through chip to show again) · '
        "Ctrl+click: put in the tag box · Ctrl+Z / Ctrl+Y: undo / redo · Ctrl+S: save</div>"
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
    # Each tile: the file's name first (the tile cuts a long caption short), then its caption.
    gallery = [
        (str(dataset / key), f"{key} · {join_tags(editor.table.tags(key)) or ctx.tr('(no caption)')}")
        for key in keys[:GALLERY_LIMIT]
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


def _done(ctx: Context, session: EditorSession, text: str, values: dict[str, Any]) -> Outputs:
    """The view and the refreshed per-image box after an edit (``values``: the box's names from the page);
    an error line from an earlier edit goes."""
    box = refreshed_box(session, **{name: values.get(name) or "" for name in BOX_NAMES})
    return {**view(ctx, session.paths.project, session.paths.version, text), **box, "editor_status": ""}


def load_version(ctx: Context, project: str | None, version: str | None) -> Outputs:
    """Open the selected version (re-reading its captions unless edits are pending); the page reopens on it."""
    if project and version:
        session = ctx.editors.get((project, version))
        ctx.session(project, version, reload=session is None or not session.editor.is_dirty)
        recent.remember(ctx.workspace.projects_root, project, version)
    empty_box = {"selected_key": "", "caption": "", "caption_base": "", "caption_note": ""}
    return {**view(ctx, project, version), **empty_box, "confidences": "", "confidence_scores": None}


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
    return _done(ctx, session, f"{result.label}: {result.changed} image(s) changed", filters)


def remove_tags(ctx: Context, project: str | None, version: str | None, tags_text: str, **filters: str) -> Outputs:
    session = _session(ctx, project, version, filters)
    result = session.editor.remove_tags(_tags(tags_text))
    return _done(ctx, session, f"{result.label}: {result.changed} image(s) changed", filters)


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
    return _done(ctx, session, f"{result.label}: {result.changed} image(s) changed", filters)


def sort_tags(ctx: Context, project: str | None, version: str | None, sort_key: str, **filters: str) -> Outputs:
    session = _session(ctx, project, version, filters)
    result = session.editor.sort(sort_key)
    return _done(ctx, session, f"{result.label}: {result.changed} image(s) changed", filters)


def dedupe(ctx: Context, project: str | None, version: str | None, **filters: str) -> Outputs:
    session = _session(ctx, project, version, filters)
    result = session.editor.dedupe()
    return _done(ctx, session, f"{result.label}: {result.changed} image(s) changed", filters)


def trigger_first(ctx: Context, project: str | None, version: str | None, trigger: str, **filters: str) -> Outputs:
    session = _session(ctx, project, version, filters)
    result = session.editor.trigger_first(trigger)
    return _done(ctx, session, f"{result.label}: {result.changed} image(s) changed", filters)


def undo(ctx: Context, project: str | None, version: str | None, **filters: str) -> Outputs:
    session = _session(ctx, project, version, filters)
    label = session.editor.undo()
    return _done(ctx, session, f"undid {label}" if label else "nothing to undo", filters)


def redo(ctx: Context, project: str | None, version: str | None, **filters: str) -> Outputs:
    session = _session(ctx, project, version, filters)
    label = session.editor.redo()
    return _done(ctx, session, f"redid {label}" if label else "nothing to redo", filters)


def save(ctx: Context, project: str | None, version: str | None, overwrite: bool, **filters: str) -> Outputs:
    """Write every changed caption atomically, after a numbered backup."""
    session = _session(ctx, project, version, filters)
    try:
        result = captions.save_captions(ctx, project, version, overwrite_external=bool(overwrite))
    except CaptionsChangedOnDisk as error:
        hint = "tick 'Overwrite changes made outside' and save again"
        raise DatasetError(error.user_message, hint=hint) from None
    if not result.written:
        return _done(ctx, session, "nothing to save", filters)
    return _done(ctx, session, f"saved {len(result.written)} caption(s), backup #{result.backup}", filters)


def select_image(
    ctx: Context,
    project: str | None,
    version: str | None,
    evt: Any,
    tag_model: str | None = None,
    general_threshold: float | None = None,
    character_threshold: float | None = None,
    **filters: str,
) -> Outputs:
    """Show the clicked image's caption for editing (and its tagger confidences when a tagger is loaded)."""
    session = _session(ctx, project, version, filters)
    keys = session.editor.visible_keys()
    index = evt.index if isinstance(evt.index, int) else evt.index[0]
    if not 0 <= index < len(keys):
        empty_box = {"selected_key": "", "caption": "", "caption_base": "", "caption_note": ""}
        return {**empty_box, "confidences": "", "confidence_scores": None}
    key = keys[index]
    caption = join_tags(session.editor.table.tags(key))
    scores = tagging.confidences(ctx, session.paths.dataset / key, tag_model)
    return {
        "selected_key": key,
        "caption": caption,
        "caption_base": caption,
        "caption_note": "",
        "confidences": confidence_bars.bars_html(scores, general_threshold, character_threshold, ctx.tr),
        "confidence_scores": scores,
    }


def render_confidences(
    ctx: Context, confidence_scores: Any, general_threshold: float | None, character_threshold: float | None
) -> Outputs:
    """Redraw the shown image's confidence bars with the threshold lines where the sliders are now."""
    bars = confidence_bars.bars_html(confidence_scores, general_threshold, character_threshold, ctx.tr)
    return {"confidences": bars}


def set_caption(
    ctx: Context,
    project: str | None,
    version: str | None,
    selected_key: str,
    caption: str,
    caption_base: str,
    **filters: str,
) -> Outputs:
    """Write the box's text as the image's caption — after asking, when the caption changed since the box was loaded.

    A batch edit, undo, redo or another tab may have changed the image after its caption was put in the box;
    the first press then changes nothing and says so (the box keeps its text), a second press applies it.
    """
    if not selected_key:
        raise DatasetError("No image is selected.", hint="click an image in the gallery first")
    session = _session(ctx, project, version, filters)
    current = _current_caption(session, selected_key)
    if current is None:
        raise DatasetError(f"{selected_key} is no longer in this version.", hint="click an image in the gallery")
    if parse_tags(caption_base or "") != parse_tags(current):
        shown = current if len(current) <= 80 else current[:77] + "…"
        note = message(
            f"The caption of {selected_key} changed since it was put in this box (now: {shown or '(empty)'}). "
            "Nothing was applied: press Apply caption again to replace it with the box's text.",
            "warn",
        )
        return {"caption_base": current, "caption_note": note}
    result = session.editor.set_caption(selected_key, caption)
    return _done(ctx, session, f"{result.label}: {result.changed} image(s) changed", {"selected_key": selected_key})


def _tags(text: str) -> tuple[str, ...]:
    tags = parse_tags(text or "")
    if not tags:
        raise DatasetError("No tags given.", hint="type tags separated by commas, or Ctrl+click chips")
    return tags


def build_gallery(ctx: Context, ui: Registry) -> None:
    """The gallery (file name and caption on each tile) with the per-image editor beside it, at the top of the
    Tag editor section: the images next to the chips and edits that change them."""
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
            ui["caption_base"] = gr.State("")
            ui["set_caption"] = gr.Button("Apply caption", elem_id="train_tools_set_caption")
            ui["caption_note"] = gr.HTML(elem_id="train_tools_caption_note")
            ui["confidences"] = gr.HTML(label="Tagger confidence", elem_id="train_tools_confidences")
            ui["confidence_scores"] = gr.State(None)


def build(ctx: Context, ui: Registry) -> None:
    """Filters, chips and batch edits."""
    import gradio as gr

    with gr.Row(equal_height=False):
        ui["filter_positive"] = gr.Textbox(
            label="Show images with tags", placeholder="tag, tag", elem_id="train_tools_filter_positive", scale=3
        )
        ui["positive_logic"] = gr.Radio(
            list(LOGICS), value="AND", label="Match (show)", elem_id="train_tools_positive_logic"
        )
        ui["filter_negative"] = gr.Textbox(
            label="Hide images with tags", placeholder="tag, tag", elem_id="train_tools_filter_negative", scale=3
        )
        ui["negative_logic"] = gr.Radio(
            list(LOGICS), value="OR", label="Match (hide)", elem_id="train_tools_negative_logic"
        )
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
    edited = {**edit_outputs(ui), **ui.pick("editor_status")}
    box = ui.pick(*BOX_NAMES)
    edit = {**base, **box}
    thresholds = ui.pick("general_threshold", "character_threshold")
    selection = {**edited, **ui.pick("confidences", "confidence_scores")}
    for name in ("filter_positive", "filter_negative"):
        on(ui[name].submit, apply_filter, base, out, ctx)
        on(ui[name].blur, apply_filter, base, out, ctx)
    for name in ("positive_logic", "negative_logic"):
        on(ui[name].change, apply_filter, base, out, ctx)
    # Chip clicks (JS) fill the filter boxes and press this button.
    on(ui["apply_filter"].click, apply_filter, base, out, ctx)
    on(ui["add_tags"].click, add_tags, {**edit, **ui.pick("tags_text", "position")}, edited, ctx)
    on(ui["remove_tags"].click, remove_tags, {**edit, **ui.pick("tags_text")}, edited, ctx)
    on(ui["replace"].click, replace, {**edit, **ui.pick("search", "replacement", "regex", "scope")}, edited, ctx)
    on(ui["sort"].click, sort_tags, {**edit, **ui.pick("sort_key")}, edited, ctx)
    on(ui["dedupe"].click, dedupe, edit, edited, ctx)
    on(ui["trigger_first"].click, trigger_first, {**edit, **ui.pick("trigger")}, edited, ctx)
    on(ui["undo"].click, undo, edit, edited, ctx)
    on(ui["redo"].click, redo, edit, edited, ctx)
    on(ui["save"].click, save, {**edit, **ui.pick("overwrite")}, edited, ctx)
    select_inputs = {**base, **ui.pick("tag_model"), **thresholds}
    on(ui["gallery"].select, select_image, select_inputs, selection, ctx, event_arg="evt")
    on(ui["set_caption"].click, set_caption, edit, edited, ctx)
    for name in thresholds:
        on(
            ui[name].change,
            render_confidences,
            {**ui.pick("confidence_scores"), **thresholds},
            ui.pick("confidences"),
            ctx,
        )
