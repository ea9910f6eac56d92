"""Pure functions over tags and caption text: the one caption vocabulary of the editor, tagger and trainer.

A caption is a comma-separated list of tags; a tag list is a ``tuple[str, ...]``.
The rules every part of the extension shares live here and only here:

- **split**: ``parse_tags`` — commas *and line breaks* separate tags, so a caption
  file of several lines is one caption holding every line's tags (the editor shows
  them all, the trainer trains on them all, the tagger's append keeps them all);
- **join**: ``join_tags`` with ``", "``, kohya's and the taggers' separator;
- **same tag**: ``tag_key`` — case, runs of spaces and ``_`` versus space do not
  make two tags (CLIP lower-cases and folds white space; ``long_hair`` is the
  Danbooru spelling of ``long hair``); ``dedupe_tags`` keeps the first spelling;
- **escape**: ``escape_for_prompt`` — only for text pasted into a prompt, never for
  caption files (kohya does not unescape: the backslashes would be trained).

Every function here returns a new value and never touches its inputs or the disk.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from lora_ext.errors import DatasetError

Tags = tuple[str, ...]
SortKey = Literal["alphabetical", "frequency", "length"]
SORT_KEYS: tuple[SortKey, ...] = ("alphabetical", "frequency", "length")
SEPARATOR = ", "

_SPLIT = re.compile(r"[,\n\r]")
# A1111's prompt parser (modules/prompt_parser.re_attention) reads ( ) [ ] as attention and
# \ as the escape; each has a backslash escape there. ":" is not escaped: it is syntax only
# as ":1.2)" inside brackets, which escaped brackets already rule out, and "\:" is no escape
# sequence (the backslash would stay in the prompt).
_PROMPT_SPECIAL = re.compile(r"([\\()\[\]])")


def parse_tags(text: str | Iterable[str] | None) -> Tags:
    """Caption text → tags: split on commas and line breaks, strip spaces, drop empty ones.

    ``text`` may also be several such texts (repeated CLI options, a JSON list) or
    ``None`` (no tags). Tags are interned: a dataset repeats a few thousand distinct
    tags hundreds of thousands of times, and shared string objects make lookups cheap.
    """
    if text is None:
        return ()
    parts = _SPLIT.split(text) if isinstance(text, str) else [part for piece in text for part in _SPLIT.split(piece)]
    return tuple(sys.intern(tag) for tag in (part.strip() for part in parts) if tag)


def join_tags(tags: Iterable[str], separator: str = SEPARATOR) -> str:
    """Tags → caption text."""
    return separator.join(tags)


def caption_text(text: str) -> str:
    """A caption file's text as one caption: every line's tags, joined (what the trainer encodes)."""
    return join_tags(parse_tags(text))


def tag_key(tag: str) -> str:
    """The form two tags are compared in: case-, space- and underscore-insensitive."""
    return " ".join(tag.strip().lower().replace("_", " ").split())


def dedupe_tags(tags: Iterable[str]) -> Tags:
    """Drop empty and repeated tags (compared by ``tag_key``), keeping the first occurrence's spelling."""
    seen: set[str] = set()
    kept: list[str] = []
    for tag in tags:
        tag = tag.strip()
        key = tag_key(tag)
        if key and key not in seen:
            seen.add(key)
            kept.append(tag)
    return tuple(kept)


def add_tags(tags: Sequence[str], new_tags: Sequence[str], position: Literal["prepend", "append"] = "append") -> Tags:
    """Add ``new_tags`` that are not already present (by ``tag_key``), at the start or the end."""
    present = {tag_key(tag) for tag in tags}
    missing = tuple(tag for tag in dedupe_tags(new_tags) if tag_key(tag) not in present)
    return missing + tuple(tags) if position == "prepend" else tuple(tags) + missing


def remove_tags(tags: Sequence[str], unwanted: Collection[str]) -> Tags:
    """Drop every tag that is in ``unwanted``."""
    unwanted_set = set(unwanted)
    return tuple(tag for tag in tags if tag not in unwanted_set)


@dataclass(frozen=True)
class Replacement:
    """A search-and-replace rule: plain text, or a regular expression with ``\\1``-style groups."""

    search: str
    replacement: str
    regex: bool = False
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.search:
            raise DatasetError("The search text is empty.", hint="type what to replace")
        try:
            pattern = re.compile(self.search if self.regex else re.escape(self.search))
        except re.error as error:
            where = f" at character {error.pos + 1}" if error.pos is not None else ""
            raise DatasetError(f"The regular expression {self.search!r} is invalid{where}: {error.msg}.") from None
        object.__setattr__(self, "pattern", pattern)

    def apply(self, text: str) -> str:
        """``text`` with every match replaced; a bad group reference becomes a ``DatasetError``."""
        if not self.regex:
            return self.pattern.sub(lambda _match: self.replacement, text)
        try:
            return self.pattern.sub(self.replacement, text)
        except (re.error, IndexError) as error:
            raise DatasetError(f"The replacement {self.replacement!r} is invalid: {error}.") from None


