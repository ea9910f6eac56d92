"""``inspect``: describe a LoRA file."""

from __future__ import annotations

import argparse

HELP = "show a LoRA file's format, base model, ranks, metadata and hashes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    from lora_ext.errors import UsageError

    raise UsageError("the inspect command is not available in this build yet")
