"""Preview prompts as kohya writes them, one per line: ``prompt --n negative --w 512 --h 512 --s 20 --l 7 --d 1``."""

from __future__ import annotations

import re

from lora_ext.host import GenerationRequest

_OPTION = re.compile(r"\s--(n|w|h|s|l|d)\s+")


def parse_sample_prompts(text: str, width: int, height: int, seed: int) -> list[GenerationRequest]:
    """kohya's prompt lines: ``prompt --n negative --w 512 --h 512 --s 20 --l 7 --d 1``; ``#`` comments."""
    prompts = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pieces = _OPTION.split(" " + line)
        values: dict[str, str] = {}
        for key, value in zip(pieces[1::2], pieces[2::2], strict=True):
            values[key] = value.strip()
        try:
            prompts.append(
                GenerationRequest(
                    prompt=pieces[0].strip(),
                    negative_prompt=values.get("n", ""),
                    width=int(values.get("w", width)),
                    height=int(values.get("h", height)),
                    steps=int(values.get("s", 20)),
                    cfg_scale=float(values.get("l", 7.0)),
                    seed=int(values.get("d", seed)),
                )
            )
        except ValueError:
            continue  # a malformed option line is skipped rather than ending the run
    return prompts
