"""What a run does besides its steps, by job: ``previews.Previews`` (previews, validation, the loss log) and
``saving.Saving`` (LoRA files and states). Both ask the plan what each step calls for and report
through the events; only the main process of a data-parallel run has them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lora_ext.training.previews import Previews
from lora_ext.training.saving import Saving


@dataclass(frozen=True)
class RunOutputs:
    """The run's jobs after each optimizer step; ``None`` for both in the other ranks of a data-parallel run."""

    previews: Previews | None
    saving: Saving | None

    def after_step(self, step: int) -> None:
        """The preview first: a file saved at this step gets this step's render as its card."""
        if self.previews is not None:
            self.previews.after_step(step)
        if self.saving is not None:
            self.saving.after_step(step)

    def stopped(self) -> None:
        """A stop request ended the run: the state, so that it can resume."""
        if self.saving is not None:
            self.saving.save_state()

    def finish(self, output_path: Path, epochs: int, save_state: bool) -> Path | None:
        """The last preview (the final file's card), the final file, and its state when asked."""
        if self.previews is None or self.saving is None:
            return None
        self.previews.finish()
        final = self.saving.save_lora(output_path, epochs)
        if save_state:
            self.saving.save_state()
        return final
