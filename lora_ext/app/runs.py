"""A version's training runs: each with its own LoRA name, its own working folder and a record.

A new run never writes over an earlier run's LoRA: when ``NAME.safetensors``, one of
its intermediate saves or its working folder exists already, the new run is named
``NAME-2`` (then ``-3``…), a file the WebUI lists beside the earlier one, as A1111
numbers its images rather than replacing one. (``-2`` cannot be read as a kohya
intermediate save: those end in six or eight digits.)

Each run keeps ``run.json`` in its working folder (``training.paths.work_dir``:
``<version>/outputs/<NAME>/``): when it started and ended, how it ended, and the
settings it trained with. Its files are the LoRA folder's files of its name
(``results.output_paths``), so the Result section shows one entry per run, never
one run's epochs beside another run's final file.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lora_ext.app import results
from lora_ext.app.context import Context
from lora_ext.dataset.projects import VersionPaths
from lora_ext.errors import ConfigError, FileFormatError
from lora_ext.fileio import write_bytes_atomic, write_text_atomic
from lora_ext.training import checkpoint, paths

RECORD_NAME = "run.json"
MAX_NUMBER = 9999


def now() -> str:
    """The time a record keeps: UTC, ISO 8601, to the millisecond (runs sort by it; one starts after another)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class RunRecord:
    """What ``run.json`` holds about one run."""

    output_name: str
    started_at: str
    status: str = "running"
    settings: dict[str, Any] = field(default_factory=dict)  # ``TrainConfig.to_dict()`` of the run
    finished_at: str | None = None
    steps: int = 0
    total_steps: int = 0
    resumed: int = 0  # how often the run was resumed
    error: str = ""
    kept_from: str = ""  # a kept epoch ("Keep this epoch"): the file it is a copy of

    def to_dict(self) -> dict[str, Any]:
        return {
            "output_name": self.output_name,
            "started_at": self.started_at,
            "status": self.status,
            "finished_at": self.finished_at,
            "steps": self.steps,
            "total_steps": self.total_steps,
            "resumed": self.resumed,
            "error": self.error,
            "kept_from": self.kept_from,
            "settings": self.settings,
        }


@dataclass(frozen=True)
class Run:
    """One run of a version as the Result section and the REST API show it."""

    record: RunRecord
    files: list[tuple[Path, str]]  # (path, label) in the LoRA folder, the final file last
    work_dir: Path
    state_dir: Path | None  # the working folder holding its resume state (an older version's: beside the LoRA)
    resumable: bool  # a stopped run with a saved state and no final file

    @property
    def name(self) -> str:
        return self.record.output_name


def write_record(work_dir: Path, record: RunRecord) -> None:
    write_text_atomic(
        Path(work_dir) / RECORD_NAME, json.dumps(record.to_dict(), ensure_ascii=False, indent=1, default=str) + "\n"
    )


