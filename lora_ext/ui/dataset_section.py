"""Dataset: a drop zone for images, folders and zips, the ingestion report, and the captioned gallery.

Browsers upload files one by one, without their folders. ``javascript/train_tools.js``
therefore sends each file of a dropped folder under a name that carries its
path (``mychar__ttd__10_cat__ttd__a.png``); ``rebuild_folders`` puts the
folders back in a staging folder before ingestion, so kohya ``N_name`` folders
keep their repeats.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lora_ext.app.context import Context
from lora_ext.dataset.ingest import IngestOptions, IngestReport, ingest
from lora_ext.errors import DatasetError
from lora_ext.ui import compat
from lora_ext.ui.common import Outputs, message
from lora_ext.ui.registry import Registry

PATH_MARK = "__ttd__"  # must survive Gradio's upload-name cleaning (letters, digits, "._- " only)
# Gradio's upload keeps only letters, digits and "._- " of a file name ("coffee (1).jpg" → "coffee 1.jpg");
# javascript/train_tools.js writes any other character as __ttc<hex>__, and decode_upload_name puts it back.
_ESCAPED_CHAR = re.compile(r"__ttc([0-9a-f]{1,6})__")


def decode_upload_name(part: str) -> str:
    """One name (or folder) as the user's browser had it: ``coffee __ttc28__1__ttc29__.jpg`` → ``coffee (1).jpg``."""

    def char(match: re.Match[str]) -> str:
        code = int(match.group(1), 16)
        return chr(code) if code <= sys.maxunicode else match.group(0)

    return _ESCAPED_CHAR.sub(char, part)


def _original_parts(base: str) -> list[str] | None:
    """The folders and file name an upload stands for, as the user named them; None when it is a plain name."""
    parts = [decode_upload_name(part) for part in base.split(PATH_MARK) if part]
    if parts == [base]:
        return None
    unsafe = any(part in (".", "..") or any(char in part for char in "/\\\0") for part in parts)
    return None if unsafe or not parts else parts


def rebuild_folders(uploaded: Sequence[str], staging: Path) -> tuple[list[str], dict[str, str]]:
    """Sources to ingest, in the order they were dropped: uploads renamed back to the user's names, and marked
    uploads moved back into their folders under ``staging``.

    Returns (sources, {path shown by ingestion: name to show the user}).
    """
    sources: list[str] = []
    names: dict[str, str] = {}
    for path in uploaded:
        base = os.path.basename(path)
        parts = _original_parts(base)
        if parts is None:
            sources.append(path)
            names[path] = base
            continue
        target = staging.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():  # the same name dropped twice: keep both, the second in its own staging folder
            target = Path(tempfile.mkdtemp(dir=staging)).joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copyfile(path, target)
        top = target.parents[len(parts) - 2] if len(parts) > 1 else target
        if str(top) not in names:
            sources.append(str(top))
            names[str(top)] = parts[0]
    return sources, names


def _shown(source: str, names: dict[str, str]) -> str:
    for path, name in names.items():
        if source == path:
            return name
        if source.startswith(path + os.sep):
            return name + "/" + source[len(path) + 1 :].replace(os.sep, "/")
    return source


def report_html(report: IngestReport, names: dict[str, str] | None = None) -> str:
    """The ingestion report: every skipped file with its reason, then what was added and the notices.

    The counts are the section's status line (``report.summary()``), said once, not repeated here."""
    names = names or {}
    kind = "ok" if not report.skipped else "warn"
    parts = [f'<div class="tt-report tt-report-{kind}" id="train_tools_report_body">']
    if report.folders:
        folders = ", ".join(f"{name} (×{repeats})" for name, repeats in report.folders.items())
        parts.append(f"<p>Repeat folders: {html.escape(folders)}</p>")
    if report.skipped:
        rows = "".join(
            f"<tr><td>{html.escape(_shown(item.source, names))}</td><td class='tt-why'>{html.escape(item.reason)}</td></tr>"
            for item in report.skipped
        )
        parts.append(f"<table class='tt-skipped'><tr><th>Skipped</th><th>Why</th></tr>{rows}</table>")
    if report.added:
        added = ", ".join(html.escape(item.stored) for item in report.added[:50])
        more = f" … (+{len(report.added) - 50})" if len(report.added) > 50 else ""
        parts.append(f"<p class='tt-added'>Added: {added}{more}</p>")
    notices = [f"{_shown(item.source, names)}: {notice}" for item in report.added for notice in item.notices]
    if notices:
        items = "".join(f"<li class='tt-notice'>{html.escape(text)}</li>" for text in notices[:100])
        parts.append(f"<details><summary>Notices ({len(notices)})</summary><ul>{items}</ul></details>")
    parts.append("</div>")
    return "".join(parts)


def add_files(
    ctx: Context, project: str | None, version: str | None, files: Any, target_folder: str, path_text: str = ""
) -> Outputs:
    """Ingest uploaded files (and/or paths typed on this machine) into the selected version."""
    from lora_ext.ui import editor_section

    paths = ctx.version(project, version)
    ctx.require_saved_captions(paths, hint="save or undo them before adding images")
    uploaded = [compat.file_path(item) for item in (files or [])]
    typed = [line.strip().strip('"') for line in (path_text or "").splitlines() if line.strip()]
    if not uploaded and not typed:
        raise DatasetError("Nothing to add.", hint="drop images, folders or zips on the drop zone")
    options = IngestOptions(target_folder=target_folder.strip() or None)
    with tempfile.TemporaryDirectory(prefix="train-tools-drop-") as staging:
        sources, names = rebuild_folders(uploaded, Path(staging))
        sources += typed
        report = ingest(sources, paths.dataset, options)
        body = report_html(report, names)
    ctx.session(paths.project, paths.version, reload=True)
    return {
        **editor_section.view(ctx, paths.project, paths.version),
        "drop": None,
        "paths_text": "",
        "report": body,
        "dataset_status": message(report.summary(), "ok" if not report.skipped else "warn"),
    }


def build(ctx: Context, ui: Registry) -> None:
    import gradio as gr

    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            ui["drop"] = gr.File(
                label="Drop images, folders or zips here",
                file_count="multiple",
                elem_id="train_tools_drop",
                elem_classes=["tt-drop"],
            )
        with gr.Column(scale=2):
            ui["target_folder"] = gr.Textbox(
                label="Repeat folder",
                placeholder="e.g. 10_mychar (empty: top level)",
                info="Where files that are not already in an N_name folder go.",
                elem_id="train_tools_target_folder",
            )
            ui["paths_text"] = gr.Textbox(
                label="Or folders / zips on this machine",
                placeholder="one path per line",
                lines=2,
                elem_id="train_tools_paths",
            )
            ui["add_paths"] = gr.Button("Add to dataset", elem_id="train_tools_add_paths")
    ui["dataset_status"] = gr.HTML(elem_id="train_tools_dataset_status")
    ui["report"] = gr.HTML(elem_id="train_tools_report")


def wire(ctx: Context, ui: Registry) -> None:
    from lora_ext.ui import editor_section
    from lora_ext.ui.common import wire as on

    inputs = {**ui.pick("project", "version"), "files": ui["drop"], **ui.pick("target_folder")}
    outputs = {**ui.pick("drop", "paths_text", "report", "dataset_status"), **editor_section.view_outputs(ui)}
    status = ui["dataset_status"]
    on(ui["drop"].upload, add_files, inputs, outputs, ctx, status=status)
    on(ui["add_paths"].click, add_files, {**inputs, "path_text": ui["paths_text"]}, outputs, ctx, status=status)
