"""Projects and their versions on disk.

::

    <root>/<project>/project.json
    <root>/<project>/versions/<version>/manifest.json
                                       /dataset/     images + .txt captions (N_name sub-folders allowed)
                                       /config/      training configs
                                       /outputs/     each run's working folder: outputs/<LoRA name>/
                                                     (loss.csv, samples/, resume/); the LoRA files
                                                     themselves go to the host's LoRA folder
                                       /captions/    caption save journal and numbered backups
                                       /thumbnails/  gallery thumbnails, made when first shown
                                       /exports/     kohya-layout exports of the dataset (folders, zips)
    <root>/.trash/<time>-<project>[-<version>]/      what was deleted

The root is given by the caller (A1111: ``outputs/train_tools/projects``;
standalone: a data folder). Names are checked by ``names.validate_name`` and
compared case-insensitively, since two of the three desktop file systems do.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from lora_ext.dataset.files import CaptionStore
from lora_ext.dataset.names import validate_name
from lora_ext.errors import DatasetError
from lora_ext.fileio import write_text_atomic

MANIFEST_FORMAT = 1
_P = ParamSpec("_P")
_R = TypeVar("_R")
TRASH = ".trash"
_PROTECTED_FIELDS = frozenset({"format", "project", "version", "created"})
_NOT_COPIED = ("outputs", "captions", "thumbnails", "exports")  # a copy starts with no results, history or cache
_MAX_TRASH_LABEL_BYTES = 160


@dataclass(frozen=True)
class VersionPaths:
    """Where one version keeps its parts."""

    project: str
    version: str
    root: Path

    @property
    def dataset(self) -> Path:
        return self.root / "dataset"

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def outputs(self) -> Path:
        return self.root / "outputs"

    @property
    def captions_state(self) -> Path:
        return self.root / "captions"

    @property
    def thumbnails(self) -> Path:
        return self.root / "thumbnails"

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    def run_dir(self, output_name: str) -> Path:
        """The working folder of the run writing ``<output_name>.safetensors`` from this version."""
        return self.outputs / validate_name(output_name, "output name")

    @classmethod
    def of_dataset(cls, dataset_dir: Path) -> VersionPaths | None:
        """The version whose ``dataset/`` folder ``dataset_dir`` is (its manifest beside it), else None."""
        dataset_dir = Path(dataset_dir)
        root = dataset_dir.parent
        if dataset_dir.name != "dataset" or not (root / "manifest.json").is_file():
            return None
        return cls(root.parent.parent.name, root.name, root)


def _reports_disk_errors(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Turn a failing mkdir/rename/write into a ``DatasetError`` the user can read."""

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except OSError as error:
            where = f" ({error.filename})" if error.filename else ""
            raise DatasetError(
                f"The projects folder could not be changed: {error.strerror or error}{where}.",
                hint="check that the folder exists and is writable",
            ) from None

    return wrapper


