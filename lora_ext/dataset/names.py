"""Project, version and file names: what is refused, and how dropped file names are cleaned.

Names in any script are fine (Japanese included). What is refused is what would
escape the folder or break on one of the three desktop file systems: path
separators, ``.``/``..``, Windows reserved device names (``CON``, ``com1.txt``…),
characters Windows forbids, control characters, a trailing dot or space, and
names too long for the file system once they are combined into a path.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Set as AbstractSet

from lora_ext.errors import DatasetError, shown

MAX_NAME_CHARS = 100
MAX_NAME_BYTES = 200  # UTF-8; most file systems allow 255 bytes per component, kept with margin for suffixes

_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"COM{i}" for i in range(1, 10)} | {f"LPT{i}" for i in range(1, 10)}
)
# Windows also treats the superscript digits as device-name digits (COM¹, LPT²…).
_RESERVED |= frozenset({f"{prefix}{digit}" for prefix in ("COM", "LPT") for digit in "¹²³"})
_FORBIDDEN_CHARS = frozenset('<>:"|?*')
_SEPARATORS = frozenset("/\\")
_WINDOWS_BAD = re.compile(r'[<>:"|?*/\\]')


def _is_control(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Cf") and char not in ("\u200d", "\u200c")


def is_reserved(name: str) -> bool:
    """True for Windows device names, with or without an extension, in any case."""
    stem = name.split(".", 1)[0].strip().upper()
    return stem in _RESERVED


def forbidden_characters(name: str) -> list[str]:
    """The characters of ``name`` that Windows does not allow in a file name (``<>:"|?*``), sorted."""
    return sorted({char for char in name if char in _FORBIDDEN_CHARS})


def validate_name(name: str, kind: str = "name") -> str:
    """Return ``name`` NFC-normalised and stripped, or raise ``DatasetError`` saying why it is refused."""
    if not isinstance(name, str):
        raise DatasetError(f"The {kind} must be text.")
    cleaned = unicodedata.normalize("NFC", name).strip()
    # Length first: every later message quotes the name, and a huge one is refused whatever else is wrong.
    if len(cleaned) > MAX_NAME_CHARS or len(cleaned.encode("utf-8")) > MAX_NAME_BYTES:
        raise DatasetError(
            f"The {kind} {shown(cleaned)} is too long ({len(cleaned)} characters).",
            hint=f"use at most {MAX_NAME_CHARS} characters",
        )
    quoted = shown(cleaned)
    if not cleaned:
        raise DatasetError(f"The {kind} is empty.", hint="type a name")
    if cleaned in (".", ".."):
        raise DatasetError(f"The {kind} {quoted} is not allowed.", hint="choose a name with letters or digits")
    if cleaned.startswith("."):
        raise DatasetError(f"The {kind} {quoted} starts with a dot, which hides it.", hint="remove the dot")
    if any(char in _SEPARATORS for char in cleaned):
        raise DatasetError(f"The {kind} {quoted} contains a path separator (/ or \\).", hint="remove the slash")
    if any(_is_control(char) for char in cleaned):
        raise DatasetError(f"The {kind} contains control characters.", hint="retype the name without them")
    bad = forbidden_characters(cleaned)
    if bad:
        raise DatasetError(
            f"The {kind} {quoted} contains characters Windows does not allow: {' '.join(bad)}",
            hint="remove them",
        )
    if is_reserved(cleaned):
        raise DatasetError(f"The {kind} {quoted} is a reserved device name on Windows.", hint="add a letter to it")
    if cleaned.endswith("."):
        raise DatasetError(f"The {kind} {quoted} ends with a dot, which Windows drops.", hint="remove the dot")
    return cleaned


def sanitize_filename(name: str, fallback: str = "image") -> str:
    """Turn any dropped file name into one that ``validate_name`` accepts, keeping its extension."""
    text = unicodedata.normalize("NFC", name)
    text = "".join("_" if _is_control(char) else char for char in text)
    text = _WINDOWS_BAD.sub("_", text).strip()
    stem, dot, suffix = text.rpartition(".")
    if not dot or not suffix.strip() or " " in suffix:
        stem, suffix = text, ""
    stem = stem.strip(" .") or fallback
    suffix = suffix.strip()[:16]
    if is_reserved(stem):
        stem = f"{stem}_"
    ending = f".{suffix}" if suffix else ""
    while len(stem) + len(ending) > MAX_NAME_CHARS or len((stem + ending).encode("utf-8")) > MAX_NAME_BYTES - 12:
        stem = stem[:-1]
    stem = stem.rstrip(" .") or fallback
    return validate_name(stem + ending, "file name")


def unique_stem(stem: str, taken_folded: AbstractSet[str]) -> str:
    """``stem``, or ``stem_2``, ``stem_3``… so that its casefolded form is not in ``taken_folded``.

    ``taken_folded`` holds casefolded stems (case-insensitive file systems). Images
    are made unique by stem, not by full name, because ``a.png`` and ``a.jpg``
    would share the caption file ``a.txt``.
    """
    if stem.casefold() not in taken_folded:
        return stem
    number = 2
    while f"{stem}_{number}".casefold() in taken_folded:
        number += 1
    return f"{stem}_{number}"
