"""Numbered backups of caption text, one JSON file per save: ``backups/0001.json``, ``0002.json``…

A backup holds the previous text of every caption a save is about to change
(``null`` for a caption file that did not exist yet), so restoring it gives the
dataset as it was before that save. One file per backup keeps a 5 000-caption
save to one extra write instead of 5 000.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from lora_ext.errors import DatasetError
from lora_ext.fileio import write_text_atomic


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
        number = max(self.numbers(), default=0) + 1
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        try:
            write_text_atomic(self._path(number), json.dumps({"created": created, "files": files}, ensure_ascii=False))
        except OSError as error:
            raise DatasetError(
                f"The caption backup could not be written ({error.strerror}); nothing was saved."
            ) from None
        return number

    def prune(self) -> None:
        """Delete all but the newest ``keep`` backups."""
        numbers = self.numbers()
        for number in numbers[: max(0, len(numbers) - self.keep)]:
            self._path(number).unlink(missing_ok=True)

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
