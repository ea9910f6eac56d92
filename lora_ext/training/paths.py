"""Where a run keeps its working files: the one place that knows the layout.

The LoRA folder holds only what the WebUI should list (the LoRA, its sidecars
and intermediate saves). Everything else a run writes — the loss log, previews,
the resume state — lives in the run's working folder, found through
``work_dir``; moving that folder means changing this function and nothing else.
"""

from __future__ import annotations

from pathlib import Path


def work_dir(output_path: Path) -> Path:
    """``name-training/`` beside the output ``name.safetensors``."""
    output_path = Path(output_path)
    return output_path.with_name(output_path.stem + "-training")


def resume_dir(output_path: Path) -> Path:
    """The folder of the resume state (``state.json`` and its tensors file)."""
    return work_dir(output_path) / "resume"


def legacy_state_path(output_path: Path) -> Path:
    """Where versions before the safetensors state wrote a pickled ``name.trainstate`` (never read)."""
    output_path = Path(output_path)
    return output_path.with_name(output_path.stem + ".trainstate")
