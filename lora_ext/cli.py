"""``python -m lora_ext``: the command-line entry point.

Each sub-command lives in ``lora_ext/commands/<name>.py`` and provides
``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``. Command modules
import heavy packages (torch, onnxruntime, gradio) inside ``run`` so that
``--help`` stays instant.

Exit codes: 0 ok, 1 finished with some items skipped, 2 usage or fatal error.
A ``LoraExtError`` becomes one line on stderr; any other exception is a bug and
is shown as one line too, with the traceback only under ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence

from lora_ext.errors import LoraExtError

COMMANDS: tuple[str, ...] = ("ui", "tag", "train", "compare", "merge", "inspect", "export")

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_FATAL = 2


class _Parser(argparse.ArgumentParser):
    """argparse that exits with 2 and one line, as every other usage error does."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_FATAL)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m lora_ext", description="Train Tools: LoRA training, tagging and loading.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for unexpected errors")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        module = importlib.import_module(f"lora_ext.commands.{name}")
        command_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        command_parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    try:
        return int(args._module.run(args))
    except LoraExtError as error:
        print(f"error: {error.one_line()}", file=sys.stderr)
        if debug:
            traceback.print_exc()
        return error.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_FATAL
    except Exception as error:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        print(f"error: unexpected {type(error).__name__}: {error} (run with --debug for details)", file=sys.stderr)
        if debug:
            traceback.print_exc()
        return EXIT_FATAL
