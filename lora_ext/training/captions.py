"""Caption processing for training: pure functions of (caption, options, rng).

Order as sd-scripts: caption dropout, split into tags, keep the first
``keep_tokens`` tags fixed, shuffle the rest, tag dropout, join. The trigger
word is put first (and kept) before any of that. Splitting, joining and "is this
tag already there" are the dataset's caption vocabulary (``lora_ext.dataset.captions``),
so the trainer sees a caption's tags exactly as the editor shows them.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from lora_ext.dataset.captions import join_tags, parse_tags, trigger_first


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


def with_trigger(caption: str, trigger_word: str) -> str:
    """Put ``trigger_word`` first, once: moved there when the caption has it, added when not."""
    if not trigger_word.strip():
        return caption
    return join_tags(trigger_first(parse_tags(caption), (trigger_word,)))


def process_caption(caption: str, options: CaptionOptions, rng: random.Random) -> str:
    """The caption text for one use of a sample."""
    keep = options.keep_tokens + (1 if options.trigger_word.strip() else 0)
    caption = with_trigger(caption, options.trigger_word)
    if options.caption_dropout_rate > 0 and rng.random() < options.caption_dropout_rate:
        return ""
    if options.is_static:
        return caption
    tags = parse_tags(caption)
    fixed, flexible = list(tags[:keep]), list(tags[keep:])
    if options.shuffle:
        rng.shuffle(flexible)
    if options.tag_dropout_rate > 0:
        flexible = [tag for tag in flexible if rng.random() >= options.tag_dropout_rate]
    return join_tags(fixed + flexible)


def tag_frequency(captions: Iterable[str]) -> dict[str, int]:
    """kohya's ``ss_tag_frequency`` counts for one folder: every occurrence of each tag, lower-cased."""
    counts: Counter[str] = Counter()
    for caption in captions:
        counts.update(tag.lower() for tag in parse_tags(caption))
    return dict(counts)
