"""What a run does besides its steps, by job: ``validation.Validation`` (the validation loss, early stop),
``previews.Previews`` (previews, the loss log) and ``saving.Saving`` (LoRA files and states). Each asks the
plan what each step calls for and reports through the events; only the main process of a data-parallel run
has them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lora_ext.training.previews import Previews
from lora_ext.training.saving import Saving
from lora_ext.training.validation import Validation


@dataclass(frozen=True)
class RunOutputs:
    """The run's jobs after each optimizer step; ``None`` for each in the other ranks of a data-parallel run."""

    previews: Previews | None
    saving: Saving | None
    validation: Validation | None = None

    def after_step(self, step: int) -> None:
        """Validation first (the loss log's row has it), then the preview: a file saved at this step gets this
        step's render as its card."""
        loss = self.validation.after_step(step) if self.validation is not None else None
        if self.previews is not None:
            self.previews.after_step(step, loss)
        if self.saving is not None:
            self.saving.after_step(step)

    def stop_reason(self) -> str:
        """Why early stop ends the run after this step ("" to go on)."""
        return self.validation.stop_reason if self.validation is not None else ""

    def stopped(self) -> None:
        """A stop request ended the run: the state, so that it can resume."""
        if self.saving is not None:
            self.saving.save_state()

    def finish(self, output_path: Path, epochs: int, save_state: bool, early_stop: bool = False) -> Path | None:
        """The last preview (the final file's card), the final file, and its state when asked.

        ``early_stop``: the run stopped early, and the final file gets the best validation's weights."""
        if self.previews is None or self.saving is None:
            return None
        best = self.validation.restore_best() if early_stop and self.validation is not None else None
        self.previews.finish(weights_changed=best is not None)
        step, epoch = best if best is not None else (None, epochs)
        final = self.saving.save_lora(output_path, epoch, step)
        if save_state:
            self.saving.save_state()
        return final