@dataclass(frozen=True)
class TrashItem:
    """One deleted project (``version`` is None) or version in the trash folder."""

    name: str  # the folder name inside .trash
    project: str | None
    version: str | None
    deleted: str


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def _children(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    names = (unicodedata.normalize("NFC", entry.name) for entry in os.scandir(folder) if entry.is_dir())
    return sorted((name for name in names if not name.startswith(".")), key=str.casefold)


def _copy_tree(source: Path, destination: Path, skip: frozenset[str] = frozenset()) -> None:
    """Copy a folder into place through a hidden temp name, so a failed copy leaves nothing.

    ``skip`` holds paths relative to ``source`` (POSIX) that are not copied.
    """

    def ignore(folder: str, names: list[str]) -> set[str]:
        relative = Path(folder).relative_to(source).as_posix()
        prefix = "" if relative == "." else f"{relative}/"
        return {name for name in names if prefix + name in skip}

    staging = destination.with_name(f".copy-{destination.name}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        # Links are copied as links: following one would copy a file from elsewhere into the project.
        shutil.copytree(source, staging, symlinks=True, ignore=ignore)
        os.replace(staging, destination)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise DatasetError(f"Copying {source.name} failed: {error.strerror or error}.") from None


class ProjectStore:
    """Create, list, rename, duplicate and delete (to a trash folder) projects and versions under ``root``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    # --- lookup ------------------------------------------------------------------------

    def _find(self, folder: Path, name: str) -> str | None:
        """The existing child of ``folder`` that ``name`` refers to, ignoring case."""
        wanted = unicodedata.normalize("NFC", name).casefold()
        return next((child for child in _children(folder) if child.casefold() == wanted), None)

    def project_name(self, project: str) -> str:
        """The name an existing project is stored under (``project`` matches it ignoring case)."""
        return self._project_dir(project).name

    def _project_dir(self, project: str) -> Path:
        found = self._find(self.root, validate_name(project, "project name"))
        if found is None:
            raise DatasetError(f"There is no project called {project!r}.")
        return self.root / found

    def _check_free(self, folder: Path, name: str, kind: str, allow: str | None = None) -> str:
        name = validate_name(name, f"{kind} name")
        existing = self._find(folder, name)
        if existing is not None and existing != allow:
            raise DatasetError(f"A {kind} called {existing!r} already exists.", hint="choose another name")
        return name

    def list_projects(self) -> list[str]:
        return _children(self.root)

    def list_versions(self, project: str) -> list[str]:
        return _children(self._project_dir(project) / "versions")

    def version(self, project: str, version: str) -> VersionPaths:
        """The paths of an existing version."""
        project_dir = self._project_dir(project)
        found = self._find(project_dir / "versions", validate_name(version, "version name"))
        if found is None:
            raise DatasetError(f"Project {project_dir.name!r} has no version called {version!r}.")
        return VersionPaths(project_dir.name, found, project_dir / "versions" / found)

    def caption_store(self, project: str, version: str) -> CaptionStore:
        """The caption files of a version, with its journal and backups kept beside the dataset."""
        paths = self.version(project, version)
        return CaptionStore(paths.dataset, paths.captions_state)

    # --- projects ----------------------------------------------------------------------

    @_reports_disk_errors
    def create_project(self, name: str, first_version: str | None = "v1") -> str:
        """Create a project (and its first version unless ``first_version`` is None); returns its name."""
        name = self._check_free(self.root, name, "project")
        if first_version is not None:
            validate_name(first_version, "version name")
        project_dir = self.root / name
        (project_dir / "versions").mkdir(parents=True)
        _write_json(project_dir / "project.json", {"format": MANIFEST_FORMAT, "name": name, "created": _now()})
        if first_version is not None:
            self.create_version(name, first_version)
        return name

    @_reports_disk_errors
    def rename_project(self, old: str, new: str) -> str:
        source = self._project_dir(old)
        new = self._check_free(self.root, new, "project", allow=source.name)
        os.replace(source, self.root / new)
        info_path = self.root / new / "project.json"
        info = json.loads(info_path.read_text("utf-8")) if info_path.is_file() else {}
        _write_json(info_path, {**info, "name": new})
        for version in self.list_versions(new):
            self._rewrite_manifest(self.version(new, version), project=new)
        return new

    @_reports_disk_errors
    def duplicate_project(self, name: str, new: str) -> str:
        """Copy a project with its versions' datasets and configs (outputs are not copied)."""
        source = self._project_dir(name)
        new = self._check_free(self.root, new, "project")
        versions = _children(source / "versions")
        skip = frozenset(f"versions/{version}/{part}" for version in versions for part in _NOT_COPIED)
        _copy_tree(source, self.root / new, skip)
        for version in self.list_versions(new):
            paths = self.version(new, version)
            paths.outputs.mkdir(exist_ok=True)
            self._rewrite_manifest(paths, project=new)
        return new

    @_reports_disk_errors
    def delete_project(self, name: str) -> Path:
        """Move a project to the trash folder; returns where it went."""
        source = self._project_dir(name)
        return self._to_trash(source, source.name, source.name)

    # --- versions ----------------------------------------------------------------------

    @_reports_disk_errors
    def create_version(self, project: str, version: str, notes: str = "") -> VersionPaths:
        project_dir = self._project_dir(project)
        version = self._check_free(project_dir / "versions", version, "version")
        paths = VersionPaths(project_dir.name, version, project_dir / "versions" / version)
        for folder in (paths.dataset, paths.config, paths.outputs):
            folder.mkdir(parents=True)
        now = _now()
        manifest = {"format": MANIFEST_FORMAT, "project": paths.project, "version": version}
        manifest |= {"created": now, "updated": now, "parent": None, "notes": notes}
        _write_json(paths.manifest, manifest)
        return paths

    @_reports_disk_errors
    def duplicate_version(self, project: str, source: str, new: str) -> VersionPaths:
        """A new version with a copy of ``source``'s dataset and config, and empty outputs."""
        origin = self.version(project, source)
        project_dir = self._project_dir(project)
        new = self._check_free(project_dir / "versions", new, "version")
        paths = VersionPaths(origin.project, new, project_dir / "versions" / new)
        _copy_tree(origin.root, paths.root, frozenset(_NOT_COPIED))
        paths.outputs.mkdir(exist_ok=True)
        now = _now()
        self._rewrite_manifest(paths, version=new, created=now, parent=origin.version)
        return paths

    @_reports_disk_errors
    def rename_version(self, project: str, old: str, new: str) -> VersionPaths:
        origin = self.version(project, old)
        new = self._check_free(origin.root.parent, new, "version", allow=origin.version)
        os.replace(origin.root, origin.root.parent / new)
        paths = VersionPaths(origin.project, new, origin.root.parent / new)
        self._rewrite_manifest(paths, version=new)
        return paths

    @_reports_disk_errors
    def delete_version(self, project: str, version: str) -> Path:
        """Move a version to the trash folder; returns where it went."""
        paths = self.version(project, version)
        return self._to_trash(paths.root, f"{paths.project}-{paths.version}", paths.project, paths.version)

    # --- manifest ----------------------------------------------------------------------

    def read_manifest(self, project: str, version: str) -> dict[str, Any]:
        paths = self.version(project, version)
        try:
            return dict(json.loads(paths.manifest.read_text("utf-8")))
        except FileNotFoundError:
            return {"format": MANIFEST_FORMAT, "project": paths.project, "version": paths.version}
        except (ValueError, TypeError):
            raise DatasetError(f"The manifest of {paths.project}/{paths.version} is damaged.") from None

    @_reports_disk_errors
    def update_manifest(self, project: str, version: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Set free-form manifest fields (notes, trigger word…); names and dates are kept by the store."""
        protected = _PROTECTED_FIELDS & fields.keys()
        if protected:
            raise DatasetError(f"The manifest field(s) {', '.join(sorted(protected))} cannot be changed.")
        return self._rewrite_manifest(self.version(project, version), **dict(fields))

    def _rewrite_manifest(self, paths: VersionPaths, **fields: Any) -> dict[str, Any]:
        manifest = {"format": MANIFEST_FORMAT, "project": paths.project, "version": paths.version}
        if paths.manifest.is_file():
            manifest |= json.loads(paths.manifest.read_text("utf-8"))
        manifest |= {"project": paths.project, **fields, "updated": _now()}
        _write_json(paths.manifest, manifest)
        return manifest

    # --- trash -------------------------------------------------------------------------

    def list_trash(self) -> list[TrashItem]:
        """What was deleted, oldest first."""
        trash = self.root / TRASH
        if not trash.is_dir():
            return []
        items = []
        for entry in sorted(os.scandir(trash), key=lambda item: item.name):
            if not entry.is_dir():
                continue
            info_path = trash / f"{entry.name}.json"
            try:
                info = json.loads(info_path.read_text("utf-8"))
            except (OSError, ValueError):
                info = {}
            items.append(TrashItem(entry.name, info.get("project"), info.get("version"), info.get("deleted", "")))
        return items

    @_reports_disk_errors
    def restore_from_trash(self, name: str) -> TrashItem:
        """Put a deleted project or version back where it was, if that name is still free."""
        item = next((entry for entry in self.list_trash() if entry.name == name), None)
        if item is None or item.project is None:
            raise DatasetError(f"{name!r} is not something that can be restored from the trash.")
        if item.version is None:
            self._check_free(self.root, item.project, "project")
            destination = self.root / item.project
        else:
            project_dir = self._project_dir(item.project)
            self._check_free(project_dir / "versions", item.version, "version")
            destination = project_dir / "versions" / item.version
        os.replace(self.root / TRASH / name, destination)
        (self.root / TRASH / f"{name}.json").unlink(missing_ok=True)
        return item

    def _to_trash(self, source: Path, label: str, project: str, version: str | None = None) -> Path:
        trash = self.root / TRASH
        trash.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")  # sorts in deletion order
        while len(label.encode("utf-8")) > _MAX_TRASH_LABEL_BYTES:
            label = label[:-1]
        destination = trash / f"{stamp}-{label}"
        number = 2
        while destination.exists():
            destination = trash / f"{stamp}-{label}-{number}"
            number += 1
        os.replace(source, destination)
        info = {"project": project, "version": version, "deleted": _now()}
        _write_json(trash / f"{destination.name}.json", info)
        return destination


def version_dataset_dir(projects_root: str | os.PathLike[str], project: str, version: str) -> Path:
    """The folder training reads for a version: images + ``.txt`` captions, kohya ``N_name`` sub-folders allowed."""
    return ProjectStore(projects_root).version(project, version).dataset
