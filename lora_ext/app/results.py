"""Results as a use case: a version's trained files with their hashes and its runs' working folders (the
epochs × weights grid of those files is ``app/grid.py``'s)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from lora_ext.app.context import Context

_EPOCH_FILE = re.compile(r"^(?P<stem>.+)-(?P<kind>step)?(?P<number>\d{6,8})$")


@dataclass(frozen=True)
class OutputFile:
    path: Path
    size: int
    sha256: str
    label: str  # "final", "epoch 2", "step 100"

    @property
    def autov2(self) -> str:
        return self.sha256[:10]


def _sha256(path: Path, cache: dict[tuple, str]) -> str:
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in cache:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        cache[key] = digest.hexdigest()
    return cache[key]


def output_paths(lora_dir: Path, name: str) -> list[tuple[Path, str]]:
    """(path, label) of the final file ``name.safetensors`` and its intermediate saves (``name-000002``,
    ``name-step00000100``), oldest first and the final file last; nothing is opened."""
    found: list[tuple[Path, str]] = []
    if not name or not lora_dir.is_dir():
        return found
    for path in lora_dir.glob("*.safetensors"):
        if path.stem == name:
            label = "final"
        else:
            match = _EPOCH_FILE.match(path.stem)
            if not match or match.group("stem") != name:
                continue
            number = int(match.group("number"))
            label = f"step {number}" if match.group("kind") else f"epoch {number}"
        found.append((path, label))
    found.sort(key=lambda item: (item[1] == "final", item[0].stat().st_mtime, item[0].name))
    return found


def output_files(lora_dir: Path, name: str, cache: dict[tuple, str] | None = None) -> list[OutputFile]:
    """``output_paths`` with each file's size and SHA-256 (``cache``: hashes already computed)."""
    cache = {} if cache is None else cache
    return [
        OutputFile(path, path.stat().st_size, _sha256(path, cache), label)
        for path, label in output_paths(lora_dir, name)
    ]


def output_name(ctx: Context, project: str | None, version: str | None, name: str | None) -> str:
    """``name`` when given, else the output name the version's last training saved in its manifest."""
    if name:
        return name
    if project and version:
        return str(ctx.store.read_manifest(project, version).get("output_name") or "")
    return ""


def version_files(ctx: Context, project: str | None, version: str | None, name: str | None = None) -> tuple[str, list]:
    """(the LoRA's name, its files in the host's Lora folder) for a version."""
    name = output_name(ctx, project, version, name)
    return name, (output_files(ctx.host.lora_dir, name, ctx.hashes) if name else [])


def work_folder(ctx: Context, project: str | None, version: str | None, name: str | None = None) -> Path | None:
    """The working folder (loss log, previews, resume state) of the version's run, when it exists."""
    from lora_ext.training import paths

    name = output_name(ctx, project, version, name)
    if not name:
        return None
    folder = paths.work_dir(ctx.version(project, version).dataset, name)
    return folder if folder.is_dir() else None
