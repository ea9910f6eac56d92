"""Save and restore a resumable training state.

The state holds the network, optimizer, schedule, gradient scaler, progress
counters and RNG states, plus the config it was made with. Per-batch randomness
is re-derived from (seed, step), so restoring these is enough to continue
exactly where the run stopped. The file ends in ``.trainstate`` so that the
WebUI's Lora scan (``.pt``/``.ckpt``/``.safetensors``) never lists it.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

from lora_ext.errors import ConfigError
from lora_ext.fileio import atomic_path
from lora_ext.training.steps import TrainingParts, TrainProgress

STATE_FORMAT = 1


def state_path(output_path: Path) -> Path:
    return output_path.with_name(output_path.stem + ".trainstate")


def save_state(path: Path, parts: TrainingParts, config_dict: dict[str, Any]) -> Path:
    state = {
        "format": STATE_FORMAT,
        "config": config_dict,
        "network": parts.network.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict(),
        "scaler": parts.scaler.state_dict() if parts.scaler else None,
        "progress": parts.progress.to_dict(),
        "started_at": parts.started_at,
        "rng": {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        },
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_state(path: Path) -> dict[str, Any]:
    if not Path(path).is_file():
        raise ConfigError(f"no training state to resume at {path}")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("format") != STATE_FORMAT:
        raise ConfigError(f"{Path(path).name} was written by another version of the trainer and cannot be resumed")
    return state


def restore_state(parts: TrainingParts, state: dict[str, Any]) -> None:
    """Load a ``load_state`` result into freshly built parts."""
    parts.network.load_state_dict(state["network"])
    parts.optimizer.load_state_dict(state["optimizer"])
    parts.scheduler.load_state_dict(state["scheduler"])
    if parts.scaler and state["scaler"]:
        parts.scaler.load_state_dict(state["scaler"])
    parts.progress = TrainProgress(**state["progress"])
    parts.started_at = state["started_at"]
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(state["rng"]["python"])
    if state["rng"]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
