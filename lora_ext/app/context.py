"""What the use cases work on besides the model: the project store, folders, settings, open editors, jobs.

One ``Context`` is shared by the page and the REST API (one long job at a time,
the same open editors and loaded tagger) and handed to every handler as its first
argument. It holds no WebUI or Gradio objects; host-specific folders and settings
come from the host (A1111: ``outputs_dir``, ``models_dir``, ``setting``) or from
``lora_ext.paths`` in the standalone app. The page's language is a translator
handed in by the UI (``i18n``); the app layer itself never translates.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lora_ext import paths, settings
from lora_ext.app.jobs import JobRunner
from lora_ext.dataset.editor import Editor
from lora_ext.dataset.files import CaptionStore
from lora_ext.dataset.projects import ProjectStore, VersionPaths
from lora_ext.errors import DatasetError, LoraExtError
from lora_ext.host import Host
from lora_ext.training.estimate import CostCache
from lora_ext.training.memory import MemoryCache


def _no_settings(key: str, default: Any) -> Any:
    return default


def _untranslated(text: str) -> str:
    return text


@dataclass(frozen=True)
class Workspace:
    """Folders the app reads and writes, and a reader for host settings (read on each use: they can change)."""

    projects_root: Path
    default_tagger_dir: Path
    setting: Callable[[str, Any], Any] = _no_settings

    @classmethod
    def standalone(cls) -> Workspace:
        from lora_ext.tagger.models import default_model_dir

        return cls(paths.projects_dir(), default_model_dir())

    @classmethod
    def for_host(cls, host: Host) -> Workspace:
        """The host's folders when it has them (``outputs_dir``, ``models_dir``), else the standalone ones."""
        outputs = host.outputs_dir
        if outputs is None:
            return cls.standalone()
        models = host.models_dir or outputs.parent
        return cls(outputs / "projects", models / "wd14_tagger", host.setting)

    @property
    def tagger_dir(self) -> Path:
        """The tagger model folder: the "Tagger model folder" setting when set, else the default."""
        chosen = self.setting(settings.TAGGER_DIR, "")
        return Path(chosen).expanduser() if chosen else self.default_tagger_dir


@dataclass
class EditorSession:
    """An open version: its caption files and the editor over them."""

    paths: VersionPaths
    store: CaptionStore
    editor: Editor
    notices: tuple[str, ...] = ()


@dataclass
class Context:
    """Everything a handler needs; the first argument of every handler."""

    host_provider: Callable[[], Host]
    workspace: Workspace
    i18n: Callable[[str], str] = _untranslated  # the UI hands in its ``I18n`` (current language)
    jobs: JobRunner = field(default_factory=JobRunner)
    editors: dict[tuple[str, str], EditorSession] = field(default_factory=dict)
    tagger: Any = None  # the loaded lora_ext.tagger.Tagger, kept between clicks
    tagger_source: str | None = None
    hashes: dict[tuple, str] = field(default_factory=dict)  # (path, mtime, size) → sha256 of result files
    measured_speed: float = 0.0  # optimizer steps per second of the last run, for time estimates
    step_costs: CostCache = field(default_factory=CostCache)  # steps timed on the host, per model and settings
    memory_profiles: MemoryCache = field(default_factory=MemoryCache)  # activations probed, per model and network
    grid_step_seconds: dict[tuple, float] = field(default_factory=dict)  # a grid's sampler step, per model and size
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def host(self) -> Host:
        return self.host_provider()

    @property
    def store(self) -> ProjectStore:
        self.workspace.projects_root.mkdir(parents=True, exist_ok=True)
        return ProjectStore(self.workspace.projects_root)

    def version(self, project: str | None, version: str | None) -> VersionPaths:
        if not project:
            raise DatasetError("No project is selected.", hint="create or pick a project first")
        if not version:
            raise DatasetError(f"Project {project!r} has no version selected.", hint="create or pick a version")
        return self.store.version(project, version)

    def session(self, project: str | None, version: str | None, reload: bool = False) -> EditorSession:
        """The open editor of a version, loading its captions on first use (or when ``reload``)."""
        paths_ = self.version(project, version)
        key = (paths_.project, paths_.version)
        with self.lock:
            session = self.editors.get(key)
            if session is None or reload or session.paths.root != paths_.root:
                store = CaptionStore(paths_.dataset, paths_.captions_state)
                loaded = store.load()
                session = EditorSession(paths_, store, Editor(loaded.table), loaded.notices)
                self.editors[key] = session
            return session

    def require_saved_captions(self, paths: VersionPaths, hint: str) -> None:
        """Refuse with one line while the page's caption editor of this version has unsaved edits: what comes
        next reads or writes the caption files, and the edits would be lost or stale. ``hint``: what to do."""
        with self.lock:
            session = self.editors.get((paths.project, paths.version))
            if session is not None and session.editor.is_dirty:
                raise DatasetError("The caption editor has unsaved changes.", hint=hint)

    def forget(self, project: str | None = None) -> None:
        """Drop open editors (of one project, or all) after a rename or delete."""
        with self.lock:
            for key in list(self.editors):
                if project is None or key[0] == project:
                    del self.editors[key]

    def tr(self, text: str) -> str:
        return self.i18n(text)


def create_context(
    host_provider: Callable[[], Host], workspace: Workspace | None = None, i18n: Callable[[str], str] | None = None
) -> Context:
    """The state the page and the REST API share (one job at a time, open editors, loaded tagger)."""
    if workspace is None:
        try:
            workspace = Workspace.for_host(host_provider())
        except LoraExtError:
            workspace = Workspace.standalone()
    return Context(host_provider, workspace, i18n or _untranslated)
