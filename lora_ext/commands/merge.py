"""``merge``: bake LoRAs into a single-file checkpoint."""

from __future__ import annotations

import argparse

HELP = "bake one or more LoRAs into a single-file checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("base", help="single-file checkpoint in A1111 key layout (.safetensors)")
    parser.add_argument(
        "--lora",
        action="append",
        required=True,
        metavar="PATH[:WEIGHT]",
        help="a LoRA file and its weight (default 1.0); repeat for several",
    )
    parser.add_argument("--out", required=True, help="where to write the merged checkpoint (.safetensors)")
    parser.add_argument(
        "--save-dtype",
        choices=("fp16", "bf16", "fp32"),
        default=None,
        help="dtype of the merged weights (default: the base's)",
    )


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from lora_ext.loading.merge import SAVE_DTYPES, merge_checkpoint, parse_lora_argument

    def warn(message: str) -> None:
        print(f"warning: {message}", file=sys.stderr)

    sources = [parse_lora_argument(text) for text in args.lora]
    save_dtype = SAVE_DTYPES[args.save_dtype] if args.save_dtype else None
    summary = merge_checkpoint(Path(args.base), sources, Path(args.out), save_dtype=save_dtype, warn=warn)
    matched = ", ".join(f"{name}: {count} modules" for name, count in summary.matched.items())
    print(
        f"merged into {summary.out} ({summary.family}; {summary.touched} weights changed, "
        f"{summary.copied} copied unchanged; {matched})"
    )
    return 0
