"""``export``: a dataset as kohya ``N_name`` folders or a zip of them, captions included.

A project version (``--project``, in the standalone data folder) goes into its
``exports/`` folder unless ``--out`` says where; any other dataset folder
(``--dataset``) needs ``--out``. A ``--out`` ending in ``.zip`` writes a zip, anything
else a new (or empty) folder. Images at the dataset's top level go into
``<repeats>_<name>``: by default the version's repeats and trigger word (or the
project's name); for a plain folder, 1 and the folder's own name.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "export a dataset (a project version or a folder) to a kohya N_name folder layout or a zip"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="a dataset folder (images + .txt captions, or N_name folders)")
    source.add_argument("--project", help="a project in the standalone data folder (see --version)")
    parser.add_argument("--version", default="v1", help="the project's version (default: v1)")
    parser.add_argument(
        "--out", help="a .zip file or a new folder; default for a project: its version's exports/ folder"
    )
    parser.add_argument("--folder", action="store_true", help="with a project and no --out: a folder, not a zip")
    parser.add_argument("--repeats", type=int, help="repeats of the top-level images' folder (N in N_name)")
    parser.add_argument("--name", help="name of the top-level images' folder (the name in N_name)")


def run(args: argparse.Namespace) -> int:
    from lora_ext.app import exports
    from lora_ext.dataset.export import export_kohya, export_zip
    from lora_ext.errors import UsageError

    out = Path(args.out) if args.out else None
    kind = (
        "zip" if (out is not None and out.suffix.lower() == ".zip") or (out is None and not args.folder) else "folder"
    )
    if args.project:
        from lora_ext.app.context import Context, Workspace

        ctx = Context(_no_host, Workspace.standalone())
        report = exports.export_version(ctx, args.project, args.version, kind, args.repeats, args.name, out)
    else:
        if out is None:
            raise UsageError("--out is needed with --dataset", hint="give a .zip file or a new folder")
        dataset = Path(args.dataset)
        write = export_zip if kind == "zip" else export_kohya
        report = write(dataset, out, args.repeats or 1, args.name or dataset.resolve().name)
    print(exports.describe(report))
    return 0


def _no_host():
    from lora_ext.errors import HostUnavailable

    raise HostUnavailable("exporting needs no model")
