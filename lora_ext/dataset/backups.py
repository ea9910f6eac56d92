"""Numbered backups of caption text, one JSON file per save: ``backups/0001.json``, ``0002.json``…

A backup holds the previous text of every caption a save is about to change
(``null`` for a caption file that did not exist yet), so restoring it gives the
dataset as it was before that save. One file per backup keeps a 5 000-caption
save to one extra write instead of 5 000.

A backup is written under the dataset's lock (the save holds it) and published
under its number with a hard link, which never replaces an existing file: two
writers that somehow picked the same number end with two numbers, never one
backup overwriting the other.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from lora_ext.errors import DatasetError
from lora_ext.fileio import write_text_atomic
from lora_ext.locking import dataset_lock

STAGING_PREFIX = ".staging-"


@dataclass(frozen=True)
class BackupInfo:
    number: int
    created: str
    files: tuple[str, ...]


class CaptionBackups:
    """The numbered backups in one folder, keeping the newest ``keep``."""

    def __init__(self, folder: Path, keep: int) -> None:
        self.folder = folder
        self.keep = max(1, keep)

    def _path(self, number: int) -> Path:
        return self.folder / f"{number:04d}.json"

    def numbers(self) -> list[int]:
        if not self.folder.is_dir():
            return []
        return sorted(int(path.stem) for path in self.folder.glob("*.json") if path.stem.isdigit())

    def list(self) -> tuple[BackupInfo, ...]:
        """Backups, oldest first."""
        found = []
        for number in self.numbers():
            data = self._load(number)
            found.append(BackupInfo(number, str(data.get("created", "")), tuple(data["files"])))
        return tuple(found)

    def read(self, number: int) -> dict[str, str | None]:
        """Caption path → its text before save ``number`` (``None``: the file did not exist)."""
        return dict(self._load(number)["files"])

    def write(self, dataset_dir: Path, targets: list[str]) -> int:
        """Record the current text of ``targets`` as the next numbered backup; returns its number."""
        with dataset_lock(dataset_dir):
            return self._write(dataset_dir, targets)

    def _write(self, dataset_dir: Path, targets: list[str]) -> int:
        files: dict[str, str | None] = {}
        for relative in targets:
            path = dataset_dir / relative
            try:
                files[relative] = path.read_bytes().decode("utf-8")  # BOM kept: restores byte for byte
            except FileNotFoundError:
                files[relative] = None
            except (OSError, UnicodeDecodeError) as error:
                raise DatasetError(
                    f"The caption {relative} cannot be backed up ({error}); nothing was saved."
                ) from None
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        staging = self.folder / f"{STAGING_PREFIX}{uuid.uuid4().hex}.tmp"
        try:
            write_text_atomic(staging, json.dumps({"created": created, "files": files}, ensure_ascii=False))
            return self._publish(staging)
        except OSError as error:
            raise DatasetError(
                f"The caption backup could not be written ({error.strerror}); nothing was saved."
            ) from None
        finally:
            staging.unlink(missing_ok=True)

    def _publish(self, staging: Path) -> int:
        """Give the finished backup ``staging`` the next free number."""
        number = max(self.numbers(), default=0) + 1
        while True:
            try:
                os.link(staging, self._path(number))
                return number
            except FileExistsError:
                number += 1
            except OSError:
                # No hard links on this file system (FAT, some network shares): the dataset lock,
                # held by every writer, already makes ``number`` free.
                os.replace(staging, self._path(number))
                return number

    def prune(self) -> None:
        """Delete all but the newest ``keep`` backups."""
        numbers = self.numbers()
        for number in numbers[: max(0, len(numbers) - self.keep)]:
            self._path(number).unlink(missing_ok=True)
        for stale in self.folder.glob(f"{STAGING_PREFIX}*.tmp"):  # left by a crash; the save holds the lock
            stale.unlink(missing_ok=True)

    def _load(self, number: int) -> dict:
        path = self._path(number)
        try:
            data = json.loads(path.read_text("utf-8"))
            if not isinstance(data.get("files"), dict):
                raise ValueError("no files")
            return data
        except FileNotFoundError:
            raise DatasetError(f"There is no caption backup number {number}.") from None
        except (ValueError, AttributeError):
            raise DatasetError(f"The caption backup {path.name} is damaged.") from None
