"""Where the standalone app keeps its data (the A1111 host uses the WebUI's folders).

``TRAIN_TOOLS_HOME`` overrides the default ``~/.train-tools``; tests point it at a
temp folder.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """The standalone data folder: projects, Lora output, tagger models, caches."""
    root = os.environ.get("TRAIN_TOOLS_HOME")
    return Path(root).expanduser() if root else Path.home() / ".train-tools"


def scratch_dir(name: str) -> Path:
    """A cache folder that may be deleted at any time; created on demand."""
    folder = data_dir() / "cache" / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def lora_dir() -> Path:
    return data_dir() / "models" / "Lora"


def projects_dir() -> Path:
    return data_dir() / "projects"


def tagger_models_dir() -> Path:
    return data_dir() / "models" / "wd14_tagger"


def demo_model_dir() -> Path:
    return data_dir() / "models" / "demo-sd1"
