"""Turning dropped paths (files, folders, zips) into a flat list of entries to ingest.

Nothing is read beyond directory listings and zip headers here; each entry
carries a ``read`` function that ingestion calls once. Zip entries that would
land outside the dataset (``../x.png``, ``/etc/x``, ``C:/x``), names Windows
cannot hold (``a:b.png``, ``q?.png``), links and encrypted entries are refused here, before anything is extracted.
"""

from __future__ import annotations

import os
import re
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lora_ext.dataset.names import forbidden_characters
from lora_ext.errors import DatasetError

_DRIVE = re.compile(r"^[A-Za-z]:[/\\]")  # "C:/x" or "C:\x": an absolute path on Windows
_SYSTEM_FILES = frozenset({"thumbs.db", "desktop.ini", ".ds_store"})


@dataclass(frozen=True)
class Entry:
    """One file found in what was dropped."""

    display: str  # shown in the report: "photos.zip:10_cat/a.png"
    name: str  # the file's own name
    folders: tuple[str, ...]  # folders between the dropped item and the file, dropped folder included
    group: str  # entries in one group pair images with captions by stem
    size: int
    read: Callable[[], bytes]
    sibling_dir: Path | None = None  # a loose file's real folder, to find its caption beside it


@dataclass(frozen=True)
class Refused:
    display: str
    reason: str


def is_ignorable(name: str) -> bool:
    """Hidden and operating-system files that are never part of a dataset."""
    return name.startswith(".") or name.casefold() in _SYSTEM_FILES or name == "__MACOSX"


def _read_file(path: Path, limit: int) -> Callable[[], bytes]:
    def read() -> bytes:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise DatasetError(f"the file is larger than {limit // 2**20} MB")
        return data

    return read


def _zip_name(info: zipfile.ZipInfo) -> str:
    """An entry's name; names from old Windows zippers are cp437 bytes that are often really cp932 or UTF-8."""
    if info.flag_bits & 0x800:
        return info.filename
    raw = info.filename.encode("cp437", errors="replace")
    for encoding in ("utf-8", "cp932"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return info.filename


def _zip_refusal(name: str, info: zipfile.ZipInfo) -> str | None:
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or _DRIVE.match(name) or ".." in parts:
        return "refused: the path would escape the dataset folder"
    bad = sorted({char for part in parts for char in forbidden_characters(part)})
    if bad:  # "a:b.png", "q?.png": names no Windows folder can hold, and "C:x" is drive-relative there
        return f"refused: invalid name (contains {' '.join(bad)}, which Windows does not allow)"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "refused: links inside zips are not followed"
    if info.flag_bits & 0x1:
        return "encrypted zip entries cannot be read; unzip it yourself first"
    return None


def _zip_entries(path: Path, limit: int, stack: ExitStack) -> Iterator[Entry | Refused]:
    try:
        archive = stack.enter_context(zipfile.ZipFile(path))
    except (zipfile.BadZipFile, OSError) as error:
        yield Refused(path.name, f"not a readable zip ({error})")
        return
    for info in archive.infolist():
        name = _zip_name(info)
        display = f"{path.name}:{name}"
        if info.is_dir():
            continue
        parts = PurePosixPath(name.replace("\\", "/")).parts
        reason = _zip_refusal(name, info)  # before the hidden-file check: ".." looks hidden too
        if reason is None and any(is_ignorable(part) for part in parts):
            continue
        if reason is None and info.file_size > limit:
            reason = f"the file is larger than {limit // 2**20} MB"
        if reason is None and parts[-1].lower().endswith(".zip"):
            reason = "zips inside a zip are not opened; unzip it first"
        if reason:
            yield Refused(display, reason)
            continue
        yield Entry(
            display=display,
            name=parts[-1],
            folders=(path.stem, *parts[:-1]),
            group=f"{path}:{'/'.join(parts[:-1])}",
            size=info.file_size,
            read=_zip_reader(archive, info, limit),
        )


def _zip_reader(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            with archive.open(info) as handle:
                data = handle.read(limit + 1)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as error:
            raise DatasetError(f"the zip entry cannot be read ({error})") from None
        if len(data) > limit:
            raise DatasetError(f"the file is larger than {limit // 2**20} MB once unpacked")
        return data

    return read


def _folder_entries(root: Path, limit: int) -> Iterator[Entry | Refused]:
    for current, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(name for name in dirnames if not is_ignorable(name))
        current_path = Path(current)
        relative = current_path.relative_to(root).parts
        for name in sorted(filenames):
            if is_ignorable(name):
                continue
            file_path = current_path / name
            if file_path.is_symlink():
                yield Refused(str(file_path), "refused: links are not followed")
                continue
            yield Entry(
                display=str(file_path),
                name=name,
                folders=(root.name, *relative),
                group=str(current_path),
                size=file_path.stat().st_size,
                read=_read_file(file_path, limit),
            )


def collect_entries(sources: list[Path], limit: int, stack: ExitStack) -> Iterator[Entry | Refused]:
    """Every file under the dropped paths, in a stable order, with refusals for what cannot be taken.

    Zips stay open on ``stack`` until the caller has read their entries (one open per zip, not per entry).
    """
    for source in sources:
        if not source.exists():
            yield Refused(str(source), "not found")
        elif source.is_dir():
            yield from _folder_entries(source, limit)
        elif source.suffix.lower() == ".zip":
            yield from _zip_entries(source, limit, stack)
        elif not is_ignorable(source.name):
            yield Entry(
                display=str(source),
                name=source.name,
                folders=(),
                group="dropped files",
                size=source.stat().st_size,
                read=_read_file(source, limit),
                sibling_dir=source.parent,
            )