def map_tags(tags: Sequence[str], transform: Callable[[str], str], *, only: Collection[str] | None = None) -> Tags:
    """Apply ``transform`` to each tag (or only to the tags in ``only``); tags left empty are dropped."""
    result: list[str] = []
    for tag in tags:
        if only is None or tag in only:
            tag = transform(tag)
        if tag:
            result.append(tag)
    return tuple(result)


def replace_in_tags(tags: Sequence[str], rule: Replacement, *, only: Collection[str] | None = None) -> Tags:
    """Apply ``rule`` inside each tag (or only inside the tags in ``only``); tags left empty are dropped."""
    return map_tags(tags, lambda tag: rule.apply(tag).strip(), only=only)


def replace_in_caption(tags: Sequence[str], rule: Replacement) -> Tags:
    """Apply ``rule`` to the whole caption text, then split it into tags again."""
    return parse_tags(rule.apply(join_tags(tags)))


def rename_tag(tags: Sequence[str], old: str, new: str) -> Tags:
    """Replace the tag ``old`` by ``new`` in place (``new`` empty removes it); duplicates created are dropped."""
    replaced = tuple(new.strip() if tag == old else tag for tag in tags)
    return dedupe_tags(tuple(tag for tag in replaced if tag))


def tag_frequencies(captions: Iterable[Sequence[str]]) -> Counter[str]:
    """How many captions contain each tag (a tag repeated in one caption counts once)."""
    counts: Counter[str] = Counter()
    for tags in captions:
        counts.update(set(tags))
    return counts


def sort_tags(
    tags: Sequence[str],
    key: SortKey = "alphabetical",
    *,
    reverse: bool = False,
    frequencies: Mapping[str, int] | None = None,
) -> Tags:
    """Sort tags A→Z, shortest first, or most common in the dataset first; ``reverse`` flips the order.

    Ties keep alphabetical order, so the result does not depend on the input order.
    """
    if key not in SORT_KEYS:
        raise DatasetError(f"Unknown sort order {key!r}.", hint=f"use one of {', '.join(SORT_KEYS)}")
    alphabetical = sorted(tags, key=str.casefold)
    if key == "alphabetical":
        ordered = alphabetical
    elif key == "length":
        ordered = sorted(alphabetical, key=len)
    else:
        counts = frequencies or {}
        ordered = sorted(alphabetical, key=lambda tag: -counts.get(tag, 0))
    return tuple(reversed(ordered)) if reverse else tuple(ordered)


def trigger_first(tags: Sequence[str], triggers: Sequence[str]) -> Tags:
    """Put the trigger word(s) first, once each (any spelling of it by ``tag_key`` goes), adding them if missing."""
    wanted = dedupe_tags(triggers)
    wanted_keys = {tag_key(tag) for tag in wanted}
    return wanted + tuple(tag for tag in tags if tag_key(tag) not in wanted_keys)


def escape_for_prompt(tag: str) -> str:
    """Escape the characters A1111 reads as attention syntax: ``(`` ``)`` ``[`` ``]`` ``\\``."""
    return _PROMPT_SPECIAL.sub(r"\\\1", tag)


def caption_to_prompt(tags: Sequence[str]) -> str:
    """A caption ready to paste into a prompt, each tag escaped."""
    return join_tags(escape_for_prompt(tag) for tag in tags)


def clip_token_counter(tokenizer: Any) -> Callable[[str], int]:
    """A token counter from a Hugging Face ``CLIPTokenizer`` (start and end tokens not counted).

    A1111's host builds its own counter from the loaded model's tokenizer; this one
    serves the standalone host and tests.
    """

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"])

    return count


def truncate_by_tokens(
    tags: Sequence[str], max_tokens: int, count_tokens: Callable[[str], int], separator: str = SEPARATOR
) -> Tags:
    """Keep the longest prefix of ``tags`` whose joined caption is at most ``max_tokens`` tokens.

    ``count_tokens`` is the host's CLIP tokenizer (without start/end tokens). The
    count of a prefix grows with its length, so a binary search needs only
    ``log2(len(tags))`` tokenizer calls per caption.
    """
    if max_tokens < 0:
        raise DatasetError("The token limit must be zero or more.")
    if count_tokens(separator.join(tags)) <= max_tokens:
        return tuple(tags)
    low, high = 0, len(tags) - 1  # invariant: prefix[:low] fits, prefix[:high + 1] does not
    while low < high:
        middle = (low + high + 1) // 2
        if count_tokens(separator.join(tags[:middle])) <= max_tokens:
            low = middle
        else:
            high = middle - 1
    return tuple(tags[:low])
