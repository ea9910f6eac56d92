"""``tag``: WD14 auto-tagging of a folder of images.

Exit codes: 0 every image tagged (or its caption kept as asked); 1 some images
skipped, each named with a reason on stderr; 2 usage or fatal error (model
missing, onnxruntime unusable), as one line.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

HELP = "auto-tag a folder of images with a WD14 tagger model and write .txt captions"

EXIT_OK, EXIT_PARTIAL = 0, 1
# Same as lora_ext.tagger.captions.EXISTING_MODES (a test checks); spelled out so --help needs no numpy/PIL.
EXISTING_CHOICES = ("skip", "overwrite", "append", "prepend")


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="folder of images")
    parser.add_argument(
        "--model",
        help="a pinned model (e.g. wd-swinv2-tagger-v3), a folder name in the tagger folder, or a folder path "
        "holding model.onnx + selected_tags.csv (default: the first model in the tagger folder, else wd-swinv2-tagger-v3)",
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        help="the tagger folder: one sub-folder per model, pinned models are downloaded into it "
        "(default: $TRAIN_TOOLS_TAGGER_DIR, else models/wd14_tagger in the Train Tools data folder)",
    )
    parser.add_argument("--general-threshold", type=_probability, default=0.35, help="general tags above this (0.35)")
    parser.add_argument(
        "--character-threshold", type=_probability, default=0.85, help="character tags above this (0.85)"
    )
    parser.add_argument("--mcut", action="store_true", help="MCut thresholds for general and character tags")
    parser.add_argument("--general-mcut", action="store_true", help="MCut threshold for general tags only")
    parser.add_argument(
        "--character-mcut", action="store_true", help="MCut threshold for character tags only (floor 0.15)"
    )
    parser.add_argument(
        "--existing", choices=EXISTING_CHOICES, default="skip", help="what to do with an existing caption (skip)"
    )
    parser.add_argument("--no-backup", action="store_true", help="do not keep .NNN.bak copies of replaced captions")
    parser.add_argument("--exclude", action="append", default=[], metavar="TAGS", help="comma-separated tags to drop")
    parser.add_argument(
        "--add", action="append", default=[], metavar="TAGS", help="comma-separated tags written first (trigger words)"
    )
    parser.add_argument("--max-tags", type=_positive, help="keep at most this many model tags")
    parser.add_argument("--characters-first", action="store_true", help="write character tags before general tags")
    parser.add_argument("--rating", choices=("off", "first", "last"), default="off", help="write the rating tag")
    parser.add_argument("--keep-underscores", action="store_true", help="write tag names as in the model (long_hair)")
    parser.add_argument("--batch-size", type=_positive, default=8, help="images per inference batch (8)")
    parser.add_argument("--threads", type=_positive, help="onnxruntime threads (default: all cores)")
    parser.add_argument("--workers", type=_positive, help="image decoding threads (default: cores, at most 8)")
    parser.add_argument("--recursive", action="store_true", help="also tag images in sub-folders")


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from lora_ext.dataset.captions import parse_tags
    from lora_ext.errors import UsageError
    from lora_ext.tagger import Tagger, TagOptions, WriteOptions
    from lora_ext.tagger.models import default_model, default_model_dir

    directory = Path(args.directory).expanduser()
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a folder")
    options = TagOptions(
        general_threshold=args.general_threshold,
        character_threshold=args.character_threshold,
        general_mcut=args.mcut or args.general_mcut,
        character_mcut=args.mcut or args.character_mcut,
        replace_underscores=not args.keep_underscores,
        exclude=parse_tags(args.exclude),
        always_first=parse_tags(args.add),
        characters_first=args.characters_first,
        max_tags=args.max_tags,
        rating=args.rating,
    )
    write = WriteOptions(existing=args.existing, backup=not args.no_backup)
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)  # its retry chatter would bury the one-line error
    try:
        model_dir = args.model_dir or default_model_dir()
        tagger = Tagger.load(args.model or default_model(model_dir), model_dir, threads=args.threads)
    finally:
        hub_logger.setLevel(level)
    try:
        with warnings.catch_warnings():
            # Oversized images are reported as skipped with a reason; PIL's own warning would be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            report = tagger.tag_dataset(
                directory,
                options,
                write,
                recursive=args.recursive,
                batch_size=args.batch_size,
                workers=args.workers,
                progress=_progress_printer() if sys.stderr.isatty() else None,
            )
    finally:
        tagger.unload()
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for path, reason in report.skipped:
        print(f"skipped: {path}: {reason}", file=sys.stderr)
    print(
        f"tagged {len(report.tagged)} image(s) ({report.changed} caption(s) written), "
        f"kept {len(report.kept)} existing caption(s), skipped {len(report.skipped)}, "
        f"in {report.seconds:.1f} s ({report.images_per_second:.1f} images/s)"
    )
    return EXIT_PARTIAL if report.skipped else EXIT_OK


def _progress_printer():  # type: ignore[no-untyped-def]
    def show(done: int, total: int, rate: float) -> None:
        end = "\n" if done >= total else ""
        print(f"\r{done}/{total} images, {rate:.1f}/s", end=end, file=sys.stderr, flush=True)

    return show
