"""Moving a project or a version to the trash folder, as a use case: the page's *Delete* and the REST API's
``DELETE`` routes both come here. Refused in one line while a job works on what would move (its folders would
be pulled from under it); the open caption editors of the project are dropped afterwards."""

from __future__ import annotations

from pathlib import Path

from lora_ext.app.context import Context


def trash_project(ctx: Context, project: str) -> Path:
    """Move ``project`` (matched ignoring case) with all its versions to the trash; returns where it went."""
    name = ctx.store.project_name(project)
    ctx.jobs.require_not_on(name)
    where = ctx.store.delete_project(name)
    ctx.forget(name)
    return where


def trash_version(ctx: Context, project: str, version: str) -> Path:
    """Move one version to the trash; returns where it went."""
    paths = ctx.store.version(project, version)
    ctx.jobs.require_not_on(paths.project, paths.version)
    where = ctx.store.delete_version(paths.project, paths.version)
    ctx.forget(paths.project)
    return where
