"""``merge``: bake LoRAs into a single-file checkpoint."""

from __future__ import annotations

import argparse

HELP = "bake one or more LoRAs into a single-file checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("base", help="single-file checkpoint (.safetensors)")
    parser.add_argument("--lora", action="append", required=True, metavar="PATH[:WEIGHT]")
    parser.add_argument("--out", required=True)


def run(args: argparse.Namespace) -> int:
    from lora_ext.errors import UsageError

    raise UsageError("the merge command is not available in this build yet")
