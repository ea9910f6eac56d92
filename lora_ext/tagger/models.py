"""The WD tagger models: a registry pinned to revisions, and where their files come from.

A model is two files, ``model.onnx`` and ``selected_tags.csv``. They are looked
for, in order: in a folder the user names; in ``<model_dir>/<name>/``; in the
Hugging Face cache (``HF_HOME``; ``local_files_only``); and only then
downloaded into ``<model_dir>/<name>/``. The host decides ``model_dir``
(A1111: ``models/wd14_tagger``; standalone: ``default_model_dir()``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lora_ext.errors import TaggerUnavailable

MODEL_FILE = "model.onnx"
LABELS_FILE = "selected_tags.csv"
FILES = (MODEL_FILE, LABELS_FILE)


@dataclass(frozen=True)
class ModelSpec:
    """One published WD tagger."""

    name: str
    repo_id: str
    revision: str  # a tagged release: the cards advise against the moving head (swinv2-v2 main changed in place)
    generation: str  # "v2" or "v3"
    threshold: float  # the model card's P=R threshold, a suggestion for the general threshold
    batchable: bool  # whether the pinned export has a dynamic batch axis (checked at load time anyway)


MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("wd-eva02-large-tagger-v3", "SmilingWolf/wd-eva02-large-tagger-v3", "v1.0", "v3", 0.5296, True),
    ModelSpec("wd-vit-large-tagger-v3", "SmilingWolf/wd-vit-large-tagger-v3", "v1.0", "v3", 0.2606, True),
    ModelSpec("wd-vit-tagger-v3", "SmilingWolf/wd-vit-tagger-v3", "v2.0", "v3", 0.2614, True),
    ModelSpec("wd-swinv2-tagger-v3", "SmilingWolf/wd-swinv2-tagger-v3", "v2.0", "v3", 0.2653, True),
    ModelSpec("wd-convnext-tagger-v3", "SmilingWolf/wd-convnext-tagger-v3", "v2.0", "v3", 0.2682, True),
    ModelSpec("wd-v1-4-moat-tagger-v2", "SmilingWolf/wd-v1-4-moat-tagger-v2", "v2.0", "v2", 0.3771, False),
    ModelSpec("wd-v1-4-swinv2-tagger-v2", "SmilingWolf/wd-v1-4-swinv2-tagger-v2", "v2.0", "v2", 0.3771, False),
    ModelSpec("wd-v1-4-convnext-tagger-v2", "SmilingWolf/wd-v1-4-convnext-tagger-v2", "v2.0", "v2", 0.3685, False),
    ModelSpec("wd-v1-4-convnextv2-tagger-v2", "SmilingWolf/wd-v1-4-convnextv2-tagger-v2", "v2.0", "v2", 0.3710, False),
    ModelSpec("wd-v1-4-vit-tagger-v2", "SmilingWolf/wd-v1-4-vit-tagger-v2", "v2.0", "v2", 0.3537, False),
)

# Preselected when no model is on disk yet: the most accurate of the base-size v3 models (SwinV2 v3 has the
# highest F1 of vit/swinv2/convnext v3 on its card); the large ones take several times as long per image.
DEFAULT_MODEL = "wd-swinv2-tagger-v3"

Downloader = Callable[..., Any]  # the signature of huggingface_hub.hf_hub_download


@dataclass(frozen=True)
class ModelFiles:
    """Where a model's two files are, and which registry entry they belong to (None: a user folder)."""

    name: str
    onnx_path: Path
    labels_path: Path
    spec: ModelSpec | None = None


def find_spec(name: str) -> ModelSpec | None:
    """The registry entry called ``name`` (also accepts the ``SmilingWolf/…`` repo id)."""
    wanted = name.strip().rstrip("/").lower()
    return next((s for s in MODELS if wanted in (s.name.lower(), s.repo_id.lower())), None)


def model_names() -> tuple[str, ...]:
    """Registry names, in display order."""
    return tuple(spec.name for spec in MODELS)


def local_models(model_dir: Path) -> list[str]:
    """Names of the folders in ``model_dir`` that hold both model files, alphabetically."""
    if not model_dir.is_dir():
        return []
    entries = sorted(os.scandir(model_dir), key=lambda item: item.name.casefold())
    return [entry.name for entry in entries if entry.is_dir() and folder_files(Path(entry.path)) is not None]


def model_choices(model_dir: Path) -> list[str]:
    """What a model may be picked from: local folders first, then the pinned models not downloaded yet."""
    local = local_models(model_dir)
    return local + [name for name in model_names() if name not in local]


def default_model(model_dir: Path) -> str:
    """The model to preselect: one already in ``model_dir``, else ``DEFAULT_MODEL``."""
    local = local_models(model_dir)
    return local[0] if local else DEFAULT_MODEL


def default_model_dir() -> Path:
    """The standalone app's model folder: ``$TRAIN_TOOLS_TAGGER_DIR`` or ``models/wd14_tagger`` in the data folder."""
    explicit = os.environ.get("TRAIN_TOOLS_TAGGER_DIR")
    if explicit:
        return Path(explicit).expanduser()
    from lora_ext import paths

    return paths.tagger_models_dir()


