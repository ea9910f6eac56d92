"""``train``: train a LoRA on the standalone host."""

from __future__ import annotations

import argparse

HELP = "train a LoRA on a dataset folder with a diffusers or single-file model (or the demo model)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="diffusers folder, single-file checkpoint, or 'demo'")
    parser.add_argument("--dataset", required=True, help="dataset folder (images + .txt captions)")
    parser.add_argument("--out", required=True, help="output .safetensors file")


def run(args: argparse.Namespace) -> int:
    from lora_ext.errors import UsageError

    raise UsageError("the train command is not available in this build yet")
