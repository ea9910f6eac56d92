"""The Train Tools tab: one Blocks UI for the WebUI and the standalone app, assembled from its sections.

Flow, top to bottom: the job bar → project/version → dataset (drop zone, report) →
auto-tag → tag editor (gallery, chips, edits) → train → result. Each section module builds its
components into a shared ``Registry`` and wires named handlers; ``live`` reopens
the page where the user left off and follows long jobs; this file only
assembles them.
"""

from __future__ import annotations

from collections.abc import Callable

from lora_ext import settings
from lora_ext.app import context as app_context
from lora_ext.app.context import Context, Workspace
from lora_ext.host import Host
from lora_ext.ui.i18n import I18n, webui_language
from lora_ext.ui.registry import Registry

ELEM_ID = "train_tools"


def build_sections(ctx: Context, ui: Registry) -> None:
    """Build every section inside the current Blocks context and wire them."""
    import gradio as gr

    from lora_ext.ui import (
        dataset_section,
        editor_section,
        export_section,
        live,
        model_line,
        projects,
        result_section,
        selection,
        tagger_section,
        train_section,
    )

    with gr.Column(elem_id=ELEM_ID):
        with gr.Row():
            ui["model_line"] = gr.Markdown(model_line.describe(ctx.host_provider), elem_id=f"{ELEM_ID}_model")
            ui["refresh_model"] = gr.Button("Refresh model info", elem_id=f"{ELEM_ID}_refresh_model", scale=0)
        ui["job_status"] = gr.HTML(elem_id=f"{ELEM_ID}_job_status")
        live.build(ctx, ui)
        with gr.Accordion("Project", open=True, elem_id=f"{ELEM_ID}_section_project"):
            projects.build(ctx, ui)
        with gr.Accordion("Dataset", open=True, elem_id=f"{ELEM_ID}_section_dataset"):
            dataset_section.build(ctx, ui)
            export_section.build(ctx, ui)
        with gr.Accordion("Auto-tag", open=True, elem_id=f"{ELEM_ID}_section_tagger"):
            tagger_section.build(ctx, ui)
        with gr.Accordion("Tag editor", open=True, elem_id=f"{ELEM_ID}_section_editor"):
            editor_section.build_gallery(ctx, ui)
            editor_section.build(ctx, ui)
        with gr.Accordion("Train", open=True, elem_id=f"{ELEM_ID}_section_train"):
            train_section.build(ctx, ui)
        with gr.Accordion("Result", open=True, elem_id=f"{ELEM_ID}_section_result"):
            result_section.build(ctx, ui)
    from lora_ext.ui.common import wire

    wire(ui["refresh_model"].click, model_line.shown, {}, ui.pick("model_line", "capabilities", "model_seen"), ctx)
    sections = (projects, selection, dataset_section, export_section, tagger_section, editor_section, train_section)
    for section in (*sections, result_section, live):
        section.wire(ctx, ui)


def create_context(host_provider: Callable[[], Host], workspace: Workspace | None = None) -> Context:
    """The state the tab and the REST API share, with the page's translator.

    The language follows the host's "Localization" setting (the WebUI's ``ja_JP`` → Japanese), read on
    each use: the WebUI's own localization can only relabel exact fixed texts in the browser, so the
    labels and every status line (built with parameters) are rendered in that language here.
    """
    ctx = app_context.create_context(host_provider, workspace)
    ctx.i18n = I18n(follow=lambda: webui_language(ctx.workspace.setting(settings.WEBUI_LOCALIZATION, "None")))
    return ctx


def build_tab(host_provider: Callable[[], Host], context: Context | None = None):
    """Build the Train Tools Blocks. ``host_provider`` returns the current host on each call."""
    import gradio as gr

    ctx = context or create_context(host_provider)
    ui = Registry()
    with gr.Blocks(analytics_enabled=False) as blocks:
        build_sections(ctx, ui)
    for component in blocks.blocks.values():
        # The WebUI's saved defaults (``ui-config.json``) would give each input the value it had at the WebUI's
        # first start, keyed by label alone: the tab's values are Train Tools' own (docs/hosts.md).
        component.do_not_save_to_config = True
    ctx.i18n.localize(blocks)
    blocks.train_tools = (ctx, ui)  # for the standalone app's language switch and for tests
    return blocks
