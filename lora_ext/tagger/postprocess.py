"""From model probabilities to caption tags: pure functions, no I/O.

Order of work (docs/tagger.md, "Post-processing and captions"): split by category → thresholds (fixed, strict
``>``, or MCut) → underscore → space (kaomoji kept) → exclude → sort by
confidence → max tags; then the caption adds always-first tags and the optional
rating, de-duplicated. Splitting, de-duplication, tag comparison and prompt
escaping are the dataset's caption vocabulary (``lora_ext.dataset.captions``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

from lora_ext.dataset.captions import dedupe_tags, tag_key
from lora_ext.errors import ConfigError
from lora_ext.tagger.labels import Category, Labels

# Tags whose underscores are part of the face, not word separators (the list the
# SmilingWolf reference and the A1111 taggers keep; credited "Meow-San").
KAOMOJI: frozenset[str] = frozenset(
    {"0_0", "(o)_(o)", "+_+", "+_-", "._.", "<o>_<o>", "<|>_<|>", "=_=", ">_<", "3_3", "6_9", ">_o", "@_@", "^_^"}
    | {"o_o", "u_u", "x_x", "|_|", "||_||"}
)

# MCut on characters can pick a tiny gap among near-zero scores; the reference floors it.
CHARACTER_MCUT_FLOOR = 0.15

RatingPlacement = Literal["off", "first", "last"]


class ScoredTag(NamedTuple):
    """A tag as shown and written, its category and the model's confidence."""

    tag: str
    category: Category
    confidence: float


@dataclass(frozen=True)
class TagOptions:
    """How probabilities become caption tags."""

    general_threshold: float = 0.35
    character_threshold: float = 0.85
    general_mcut: bool = False
    character_mcut: bool = False
    replace_underscores: bool = True
    exclude: tuple[str, ...] = ()
    always_first: tuple[str, ...] = ()  # trigger words: always written first, never cut by max_tags
    characters_first: bool = False
    max_tags: int | None = None  # cap on the model's general + character tags
    rating: RatingPlacement = "off"

    def __post_init__(self) -> None:
        for name in ("general_threshold", "character_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name.replace('_', ' ')} must be between 0 and 1, got {value}")
        if self.max_tags is not None and self.max_tags < 1:
            raise ConfigError(f"max tags must be at least 1, got {self.max_tags}")
        if self.rating not in ("off", "first", "last"):
            raise ConfigError(f"rating must be off, first or last, got {self.rating!r}")


@dataclass(frozen=True)
class TagScores:
    """What one image's probabilities mean: ratings (all, best first) and selected tags."""

    ratings: tuple[ScoredTag, ...]
    tags: tuple[ScoredTag, ...]


def mcut_threshold(probabilities: np.ndarray) -> float:
    """Maximum Cut Thresholding: the midpoint of the largest gap between sorted scores.

    Largeron et al., IDA 2012. With fewer than two scores there is no gap and
    every positive score is kept.
    """
    ordered = np.sort(np.asarray(probabilities, dtype=np.float64))[::-1]
    if ordered.size < 2:
        return 0.0
    gap_index = int(np.argmax(ordered[:-1] - ordered[1:]))
    return float((ordered[gap_index] + ordered[gap_index + 1]) / 2)


def display_name(name: str, replace_underscores: bool = True) -> str:
    """Danbooru name → caption text: underscores become spaces except in kaomoji."""
    if not replace_underscores or name in KAOMOJI:
        return name
    return name.replace("_", " ")


def is_excluded(name: str, excluded_keys: frozenset[str]) -> bool:
    """True when the name is in the exclude list (given as keys).

    Keys ignore case and treat ``_`` as a space, so ``long_hair``, ``long hair`` and
    ``Long Hair`` in the list all exclude the raw name ``long_hair``.
    """
    return bool(excluded_keys) and tag_key(name) in excluded_keys


def _threshold(probabilities: np.ndarray, fixed: float, use_mcut: bool, floor: float) -> float:
    if not use_mcut:
        return fixed
    return max(floor, mcut_threshold(probabilities))


def _selected(
    probabilities: np.ndarray, labels: Labels, category: Category, threshold: float, use_mcut: bool, floor: float
) -> list[tuple[int, float]]:
    indices = np.flatnonzero(labels.mask(category))
    scores = probabilities[indices]
    cut = _threshold(scores, threshold, use_mcut, floor)
    # Compare in the model's float32, as the reference does (0.85 is 0.85000002 in float32).
    keep = scores > np.asarray(cut, dtype=scores.dtype)
    return [(int(i), float(s)) for i, s in zip(indices[keep], scores[keep], strict=True)]


def score_tags(probabilities: np.ndarray, labels: Labels, options: TagOptions) -> TagScores:
    """Select, rename, filter, sort and cap one image's tags. ``probabilities``: [L]."""
    probabilities = np.asarray(probabilities, dtype=np.float32).reshape(-1)
    if probabilities.shape[0] != len(labels):
        raise ValueError(f"{probabilities.shape[0]} scores for {len(labels)} labels")
    general = _selected(probabilities, labels, "general", options.general_threshold, options.general_mcut, 0.0)
    characters = _selected(
        probabilities, labels, "character", options.character_threshold, options.character_mcut, CHARACTER_MCUT_FLOOR
    )
    excluded = frozenset(tag_key(t) for t in options.exclude if t.strip())

    def scored(pairs: list[tuple[int, float]], category: Category) -> list[tuple[int, ScoredTag]]:
        return [
            (i, ScoredTag(display_name(labels.names[i], options.replace_underscores), category, score))
            for i, score in pairs
            if not is_excluded(labels.names[i], excluded)
        ]

    general_tags, character_tags = scored(general, "general"), scored(characters, "character")
    if options.characters_first:
        tags = _by_confidence(character_tags) + _by_confidence(general_tags)
    else:
        tags = _by_confidence(character_tags + general_tags)
    if options.max_tags is not None:
        tags = tags[: options.max_tags]
    rating_indices = np.flatnonzero(labels.mask("rating"))
    ratings = _by_confidence(
        [(int(i), ScoredTag(display_name(labels.names[i]), "rating", float(probabilities[i]))) for i in rating_indices]
    )
    return TagScores(tuple(ratings), tuple(tags))


def _by_confidence(indexed: list[tuple[int, ScoredTag]]) -> list[ScoredTag]:
    """Most confident first; equal confidences keep label (CSV) order."""
    return [tag for _, tag in sorted(indexed, key=lambda pair: (-pair[1].confidence, pair[0]))]


def caption_tags(scores: TagScores, options: TagOptions) -> list[str]:
    """The tags to write for one image, in order: always-first, rating (first), tags, rating (last)."""
    rating = [scores.ratings[0].tag] if scores.ratings and options.rating != "off" else []
    ordered: list[str] = list(options.always_first)
    if options.rating == "first":
        ordered += rating
    ordered += [t.tag for t in scores.tags]
    if options.rating == "last":
        ordered += rating
    return list(dedupe_tags(ordered))
