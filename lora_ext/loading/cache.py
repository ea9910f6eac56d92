"""An LRU of parsed LoRA files, keyed by path and reloaded when the file changes on disk."""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

from lora_ext.errors import LoraExtError
from lora_ext.formats.parse import ParsedLora, parse_lora
from lora_ext.formats.peft_config import WEIGHTS_STEM, sidecar_path
from lora_ext.formats.safetensors_io import load_state_dict, unreadable


def file_identity(path: Path) -> tuple:
    """(path, mtime_ns, size[, the PEFT config's mtime_ns]): rewriting the file (or its config) changes it."""
    stat = os.stat(path)
    identity: tuple = (str(path), stat.st_mtime_ns, stat.st_size)
    if Path(path).stem == WEIGHTS_STEM and (config := sidecar_path(Path(path))) is not None:
        identity += (config.stat().st_mtime_ns,)
    return identity


class LoraCache:
    """Parsed files, most recently used last; ``max_items`` 0 keeps only what the current call needs."""

    def __init__(self, max_items: int = 5) -> None:
        self.max_items = max_items
        self._items: OrderedDict[str, ParsedLora] = OrderedDict()
        self.loads = 0  # how many times a file was read and parsed (for tests and the bench)

    def __len__(self) -> int:
        return len(self._items)

    def set_limit(self, max_items: int) -> None:
        self.max_items = max(0, int(max_items))
        self.trim()

    def get(self, path: str | os.PathLike[str], identity: tuple | None = None) -> ParsedLora:
        """The parsed file; read again if its mtime or size changed.

        Every way a file can fail to load (gone since the list was scanned, unreadable, truncated,
        corrupt, unsupported) raises a ``LoraExtError``, so the loader skips just this LoRA.
        """
        path = Path(path)
        key = str(path)
        try:
            identity = identity or file_identity(path)
        except OSError as error:
            self._items.pop(key, None)  # a file that went away must not be served from memory
            raise unreadable(path, error) from error
        cached = self._items.get(key)
        if cached is not None and cached.identity == identity:
            self._items.move_to_end(key)
            return cached
        try:
            tensors, metadata = load_state_dict(path)
            parsed = parse_lora(tensors, metadata, path=path, identity=identity)
        except LoraExtError:
            self._items.pop(key, None)  # the file on disk changed into something unusable: forget the old one
            raise
        self.loads += 1
        self._items[key] = parsed
        self._items.move_to_end(key)
        return parsed

    def trim(self, keep: int | None = None) -> None:
        """Drop least recently used files beyond ``max_items`` (or ``keep`` when larger)."""
        limit = max(self.max_items, keep or 0)
        while len(self._items) > limit:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()
