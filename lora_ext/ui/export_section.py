"""Export (in the Dataset section): the version's dataset as a zip to download, or as kohya ``N_name`` folders
in the version's ``exports/`` folder (``lora_ext.app.exports``; the REST API and the CLI export the same way)."""

from __future__ import annotations

from typing import Any

from lora_ext.app import exports
from lora_ext.app.context import Context
from lora_ext.ui.common import Outputs, message
from lora_ext.ui.registry import Registry

FORMAT_CHOICES = (("zip (download)", "zip"), ("kohya folder (N_name)", "folder"))


def export(
    ctx: Context, project: str | None, version: str | None, export_format: str, export_repeats: Any, export_name: str
) -> Outputs:
    """Export and say where to; a zip is offered for download."""
    report = exports.export_version(ctx, project, version, export_format, int(export_repeats or 0), export_name)
    is_zip = report.destination.suffix == ".zip"
    return {
        "export_status": message(exports.describe(report), "ok"),
        "export_file": str(report.destination) if is_zip else None,
    }


def build(ctx: Context, ui: Registry) -> None:
    import gradio as gr

    from lora_ext.ui import compat

    with gr.Accordion("Export", open=False, elem_id="train_tools_export"):
        with gr.Row(equal_height=False):
            ui["export_format"] = gr.Radio(
                choices=compat.choices(FORMAT_CHOICES),
                value="zip",
                label="Export as",
                elem_id="train_tools_export_format",
            )
            ui["export_repeats"] = gr.Number(
                label="Folder repeats",
                value=0,
                precision=0,
                info="N of the top-level images' N_name folder; 0: as the training settings",
                elem_id="train_tools_export_repeats",
            )
            ui["export_name"] = gr.Textbox(
                label="Folder name",
                placeholder="empty: the trigger word, else the project's name",
                elem_id="train_tools_export_name",
            )
        ui["export"] = gr.Button("Export dataset", elem_id="train_tools_export_button")
        ui["export_status"] = gr.HTML(elem_id="train_tools_export_status")
        ui["export_file"] = gr.File(label="Exported zip", interactive=False, elem_id="train_tools_export_file")


def wire(ctx: Context, ui: Registry) -> None:
    from lora_ext.ui.common import wire as on

    inputs = ui.pick("project", "version", "export_format", "export_repeats", "export_name")
    outputs = ui.pick("export_status", "export_file")
    on(ui["export"].click, export, inputs, outputs, ctx, status=ui["export_status"])
