"""WD14 auto-tagger: SmilingWolf v2/v3 ONNX models through onnxruntime.

Public API (for the UI and the CLI):

- ``Tagger.load(model, model_dir) -> Tagger``; ``tagger.tag_image(image, options)``
  → list of ``(tag, category, confidence)``; ``tagger.tag_dataset(directory, options,
  write, progress=..., cancel=...)`` → ``TagReport``; ``tagger.unload()``.
- ``TagOptions`` (thresholds, MCut, exclude, always-first, max tags, rating) and
  ``WriteOptions`` (existing-caption mode, backups).
- ``MODELS`` / ``model_names()``: the pinned model registry.
"""

from __future__ import annotations

from lora_ext.tagger.api import Tagger
from lora_ext.tagger.captions import EXISTING_MODES, ExistingMode
from lora_ext.tagger.models import MODELS, ModelSpec, default_model_dir, model_names
from lora_ext.tagger.pipeline import TagReport, WriteOptions
from lora_ext.tagger.postprocess import ScoredTag, TagOptions

__all__ = [
    "EXISTING_MODES",
    "MODELS",
    "ExistingMode",
    "ModelSpec",
    "ScoredTag",
    "TagOptions",
    "TagReport",
    "Tagger",
    "WriteOptions",
    "default_model_dir",
    "model_names",
]
