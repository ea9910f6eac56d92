"""One lock per dataset folder, shared by every writer and reader of its captions.

Caption saves, ingestion, tagging writes and training's read of the captions all
hold ``dataset_lock(dataset_dir)`` while they touch the folder, so two of them
never interleave: not two threads of the app (the page, the REST API, a job) and
not two programs (the app and the CLI), because the lock is a file in the
folder, ``.train-tools.lock``: hidden, so, like ``.ingest-index.json``, never part
of the dataset, and nothing is written outside the folder.

The lock is re-entrant within a thread (a save inside an ingestion, a load inside
a save). Threads of one process first queue on an in-process lock, so only one of
them at a time waits on the lock file; ``filelock`` covers other processes.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

from lora_ext.errors import DatasetError

DEFAULT_TIMEOUT = 600.0  # seconds; an ingestion of thousands of images holds the lock for a while


@dataclass
class _Holder:
    thread_lock: threading.RLock = field(default_factory=threading.RLock)
    depth: int = 0  # nesting of the thread that holds ``thread_lock``
    file_lock: FileLock | None = None


# The one process-wide table the core keeps: a lock only works when every user in the
# process shares it, whatever object (UI context, CLI, job) opened the folder.
_HOLDERS: dict[str, _Holder] = {}
_HOLDERS_GUARD = threading.Lock()


def _holder(dataset_dir: Path) -> _Holder:
    key = os.path.normcase(os.path.realpath(dataset_dir))
    with _HOLDERS_GUARD:
        return _HOLDERS.setdefault(key, _Holder())


LOCK_NAME = ".train-tools.lock"


def lock_path(dataset_dir: Path) -> Path:
    """The lock file of ``dataset_dir``: hidden, inside it."""
    return dataset_dir / LOCK_NAME


def _busy(dataset_dir: Path) -> DatasetError:
    return DatasetError(
        f"The dataset {dataset_dir.name} is busy: another save, ingestion, tagging or training keeps it locked.",
        hint=f"try again when it finishes (lock file {lock_path(dataset_dir)})",
    )


def _lock_file(dataset_dir: Path, timeout: float) -> FileLock | None:
    """Take the folder's lock file; ``None`` in a read-only folder (nothing of ours can write it then)."""
    path = lock_path(dataset_dir)
    file_lock = FileLock(str(path))
    try:
        file_lock.acquire(timeout=timeout)
    except Timeout:
        raise _busy(dataset_dir) from None
    except OSError:
        if not os.access(path.parent, os.W_OK):
            return None
        raise
    return file_lock


@contextlib.contextmanager
def dataset_lock(dataset_dir: str | os.PathLike[str], timeout: float = DEFAULT_TIMEOUT) -> Iterator[None]:
    """Hold the lock of ``dataset_dir`` (which must exist) for the ``with`` block."""
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():  # checked here: taking the lock file would otherwise create the folder
        raise DatasetError(f"The dataset folder {dataset_dir} does not exist.")
    holder = _holder(dataset_dir)
    if not holder.thread_lock.acquire(timeout=timeout):
        raise _busy(dataset_dir)
    try:
        if holder.depth == 0:
            holder.file_lock = _lock_file(dataset_dir, timeout)
        holder.depth += 1
        try:
            yield
        finally:
            holder.depth -= 1
            if holder.depth == 0 and holder.file_lock is not None:
                holder.file_lock.release()
                holder.file_lock = None
    finally:
        holder.thread_lock.release()
