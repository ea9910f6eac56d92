"""Ingestion: dropped files, folders and zips into a dataset folder, one validated file at a time.

Each image is checked on its own (``images.prepare_image``), given a clean,
unique name and written with its caption through temp files and renames, so a
failure leaves neither a half-written image nor an image without the caption
it came with. Originals are only ever read. Everything that was not added is in
the report with a reason.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from lora_ext.dataset.images import DEFAULT_BOMB_PIXELS, DEFAULT_MAX_PIXELS, prepare_image, unsupported_reason
from lora_ext.dataset.layout import CAPTION_EXTENSION, CAPTION_EXTENSIONS, is_image_name, parse_repeat_folder
from lora_ext.dataset.names import sanitize_filename, unique_stem, validate_name
from lora_ext.dataset.sources import Entry, Refused, collect_entries
from lora_ext.errors import DatasetError, UnsafePath
from lora_ext.fileio import create_temp, remove_stale_temps, write_text_atomic
from lora_ext.locking import dataset_lock
from lora_ext.paths import is_inside, resolve_inside

INDEX_NAME = ".ingest-index.json"
LEGACY_TEMP_SUFFIX = ".ingest.tmp"  # temp files of earlier versions; ours now come from fileio


@dataclass(frozen=True)
class IngestOptions:
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger images are scaled down (``images.prepare_image``)
    bomb_pixels: int = DEFAULT_BOMB_PIXELS  # larger ones are refused unopened
    max_file_bytes: int = 256 * 2**20
    target_folder: str | None = None  # e.g. "10_mychar": where files outside an N_name folder go
    background: tuple[int, int, int] = (255, 255, 255)  # fills transparent areas


@dataclass(frozen=True)
class AddedFile:
    source: str
    stored: str  # relative to the dataset folder
    caption: str | None  # relative path of the imported caption, if any
    notices: tuple[str, ...] = ()


@dataclass(frozen=True)
class SkippedFile:
    source: str
    reason: str


@dataclass(frozen=True)
class IngestReport:
    """What ingestion added, what it skipped and why, and the repeat folders it used."""

    added: tuple[AddedFile, ...] = ()
    skipped: tuple[SkippedFile, ...] = ()
    folders: dict[str, int] = field(default_factory=dict)  # "10_cat" → 10

    @property
    def notices(self) -> tuple[str, ...]:
        """Every change made to an added file, as "source: notice" lines."""
        return tuple(f"{item.source}: {notice}" for item in self.added for notice in item.notices)

    def summary(self) -> str:
        text = f"{len(self.added)} image(s) added, {len(self.skipped)} skipped"
        if self.notices:
            text += f", {len(self.notices)} notice(s)"
        return text


class _Index:
    """Content hashes of the originals behind the dataset's images, for skipping duplicates."""

    def __init__(self, dataset_dir: Path) -> None:
        self.path = dataset_dir / INDEX_NAME
        self.hashes: dict[str, str] = {}
        if self.path.is_file():
            try:
                self.hashes = dict(json.loads(self.path.read_text("utf-8")).get("files", {}))
            except (ValueError, AttributeError):
                self.hashes = {}
        existing = _existing_images(dataset_dir)
        self.hashes = {key: value for key, value in self.hashes.items() if key in existing}
        # Images put there by hand are hashed as they are; copied-as-is images match their original.
        for relative in existing - self.hashes.keys():
            self.hashes[relative] = _hash((dataset_dir / relative).read_bytes())
        self.known = {value: key for key, value in self.hashes.items()}

    def add(self, relative: str, digest: str) -> None:
        self.hashes[relative] = digest
        self.known[digest] = relative

    def save(self) -> None:
        try:
            write_text_atomic(self.path, json.dumps({"version": 1, "files": self.hashes}, ensure_ascii=False))
        except OSError:
            # The index only speeds up duplicate checks; without it, images are hashed again next time.
            pass


def _hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _existing_images(dataset_dir: Path) -> set[str]:
    found: set[str] = set()
    for folder in [dataset_dir, *(p for p in dataset_dir.iterdir() if p.is_dir() and not p.name.startswith("."))]:
        prefix = "" if folder == dataset_dir else f"{folder.name}/"
        found.update(prefix + item.name for item in folder.iterdir() if item.is_file() and is_image_name(item.name))
    return found


