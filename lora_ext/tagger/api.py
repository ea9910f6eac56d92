"""What the UI and the CLI call: a loaded ``Tagger`` with ``tag_image`` and ``tag_dataset``.

A ``Tagger`` is an ordinary object owned by whoever loaded it (the host adapter
keeps one and calls ``unload``); nothing here is cached at module level.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from lora_ext.dataset.captions import join_tags
from lora_ext.errors import TaggerUnavailable, UsageError
from lora_ext.tagger.labels import Labels, read_labels
from lora_ext.tagger.models import Downloader, ModelFiles, default_model_dir, resolve_model
from lora_ext.tagger.pipeline import (
    CancelSignal,
    ProgressCallback,
    TagReport,
    WriteOptions,
    find_images,
    tag_files,
)
from lora_ext.tagger.postprocess import ScoredTag, TagOptions, caption_tags, score_tags
from lora_ext.tagger.preprocess import open_image, to_model_input, upright
from lora_ext.tagger.session import TaggerSession, open_session


@dataclass
class Tagger:
    """A WD tagger model ready to run: its files, labels and onnxruntime session."""

    files: ModelFiles
    labels: Labels
    session: TaggerSession
    _warned: bool = field(default=False, repr=False)

    @classmethod
    def load(
        cls,
        model: str | os.PathLike[str],
        model_dir: Path | None = None,
        *,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        download: bool = True,
        downloader: Downloader | None = None,
    ) -> Tagger:
        """Load a registry model (downloading it if needed) or a folder with model.onnx + selected_tags.csv."""
        files = resolve_model(model, model_dir or default_model_dir(), download=download, downloader=downloader)
        labels = read_labels(files.labels_path)
        session = open_session(files.onnx_path, providers, threads)
        width = session.session.get_outputs()[0].shape[-1]
        if isinstance(width, int) and width != len(labels):
            session.unload()
            raise TaggerUnavailable(
                f"{files.onnx_path} outputs {width} scores but {files.labels_path.name} lists {len(labels)} tags",
                hint="the two files come from different models; download them again",
            )
        return cls(files, labels, session)

    @property
    def name(self) -> str:
        return self.files.name

    @property
    def warnings(self) -> tuple[str, ...]:
        """Things the user should know about this model's session, such as a fallback to CPU."""
        return self.session.warnings

    def pop_warnings(self) -> tuple[str, ...]:
        """``warnings`` the first time it is called, then nothing: each is said once."""
        if self._warned:
            return ()
        self._warned = True
        return self.session.warnings

    def probabilities(self, image: Image.Image) -> np.ndarray:
        """The model's probabilities [L] for one decoded image (turned upright by its EXIF first)."""
        batch = to_model_input(upright(image), self.session.side)[np.newaxis]
        return self.session.run(batch)[0]

    def tag_image(
        self, image: Image.Image | str | os.PathLike[str], options: TagOptions | None = None
    ) -> list[ScoredTag]:
        """(tag, category, confidence) for one image: all ratings, then the selected tags, best first."""
        options = options or TagOptions()
        if not isinstance(image, Image.Image):
            image = open_image(Path(image))
        scores = score_tags(self.probabilities(image), self.labels, options)
        return [*scores.ratings, *scores.tags]

    def caption(self, image: Image.Image | str | os.PathLike[str], options: TagOptions | None = None) -> str:
        """The caption text ``tag_dataset`` would write for this image (without merging)."""
        options = options or TagOptions()
        if not isinstance(image, Image.Image):
            image = open_image(Path(image))
        scores = score_tags(self.probabilities(image), self.labels, options)
        return join_tags(caption_tags(scores, options))

    def tag_dataset(
        self,
        directory: str | os.PathLike[str],
        options: TagOptions | None = None,
        write: WriteOptions | None = None,
        *,
        recursive: bool = False,
        batch_size: int = 8,
        workers: int | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelSignal = None,
    ) -> TagReport:
        """Tag every image in ``directory`` and write ``.txt`` captions beside them."""
        folder = Path(directory).expanduser()
        if not folder.is_dir():
            raise UsageError(f"{folder} is not a folder")
        return self.tag_paths(
            find_images(folder, recursive),
            options,
            write,
            batch_size=batch_size,
            workers=workers,
            progress=progress,
            cancel=cancel,
            dataset_dir=folder,
        )

    def tag_paths(
        self,
        paths: Sequence[Path],
        options: TagOptions | None = None,
        write: WriteOptions | None = None,
        *,
        batch_size: int = 8,
        workers: int | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelSignal = None,
        dataset_dir: Path | None = None,
    ) -> TagReport:
        """Tag the given image files (a selection in the dataset editor) and write their captions.

        ``dataset_dir``: the dataset folder they belong to; its lock covers the caption writes, and no
        caption is written through a link leading out of it.
        """
        if batch_size < 1:
            raise UsageError(f"batch size must be at least 1, got {batch_size}")
        report = tag_files(
            [Path(path) for path in paths],
            self.session,
            self.labels,
            options or TagOptions(),
            write or WriteOptions(),
            batch_size=batch_size,
            workers=workers,
            progress=progress,
            cancel=cancel,
            dataset_dir=Path(dataset_dir) if dataset_dir is not None else None,
        )
        report.warnings[:0] = list(self.pop_warnings())
        return report

    def unload(self) -> None:
        """Free the model's session (and its GPU memory); ``load`` again to use it."""
        self.session.unload()