def folder_files(folder: Path) -> ModelFiles | None:
    """``ModelFiles`` for a folder holding both files, else None."""
    onnx_path, labels_path = folder / MODEL_FILE, folder / LABELS_FILE
    if onnx_path.is_file() and labels_path.is_file():
        return ModelFiles(folder.name, onnx_path, labels_path)
    return None


def resolve_model(
    model: str | os.PathLike[str],
    model_dir: Path,
    *,
    download: bool = True,
    downloader: Downloader | None = None,
    reachable: Callable[[], bool] | None = None,
) -> ModelFiles:
    """Find (and if needed download) a model by registry name or folder path.

    ``downloader`` defaults to ``huggingface_hub.hf_hub_download``; ``reachable``
    (default: the hub's host name resolves) is asked before going online, so an
    offline machine gets its answer at once instead of after the hub's retries.
    """
    text = os.fspath(model)
    spec = find_spec(text)
    if spec is None:
        return _user_folder(_named_folder(text, Path(model_dir)))
    local = folder_files(Path(model_dir) / spec.name)
    if local is not None:
        return ModelFiles(spec.name, local.onnx_path, local.labels_path, spec)
    if downloader is None:
        from huggingface_hub import hf_hub_download as downloader

        reachable = reachable or hub_resolves
    return _from_hub(spec, Path(model_dir), download, downloader, reachable or (lambda: True))


def _named_folder(text: str, model_dir: Path) -> Path:
    """A bare name that is a folder in ``model_dir`` means that folder (as the UI lists it); anything else is a path."""
    plain = text and not os.path.isabs(text) and os.sep not in text and "/" not in text and text not in (".", "..")
    if plain and (model_dir / text).is_dir():
        return model_dir / text
    return Path(text).expanduser()


def _user_folder(folder: Path) -> ModelFiles:
    if folder.is_file() and folder.name == MODEL_FILE:
        folder = folder.parent
    if not folder.is_dir():
        raise TaggerUnavailable(
            f"unknown tagger model {str(folder)!r}",
            hint=f"use one of {', '.join(model_names())} or a folder holding {MODEL_FILE} and {LABELS_FILE}",
        )
    found = folder_files(folder)
    if found is None:
        missing = [name for name in FILES if not (folder / name).is_file()]
        raise TaggerUnavailable(
            f"{folder} has no {' and no '.join(missing)}", hint=f"a tagger folder needs {MODEL_FILE} and {LABELS_FILE}"
        )
    return found


def hub_resolves() -> bool:
    """Whether the Hugging Face endpoint's host name resolves (``HF_ENDPOINT`` honoured)."""
    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


def _from_hub(
    spec: ModelSpec, model_dir: Path, download: bool, downloader: Downloader, reachable: Callable[[], bool]
) -> ModelFiles:
    target = model_dir / spec.name
    paths: dict[str, Path] = {}
    for filename in FILES:
        # A file already in the target folder is complete: the hub downloads to a temp name, then renames.
        present = target / filename
        paths[filename] = (
            (present if present.is_file() else None)
            or _cached(spec, filename, downloader)
            or _download(spec, filename, target, download, downloader, reachable)
        )
    return ModelFiles(spec.name, paths[MODEL_FILE], paths[LABELS_FILE], spec)


def _cached(spec: ModelSpec, filename: str, downloader: Downloader) -> Path | None:
    """The file from the shared Hugging Face cache, without touching the network."""
    try:
        return Path(downloader(spec.repo_id, filename, revision=spec.revision, local_files_only=True))
    except (OSError, ValueError):  # huggingface_hub's "not cached" and offline errors derive from these
        return None


def _download(
    spec: ModelSpec, filename: str, target: Path, download: bool, downloader: Downloader, reachable: Callable[[], bool]
) -> Path:
    where = (
        f"put {MODEL_FILE} and {LABELS_FILE} from https://huggingface.co/{spec.repo_id} "
        f"(revision {spec.revision}) into {target}"
    )
    if not download:
        raise TaggerUnavailable(f"tagger model {spec.name} is not downloaded", hint=where)
    if not reachable():
        raise TaggerUnavailable(
            f"cannot download {filename} of {spec.repo_id}@{spec.revision}: "
            "huggingface.co could not be reached (no network or no DNS)",
            hint=f"offline? {where}",
        )
    try:
        return Path(downloader(spec.repo_id, filename, revision=spec.revision, local_dir=str(target)))
    except (OSError, ValueError) as error:
        raise TaggerUnavailable(
            f"cannot download {filename} of {spec.repo_id}@{spec.revision}: {_download_reason(error, spec, filename)}",
            hint=f"offline? {where}",
        ) from error


def _download_reason(error: BaseException, spec: ModelSpec, filename: str) -> str:
    """A short reason for a huggingface_hub failure (matched by class name: no hub import needed)."""
    names = {cls.__name__ for cls in type(error).__mro__}
    if names & {"OfflineModeIsEnabled", "LocalEntryNotFoundError", "ConnectionError", "Timeout"}:
        return "huggingface.co could not be reached (or offline mode is on)"
    if "RevisionNotFoundError" in names:
        return f"revision {spec.revision} does not exist"
    if names & {"RepositoryNotFoundError", "GatedRepoError"}:
        return "the repository does not exist or needs a login"
    if "EntryNotFoundError" in names:
        return f"the repository has no {filename}"
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return f"{type(error).__name__}: {first_line[:160]}"
