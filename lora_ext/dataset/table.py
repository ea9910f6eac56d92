"""The caption table: an immutable snapshot of every image's tags, and the tag filter over it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import chain
from typing import Literal

from lora_ext.dataset.captions import Tags, parse_tags
from lora_ext.errors import DatasetError

Logic = Literal["AND", "OR", "NONE"]
LOGICS: tuple[Logic, ...] = ("AND", "OR", "NONE")


@dataclass(frozen=True, eq=False)
class CaptionTable:
    """Image keys (relative paths) and their tags, in a fixed order. Edits make new tables.

    Unchanged rows are shared between snapshots, so a snapshot per edit costs one
    tuple of row pointers, which is what makes undo cheap on 5 000 images.
    """

    keys: tuple[str, ...]
    rows: tuple[Tags, ...]

    def __post_init__(self) -> None:
        assert len(self.keys) == len(self.rows), "one row of tags per key"

    @classmethod
    def from_captions(cls, captions: Mapping[str, str | Sequence[str]]) -> CaptionTable:
        """Build a table from ``{key: caption text or tags}``, sorted by key."""
        keys = tuple(sorted(captions))
        rows = tuple(
            parse_tags(value) if isinstance(value, str) else tuple(value) for value in (captions[k] for k in keys)
        )
        return cls(keys, rows)

    def __len__(self) -> int:
        return len(self.keys)

    @cached_property
    def _index(self) -> dict[str, int]:
        return {key: position for position, key in enumerate(self.keys)}

    @cached_property
    def tag_sets(self) -> tuple[frozenset[str], ...]:
        """Each row's tags as a set, computed once per snapshot for filtering."""
        return tuple(frozenset(row) for row in self.rows)

    @cached_property
    def counts(self) -> Counter[str]:
        """How many rows contain each tag, computed once per snapshot (read-only by convention)."""
        return Counter(chain.from_iterable(self.tag_sets))

    def index_of(self, key: str) -> int:
        """Row number of ``key``; ``DatasetError`` when the image is not in the table."""
        try:
            return self._index[key]
        except KeyError:
            raise DatasetError(f"The image {key!r} is not in this dataset.") from None

    def tags(self, key: str) -> Tags:
        return self.rows[self.index_of(key)]

    def with_rows(self, updates: Mapping[int, Tags]) -> CaptionTable:
        """A new table with some rows replaced; ``self`` when nothing actually changes."""
        changed = {position: tags for position, tags in updates.items() if self.rows[position] != tags}
        if not changed:
            return self
        rows = list(self.rows)
        for position, tags in changed.items():
            rows[position] = tags
        table = CaptionTable(self.keys, tuple(rows))
        # Carry the per-snapshot caches over, recomputing only the changed rows.
        if "_index" in self.__dict__:
            table.__dict__["_index"] = self._index
        if "tag_sets" in self.__dict__:
            sets = list(self.tag_sets)
            for position, tags in changed.items():
                sets[position] = frozenset(tags)
            table.__dict__["tag_sets"] = tuple(sets)
        return table

    def changed_keys(self, other: CaptionTable) -> tuple[str, ...]:
        """Keys whose tags differ between two snapshots of the same images."""
        if other.keys != self.keys:
            raise DatasetError("The two caption tables hold different images.", hint="reload the dataset")
        return tuple(
            key
            for key, mine, theirs in zip(self.keys, self.rows, other.rows, strict=True)
            if mine is not theirs and mine != theirs
        )

    def as_dict(self) -> dict[str, Tags]:
        return dict(zip(self.keys, self.rows, strict=True))


def _matches(tag_set: frozenset[str], selected: frozenset[str], logic: Logic) -> bool:
    if logic == "AND":
        return selected <= tag_set
    if logic == "OR":
        return not selected.isdisjoint(tag_set)
    return selected.isdisjoint(tag_set)


@dataclass(frozen=True)
class TagFilter:
    """Which rows are shown, as in the Dataset Tag Editor.

    A row is shown when it satisfies the positive tags under ``positive_logic``
    (AND: has all, OR: has any, NONE: has none) and does *not* satisfy the
    negative tags under ``negative_logic``. Empty tag sets filter nothing.
    ``keys``, when given, limits the rows to a selection of images.
    """

    positive: frozenset[str] = field(default_factory=frozenset)
    positive_logic: Logic = "AND"
    negative: frozenset[str] = field(default_factory=frozenset)
    negative_logic: Logic = "OR"
    keys: frozenset[str] | None = None

    def __post_init__(self) -> None:
        for logic in (self.positive_logic, self.negative_logic):
            if logic not in LOGICS:
                raise DatasetError(f"Unknown filter logic {logic!r}.", hint="use AND, OR or NONE")
        object.__setattr__(self, "positive", frozenset(self.positive))
        object.__setattr__(self, "negative", frozenset(self.negative))
        if self.keys is not None:
            object.__setattr__(self, "keys", frozenset(self.keys))

    @property
    def is_empty(self) -> bool:
        return not self.positive and not self.negative and self.keys is None

    def indices(self, table: CaptionTable) -> tuple[int, ...]:
        """Row numbers of ``table`` this filter shows, in table order."""
        if self.is_empty:
            return tuple(range(len(table)))
        positive, negative, keys = self.positive, self.negative, self.keys
        shown: list[int] = []
        for position, tag_set in enumerate(table.tag_sets):
            if keys is not None and table.keys[position] not in keys:
                continue
            if positive and not _matches(tag_set, positive, self.positive_logic):
                continue
            if negative and _matches(tag_set, negative, self.negative_logic):
                continue
            shown.append(position)
        return tuple(shown)


def tag_counts(table: CaptionTable, indices: Iterable[int] | None = None) -> Counter[str]:
    """How many of the given rows (all rows by default) contain each tag."""
    if indices is None:
        return Counter(table.counts)  # a copy: callers may change theirs
    sets = table.tag_sets
    return Counter(chain.from_iterable(sets[position] for position in indices))
