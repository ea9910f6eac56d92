"""The caption editor: batch and per-image edits over caption-table snapshots, with undo and redo.

The editor owns no files. Every operation turns the current ``CaptionTable`` into
a new one and keeps the old one on the undo stack; batch operations touch only
the rows the current filter shows. Saving is ``CaptionStore.save(editor.table)``
followed by ``editor.mark_saved(table)`` with the table that was saved.

One editor can be shared by concurrent requests (the page keeps one per open
version), so every operation that reads the current table and replaces it runs
under the editor's own lock: two edits at once both land, one after the other.
"""

from __future__ import annotations

import functools
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from lora_ext.dataset import captions
from lora_ext.dataset.captions import SortKey, Tags
from lora_ext.dataset.table import CaptionTable, TagFilter, tag_counts
from lora_ext.errors import DatasetError

ReplaceScope = Literal["selected", "each", "caption"]
REPLACE_SCOPES: tuple[ReplaceScope, ...] = ("selected", "each", "caption")
DEFAULT_HISTORY = 500
_Method = TypeVar("_Method", bound=Callable[..., Any])


def _serialised(method: _Method) -> _Method:
    """Run ``method`` under the editor's lock: a read-modify-write of the table is never interleaved."""

    @functools.wraps(method)
    def locked(self: Editor, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return locked  # type: ignore[return-value]


@dataclass(frozen=True)
class EditResult:
    """What one operation did: its label and how many images changed (0 means nothing was recorded)."""

    label: str
    changed: int


class Editor:
    """Edits a caption table with undo/redo; batch edits apply to the rows the filter shows."""

    def __init__(self, table: CaptionTable, history_limit: int = DEFAULT_HISTORY) -> None:
        self._table = table
        self._saved = table
        self._filter = TagFilter()
        self._undo: list[tuple[str, CaptionTable]] = []
        self._redo: list[tuple[str, CaptionTable]] = []
        self._history_limit = history_limit
        self._lock = threading.RLock()

    # --- state -------------------------------------------------------------------------

    @property
    def table(self) -> CaptionTable:
        """The current snapshot."""
        return self._table

    @property
    def filter(self) -> TagFilter:
        return self._filter

    @_serialised
    def set_filter(self, tag_filter: TagFilter) -> tuple[str, ...]:
        """Show only the rows ``tag_filter`` accepts; returns their keys."""
        self._filter = tag_filter
        return self.visible_keys()

    def visible_indices(self) -> tuple[int, ...]:
        return self._filter.indices(self._table)

    def visible_keys(self) -> tuple[str, ...]:
        keys = self._table.keys
        return tuple(keys[position] for position in self.visible_indices())

    def tag_counts(self, visible_only: bool = True) -> Counter[str]:
        """Tag frequencies over the shown rows (or all rows)."""
        return tag_counts(self._table, self.visible_indices() if visible_only else None)

    def common_tags(self) -> Tags:
        """Tags every shown row has, in the order of the first shown row."""
        indices = self.visible_indices()
        if not indices:
            return ()
        counts = tag_counts(self._table, indices)
        first = self._table.rows[indices[0]]
        return tuple(tag for tag in first if counts[tag] == len(indices))

    @property
    def is_dirty(self) -> bool:
        """True when the current snapshot differs from the last saved one."""
        return self._table is not self._saved and bool(self._table.changed_keys(self._saved))

    def unsaved_keys(self) -> tuple[str, ...]:
        return self._table.changed_keys(self._saved)

    @_serialised
    def mark_saved(self, table: CaptionTable | None = None) -> None:
        """Record ``table`` (the current one by default) as what is on disk."""
        self._saved = self._table if table is None else table

    # --- history -----------------------------------------------------------------------

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def history(self) -> tuple[str, ...]:
        """Labels of the operations that can be undone, oldest first."""
        return tuple(label for label, _table in self._undo)

    @_serialised
    def undo(self) -> str | None:
        """Go back one operation; returns its label, or ``None`` when there is nothing to undo."""
        if not self._undo:
            return None
        label, previous = self._undo.pop()
        self._redo.append((label, self._table))
        self._table = previous
        return label

    @_serialised
    def redo(self) -> str | None:
        """Re-apply the last undone operation; returns its label or ``None``."""
        if not self._redo:
            return None
        label, following = self._redo.pop()
        self._undo.append((label, self._table))
        self._table = following
        return label

    def _commit(self, label: str, new_table: CaptionTable) -> EditResult:
        if new_table is self._table:
            return EditResult(label, 0)
        changed = len(new_table.changed_keys(self._table))
        self._undo.append((label, self._table))
        del self._undo[: -self._history_limit]
        self._redo.clear()
        self._table = new_table
        return EditResult(label, changed)

    @_serialised
    def apply(
        self, label: str, edit: Callable[[Tags], Tags], touches: Callable[[frozenset[str]], bool] | None = None
    ) -> EditResult:
        """Apply ``edit`` to every shown row as one undoable operation.

        ``touches``, given a row's tag set, says whether ``edit`` can change that row;
        rows it rules out are skipped without calling ``edit`` (a set test in C
        instead of a Python call per row).
        """
        rows, sets = self._table.rows, self._table.tag_sets
        updates = {
            position: edit(rows[position])
            for position in self.visible_indices()
            if touches is None or touches(sets[position])
        }
        return self._commit(label, self._table.with_rows(updates))

    @_serialised
    def replace_table(self, table: CaptionTable, label: str = "restore backup") -> EditResult:
        """Make ``table`` (same images, e.g. ``CaptionStore.backup_as_table``) current, as one undoable edit."""
        if table.keys != self._table.keys:
            raise DatasetError("That caption table holds different images.", hint="reload the dataset")
        return self._commit(label, table)

    # --- per-image ---------------------------------------------------------------------

    @_serialised
    def set_caption(self, key: str, caption: str | Sequence[str]) -> EditResult:
        """Replace one image's caption (text or tags), whatever the filter shows."""
        tags = captions.parse_tags(caption) if isinstance(caption, str) else tuple(caption)
        position = self._table.index_of(key)
        return self._commit(f"edit {key}", self._table.with_rows({position: tags}))

    # --- batch -------------------------------------------------------------------------

    @_serialised
    def add_tags(self, tags: Sequence[str] | str, position: Literal["prepend", "append"] = "append") -> EditResult:
        """Add tags to the shown rows that lack them, at the start or the end."""
        new_tags = captions.parse_tags(tags) if isinstance(tags, str) else tuple(tags)
        if position not in ("prepend", "append"):
            raise DatasetError(f"Unknown position {position!r}.", hint="use prepend or append")
        wanted = frozenset(new_tags)
        return self.apply(
            f"add {', '.join(new_tags)}",
            lambda row: captions.add_tags(row, new_tags, position),
            touches=lambda tag_set: not wanted <= tag_set,
        )

    @_serialised
    def remove_tags(self, tags: Sequence[str] | str) -> EditResult:
        """Remove tags from the shown rows."""
        unwanted = frozenset(captions.parse_tags(tags) if isinstance(tags, str) else tags)
        return self.apply(
            f"remove {', '.join(sorted(unwanted))}",
            lambda row: captions.remove_tags(row, unwanted),
            touches=lambda tag_set: not unwanted.isdisjoint(tag_set),
        )

    @_serialised
    def rename_tag(self, old: str, new: str) -> EditResult:
        """Change one tag into another in place in the shown rows (``new`` empty removes it)."""
        return self.apply(
            f"rename {old} → {new}",
            lambda row: captions.rename_tag(row, old, new),
            touches=lambda tag_set: old in tag_set,
        )

    @_serialised
    def replace(
        self,
        search: str,
        replacement: str,
        *,
        regex: bool = False,
        scope: ReplaceScope = "each",
        selected: Sequence[str] | None = None,
    ) -> EditResult:
        """Search and replace in the shown rows.

        ``scope``: ``selected`` edits only the tags in ``selected`` (default: the
        positive filter's tags), ``each`` edits every tag, ``caption`` edits the
        whole caption text and splits it into tags again.
        """
        if scope not in REPLACE_SCOPES:
            raise DatasetError(f"Unknown replace scope {scope!r}.", hint="use selected, each or caption")
        rule = captions.Replacement(search, replacement, regex)
        label = f"replace {search} → {replacement}"
        if scope == "caption":
            return self.apply(label, lambda row: captions.replace_in_caption(row, rule))
        only: frozenset[str] | None = None
        if scope == "selected":
            only = frozenset(self._filter.positive if selected is None else selected)
            if not only:
                raise DatasetError("No tags are selected to replace in.", hint="select tags in the filter first")
        # A dataset has far fewer distinct tags than tag occurrences: replace each distinct tag
        # once, then rewrite only the rows that hold a tag the rule changes.
        sets = self._table.tag_sets
        distinct = frozenset().union(*(sets[position] for position in self.visible_indices()))
        candidates = distinct if only is None else distinct & only
        mapping = {tag: rule.apply(tag).strip() for tag in candidates}
        mapping = {tag: new for tag, new in mapping.items() if new != tag}
        changed = frozenset(mapping)
        lookup = mapping.get
        return self.apply(
            label,
            lambda row: tuple(filter(None, map(lookup, row, row))),  # lookup(tag, default=tag), all in C
            touches=lambda tag_set: not changed.isdisjoint(tag_set),
        )

    @_serialised
    def dedupe(self) -> EditResult:
        """Remove repeated tags in the shown rows."""
        return self.apply("remove duplicates", captions.dedupe_tags)

    @_serialised
    def sort(self, key: SortKey = "alphabetical", *, reverse: bool = False) -> EditResult:
        """Sort the tags of the shown rows; ``frequency`` counts over the whole dataset."""
        frequencies = self._table.counts if key == "frequency" else None
        # Order the distinct tags once, then sort each row by that rank: same result, far fewer comparisons.
        sets = self._table.tag_sets
        distinct = sorted(frozenset().union(*(sets[position] for position in self.visible_indices())))
        ordered = captions.sort_tags(distinct, key, reverse=reverse, frequencies=frequencies)
        rank = {tag: position for position, tag in enumerate(ordered)}
        return self.apply(f"sort by {key}", lambda row: tuple(sorted(row, key=rank.__getitem__)))

    @_serialised
    def trigger_first(self, triggers: Sequence[str] | str) -> EditResult:
        """Put the trigger word(s) first in the shown rows, adding them where missing."""
        words = captions.parse_tags(triggers) if isinstance(triggers, str) else tuple(triggers)
        if not words:
            raise DatasetError("The trigger word is empty.", hint="type the trigger word")
        return self.apply(f"trigger first {', '.join(words)}", lambda row: captions.trigger_first(row, words))

    @_serialised
    def truncate_tokens(self, max_tokens: int, count_tokens: Callable[[str], int] | None) -> EditResult:
        """Cut the shown captions to ``max_tokens`` CLIP tokens with the host's tokenizer."""
        if count_tokens is None:
            raise DatasetError(
                "Truncating by token count needs a CLIP tokenizer.", hint="load a model in the WebUI first"
            )
        return self.apply(
            f"truncate to {max_tokens} tokens",
            lambda row: captions.truncate_by_tokens(row, max_tokens, count_tokens),
        )
