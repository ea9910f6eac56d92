"""Reading and writing a dataset's caption files, and nothing else.

Saving is all-or-nothing across files:

1. the previous text of every caption about to change goes into a numbered
   backup (``backups/0001/``), written to a temp folder and renamed into place;
2. each new caption is written to a temp file beside its target and fsynced;
3. a journal listing (temp → target, new digest) is written atomically;
4. each temp file is renamed over its target;
5. the journal is deleted.

A crash before step 3 leaves only stray temp files, removed on the next open
(the save never happened). A crash after it is completed on the next open by
finishing the renames; if a temp file has vanished and its target does not hold
the new text, every file is put back from the backup instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from lora_ext.dataset.captions import Tags, join_tags, parse_tags
from lora_ext.dataset.layout import CAPTION_EXTENSION, CAPTION_EXTENSIONS, is_image_name
from lora_ext.dataset.table import CaptionTable
from lora_ext.errors import DatasetError
from lora_ext.fileio import write_bytes_atomic, write_text_atomic

JOURNAL_NAME = "save-journal.json"
TEMP_MARK = ".tt-save-"
DEFAULT_KEEP_BACKUPS = 20


class CaptionsChangedOnDisk(DatasetError):
    """Caption files were changed by another program since the dataset was loaded."""

    def __init__(self, paths: Iterable[str]) -> None:
        self.paths = tuple(sorted(paths))
        shown = ", ".join(self.paths[:5]) + (" …" if len(self.paths) > 5 else "")
        super().__init__(
            f"{len(self.paths)} caption file(s) changed on disk since the dataset was loaded: {shown}",
            hint="reload the dataset to see the changes, or save again with overwrite",
        )


@dataclass(frozen=True)
class CaptionFile:
    """A caption as it was on disk when last read or written."""

    path: str  # relative to the dataset folder, POSIX
    exists: bool
    mtime_ns: int
    size: int
    digest: str
    tags: Tags


@dataclass(frozen=True)
class RecoveryReport:
    """What opening the dataset did about an interrupted save."""

    action: Literal["none", "completed", "rolled_back"] = "none"
    files: tuple[str, ...] = ()
    removed_temp_files: int = 0


@dataclass(frozen=True)
class LoadResult:
    table: CaptionTable
    recovery: RecoveryReport
    notices: tuple[str, ...] = ()


@dataclass(frozen=True)
class SaveResult:
    written: tuple[str, ...]
    backup: int | None


@dataclass(frozen=True)
class BackupInfo:
    number: int
    created: str
    files: tuple[str, ...] = field(default=())


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _decode(data: bytes, relative: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DatasetError(f"The caption {relative} is not UTF-8 text.", hint="re-save it as UTF-8") from None


def _commit_file(temp: Path, target: Path) -> None:
    """Rename one finished temp file over its target (a seam for crash tests)."""
    os.replace(temp, target)


def _fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


class CaptionStore:
    """The caption files of one dataset folder, with journalled saves and numbered backups."""

    def __init__(
        self, dataset_dir: Path, state_dir: Path | None = None, keep_backups: int = DEFAULT_KEEP_BACKUPS
    ) -> None:
        self.dataset_dir = Path(dataset_dir)
        self.state_dir = (
            Path(state_dir) if state_dir else self.dataset_dir.with_name(f".{self.dataset_dir.name}.captions")
        )
        self.keep_backups = max(1, keep_backups)
        self._disk: dict[str, CaptionFile] = {}

    @property
    def backups_dir(self) -> Path:
        return self.state_dir / "backups"

    @property
    def journal_path(self) -> Path:
        return self.state_dir / JOURNAL_NAME

    # --- loading -----------------------------------------------------------------------

    def load(self) -> LoadResult:
        """Finish or undo any interrupted save, then read every caption (images are not opened)."""
        if not self.dataset_dir.is_dir():
            raise DatasetError(f"The dataset folder {self.dataset_dir} does not exist.")
        recovery = self.recover()
        disk: dict[str, CaptionFile] = {}
        captions: dict[str, Tags] = {}
        for folder in self._folders():
            prefix = "" if folder == self.dataset_dir else f"{folder.name}/"
            with os.scandir(folder) as entries:
                names = {entry.name for entry in entries if entry.is_file()}
            for name in sorted(names):
                if not is_image_name(name):
                    continue
                stem = os.path.splitext(name)[0]
                caption_name = next(
                    (stem + ext for ext in CAPTION_EXTENSIONS if stem + ext in names), stem + CAPTION_EXTENSION
                )
                state = self._read_caption(prefix + caption_name)
                disk[prefix + name] = state
                captions[prefix + name] = state.tags
        self._disk = disk
        return LoadResult(CaptionTable.from_captions(captions), recovery, self._shared_caption_notices(disk))

    def _folders(self) -> list[Path]:
        folders = [self.dataset_dir]
        with os.scandir(self.dataset_dir) as entries:
            folders.extend(Path(entry.path) for entry in entries if entry.is_dir() and not entry.name.startswith("."))
        return folders

    def _read_caption(self, relative: str) -> CaptionFile:
        path = self.dataset_dir / relative
        try:
            data = path.read_bytes()
            stat = path.stat()
        except FileNotFoundError:
            return CaptionFile(relative, False, 0, 0, "", ())
        except OSError as error:
            raise DatasetError(f"The caption {relative} cannot be read: {error.strerror}.") from None
        return CaptionFile(
            relative, True, stat.st_mtime_ns, stat.st_size, _digest(data), parse_tags(_decode(data, relative))
        )

    @staticmethod
    def _shared_caption_notices(disk: dict[str, CaptionFile]) -> tuple[str, ...]:
        owners: dict[str, list[str]] = {}
        for key, state in disk.items():
            owners.setdefault(state.path, []).append(key)
        return tuple(
            f"{' and '.join(keys)} share the caption {path}; rename one image so each has its own"
            for path, keys in owners.items()
            if len(keys) > 1
        )

    # --- saving ------------------------------------------------------------------------

    def changed_on_disk(self, keys: Iterable[str]) -> tuple[str, ...]:
        """Caption paths among ``keys`` whose file differs from what was loaded or last saved."""
        changed = []
        for key in keys:
            known = self._disk[key]
            path = self.dataset_dir / known.path
            try:
                stat = path.stat()
            except FileNotFoundError:
                if known.exists:
                    changed.append(known.path)
                continue
            if not known.exists:
                changed.append(known.path)
            elif (stat.st_mtime_ns, stat.st_size) != (known.mtime_ns, known.size):
                if _digest(path.read_bytes()) != known.digest:
                    changed.append(known.path)
        return tuple(changed)

    def save(self, table: CaptionTable, *, overwrite_external: bool = False) -> SaveResult:
        """Write every caption that differs from disk, atomically as a whole, after a numbered backup.

        Raises ``CaptionsChangedOnDisk`` when another program changed one of those
        files since loading, unless ``overwrite_external`` is set.
        """
        unknown = [key for key in table.keys if key not in self._disk]
        if unknown:
            raise DatasetError(f"{unknown[0]} was not loaded from this dataset.", hint="reload the dataset")
        changed = [key for key, tags in zip(table.keys, table.rows, strict=True) if tags != self._disk[key].tags]
        if not changed:
            return SaveResult((), None)
        targets = [self._disk[key].path for key in changed]
        if len(set(targets)) != len(targets):
            raise DatasetError("Two images that share one caption file were given different captions.")
        conflicts = self.changed_on_disk(changed)
        if conflicts and not overwrite_external:
            raise CaptionsChangedOnDisk(conflicts)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        backup = self._write_backup(targets)
        texts = {key: join_tags(table.tags(key)) + "\n" for key in changed}
        entries = self._write_temps(changed, texts, backup)
        write_text_atomic(self.journal_path, json.dumps({"backup": backup, "entries": entries}, ensure_ascii=False))
        try:
            for entry in entries:
                _commit_file(self.dataset_dir / entry["temp"], self.dataset_dir / entry["target"])
        except OSError as error:
            self._roll_back(backup, entries)
            self.journal_path.unlink()
            raise DatasetError(f"Saving the captions failed ({error.strerror}); nothing was changed.") from None
        self.journal_path.unlink()
        for key in changed:
            self._disk[key] = self._read_caption(self._disk[key].path)
        self._prune_backups()
        return SaveResult(tuple(targets), backup)

    def _write_temps(self, keys: list[str], texts: dict[str, str], backup: int) -> list[dict[str, str]]:
        entries: list[dict[str, str]] = []
        try:
            for key in keys:
                target = self._disk[key].path
                folder, _, name = target.rpartition("/")
                temp = f"{folder}/" if folder else ""
                temp += f".{name}{TEMP_MARK}{backup:04d}.tmp"
                data = texts[key].encode("utf-8")
                entries.append({"target": target, "temp": temp, "digest": _digest(data)})
                _fsync_write(self.dataset_dir / temp, data)
        except OSError as error:
            for entry in entries:
                (self.dataset_dir / entry["temp"]).unlink(missing_ok=True)
            raise DatasetError(f"Saving the captions failed ({error.strerror}); nothing was changed.") from None
        return entries

    # --- recovery ----------------------------------------------------------------------

    def recover(self) -> RecoveryReport:
        """Complete or roll back a save that was interrupted, and remove stray temp files."""
        if not self.journal_path.exists():
            return RecoveryReport(removed_temp_files=self._remove_stray_temps())
        try:
            journal = json.loads(self.journal_path.read_text("utf-8"))
            entries = journal["entries"]
            backup = int(journal["backup"])
        except (ValueError, KeyError, TypeError):
            raise DatasetError(
                f"The save journal {self.journal_path} is damaged.", hint="check the captions, then delete the file"
            ) from None
        finished = []
        for entry in entries:
            target = self.dataset_dir / entry["target"]
            temp_present = (self.dataset_dir / entry["temp"]).exists()
            done = not temp_present and target.exists() and _digest(target.read_bytes()) == entry["digest"]
            finished.append(temp_present or done)
        if all(finished):
            for entry in entries:
                temp = self.dataset_dir / entry["temp"]
                if temp.exists():
                    os.replace(temp, self.dataset_dir / entry["target"])
            action: Literal["completed", "rolled_back"] = "completed"
        else:
            self._roll_back(backup, entries)
            action = "rolled_back"
        self.journal_path.unlink()
        return RecoveryReport(action, tuple(entry["target"] for entry in entries), self._remove_stray_temps())

    def _remove_stray_temps(self) -> int:
        if not self.dataset_dir.is_dir():
            return 0
        removed = 0
        for folder in self._folders():
            for path in folder.glob(f".*{TEMP_MARK}*.tmp"):
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    # --- backups -----------------------------------------------------------------------

    def list_backups(self) -> tuple[BackupInfo, ...]:
        """Numbered backups, oldest first."""
        if not self.backups_dir.is_dir():
            return ()
        found = []
        for path in self.backups_dir.iterdir():
            if path.name.isdigit() and (path / "backup.json").is_file():
                info = json.loads((path / "backup.json").read_text("utf-8"))
                found.append(BackupInfo(int(path.name), info.get("created", ""), tuple(info.get("files", {}))))
        return tuple(sorted(found, key=lambda item: item.number))

    def read_backup(self, number: int) -> dict[str, Tags | None]:
        """Caption path → tags it had before save ``number`` (``None``: there was no caption file)."""
        folder = self._backup_folder(number)
        files = json.loads((folder / "backup.json").read_text("utf-8"))["files"]
        return {
            relative: parse_tags(_decode((folder / "captions" / relative).read_bytes(), relative)) if existed else None
            for relative, existed in files.items()
        }

    def _backup_folder(self, number: int) -> Path:
        folder = self.backups_dir / f"{number:04d}"
        if not (folder / "backup.json").is_file():
            raise DatasetError(f"There is no caption backup number {number}.")
        return folder

    def _write_backup(self, targets: list[str]) -> int:
        existing = [info.number for info in self.list_backups()]
        number = max(existing, default=0) + 1
        self.backups_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.backups_dir))
        try:
            files: dict[str, bool] = {}
            for relative in targets:
                source = self.dataset_dir / relative
                files[relative] = source.is_file()
                if files[relative]:
                    destination = staging / "captions" / relative
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    _fsync_write(destination, source.read_bytes())
            created = datetime.now(timezone.utc).isoformat(timespec="seconds")
            _fsync_write(staging / "backup.json", json.dumps({"created": created, "files": files}).encode("utf-8"))
            os.replace(staging, self.backups_dir / f"{number:04d}")
        except OSError as error:
            shutil.rmtree(staging, ignore_errors=True)
            raise DatasetError(
                f"The caption backup could not be written ({error.strerror}); nothing was saved."
            ) from None
        return number

    def _roll_back(self, number: int, entries: list[dict[str, str]]) -> None:
        """Put every journalled target back as backup ``number`` holds it and drop the temp files."""
        folder = self._backup_folder(number)
        files = json.loads((folder / "backup.json").read_text("utf-8"))["files"]
        for entry in entries:
            relative = entry["target"]
            if files.get(relative):
                write_bytes_atomic(self.dataset_dir / relative, (folder / "captions" / relative).read_bytes())
            else:
                (self.dataset_dir / relative).unlink(missing_ok=True)
            (self.dataset_dir / entry["temp"]).unlink(missing_ok=True)

    def _prune_backups(self) -> None:
        backups = self.list_backups()
        for info in backups[: max(0, len(backups) - self.keep_backups)]:
            shutil.rmtree(self.backups_dir / f"{info.number:04d}", ignore_errors=True)
        for stray in self.backups_dir.glob(".tmp-*"):
            shutil.rmtree(stray, ignore_errors=True)
