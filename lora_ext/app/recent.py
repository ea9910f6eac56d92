"""Where the user left off: the last-used project and version, remembered per data folder.

A small JSON file in the projects root (written atomically), so a reload, a second
tab or a restarted server opens on the same version.
"""

from __future__ import annotations

import json
from pathlib import Path

from lora_ext.dataset.projects import ProjectStore
from lora_ext.fileio import write_text_atomic

FILE_NAME = ".train-tools-last.json"


def remember(root: Path, project: str | None, version: str | None) -> None:
    """Record ``project``/``version`` as the last used (nothing when either is empty or unchanged)."""
    if not project or not version or recall(root) == (project, version):
        return
    root.mkdir(parents=True, exist_ok=True)
    write_text_atomic(root / FILE_NAME, json.dumps({"project": project, "version": version}, ensure_ascii=False))


def recall(root: Path) -> tuple[str | None, str | None]:
    """The last-used (project, version); (None, None) when none is recorded or the file is unreadable."""
    try:
        data = json.loads((root / FILE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    project, version = data.get("project"), data.get("version")
    return (project if isinstance(project, str) else None), (version if isinstance(version, str) else None)


def opening_selection(store: ProjectStore) -> tuple[list[str], str | None, list[str], str | None]:
    """(projects, project, versions, version) the page opens on: the last used when it still exists."""
    projects = store.list_projects()
    last_project, last_version = recall(store.root)
    project = last_project if last_project in projects else (projects[0] if projects else None)
    versions = store.list_versions(project) if project else []
    if project == last_project and last_version in versions:
        version = last_version
    else:
        version = versions[-1] if versions else None
    return projects, project, versions, version
