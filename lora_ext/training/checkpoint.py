"""Save and restore a resumable training state — safetensors plus JSON, never a pickle.

The state holds the network, optimizer, schedule, gradient scaler, progress
counters and RNG states (torch CPU/CUDA, Python ``random``, NumPy), plus the
config it was made with. Per-batch randomness is re-derived from (seed, step),
so restoring these is enough to continue exactly where the run stopped.

Layout, in the run's working folder (``paths.resume_dir``)::

    resume/state.json                 format, state id, config, progress, and every
                                      non-tensor value (step counts, lr, betas, groups)
    resume/state-<id>.tensors         the tensors (safetensors; its metadata repeats <id>)

The tensors file is written first under a new name, then ``state.json`` is
replaced; only then are older tensors files removed. So a save cut short at any
point leaves the previous pair whole, and a pair that does not belong together
(the id in ``state.json`` and in the tensors file differ, or the file is gone)
is refused as incomplete, never loaded. The ``.tensors`` suffix keeps the file
out of every LoRA list (the WebUI's, ComfyUI's and ours scan ``.safetensors``).
Older versions wrote a pickled ``name.trainstate`` beside the LoRA: it is
refused by name, never opened. Versions before that kept the working folder
beside the LoRA (``paths.legacy_work_dir``); ``adopt_legacy`` moves such a run's
folder to its place, so the run resumes.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lora_ext.errors import ConfigError, FileFormatError
from lora_ext.fileio import atomic_path, write_text_atomic
from lora_ext.formats.safetensors_io import load_tensors
from lora_ext.training import paths, state_codec
from lora_ext.training.steps import TrainingParts, TrainProgress

STATE_FORMAT = 2
RECORD_NAME = "state.json"
ID_KEY = "train_tools_state_id"
_STATE_ID = re.compile(r"[0-9a-f]{32}")


def state_path(work_dir: Path) -> Path:
    """The state's record file in a run's working folder (it exists exactly when there is a state to resume)."""
    return paths.resume_dir(work_dir) / RECORD_NAME


def adopt_legacy(work_dir: Path, output_path: Path) -> Path | None:
    """Move the working folder an older version left beside the LoRA to ``work_dir`` when only it holds
    the run's state; returns where it came from (None: nothing to move)."""
    old = paths.legacy_work_dir(output_path)
    if state_path(work_dir).is_file() or not state_path(old).is_file():
        return None
    if work_dir.exists() and any(work_dir.iterdir()):
        raise ConfigError(
            f"cannot resume {output_path.stem}: its state is in {old} and {work_dir} is already in use",
            hint=f"move the resume folder from {old} into {work_dir}, or start a new run",
        )
    work_dir.parent.mkdir(parents=True, exist_ok=True)
    if work_dir.exists():
        work_dir.rmdir()
    shutil.move(str(old), str(work_dir))
    return old


def _tensors_path(folder: Path, state_id: str) -> Path:
    return folder / f"state-{state_id}.tensors"


def _rng_state() -> dict[str, Any]:
    version, internal, gauss_next = random.getstate()
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "python": {
            "version": version,
            "internal": torch.tensor(internal, dtype=torch.int64),  # 624 uint32 words + the position
            "gauss_next": gauss_next,
        },
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
    }


