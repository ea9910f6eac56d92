"""Caption processing for training: pure functions of (caption, options, rng).

Order as sd-scripts: caption dropout, split on commas, keep the first
``keep_tokens`` tags fixed, shuffle the rest, tag dropout, join. The trigger
word is put first (and kept) before any of that.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class CaptionOptions:
    shuffle: bool = False
    keep_tokens: int = 0
    caption_dropout_rate: float = 0.0
    tag_dropout_rate: float = 0.0
    trigger_word: str = ""

    @property
    def is_static(self) -> bool:
        """True when a caption always yields the same text (so its conditioning can be cached)."""
        return not self.shuffle and self.caption_dropout_rate == 0 and self.tag_dropout_rate == 0


def split_tags(caption: str) -> list[str]:
    return [tag.strip() for tag in caption.split(",") if tag.strip()]


def with_trigger(caption: str, trigger_word: str) -> str:
    """Put ``trigger_word`` first unless the caption already has it as a tag."""
    trigger = trigger_word.strip()
    if not trigger:
        return caption
    tags = split_tags(caption)
    if trigger in tags:
        tags.remove(trigger)
    return ", ".join([trigger, *tags])


def process_caption(caption: str, options: CaptionOptions, rng: random.Random) -> str:
    """The caption text for one use of a sample."""
    keep = options.keep_tokens + (1 if options.trigger_word.strip() else 0)
    caption = with_trigger(caption, options.trigger_word)
    if options.caption_dropout_rate > 0 and rng.random() < options.caption_dropout_rate:
        return ""
    if options.is_static:
        return caption
    tags = split_tags(caption)
    fixed, flexible = tags[:keep], tags[keep:]
    if options.shuffle:
        rng.shuffle(flexible)
    if options.tag_dropout_rate > 0:
        flexible = [tag for tag in flexible if rng.random() >= options.tag_dropout_rate]
    return ", ".join(fixed + flexible)


def tag_frequency(captions: Iterable[str]) -> dict[str, int]:
    """kohya's ``ss_tag_frequency`` counts for one folder: comma-split, stripped, lower-cased."""
    counts: Counter[str] = Counter()
    for caption in captions:
        counts.update(tag.lower() for tag in split_tags(caption))
    return dict(counts)
