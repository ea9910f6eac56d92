"""Tagging many files: decode + preprocess in a thread pool, overlapped with batched inference.

The pool works a bounded window ahead of inference (a few batches' worth of
prepared 448² arrays, about 2.4 MB each), so memory stays flat on folders of
any size. PIL's decoders and resize, and onnxruntime's ``run``, release the GIL,
so threads overlap for real. Captions are written by one writer thread, in file
order (an atomic write fsyncs, which would otherwise stall inference), and the
run returns only once they are all on disk, so a cancelled run leaves every
caption either untouched or complete. Given the dataset folder, each batch of
writes holds its lock (``lora_ext.locking``), so a caption save or training's
read of the captions never interleaves with them.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lora_ext.dataset.layout import CAPTION_EXTENSION
from lora_ext.dataset.layout import IMAGE_EXTENSIONS as DATASET_IMAGE_EXTENSIONS
from lora_ext.errors import ConfigError, FileFormatError, UnsafePath
from lora_ext.locking import dataset_lock
from lora_ext.tagger.captions import (
    EXISTING_MODES,
    ExistingMode,
    caption_path,
    has_caption,
    merge_caption,
    read_caption,
    safe_caption_path,
    save_caption,
)
from lora_ext.tagger.labels import Labels
from lora_ext.tagger.postprocess import TagOptions, caption_tags, score_tags
from lora_ext.tagger.preprocess import DEFAULT_MAX_PIXELS, load_model_input
from lora_ext.tagger.session import TaggerSession

# The dataset's image types, plus those a tagger run over any folder also reads (as the WD14 taggers do).
IMAGE_EXTENSIONS = DATASET_IMAGE_EXTENSIONS | {".gif", ".tif", ".tiff", ".jfif", ".avif"}

# Batches whose captions may wait for the writer thread; beyond this, inference waits for it.
MAX_QUEUED_WRITES = 4

ProgressCallback = Callable[[int, int, float], None]  # (done, total, images per second)
CancelSignal = threading.Event | Callable[[], bool] | None


@dataclass(frozen=True)
class WriteOptions:
    """What to do with caption files."""

    existing: ExistingMode = "skip"
    backup: bool = True  # keep <caption>.NNN.bak of every non-empty caption that is replaced
    extension: str = CAPTION_EXTENSION

    def __post_init__(self) -> None:
        if self.existing not in EXISTING_MODES:
            raise ConfigError(f"existing captions: choose one of {', '.join(EXISTING_MODES)}, not {self.existing!r}")
        if not self.extension.startswith(".") or len(self.extension) < 2 or "/" in self.extension:
            raise ConfigError(f"caption extension must look like .txt, got {self.extension!r}")


@dataclass
class TagReport:
    """The outcome of a folder run."""

    total: int
    tagged: list[Path] = field(default_factory=list)  # caption written (or already identical)
    kept: list[Path] = field(default_factory=list)  # existing caption kept (mode "skip")
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # image or caption unusable, with the reason
    changed: int = 0  # captions actually rewritten
    cancelled: bool = False
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        processed = len(self.tagged) + len(self.skipped)
        return processed / self.seconds if self.seconds > 0 else 0.0


def find_images(directory: Path, recursive: bool = False) -> list[Path]:
    """Image files in ``directory`` (and below, if ``recursive``), sorted; hidden files and folders ignored."""
    found: list[Path] = []
    # os.walk does not follow symlinked folders, so a link loop cannot make this endless.
    for root, folders, files in os.walk(directory):
        folders[:] = [] if not recursive else sorted(f for f in folders if not f.startswith("."))
        found += [
            Path(root) / name
            for name in files
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS
        ]
    return sorted(path for path in found if path.is_file())


def is_cancelled(cancel: CancelSignal) -> bool:
    """True when ``cancel`` (an Event or a callable) says stop."""
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


def default_workers() -> int:
    """Decode threads: the CPU count, capped at 8 (more only adds memory)."""
    return max(1, min(8, os.cpu_count() or 1))


@dataclass
class _Run:
    session: TaggerSession
    labels: Labels
    options: TagOptions
    write: WriteOptions
    report: TagReport
    progress: ProgressCallback | None
    dataset_dir: Path | None = None  # whose lock each batch of writes holds; captions never lead out of it
    started: float = field(default_factory=time.perf_counter)
    done: int = 0
    writes: deque[Future[None]] = field(default_factory=deque)

    def tick(self, count: int = 1) -> None:
        self.done += count
        if self.progress is not None:
            elapsed = time.perf_counter() - self.started
            self.progress(self.done, self.report.total, self.done / elapsed if elapsed > 0 else 0.0)

    def infer(self, paths: list[Path], arrays: list[np.ndarray], writer: ThreadPoolExecutor) -> None:
        """Run one batch and hand its captions to the writer thread (fsync must not stall inference)."""
        probabilities = self.session.run(np.stack(arrays))  # [N, L]
        captions = [caption_tags(score_tags(row, self.labels, self.options), self.options) for row in probabilities]
        self.writes.append(writer.submit(self.write_batch, paths, captions))
        while len(self.writes) > MAX_QUEUED_WRITES:
            self.writes.popleft().result()
        self.tick(len(paths))

    def finish_writes(self) -> None:
        while self.writes:
            self.writes.popleft().result()

    def write_batch(self, paths: list[Path], captions: list[list[str]]) -> None:
        lock = dataset_lock(self.dataset_dir) if self.dataset_dir is not None else contextlib.nullcontext()
        with lock:
            for path, tags in zip(paths, captions, strict=True):
                self.write_one(path, tags)

    def write_one(self, image: Path, tags: list[str]) -> None:
        target = caption_path(image, self.write.extension)
        try:
            target = safe_caption_path(image, self.write.extension, self.dataset_dir)
            existing = read_caption(target)
            text = merge_caption(existing, tags, self.write.existing)
            if text is None:
                self.report.kept.append(image)
                return
            self.report.changed += save_caption(target, text, existing, self.write.backup)
        except (FileFormatError, UnsafePath) as error:
            self.report.skipped.append((image, error.user_message))
            return
        except OSError as error:
            self.report.skipped.append((image, f"cannot write {target.name} ({error.strerror or error})"))
            return
        self.report.tagged.append(image)


def _unique_captions(paths: Iterable[Path], write: WriteOptions, report: TagReport) -> list[Path]:
    """Images whose caption file no earlier image claims (``a.png`` and ``a.jpg`` would share ``a.txt``)."""
    owners: dict[Path, Path] = {}
    unique: list[Path] = []
    for path in paths:
        target = caption_path(path, write.extension)
        if target in owners:
            report.skipped.append((path, f"{owners[target].name} already uses the caption file {target.name}"))
            continue
        owners[target] = path
        unique.append(path)
    return unique


def _needs_tagging(image: Path, write: WriteOptions, report: TagReport, root: Path | None) -> bool:
    try:
        target = safe_caption_path(image, write.extension, root)
        if write.existing != "skip":
            return True
        existing = read_caption(target)
    except (FileFormatError, UnsafePath) as error:
        report.skipped.append((image, error.user_message))
        return False
    if has_caption(existing):
        report.kept.append(image)
        return False
    return True


def tag_files(
    paths: Iterable[Path],
    session: TaggerSession,
    labels: Labels,
    options: TagOptions,
    write: WriteOptions,
    *,
    batch_size: int = 8,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelSignal = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    dataset_dir: Path | None = None,
) -> TagReport:
    """Tag ``paths`` and write their captions; bad files are skipped with a reason, never fatal.

    ``dataset_dir``: the dataset folder the images belong to: the writes hold its lock, and no caption is
    read or written through a link leading out of it (default: each image's own folder).
    """
    report = TagReport(total=0)
    todo = [path for path in _unique_captions(paths, write, report) if _needs_tagging(path, write, report, dataset_dir)]
    report.total = len(todo)
    batch = batch_size if session.dynamic_batch else 1
    if batch_size > 1 and not session.dynamic_batch:
        report.warnings.append("this model's batch size is fixed to 1, so images are tagged one at a time")
    run = _Run(session, labels, options, write, report, progress, dataset_dir)
    workers = workers or default_workers()
    window = 2 * batch + workers  # prepared arrays held at most: the next batch is ready when inference ends
    with (
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tagger-decode") as pool,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="tagger-write") as writer,
    ):
        pending: deque[tuple[Path, Future[np.ndarray]]] = deque()
        upcoming = iter(todo)

        def fill() -> None:
            while len(pending) < window:
                path = next(upcoming, None)
                if path is None:
                    return
                pending.append((path, pool.submit(load_model_input, path, session.side, max_pixels)))

        fill()
        batch_paths: list[Path] = []
        batch_arrays: list[np.ndarray] = []
        while pending and not is_cancelled(cancel):
            path, future = pending.popleft()
            fill()
            try:
                batch_arrays.append(future.result())
                batch_paths.append(path)
            except FileFormatError as error:
                report.skipped.append((path, error.user_message))
                run.tick()
            if batch_paths and (len(batch_paths) == batch or not pending):
                run.infer(batch_paths, batch_arrays, writer)
                batch_paths, batch_arrays = [], []
        if pending or batch_paths:
            report.cancelled = True
            for _, future in pending:
                future.cancel()
        run.finish_writes()
    report.seconds = time.perf_counter() - run.started
    return report