def _set_rng_state(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    python = rng["python"]
    random.setstate((python["version"], tuple(int(word) for word in python["internal"].tolist()), python["gauss_next"]))
    numpy_state = rng["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def save_state(work_dir: Path, parts: TrainingParts, config_dict: dict[str, Any]) -> Path:
    """Write the state of ``parts`` into the resume folder of ``work_dir``; returns the record's path."""
    from safetensors.torch import save_file

    folder = paths.resume_dir(work_dir)
    state_id = uuid.uuid4().hex
    tree, tensors = state_codec.encode(
        {
            "network": parts.network.state_dict(),
            "optimizer": parts.optimizer.state_dict(),
            "scheduler": parts.scheduler.state_dict(),
            "scaler": parts.scaler.state_dict() if parts.scaler else None,
            "rng": _rng_state(),
        },
        "state",
    )
    config_tree, _ = state_codec.encode(config_dict, "config")
    progress_tree, _ = state_codec.encode(parts.progress.to_dict(), "progress")
    tensors_path = _tensors_path(folder, state_id)
    with atomic_path(tensors_path) as tmp:
        save_file(tensors, str(tmp), metadata={ID_KEY: state_id})
    record = {
        "format": STATE_FORMAT,
        "state_id": state_id,
        "config": config_tree,
        "progress": progress_tree,
        "started_at": parts.started_at,
        "world_size": parts.plan.world_size,  # a resume may change it when the global batch stays
        "state": tree,
    }
    write_text_atomic(folder / RECORD_NAME, json.dumps(record, indent=1, allow_nan=False) + "\n")
    for old in folder.glob("state-*.tensors"):
        if old != tensors_path:
            old.unlink(missing_ok=True)
    return folder / RECORD_NAME


def load_state(work_dir: Path, output_path: Path | None = None) -> dict[str, Any]:
    """The state saved in ``work_dir``, checked whole; never unpickles anything (``output_path``: the LoRA,
    for naming an old pickled state beside it)."""
    folder = paths.resume_dir(work_dir)
    record_path = folder / RECORD_NAME
    if not record_path.is_file():
        legacy = paths.legacy_state_path(output_path) if output_path is not None else None
        if legacy is not None and legacy.is_file():
            raise FileFormatError(
                f"{legacy.name} is a training state from an older version saved as a pickle, "
                "which can run code; it is not loaded",
                hint="start the run again without resume",
            )
        raise ConfigError(f"no training state to resume in {folder}")
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise FileFormatError(f"{record_path}: not a readable training state ({type(error).__name__})") from error
    if not isinstance(record, dict) or record.get("format") != STATE_FORMAT:
        raise ConfigError(f"{record_path} was written by another version of the trainer and cannot be resumed")
    state_id = record.get("state_id")
    if not isinstance(state_id, str) or not _STATE_ID.fullmatch(state_id):
        raise FileFormatError(f"{record_path}: malformed training state (no state id)")
    tensors_path = _tensors_path(folder, state_id)
    if not tensors_path.is_file():
        raise FileFormatError(
            f"the training state in {folder} is incomplete: {tensors_path.name} is missing",
            hint="start the run again without resume",
        )
    tensors, metadata = load_tensors(tensors_path)
    if metadata.get(ID_KEY) != state_id:
        raise FileFormatError(
            f"the training state in {folder} is incomplete: {tensors_path.name} belongs to another save",
            hint="start the run again without resume",
        )
    try:
        state = state_codec.decode(record["state"], tensors)
        return {
            **state,
            "config": state_codec.decode(record["config"], {}),
            "progress": state_codec.decode(record["progress"], {}),
            "started_at": float(record["started_at"]),
            "world_size": int(record.get("world_size", 1)),
        }
    except (KeyError, TypeError, ValueError) as error:
        raise FileFormatError(f"{record_path}: malformed training state ({type(error).__name__}: {error})") from error


def saved_config(work_dir: Path) -> dict[str, Any]:
    """The settings the state in ``work_dir`` was saved with (``TrainConfig.to_dict()``), without its tensors."""
    record_path = state_path(work_dir)
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        config = state_codec.decode(record["config"], {})
    except FileNotFoundError:
        raise ConfigError(f"no training state to resume in {record_path.parent}") from None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise FileFormatError(f"{record_path}: not a readable training state ({type(error).__name__})") from error
    if not isinstance(config, dict):
        raise FileFormatError(f"{record_path}: the training state has no settings")
    return config


def restore_state(parts: TrainingParts, state: dict[str, Any]) -> None:
    """Load a ``load_state`` result into freshly built parts."""
    try:
        parts.network.load_state_dict(state["network"])
        parts.optimizer.load_state_dict(state["optimizer"])
        parts.scheduler.load_state_dict(state["scheduler"])
        if parts.scaler and state["scaler"]:
            parts.scaler.load_state_dict(state["scaler"])
        progress = TrainProgress(**state["progress"])
        rng = state["rng"]
        _set_rng_state(rng)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as error:
        raise FileFormatError(
            f"the training state does not fit this run ({type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]})",
            hint="start the run again without resume",
        ) from error
    parts.progress = progress
    parts.started_at = state["started_at"]
