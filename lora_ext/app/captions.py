"""Saving a version's captions as a use case: the page's editor and the REST API write through ``save_captions``.

Every write holds the dataset's lock (``dataset.files.CaptionStore``). Captions handed in
from outside the page are refused while the page's editor of the version has unsaved
edits (``Context.require_saved_captions``): those would be lost, or written over them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lora_ext.app.context import Context
from lora_ext.dataset.files import SaveResult
from lora_ext.locking import dataset_lock


def save_captions(
    ctx: Context,
    project: str | None,
    version: str | None,
    captions: Mapping[str, str | Sequence[str]] | None = None,
    overwrite_external: bool = False,
) -> SaveResult:
    """Write the captions of a version, atomically after a numbered backup.

    ``captions`` None: the page's open editor's changes (``CaptionsChangedOnDisk`` when another program
    changed one of those files since, unless ``overwrite_external``). Else ``{image: caption}`` over the files
    as they are now; the page's editor then shows them.
    """
    if captions is None:
        session = ctx.session(project, version)
        # The snapshot is taken under the dataset's lock, so saves of this shared editor run one after the
        # other, each with a newer snapshot than the last: an older one never writes its stale rows over a
        # newer save. An edit made while a save runs stays unsaved and goes with the next save.
        with dataset_lock(session.paths.dataset):
            table = session.editor.table
            result = session.store.save(table, overwrite_external=overwrite_external)
            session.editor.mark_saved(table)
        return result
    paths = ctx.version(project, version)
    ctx.require_saved_captions(paths, hint="save them in the page first")
    result = ctx.store.caption_store(paths.project, paths.version).update(captions)
    if (paths.project, paths.version) in ctx.editors:
        ctx.session(paths.project, paths.version, reload=True)  # the page shows what was written
    return result
