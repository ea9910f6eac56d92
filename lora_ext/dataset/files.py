"""Reading and writing a dataset's caption files, and nothing else.

Saving is all-or-nothing across files:

1. the previous text of every caption about to change goes into a numbered
   backup (``backups/0001.json``), written atomically;
2. a journal holding every new caption text is written atomically (fsynced);
3. each caption is written to a temp file beside it and renamed over it;
4. everything is flushed to disk, then the journal is deleted.

The whole save, like loading, holds the dataset's lock (``lora_ext.locking.dataset_lock``),
so saves from other threads or programs, ingestion, tagging and training's read
of the captions never interleave with it. A save writes only the captions whose
text differs from what this store loaded (or last saved): twenty saves of twenty
different edits, each from its own stale snapshot, all land. A caption another
writer changed since this store read it is a conflict (``CaptionsChangedOnDisk``),
never silently overwritten. Temp files carry a name unique to the save, and a
failed save puts back only the files it had already replaced.

A crash before step 2 changes nothing (the save never happened). A crash after
it is completed on the next open by writing every file again from the journal;
if that fails (a file became read-only, say), every file is put back from the
backup instead. Durability costs one fsync for the journal and one sync at the
end rather than one per caption, which keeps saving 5 000 captions to about a second.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lora_ext.dataset.backups import BackupInfo, CaptionBackups
from lora_ext.dataset.captions import Tags, join_tags, parse_tags
from lora_ext.dataset.layout import CAPTION_EXTENSION, CAPTION_EXTENSIONS, is_image_name
from lora_ext.dataset.table import CaptionTable
from lora_ext.errors import DatasetError
from lora_ext.fileio import write_bytes_atomic, write_text_atomic
from lora_ext.locking import dataset_lock
from lora_ext.paths import is_inside, resolve_inside

__all__ = ["BackupInfo", "CaptionStore", "CaptionsChangedOnDisk", "LoadResult", "RecoveryReport", "SaveResult"]

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
    linked: bool = False  # a link to a file outside the dataset: never read, never written


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


def _flush_to_disk(paths: list[Path]) -> None:
    """Make the renamed files durable before the journal goes: one ``sync`` where there is one."""
    if hasattr(os, "sync"):
        os.sync()
        return
    for path in paths:  # Windows: no global sync; fsync each file
        with open(path, "rb+") as handle:
            os.fsync(handle.fileno())


class CaptionStore:
    """The caption files of one dataset folder, with journalled saves and numbered backups."""

    def __init__(
        self,
        dataset_dir: str | os.PathLike[str],
        state_dir: str | os.PathLike[str] | None = None,
        keep_backups: int = DEFAULT_KEEP_BACKUPS,
    ) -> None:
        self.dataset_dir = Path(dataset_dir)
        self.state_dir = (
            Path(state_dir) if state_dir else self.dataset_dir.with_name(f".{self.dataset_dir.name}.captions")
        )
        self.backups = CaptionBackups(self.state_dir / "backups", keep_backups)
        self._disk: dict[str, CaptionFile] = {}

    @property
    def journal_path(self) -> Path:
        return self.state_dir / JOURNAL_NAME

    # --- loading -----------------------------------------------------------------------

    def load(self) -> LoadResult:
        """Finish or undo any interrupted save, then read every caption (images are not opened)."""
        if not self.dataset_dir.is_dir():
            raise DatasetError(f"The dataset folder {self.dataset_dir} does not exist.")
        with dataset_lock(self.dataset_dir):
            return self._load()

    def _load(self) -> LoadResult:
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
        linked = sorted({state.path for state in disk.values() if state.linked})
        notices = self._shared_caption_notices(disk) + tuple(
            f"the caption {path} links outside the dataset folder: it is not shown and cannot be saved"
            for path in linked
        )
        return LoadResult(CaptionTable.from_captions(captions), recovery, notices)

    def _folders(self) -> list[Path]:
        folders = [self.dataset_dir]
        with os.scandir(self.dataset_dir) as entries:
            folders.extend(Path(entry.path) for entry in entries if entry.is_dir() and not entry.name.startswith("."))
        return folders

    def _read_caption(self, relative: str) -> CaptionFile:
        if not is_inside(self.dataset_dir, relative):
            return CaptionFile(relative, False, 0, 0, "", (), linked=True)
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
        if not self.dataset_dir.is_dir():
            raise DatasetError(f"The dataset folder {self.dataset_dir} does not exist.")
        with dataset_lock(self.dataset_dir):
            return self._save(table, overwrite_external)

    def update(self, captions: Mapping[str, str | Sequence[str]]) -> SaveResult:
        """Set the captions of the given images on top of the files as they are now, in one locked step.

        For callers without an editor (the REST API): nothing stale can be written,
        because the files are read again under the same lock that the write holds.
        """
        if not self.dataset_dir.is_dir():
            raise DatasetError(f"The dataset folder {self.dataset_dir} does not exist.")
        with dataset_lock(self.dataset_dir):
            table = self._load().table
            updates = {
                table.index_of(key): parse_tags(value) if isinstance(value, str) else tuple(value)
                for key, value in captions.items()
            }
            return self._save(table.with_rows(updates), overwrite_external=False)

    def _save(self, table: CaptionTable, overwrite_external: bool) -> SaveResult:
        unknown = [key for key in table.keys if key not in self._disk]
        if unknown:
            raise DatasetError(f"{unknown[0]} was not loaded from this dataset.", hint="reload the dataset")
        changed = [key for key, tags in zip(table.keys, table.rows, strict=True) if tags != self._disk[key].tags]
        if not changed:
            return SaveResult((), None)
        targets = [self._disk[key].path for key in changed]
        if len(set(targets)) != len(targets):
            raise DatasetError("Two images that share one caption file were given different captions.")
        for target in targets:  # before the backup reads them: a linked caption is neither read nor written
            resolve_inside(self.dataset_dir, target, "the dataset folder")
        conflicts = self.changed_on_disk(changed)
        if conflicts and not overwrite_external:
            raise CaptionsChangedOnDisk(conflicts)
        backup = self.backups.write(self.dataset_dir, targets)
        entries = [{"target": self._disk[key].path, "text": join_tags(table.tags(key)) + "\n"} for key in changed]
        try:
            write_text_atomic(self.journal_path, json.dumps({"backup": backup, "entries": entries}, ensure_ascii=False))
        except OSError as error:
            raise DatasetError(f"Saving the captions failed ({error.strerror}); nothing was changed.") from None
        written: list[str] = []
        try:
            self._write_entries(entries, written)
        except OSError as error:
            self._roll_back(backup, written)
            self.journal_path.unlink()
            raise DatasetError(f"Saving the captions failed ({error.strerror}); nothing was changed.") from None
        self.journal_path.unlink()
        for key in changed:
            self._disk[key] = self._read_caption(self._disk[key].path)
        self.backups.prune()
        return SaveResult(tuple(targets), backup)

    def _write_entries(self, entries: list[dict[str, str]], written: list[str]) -> None:
        """Temp file + rename for each journalled caption, then one flush to disk.

        ``written`` collects each caption path as soon as its file is replaced, so a
        failure part-way can put back exactly those.
        """
        token = uuid.uuid4().hex[:12]  # unique per save: no two writers ever share a temp file
        targets = []
        for entry in entries:
            target = resolve_inside(self.dataset_dir, entry["target"], "the dataset folder")  # the journal is a file
            temp = target.with_name(f".{target.name}{TEMP_MARK}{token}.tmp")
            try:
                temp.write_bytes(entry["text"].encode("utf-8"))
                _commit_file(temp, target)
            except BaseException:
                temp.unlink(missing_ok=True)
                raise
            written.append(entry["target"])
            targets.append(target)
        _flush_to_disk(targets)

    def _roll_back(self, backup: int, written: list[str]) -> None:
        """Put the captions in ``written`` back as backup ``backup`` holds them."""
        previous = self.backups.read(backup)
        for relative in written:
            text = previous.get(relative)
            resolve_inside(self.dataset_dir, relative, "the dataset folder")
            if text is None:
                (self.dataset_dir / relative).unlink(missing_ok=True)
            else:
                write_bytes_atomic(self.dataset_dir / relative, text.encode("utf-8"))

    # --- recovery ----------------------------------------------------------------------

    def recover(self) -> RecoveryReport:
        """Complete (or, failing that, roll back) a save that was interrupted; remove stray temp files."""
        if not self.dataset_dir.is_dir():
            return RecoveryReport()
        with dataset_lock(self.dataset_dir):
            return self._recover()

    def _recover(self) -> RecoveryReport:
        if not self.journal_path.exists():
            return RecoveryReport(removed_temp_files=self._remove_stray_temps())
        try:
            journal = json.loads(self.journal_path.read_text("utf-8"))
            entries = [{"target": str(item["target"]), "text": str(item["text"])} for item in journal["entries"]]
            backup = int(journal["backup"])
        except (ValueError, KeyError, TypeError):
            raise DatasetError(
                f"The save journal {self.journal_path} is damaged.", hint="check the captions, then delete the file"
            ) from None
        action: Literal["completed", "rolled_back"] = "completed"
        try:
            self._write_entries(entries, [])
        except OSError:
            try:
                # Which files the crashed save had replaced is unknown: put back every one it meant to write.
                self._roll_back(backup, [entry["target"] for entry in entries])
            except OSError as error:
                raise DatasetError(
                    f"An interrupted caption save could not be completed or undone ({error}).",
                    hint=f"check the dataset folder's permissions; the journal {self.journal_path} is kept",
                ) from None
            action = "rolled_back"
        self.journal_path.unlink()
        return RecoveryReport(action, tuple(entry["target"] for entry in entries), self._remove_stray_temps())

    def _remove_stray_temps(self) -> int:
        if not self.dataset_dir.is_dir():
            return 0
        removed = 0
        for folder in self._folders():
            if not is_inside(self.dataset_dir, folder.relative_to(self.dataset_dir)):
                continue  # a linked folder: nothing is deleted through it
            for path in folder.glob(f".*{TEMP_MARK}*"):
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    # --- backups -----------------------------------------------------------------------

    def list_backups(self) -> tuple[BackupInfo, ...]:
        """Numbered backups, oldest first."""
        return self.backups.list()

    def read_backup(self, number: int) -> dict[str, Tags | None]:
        """Caption path → tags it had before save ``number`` (``None``: there was no caption file)."""
        return {path: None if text is None else parse_tags(text) for path, text in self.backups.read(number).items()}

    def backup_as_table(self, number: int, table: CaptionTable) -> CaptionTable:
        """``table`` with the captions that backup ``number`` holds put back, for the editor to apply and undo."""
        previous = self.read_backup(number)
        by_path = {state.path: key for key, state in self._disk.items()}
        updates = {
            table.index_of(by_path[path]): tags or ()
            for path, tags in previous.items()
            if path in by_path and by_path[path] in table.keys
        }
        return table.with_rows(updates)
