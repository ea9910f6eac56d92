"""File hashes as the WebUI and Civitai show them.

- sha256: of the whole file; AutoV2 = its first 10 hex (A1111 ``shorthash``).
- addnet / AutoV3: sha256 of the tensor data only (bytes after the 8-byte length
  and the JSON header), stable under metadata edits; A1111 writes its first 12 hex
  in "Lora hashes" (preferring ``sshs_model_hash`` from the metadata); Forge and Neo write the first 12 hex of
  the whole file's sha256 there instead.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from lora_ext.formats.safetensors_io import is_safetensors, read_header

_CHUNK = 1024 * 1024


def _sha256(path: Path, offset: int = 0) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        handle.seek(offset)
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    return _sha256(Path(path))


def addnet_hash(path: str | os.PathLike[str]) -> str:
    """sha256 of the tensor data (kohya ``sshs_model_hash``); the whole file for non-safetensors."""
    path = Path(path)
    if not is_safetensors(path):
        return _sha256(path)
    return _sha256(path, read_header(path).data_offset)


@dataclass(frozen=True)
class FileHashes:
    sha256: str
    autov2: str  # first 10 hex of the file sha256
    autov3: str  # full tensor-data sha256 (addnet)
    lora_hash: str  # what "Lora hashes" shows: sshs_model_hash or autov3, first 12 hex

    def as_dict(self) -> dict[str, str]:
        return {
            "sha256": self.sha256,
            "autov2": self.autov2,
            "autov3": self.autov3,
            "addnet": self.autov3,
            "lora_hash": self.lora_hash,
        }


def file_hashes(path: str | os.PathLike[str], metadata: dict[str, str] | None = None) -> FileHashes:
    full = sha256_file(path)
    tensor_hash = addnet_hash(path)
    stored = (metadata or {}).get("sshs_model_hash")
    return FileHashes(full, full[:10], tensor_hash, (stored or tensor_hash)[:12])


def lora_short_hash(path: str | os.PathLike[str], metadata: dict[str, str] | None = None) -> str:
    """The 12-hex hash A1111 (and reForge) write in "Lora hashes" (no whole-file pass)."""
    stored = (metadata or {}).get("sshs_model_hash")
    return (stored or addnet_hash(path))[:12]


def forge_lora_short_hash(path: str | os.PathLike[str], metadata: dict[str, str] | None = None) -> str:
    """The 12-hex hash Forge and Forge Neo write in "Lora hashes" and look a pasted infotext up by: the metadata's
    ``sshs_model_hash``, else the sha256 of the whole file (their ``hashes.sha256`` ignores ``use_addnet_hash``)."""
    stored = (metadata or {}).get("sshs_model_hash")
    return (stored or sha256_file(path))[:12]
