"""Where a run keeps its working files: the one place that knows the layout.

The LoRA folder holds only what the WebUI should list (the LoRA, its sidecars
and intermediate saves). Everything else a run writes — the loss log, previews,
the resume state — lives in the run's working folder, which is never inside the
LoRA folder: the WebUI's Lora tab shows every sub-folder there as a folder
button (dot-folders too, by default: ``extra_networks_show_hidden_directories``).
The folder stays with the data it was trained from:

- a project version's dataset (``<version>/dataset``): ``<version>/outputs/<name>/``;
- any other dataset folder: ``<name>-training/`` beside it;
- or where the caller says (the CLI's ``--work-dir``).

Runs started before the folder moved kept it beside the LoRA
(``legacy_work_dir``); resuming one moves it over (``checkpoint.adopt_legacy``).
"""

from __future__ import annotations

from pathlib import Path

from lora_ext.dataset.projects import VersionPaths


def work_dir(dataset_dir: str | Path, output_name: str) -> Path:
    """The working folder of the run training ``output_name`` on ``dataset_dir`` (see the module docstring)."""
    dataset_dir = Path(dataset_dir)
    version = VersionPaths.of_dataset(dataset_dir)
    if version is not None:
        return version.run_dir(output_name)
    return dataset_dir.parent / f"{output_name}-training"


def resume_dir(work_dir_: Path) -> Path:
    """The folder of the resume state (``state.json`` and its tensors file) inside a working folder."""
    return Path(work_dir_) / "resume"


def legacy_work_dir(output_path: Path) -> Path:
    """Where runs before this layout kept their working folder: ``name-training/`` beside the LoRA."""
    output_path = Path(output_path)
    return output_path.with_name(output_path.stem + "-training")


def legacy_state_path(output_path: Path) -> Path:
    """Where versions before the safetensors state wrote a pickled ``name.trainstate`` (never read)."""
    output_path = Path(output_path)
    return output_path.with_name(output_path.stem + ".trainstate")
