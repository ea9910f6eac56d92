"""The LoRA files in the LoRA folder(s), and the one rule that finds one by name.

``<lora:name>`` in a prompt and ``GET …/loras/{name}`` of the REST API both go through
``LoraIndex.find``: A1111's lookup, by the path below the folder, then the file stem, then
the alias (``ss_output_name``), each exactly and then case-insensitively.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lora_ext.errors import LoraExtError
from lora_ext.formats.detect import from_metadata
from lora_ext.formats.peft_config import WEIGHTS_STEM, sidecar_path
from lora_ext.formats.safetensors_io import SAFETENSORS_SUFFIXES, read_header


@dataclass(frozen=True)
class LoraEntry:
    """One LoRA file in the LoRA folder(s)."""

    name: str  # file stem
    relative: str  # path below its LoRA folder, without suffix, with "/" separators
    alias: str  # ss_output_name, else the stem
    path: Path
    sd_version: str  # "SD1" / "SD2" / "SDXL" / "Unknown", as A1111's cards show it
    metadata: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


def _sd_version(metadata: dict[str, str]) -> str:
    family = from_metadata(metadata)
    if family != "unknown":
        return family.upper()
    return "SD1" if metadata else "Unknown"  # A1111: any metadata → SD1


def scan_lora_dirs(dirs: Sequence[Path]) -> list[LoraEntry]:
    """Every LoRA file below ``dirs`` (sub-folders included), sorted by relative name."""
    entries: list[LoraEntry] = []
    for root in dirs:
        root = Path(root)
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if path.suffix.lower() not in SAFETENSORS_SUFFIXES or not path.is_file():
                continue
            metadata: dict[str, str] = {}
            if path.suffix.lower() in SAFETENSORS_SUFFIXES:
                try:
                    metadata = read_header(path).metadata
                except LoraExtError:
                    metadata = {}
            relative = path.relative_to(root).with_suffix("").as_posix()
            peft_folder = path.stem == WEIGHTS_STEM and sidecar_path(path) is not None and path.parent != root
            entries.append(
                LoraEntry(
                    path.stem,
                    relative,
                    metadata.get("ss_output_name") or (path.parent.name if peft_folder else path.stem),
                    path,
                    _sd_version(metadata),
                    metadata,
                )
            )
    return entries


class LoraIndex:
    """The LoRA files below some folders, scanned once and again on a miss (a file added since)."""

    def __init__(self, lora_dirs: Sequence[Path] | Callable[[], Sequence[Path]]) -> None:
        self._lora_dirs = lora_dirs
        self._entries: list[LoraEntry] | None = None

    def lora_dirs(self) -> list[Path]:
        dirs = self._lora_dirs() if callable(self._lora_dirs) else self._lora_dirs
        return [Path(d) for d in dirs]

    def entries(self, refresh: bool = False) -> list[LoraEntry]:
        """Every LoRA file, sorted by relative name; rescanned on ``refresh``."""
        if refresh or self._entries is None:
            self._entries = scan_lora_dirs(self.lora_dirs())
        return list(self._entries)

    def find(self, name: str) -> LoraEntry | None:
        """A1111's lookup: relative path, file stem, then alias (exact, then case-insensitive); rescans on a miss."""
        wanted = name.replace("\\", "/").strip()
        for refresh in (False, True):
            entries = self.entries(refresh=refresh)
            for fold in (False, True):
                for attribute in ("relative", "name", "alias"):
                    for entry in entries:
                        value = getattr(entry, attribute)
                        if (value.lower() == wanted.lower()) if fold else (value == wanted):
                            return entry
        return None
