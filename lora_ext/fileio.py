"""Atomic file writes: a temp file in the same folder, fsync, then rename.

Every file the extension writes for the user (captions, LoRA files, merged
checkpoints, manifests) goes through here, so an interrupted write never leaves a
half-written file in place of a good one, a written file gets the mode the user's
umask gives a new file, and a full disk is one line ("not enough disk space…").

Temp files are named ``.<name>.tt-<pid>-<random>.tmp``. One left behind by a
writer that died is removed the next time that folder is written; a live
writer's temp file (its process still runs, or it was touched recently) is never.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

from lora_ext.errors import DiskFull

TEMP_SUFFIX = ".tmp"
_TEMP_NAME = re.compile(r"^\..*\.tt-(?P<pid>[0-9]+)-[0-9a-f]{8}\.tmp$", re.DOTALL)
# Long enough that a writer in another container (whose pid we cannot see) is never mid-write:
# writers touch their file continuously, and one gone quiet for minutes died.
STALE_AFTER_S = 5 * 60
# Whatever the pid says (reused, or written from another machine sharing the folder).
ABANDONED_AFTER_S = 24 * 3600
_NAME_KEPT = 120  # characters of the target's name kept in its temp name (NAME_MAX is 255)
_DISK_FULL_ERRNOS = frozenset(code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if code is not None)
# Windows ERROR_HANDLE_DISK_FULL, ERROR_DISK_FULL: what a Rust io::Error reports as its raw code there.
_DISK_FULL_WINERRORS = frozenset({39, 112})
# Writers that wrap the OS error in their own type keep its Rust io::Error text:
# safetensors 0.5+: "I/O error: No space left on device (os error 28)";
# older: "IoError(Os { code: 28, kind: StorageFull, … })".
_RUST_OS_CODE = re.compile(r"\(os error (\d+)\)|Os \{ code: (\d+)")
_RUST_FULL_KINDS = ("StorageFull", "QuotaExceeded", "FilesystemQuotaExceeded")


def temp_name_for(target: Path) -> str:
    """A fresh temp file name beside ``target`` that ``remove_stale_temps`` recognises as ours."""
    return f".{target.name[:_NAME_KEPT]}.tt-{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}"


def create_temp(target: str | os.PathLike[str]) -> Path:
    """Create an empty temp file beside ``target`` (mode as the umask gives a new file) and return its path."""
    target = Path(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temp = target.with_name(temp_name_for(target))
        try:
            # 0o666 and the kernel applies the umask, as for any new file; mkstemp's 0600 would
            # keep a WebUI running as another user from reading what we wrote.
            os.close(os.open(temp, flags, 0o666))
        except FileExistsError:
            continue
        except OSError as error:
            full = _as_disk_full(error, target)
            if full is not None:
                raise full from error
            raise
        return temp


def remove_stale_temps(folder: str | os.PathLike[str], now: float | None = None) -> int:
    """Remove our temp files in ``folder`` whose writer is gone; returns how many were removed."""
    now = time.time() if now is None else now
    try:
        names = [name for name in os.listdir(folder) if name.endswith(TEMP_SUFFIX)]
    except OSError:
        return 0
    removed = 0
    for name in names:
        match = _TEMP_NAME.match(name)
        if match is None:
            continue
        path = Path(folder, name)
        try:
            idle = now - path.lstat().st_mtime
            if idle >= ABANDONED_AFTER_S or (idle >= STALE_AFTER_S and not _process_runs(int(match["pid"]))):
                path.unlink()
                removed += 1
        except OSError:  # gone meanwhile, or still open on Windows (a live writer): leave it
            continue
    return removed


def _process_runs(pid: int) -> bool:
    """Whether a process with this pid runs on this machine (True when it cannot be told)."""
    if pid == os.getpid():
        return True
    if os.name == "nt":
        # os.kill(pid, 0) would terminate it there; an open temp file cannot be deleted on
        # Windows anyway, so the idle time and the failing unlink protect a live writer.
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _disk_full_code(error: BaseException) -> bool:
    """Whether ``error`` (or what it wraps) reports a full disk or an exhausted quota."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and (
            error.errno in _DISK_FULL_ERRNOS or getattr(error, "winerror", None) in _DISK_FULL_WINERRORS
        ):
            return True
        text = str(error)
        for match in _RUST_OS_CODE.finditer(text):
            code = int(match[1] or match[2])
            if code in (_DISK_FULL_WINERRORS if os.name == "nt" else _DISK_FULL_ERRNOS):
                return True
        if any(f"kind: {kind}" in text for kind in _RUST_FULL_KINDS):
            return True
        error = error.__cause__ or error.__context__
    return False


def _as_disk_full(error: BaseException, target: Path) -> DiskFull | None:
    return DiskFull(target) if not isinstance(error, DiskFull) and _disk_full_code(error) else None


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path beside ``target``; on success rename it over ``target``.

    Stale temp files of ours in the folder are removed first. On any exception the temp
    file is removed and ``target`` is left untouched; a full disk raises ``DiskFull``.
    (A writer of many files into one folder uses ``create_temp`` and sweeps it once.)
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target.parent)
    tmp = create_temp(target)
    try:
        new_file_mode = tmp.stat().st_mode & 0o7777  # what the umask gave it
        yield tmp
        # A writer may replace the temp file with one of its own (safetensors 0.8 writes
        # through its own 0600 temp file and renames it over ours): give it the mode back.
        if tmp.stat().st_mode & 0o7777 != new_file_mode:
            os.chmod(tmp, new_file_mode)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        full = _as_disk_full(error, target)
        if full is not None:
            raise full from error
        raise


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(target: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``target`` atomically (no newline translation)."""
    write_bytes_atomic(target, text.encode("utf-8"))
