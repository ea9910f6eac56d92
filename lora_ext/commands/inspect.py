"""``inspect``: describe a LoRA file."""

from __future__ import annotations

import argparse

HELP = "show a LoRA file's format, base model, ranks, metadata and hashes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    import json

    from lora_ext.formats.inspect import format_report, inspect_lora

    info = inspect_lora(args.path)
    print(json.dumps(info, indent=2) if args.json else format_report(info))
    return 0
