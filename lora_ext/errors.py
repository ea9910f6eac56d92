"""Typed errors that carry a message for the user.

The core raises these; only the edges (CLI, UI, REST API) catch them and show
``user_message`` (plus ``hint`` when there is one) as a single line. Anything
that is not a ``LoraExtError`` is a bug and is shown with a traceback only in
debug mode.
"""

from __future__ import annotations

import errno
import os

MAX_SHOWN_CHARS = 40  # how much of a refused name a message repeats: enough to recognise it


def shown(name: str, limit: int = MAX_SHOWN_CHARS) -> str:
    """``name`` quoted for a message, cut to ``limit`` characters (a 5 000-character name is not echoed)."""
    return repr(name if len(name) <= limit else name[:limit] + "…")


class LoraExtError(Exception):
    """Base of every error the user is meant to read."""

    exit_code = 2

    def __init__(self, user_message: str, hint: str | None = None) -> None:
        super().__init__(user_message)
        self.user_message = user_message
        self.hint = hint

    def one_line(self) -> str:
        """The message and hint joined into one line, for a console or a toast."""
        text = " ".join(self.user_message.split())
        if self.hint:
            text += f" ({' '.join(self.hint.split())})"
        return text


class UsageError(LoraExtError):
    """Bad command-line or API arguments."""


class ConfigError(LoraExtError):
    """A configuration value (or a combination of values) that cannot work."""


class ModelLoadError(LoraExtError):
    """A checkpoint, config or pipeline that cannot be loaded."""


class HostUnavailable(LoraExtError):
    """The host cannot do what was asked (no model loaded, low-VRAM mode…)."""


class UnsupportedLoraFormat(LoraExtError):
    """A LoRA file whose tensors no known format accepts."""


class IncompatibleBaseModel(LoraExtError):
    """A LoRA made for another base model (an SD1 file on SDXL, say)."""


class FileFormatError(LoraExtError):
    """A file that is not what its name says: truncated, malformed header, unsafe pickle."""


class DatasetError(LoraExtError):
    """A dataset, project or version that cannot be read or written as asked."""


class TaggerUnavailable(LoraExtError):
    """A tagger model that is missing, unreadable or needs a newer onnxruntime."""


class TrainingDiverged(LoraExtError):
    """The loss became NaN or infinite."""


class Cancelled(LoraExtError):
    """A long job stopped because the user asked it to."""

    exit_code = 1


class MissingDependency(LoraExtError):
    """An optional package that the chosen option needs is not installed."""


class DiskFull(LoraExtError, OSError):
    """A write that failed because the disk (or the user's quota) is full; the original file is untouched.

    It is an ``OSError`` too (errno ``ENOSPC``), so code that already handles a failed write
    (rolling back, skipping one caption) goes on doing so.
    """

    def __init__(self, target: str | os.PathLike[str]) -> None:
        name, folder = os.path.basename(target), os.path.dirname(target) or "."
        LoraExtError.__init__(
            self, f"Not enough disk space to write {name}.", hint=f"free some space on the disk that holds {folder}"
        )
        self.errno, self.strerror, self.filename = errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(target)

    def __str__(self) -> str:
        return self.user_message


class UnsafePath(DatasetError):
    """A path that would lead out of its folder: ``..``, an absolute path, or a link pointing elsewhere."""