def read_record(work_dir: Path) -> RunRecord | None:
    """The run's record, or None when it has none (a run from before records, or not a run's folder)."""
    path = Path(work_dir) / RECORD_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise FileFormatError(f"{path}: not a readable run record ({type(error).__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("output_name"), str):
        raise FileFormatError(f"{path}: not a readable run record")
    known = RunRecord.__dataclass_fields__
    return RunRecord(**{key: value for key, value in data.items() if key in known})


def is_taken(lora_dir: Path, version: VersionPaths, name: str) -> bool:
    """True when a run of ``name`` left anything: a LoRA file (final or intermediate) or its working folder."""
    work_dir = version.run_dir(name)
    return bool(results.output_paths(lora_dir, name)) or (work_dir.is_dir() and any(work_dir.iterdir()))


def free_name(lora_dir: Path, version: VersionPaths, name: str) -> str:
    """``name`` when no run has used it, else ``name-2``, ``name-3``… (the first that is free)."""
    if not is_taken(lora_dir, version, name):
        return name
    for number in range(2, MAX_NUMBER + 1):
        candidate = f"{name}-{number}"
        if not is_taken(lora_dir, version, candidate):
            return candidate
    raise ConfigError(f"{name} has been trained {MAX_NUMBER} times", hint="choose another output name")


def state_dir(lora_dir: Path, work_dir: Path, name: str) -> Path | None:
    """The folder with the run's resume state: its working folder, or where versions before it kept one
    (``training.paths.legacy_work_dir``; the trainer moves it over when the run resumes); None: no state."""
    for folder in (work_dir, paths.legacy_work_dir(lora_dir / f"{name}.safetensors")):
        if checkpoint.state_path(folder).is_file():
            return folder
    return None


def _legacy_record(lora_dir: Path, name: str) -> RunRecord:
    """A record for a run from before records: its time from its newest file, its settings from the final file."""
    from lora_ext.formats.safetensors_io import read_header

    files = results.output_paths(lora_dir, name)
    started = (
        datetime.fromtimestamp(min(path.stat().st_mtime for path, _ in files), timezone.utc).isoformat(
            timespec="milliseconds"
        )
        if files
        else ""
    )
    settings: dict[str, Any] = {}
    final = [path for path, label in files if label == "final"]
    if final:
        try:
            settings = json.loads(read_header(final[0]).metadata.get("train_tools_config", "{}"))
        except (FileFormatError, ValueError):
            settings = {}
    return RunRecord(
        name, started, "finished" if final else "cancelled", settings if isinstance(settings, dict) else {}
    )


def version_runs(ctx: Context, project: str | None, version: str | None) -> list[Run]:
    """Every run of the version, the newest first: those with a record in ``outputs/``, and the run the
    manifest names when it has none (trained before runs kept records)."""
    version_paths = ctx.version(project, version)
    lora_dir = ctx.host.lora_dir
    records: list[RunRecord] = []
    if version_paths.outputs.is_dir():
        for folder in sorted(version_paths.outputs.iterdir()):
            if not folder.is_dir():
                continue
            try:
                record = read_record(folder)
            except FileFormatError:  # a damaged record: the run is still listed, from its files
                record = None
            if record is None and (
                results.output_paths(lora_dir, folder.name) or state_dir(lora_dir, folder, folder.name)
            ):
                record = _legacy_record(lora_dir, folder.name)  # a run from before records
            if record is not None:
                records.append(record)
    latest = str(ctx.store.read_manifest(version_paths.project, version_paths.version).get("output_name") or "")
    if latest and all(record.output_name != latest for record in records):
        work_dir = version_paths.run_dir(latest)
        if results.output_paths(lora_dir, latest) or state_dir(lora_dir, work_dir, latest) is not None:
            records.append(_legacy_record(lora_dir, latest))
    records.sort(key=lambda record: record.started_at, reverse=True)
    return [_run(ctx, version_paths, record) for record in records]


def keep_earlier(ctx: Context, version_paths: VersionPaths) -> None:
    """Give the version's latest run a record when it has none (trained before records), so it stays listed
    once a new run becomes the latest."""
    lora_dir = ctx.host.lora_dir
    latest = str(ctx.store.read_manifest(version_paths.project, version_paths.version).get("output_name") or "")
    if not latest:
        return
    work_dir = version_paths.run_dir(latest)
    state = state_dir(lora_dir, work_dir, latest)
    if state not in (None, work_dir):
        return  # its state is still beside the LoRA: a record in its folder would keep Resume from moving it over
    if read_record(work_dir) is None and (results.output_paths(lora_dir, latest) or state is not None):
        write_record(work_dir, _legacy_record(lora_dir, latest))


def _run(ctx: Context, version_paths: VersionPaths, record: RunRecord) -> Run:
    lora_dir = ctx.host.lora_dir
    files = results.output_paths(lora_dir, record.output_name)
    work_dir = paths.work_dir(version_paths.dataset, record.output_name)
    status = record.status
    current = ctx.jobs.current
    running_here = (
        current is not None and not current.finished and current.data.get("output_name") == record.output_name
    )
    if status == "running" and not running_here:
        status = "cancelled"  # the process running it ended (the WebUI was closed): what it saved is kept
    has_final = any(label == "final" for _path, label in files)
    state = state_dir(lora_dir, work_dir, record.output_name)
    resumable = not has_final and not running_here and state is not None
    shown = record if status == record.status else dataclasses.replace(record, status=status)
    return Run(shown, files, work_dir, state, resumable)


def run_json(run: Run) -> dict[str, Any]:
    """A run as the REST API answers it."""
    return {
        **run.record.to_dict(),
        "resumable": run.resumable,
        "files": [{"name": path.name, "label": label, "size": path.stat().st_size} for path, label in run.files],
        "work_dir": str(run.work_dir),
    }


_NUMBERED = re.compile(r"-\d{1,4}$")


@dataclass(frozen=True)
class Kept:
    """A saved file made the version's LoRA: its new name and file, and the file it came from."""

    name: str
    path: Path
    source: Path


def keep_file(ctx: Context, project: str | None, version: str | None, file_name: str) -> Kept:
    """Make one of the version's saved files (an epoch, say) the version's LoRA, under the next numbered name.

    The copy has the file's tensors as they are and metadata naming the copy (``ss_output_name``, its hashes);
    every file there was stays as it was, the previous final one included. The copy is a run of its own
    (status "kept", its settings and validation history those of the run it came from)."""
    from lora_ext.formats.safetensors_io import load_tensors
    from lora_ext.paths import resolve_inside
    from lora_ext.training import save

    version_paths = ctx.version(project, version)
    lora_dir = ctx.host.lora_dir
    source = resolve_inside(lora_dir, file_name, "the LoRA folder")
    owner = next(
        (run for run in version_runs(ctx, project, version) if any(path == source for path, _ in run.files)), None
    )
    if owner is None:
        raise ConfigError(f"{file_name} is not a file of {version_paths.project}/{version_paths.version}'s runs.")
    tensors, metadata = load_tensors(source)
    with ctx.lock:  # two requests at once never pick one name
        name = free_name(lora_dir, version_paths, _NUMBERED.sub("", owner.name) or owner.name)
        target = lora_dir / f"{name}.safetensors"
        metadata = {**metadata, "ss_output_name": name, "modelspec.title": name, "train_tools_kept_from": source.name}
        work_dir = version_paths.run_dir(name)
        record = RunRecord(
            name,
            now(),
            "kept",
            owner.record.settings,
            now(),
            int(metadata.get("ss_steps") or 0),
            owner.record.total_steps,
            kept_from=source.name,
        )
        write_record(work_dir, record)  # the name is taken from here on
    save.save_lora(target, tensors, metadata)
    for suffix in (".json", ".preview.png"):
        sidecar = source.with_name(source.stem + suffix)
        if sidecar.is_file():
            write_bytes_atomic(target.with_name(name + suffix), sidecar.read_bytes())
    ctx.store.update_manifest(version_paths.project, version_paths.version, {"output_name": name})
    return Kept(name, target, source)
