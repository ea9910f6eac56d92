"""``tag``: WD14 auto-tagging of a folder of images."""

from __future__ import annotations

import argparse

HELP = "auto-tag a folder of images with a WD14 tagger model and write .txt captions"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="folder of images")
    parser.add_argument("--model", required=True, help="model name (e.g. wd-vit-tagger-v3) or a folder with model.onnx + selected_tags.csv")


def run(args: argparse.Namespace) -> int:
    from lora_ext.errors import UsageError

    raise UsageError("the tag command is not available in this build yet")