def _inside_dataset(dataset_dir: Path, folder: str, name: str = "") -> Path:
    """Where ``folder/name`` is written; a folder (or file) linking out of the dataset is refused with the reason."""
    try:
        return resolve_inside(
            dataset_dir, "/".join(part for part in (folder, name) if part) or ".", "the dataset folder"
        )
    except UnsafePath as error:
        raise UnsafePath(f"refused: {error.user_message}", hint=error.hint) from None


def _target_folder(entry: Entry, options: IngestOptions) -> str:
    """The innermost ``N_name`` folder the file came from, else the chosen folder, else the top level."""
    for part in reversed(entry.folders):
        if parse_repeat_folder(part) is not None:
            return sanitize_filename(part, fallback="1_images")
    return options.target_folder or ""


def _is_caption(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in CAPTION_EXTENSIONS


def _pair_captions(entries: list[Entry]) -> tuple[dict[int, list[Entry]], list[Entry]]:
    """Image entry id → its caption entries (``.txt`` first), and captions no image claimed."""
    by_group: dict[tuple[str, str], list[Entry]] = {}
    for entry in entries:
        if _is_caption(entry.name):
            key = (entry.group, os.path.splitext(entry.name)[0].casefold())
            by_group.setdefault(key, []).append(entry)
    pairs: dict[int, list[Entry]] = {}
    claimed: set[int] = set()
    for entry in entries:
        if _is_caption(entry.name):
            continue
        found = by_group.get((entry.group, os.path.splitext(entry.name)[0].casefold()), [])
        found = sorted(found, key=lambda item: CAPTION_EXTENSIONS.index(os.path.splitext(item.name)[1].lower()))
        pairs[id(entry)] = found
        claimed.update(id(item) for item in found)
    orphans = [entry for entry in entries if _is_caption(entry.name) and id(entry) not in claimed]
    return pairs, orphans


def _sibling_caption(entry: Entry) -> bytes | None:
    if entry.sibling_dir is None:
        return None
    stem = os.path.splitext(entry.name)[0]
    for extension in CAPTION_EXTENSIONS:
        candidate = entry.sibling_dir / f"{stem}{extension}"
        if candidate.is_file():
            return candidate.read_bytes()
    return None


def _caption_text(entry: Entry, captions: list[Entry], notices: list[str]) -> str | None:
    if len(captions) > 1:
        notices.append(f"{captions[0].name} used; {', '.join(item.name for item in captions[1:])} ignored")
    data = captions[0].read() if captions else _sibling_caption(entry)
    if data is None:
        return None
    try:
        return data.decode("utf-8-sig").replace("\r\n", "\n").strip() + "\n"
    except UnicodeDecodeError:
        notices.append("its caption is not UTF-8 text and was not imported")
        return None


def _write_pair(image_path: Path, image_data: bytes, caption_path: Path, caption: str | None) -> None:
    """Write an image and its caption: both land, or neither does.

    The caption is renamed into place first: if the process dies between the two
    renames, what is left is a caption without an image, which training ignores,
    rather than an image that trains without its caption.
    """
    temps: list[Path] = []
    placed: list[Path] = []
    try:
        writes = ([(caption_path, caption.encode("utf-8"))] if caption else []) + [(image_path, image_data)]
        for target, data in writes:
            temps.append(create_temp(target))
            _write_file(temps[-1], data)
        for temp, (target, _data) in zip(temps, writes, strict=True):
            os.replace(temp, target)
            placed.append(target)
    except BaseException:
        for path in temps + placed:
            path.unlink(missing_ok=True)
        raise


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        if not hasattr(os, "sync"):  # elsewhere one os.sync() at the end replaces an fsync per file
            handle.flush()
            os.fsync(handle.fileno())


class _Ingester:
    def __init__(self, dataset_dir: Path, options: IngestOptions) -> None:
        self.dataset_dir = dataset_dir
        self.options = options
        self.index = _Index(dataset_dir)
        self.stems: dict[str, set[str]] = {}
        self.added: list[AddedFile] = []
        self.skipped: list[SkippedFile] = []
        self.folders: dict[str, int] = {}

    def taken_stems(self, folder: str) -> set[str]:
        if folder not in self.stems:
            path = self.dataset_dir / folder
            names = os.listdir(path) if path.is_dir() else []
            remove_stale_temps(path)  # once per folder written, not once per file
            self.stems[folder] = {os.path.splitext(name)[0].casefold() for name in names}
        return self.stems[folder]

    def skip(self, source: str, reason: str) -> None:
        self.skipped.append(SkippedFile(source, reason))

    def ingest_one(self, entry: Entry, captions: list[Entry]) -> None:
        reason = unsupported_reason(entry.name)
        if reason:
            self.skip(entry.display, reason)
            return
        try:
            data = entry.read()
            digest = _hash(data)
            if digest in self.index.known:
                self.skip(entry.display, f"duplicate of {self.index.known[digest]}, skipped")
                return
            options = self.options
            prepared = prepare_image(data, options.max_pixels, options.background, options.bomb_pixels)
            notices = list(prepared.notices)
            caption = _caption_text(entry, captions, notices)
            folder = _target_folder(entry, self.options)
            stem = os.path.splitext(sanitize_filename(entry.name))[0]
            stem = unique_stem(stem, self.taken_stems(folder))
            if stem.casefold() != os.path.splitext(entry.name)[0].casefold():
                notices.append(f"renamed to {stem}{prepared.extension}")
            folder_path = _inside_dataset(self.dataset_dir, folder)
            folder_path.mkdir(parents=True, exist_ok=True)
            image_path = _inside_dataset(self.dataset_dir, folder, f"{stem}{prepared.extension}")
            caption_path = _inside_dataset(self.dataset_dir, folder, f"{stem}{CAPTION_EXTENSION}")
            _write_pair(image_path, prepared.data, caption_path, caption)
        except DatasetError as error:
            self.skip(entry.display, error.user_message)
            return
        except OSError as error:
            self.skip(entry.display, f"could not be written ({error.strerror or error}); nothing was kept")
            return
        relative = f"{folder}/{image_path.name}" if folder else image_path.name
        self.taken_stems(folder).add(stem.casefold())
        self.index.add(relative, digest)
        if folder:
            parsed = parse_repeat_folder(folder)
            if parsed is not None:
                self.folders[folder] = parsed[0]
        caption_relative = relative.rsplit(".", 1)[0] + CAPTION_EXTENSION if caption else None
        self.added.append(AddedFile(entry.display, relative, caption_relative, tuple(notices)))


def ingest(
    sources: Sequence[str | os.PathLike[str]],
    dataset_dir: str | os.PathLike[str],
    options: IngestOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> IngestReport:
    """Add dropped files, folders and zips to ``dataset_dir``; returns what was added and skipped, with reasons.

    Runs under the dataset's lock: a caption save, a tagging write or training's
    read of the captions waits until the drop is in.
    """
    options = options or IngestOptions()
    dataset = Path(dataset_dir)
    if options.target_folder:
        _inside_dataset(dataset, validate_name(options.target_folder, "folder name"))
    try:
        dataset.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DatasetError(f"The dataset folder {dataset} cannot be created: {error.strerror or error}.") from None
    with dataset_lock(dataset):
        return _ingest(sources, dataset, options, progress)


def _ingest(
    sources: Sequence[str | os.PathLike[str]],
    dataset: Path,
    options: IngestOptions,
    progress: Callable[[int, int], None] | None,
) -> IngestReport:
    for stray in [*dataset.glob(f".*{LEGACY_TEMP_SUFFIX}"), *dataset.glob(f"*/.*{LEGACY_TEMP_SUFFIX}")]:
        if is_inside(dataset, stray.relative_to(dataset)):  # never deleted through a linked folder
            stray.unlink(missing_ok=True)  # left by a crash during an earlier ingestion
    ingester = _Ingester(dataset, options)
    with ExitStack() as open_zips:
        entries: list[Entry] = []
        for item in collect_entries([Path(source) for source in sources], options.max_file_bytes, open_zips):
            if isinstance(item, Refused):
                ingester.skip(item.display, item.reason)
            else:
                entries.append(item)
        pairs, orphans = _pair_captions(entries)
        images = [entry for entry in entries if not _is_caption(entry.name)]
        try:
            for done, entry in enumerate(images, start=1):
                ingester.ingest_one(entry, pairs[id(entry)])
                if progress is not None:
                    progress(done, len(images))
        finally:
            if hasattr(os, "sync"):
                os.sync()  # one flush for the whole drop: an fsync per file would triple the time
            ingester.index.save()
    for orphan in orphans:
        ingester.skip(orphan.display, "caption without a matching image")
    return IngestReport(tuple(ingester.added), tuple(ingester.skipped), dict(sorted(ingester.folders.items())))
