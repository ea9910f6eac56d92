"""The training dataset: folders → records → per-epoch batches of latents and captions.

Folders follow kohya, as ``dataset/layout.py`` reads them: ``N_name`` sub-folders
repeat their images ``N`` times per epoch and use ``name`` as the caption of images
without a caption file; images at the top level use ``default_repeats`` and the
folder's own name, except in a project version's ``dataset`` folder, whose name is
ours and says nothing about the images: there they get no text (the trigger word,
when set, comes first in every caption). A caption file's lines are all one caption (the editor's rule,
``dataset.captions.caption_text``), not kohya's first line only. Unreadable images
are skipped and reported, never fatal.

All randomness is derived from (seed, epoch, batch) so that a resumed run draws
exactly what an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from lora_ext.config import TrainConfig
from lora_ext.dataset.captions import caption_text
from lora_ext.dataset.layout import CAPTION_EXTENSIONS, DatasetFolder, dataset_folders, folder_images
from lora_ext.dataset.projects import VersionPaths
from lora_ext.errors import DatasetError
from lora_ext.host import Conditioning, Host, SizeCondition
from lora_ext.locking import dataset_lock
from lora_ext.training import buckets as bucketing
from lora_ext.training.captions import CaptionOptions, process_caption, tag_frequency, with_trigger
from lora_ext.training.distributed import SINGLE, Collectives
from lora_ext.training.plan import VALIDATION_SAMPLE, DatasetCounts, dataset_counts, epoch_samples, held_out

CACHE_FOLDER = ".train-tools-cache"
CACHE_FORMAT = 1
# A validation image's latent is one sample of the VAE posterior from this seed + its position: the same in
# every run, whatever the training seed, so that runs are compared on the same inputs.
VALIDATION_LATENT_SEED = 10_000_000


@dataclass(frozen=True)
class ImageRecord:
    """One training (or regularisation) image and how it is placed."""

    path: Path
    caption: str
    folder: str
    repeats: int
    is_reg: bool
    size: bucketing.Size
    placement: bucketing.Placement
    file_key: str  # size and mtime of the file: changes when the image does


@dataclass(frozen=True)
class SkippedImage:
    path: Path
    reason: str


@dataclass(frozen=True)
class FolderInfo:
    name: str
    repeats: int
    image_count: int
    is_reg: bool
    tag_frequency: dict[str, int]


@dataclass
class Batch:
    """One batch; every sample has the same bucket."""

    latents: torch.Tensor  # (B, 4, h, w) float32
    captions: list[str]
    sizes: list[SizeCondition]
    loss_weights: torch.Tensor  # (B,) 1 or prior_loss_weight
    masks: torch.Tensor | None  # (B, 1, h, w) in [0, 1], when masked loss is on
    conditioning: Conditioning | None = None  # filled from the cache when captions are static


@dataclass
class ScanResult:
    records: list[ImageRecord] = field(default_factory=list)
    skipped: list[SkippedImage] = field(default_factory=list)
    folders: list[FolderInfo] = field(default_factory=list)


def _read_caption(image: Path, extension: str) -> str | None:
    """The caption the trainer encodes for ``image``: every line's tags (the editor's rule), or None."""
    for suffix in dict.fromkeys((extension, *CAPTION_EXTENSIONS)):
        path = image.with_suffix(suffix)
        if path.is_file():
            try:
                return caption_text(path.read_bytes().decode("utf-8-sig"))
            except (OSError, UnicodeDecodeError):
                return None
    return None


def training_folders(root: Path, config: TrainConfig) -> list[DatasetFolder]:
    """The folders the trainer reads under ``root``, each with the caption of its images that have none."""
    top_level = "" if VersionPaths.of_dataset(root) is not None else root.name
    return dataset_folders(root, config.default_repeats, top_level)


def captionless(root: Path, config: TrainConfig) -> list[tuple[Path, str]]:
    """The images under ``root`` without a caption (no file, or an empty one), each with the caption it
    trains with (before shuffling and dropout)."""
    return [
        (path, with_trigger(folder.class_tokens, config.trigger_word))
        for folder in training_folders(root, config)
        for path in folder_images(folder.path)
        if not _read_caption(path, config.caption_extension)
    ]


def _image_size(path: Path) -> bucketing.Size:
    from PIL import Image

    with Image.open(path) as image:
        image.load()  # decode now, so a truncated file is reported here and not mid-run
        return image.size


def scan(root: Path, config: TrainConfig, buckets: list[bucketing.Size] | None, is_reg: bool) -> ScanResult:
    """Records for every readable image under ``root``; unreadable ones go to ``skipped``.

    The captions are read under the dataset's lock, so a save, an ingestion or a
    tagging run is never seen half done; training itself does not hold it.
    """
    with dataset_lock(root):
        return _scan(root, config, buckets, is_reg)


def _scan(root: Path, config: TrainConfig, buckets: list[bucketing.Size] | None, is_reg: bool) -> ScanResult:
    result = ScanResult()
    for folder in training_folders(root, config):
        repeats, class_tokens = folder.repeats, folder.class_tokens
        captions = []
        count = 0
        for path in folder_images(folder.path):
            try:
                size = _image_size(path)
            except Exception as error:  # noqa: BLE001 - PIL raises many types for bad files; skip and name it
                result.skipped.append(SkippedImage(path, f"{type(error).__name__}: {error}"))
                continue
            caption = _read_caption(path, config.caption_extension)
            caption = class_tokens if not caption else caption
            stat = path.stat()
            placement = bucketing.place(
                size, buckets, config.resolution, config.bucket_reso_steps, config.bucket_no_upscale
            )
            result.records.append(
                ImageRecord(
                    path,
                    caption,
                    folder.path.name,
                    repeats,
                    is_reg,
                    size,
                    placement,
                    f"{stat.st_size}:{stat.st_mtime_ns}",
                )
            )
            captions.append(caption)
            count += 1
        if count:
            result.folders.append(FolderInfo(folder.path.name, repeats, count, is_reg, tag_frequency(captions)))
    return result


def load_pixels(record: ImageRecord, flip: bool, with_alpha: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The image resized to cover its bucket and centre-cropped: (3, H, W) in [-1, 1], and (1, H, W) alpha."""
    import numpy as np
    from PIL import Image

    with Image.open(record.path) as image:
        image = image.convert("RGBA" if with_alpha else "RGB")
        width, height = record.placement.resized
        upscale = width > image.width or height > image.height
        image = image.resize((width, height), Image.Resampling.LANCZOS if upscale else Image.Resampling.BOX)
        left, top = record.placement.crop_left_top
        bucket_width, bucket_height = record.placement.bucket
        image = image.crop((left, top, left + bucket_width, top + bucket_height))
        if flip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        array = torch.from_numpy(np.asarray(image, dtype=np.float32).copy()).permute(2, 0, 1) / 255.0
    pixels = array[:3] * 2 - 1
    return pixels, (array[3:4] if with_alpha else None)


def caption_options(config: TrainConfig) -> CaptionOptions:
    return CaptionOptions(
        config.shuffle_caption,
        config.keep_tokens,
        config.caption_dropout_rate,
        config.tag_dropout_rate,
        config.trigger_word,
    )


def caches_conditioning(config: TrainConfig) -> bool:
    """Whether a caption's conditioning is encoded once and kept: the text encoders do not train and a
    caption always reads the same."""
    return not config.trains_text_encoder and caption_options(config).is_static


class TrainingDataset:
    """Records plus the caches; yields the batches of each epoch."""

    def __init__(
        self,
        host: Host,
        config: TrainConfig,
        train: ScanResult,
        reg: ScanResult,
        validation: list[ImageRecord],
        world_size: int = 1,
    ) -> None:
        self.host = host
        # A data-parallel run builds the batches one process with the global batch would build.
        self.global_batch = config.batch_size * world_size
        self.config = config
        self.train = train
        self.reg = reg
        self.validation = validation
        self.caption_options = caption_options(config)
        self.cache_conditioning = caches_conditioning(config)
        self._latents: dict[tuple[int, bool, bool], tuple[torch.Tensor, torch.Tensor | None]] = {}
        self._conditioning: dict[tuple[str, SizeCondition], Conditioning] = {}
        self._vae_key: str | None = None
        self.world_size = world_size
        self.samples = epoch_samples([r.repeats for r in train.records], [r.repeats for r in reg.records])

    @property
    def records(self) -> list[ImageRecord]:
        return self.train.records + self.reg.records

    def counts(self) -> DatasetCounts:
        """What the schedule needs to know (``plan.make_plan``), with the batches as the buckets make them."""
        return dataset_counts(
            self.config,
            [r.repeats for r in self.train.records],
            [r.repeats for r in self.reg.records],
            len(self.validation),
            self.world_size,
            batches=self.batches_per_epoch(),
        )

    def epoch_batches(self, epoch: int) -> list[list[tuple[int, bool]]]:
        """Batches of (record index, flipped) for ``epoch``; the same for the same seed and epoch."""
        records = self.records
        order = bucketing.batches_for_epoch(
            [records[i].placement.bucket for i in self.samples], self.global_batch, self.config.seed * 1000 + epoch
        )
        flips = random.Random(f"flip:{self.config.seed}:{epoch}")
        return [[(self.samples[i], self.config.flip_aug and flips.random() < 0.5) for i in batch] for batch in order]

    def batches_per_epoch(self) -> int:
        return len(self.epoch_batches(0))

    # -- latents ----------------------------------------------------------------------------------
    def vae_key(self) -> str:
        """A fingerprint of the VAE: the hash of a fixed probe image's latent."""
        if self._vae_key is None:
            probe = torch.linspace(-1, 1, 3 * 64 * 64).reshape(1, 3, 64, 64)
            latent = self._encode_pixels(probe, 0)
            self._vae_key = hashlib.sha256((latent * 1000).round().numpy().tobytes()).hexdigest()[:16]
        return self._vae_key

    def _cache_file(self, record: ImageRecord, flip: bool) -> Path:
        width, height = record.placement.bucket
        suffix = "_flip" if flip else ""
        return record.path.parent / CACHE_FOLDER / f"{record.path.stem}_{width}x{height}{suffix}.safetensors"

    def _cache_key(self, record: ImageRecord, flip: bool) -> str:
        data = [
            CACHE_FORMAT,
            record.file_key,
            record.placement.bucket,
            record.placement.resized,
            record.placement.crop_left_top,
            flip,
            self.config.resolution,
            self.config.masked_loss,
            self.vae_key(),
        ]
        return hashlib.sha256(json.dumps(data).encode()).hexdigest()

    def latent(self, index: int, flip: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(4, h, w) latent and optional (1, h, w) mask for a record; cached in RAM and on disk as configured."""
        key = (index, flip, self.config.masked_loss)
        if key in self._latents:
            return self._latents[key]
        record = self.records[index]
        result = self._read_disk_cache(record, flip) if self.config.cache_latents_to_disk else None
        if result is None:
            result = self._encode(record, index, flip)
            if self.config.cache_latents_to_disk:
                self._write_disk_cache(record, flip, result)
        if self.config.cache_latents or self.config.cache_latents_to_disk:
            self._latents[key] = result
        return result

    def _encode(self, record: ImageRecord, index: int, flip: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        pixels, alpha = load_pixels(record, flip, self.config.masked_loss)
        # The cached latent is one sample of the VAE posterior, drawn from a seed of its own.
        latent = self._encode_pixels(pixels[None], self.config.seed * 7919 + index * 2 + int(flip))[0]
        mask = None
        if alpha is not None:
            mask = F.adaptive_avg_pool2d(alpha[None], latent.shape[-2:])[0]
        return latent, mask

    def _encode_pixels(self, pixels: torch.Tensor, seed: int) -> torch.Tensor:
        """Latents for (B, 3, H, W) pixels, the posterior sample drawn from a generator seeded with ``seed``.

        The global generators are seeded too, inside ``fork_rng``, for a host whose VAE samples from them.
        """
        with torch.random.fork_rng(devices=_cuda_devices(self.host)), torch.no_grad():
            torch.manual_seed(seed)
            return self.host.encode_images(pixels, torch.Generator().manual_seed(seed)).float().cpu()

    def _read_disk_cache(self, record: ImageRecord, flip: bool):
        from safetensors import safe_open

        path = self._cache_file(record, flip)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as handle:
                if (handle.metadata() or {}).get("key") != self._cache_key(record, flip):
                    return None
                mask = handle.get_tensor("mask") if "mask" in handle.keys() else None
                return handle.get_tensor("latent"), mask
        except Exception:  # noqa: BLE001 - a damaged cache file is simply re-encoded
            return None

    def _write_disk_cache(self, record: ImageRecord, flip: bool, result) -> None:
        from safetensors.torch import save_file

        from lora_ext.fileio import atomic_path

        tensors = {"latent": result[0].contiguous()}
        if result[1] is not None:
            tensors["mask"] = result[1].contiguous()
        with atomic_path(self._cache_file(record, flip)) as tmp:
            save_file(tensors, str(tmp), metadata={"key": self._cache_key(record, flip)})

    # -- batches ------------------------------------------------------------------------------------
    def size_condition(self, record: ImageRecord, flip: bool) -> SizeCondition:
        """SDXL micro-conditioning as sd-scripts: original size, crop (mirrored when flipped), bucket."""
        left, top = record.placement.crop_left_top
        if flip:
            left = record.placement.resized[0] - left - record.placement.bucket[0]
        width, height = record.size
        return SizeCondition((height, width), (top, left), (record.placement.bucket[1], record.placement.bucket[0]))

    def make_batch(
        self, items: Sequence[tuple[int, bool]], caption_rng: random.Random, rows: range | None = None
    ) -> Batch:
        """The batch of ``items`` (only ``rows`` of it: a data-parallel process's share).

        Every item's caption is drawn, kept or not, so each row's caption is the one it gets in one process.
        """
        records = self.records
        rows = range(len(items)) if rows is None else rows
        latents, masks, captions, sizes, weights = [], [], [], [], []
        for position, (index, flip) in enumerate(items):
            record = records[index]
            caption = process_caption(record.caption, self.caption_options, caption_rng)
            if position not in rows:
                continue
            latent, mask = self.latent(index, flip)
            latents.append(latent)
            masks.append(mask)
            captions.append(caption)
            sizes.append(self.size_condition(record, flip))
            weights.append(self.config.prior_loss_weight if record.is_reg else 1.0)
        mask_tensor = torch.stack(masks) if self.config.masked_loss and all(m is not None for m in masks) else None
        batch = Batch(torch.stack(latents), captions, sizes, torch.tensor(weights), mask_tensor)
        if self.cache_conditioning:
            batch.conditioning = self.conditioning(captions, sizes)
        return batch

    def conditioning(self, captions: Sequence[str], sizes: Sequence[SizeCondition]) -> Conditioning:
        """Conditioning for a batch from the cache, encoding captions seen for the first time."""
        parts = []
        for caption, size in zip(captions, sizes, strict=True):
            key = (caption, size)
            if key not in self._conditioning:
                with torch.no_grad():
                    self._conditioning[key] = _detached(self.host.encode_prompts([caption], [size]))
            parts.append(self._conditioning[key])
        vector = None if parts[0].vector is None else torch.cat([p.vector for p in parts])
        return Conditioning(torch.cat([p.crossattn for p in parts]), vector)

    def prepare(self, progress: Callable[[int, int], None] | None = None, group: Collectives | None = None) -> None:
        """Fill the latent cache (and the conditioning cache) before the first step.

        In a data-parallel run with the cache on disk each process encodes and writes its
        share of the files (no two write one), then, after all are done, reads the rest.
        """
        if not (self.config.cache_latents or self.config.cache_latents_to_disk):
            return
        flips = (False, True) if self.config.flip_aug else (False,)
        todo = [(i, flip) for i in range(len(self.records)) for flip in flips]
        if progress:
            progress(0, len(todo))
        ranks = group.ranks if group is not None else SINGLE
        if self.config.cache_latents_to_disk and ranks.world_size > 1:
            share = todo[ranks.rank :: ranks.world_size]
            for done, (index, flip) in enumerate(share):
                self.latent(index, flip)
                if progress:
                    progress(min(len(todo), (done + 1) * ranks.world_size), len(todo))
            group.barrier()
        for done, (index, flip) in enumerate(todo):
            self.latent(index, flip)
            if progress:
                progress(done + 1, len(todo))

    # -- validation ----------------------------------------------------------------------------------
    def validation_records(self) -> list[ImageRecord]:
        """The images the validation loss is measured on: the held-out ones, else a fixed sample of the training
        images (``VALIDATION_SAMPLE`` of them, chosen the same way whatever the seed)."""
        if self.validation:
            return self.validation
        records = self.train.records
        chosen = random.Random("validation-sample").sample(range(len(records)), min(VALIDATION_SAMPLE, len(records)))
        return [records[index] for index in sorted(chosen)]

    def validation_batches(self) -> list[Batch]:
        """The validation images as one batch per bucket (a batch never mixes shapes), the same every time."""
        records = self.validation_records()
        groups: dict[bucketing.Size, list[int]] = {}
        for position, record in enumerate(records):
            groups.setdefault(record.placement.bucket, []).append(position)
        options = CaptionOptions(trigger_word=self.config.trigger_word)
        batches = []
        for bucket in sorted(groups):
            chosen = [records[position] for position in groups[bucket]]
            captions = [process_caption(r.caption, options, random.Random(0)) for r in chosen]
            sizes = [self.size_condition(r, False) for r in chosen]
            latents = torch.stack([self._validation_latent(records[p], p) for p in groups[bucket]])
            batches.append(Batch(latents, captions, sizes, torch.ones(len(chosen)), None))
        return batches

    def _validation_latent(self, record: ImageRecord, position: int) -> torch.Tensor:
        key = (-1 - position, False, False)
        if key not in self._latents:
            pixels, _alpha = load_pixels(record, False, False)
            self._latents[key] = (self._encode_pixels(pixels[None], VALIDATION_LATENT_SEED + position)[0], None)
        return self._latents[key][0]


def _detached(conditioning: Conditioning) -> Conditioning:
    vector = None if conditioning.vector is None else conditioning.vector.detach()
    return Conditioning(conditioning.crossattn.detach(), vector)


def _cuda_devices(host: Host) -> list[int]:
    device = host.device
    return [device.index or 0] if device.type == "cuda" else []


def build_dataset(host: Host, config: TrainConfig, world_size: int = 1) -> TrainingDataset:
    """Scan the dataset (and regularisation) folders and split off validation images.

    ``world_size``: the processes of a data-parallel run, which share each batch of ``batch_size × world_size``.
    """
    buckets = (
        bucketing.make_buckets(
            config.resolution, config.min_bucket_reso, config.max_bucket_reso, config.bucket_reso_steps
        )
        if config.enable_bucket
        else None
    )
    train = scan(Path(config.dataset_dir), config, buckets, is_reg=False)
    reg = scan(Path(config.reg_dir), config, buckets, is_reg=True) if config.reg_dir else ScanResult()
    if not train.records:
        names = ", ".join(str(s.path.name) for s in train.skipped[:5])
        raise DatasetError(
            f"no readable training images in {config.dataset_dir}" + (f" (skipped: {names})" if names else ""),
            hint="put images (and .txt captions) in the folder or in N_name sub-folders",
        )
    validation: list[ImageRecord] = []
    chosen = held_out(len(train.records), config)
    if chosen:
        validation = [r for i, r in enumerate(train.records) if i in chosen]
        train = ScanResult([r for i, r in enumerate(train.records) if i not in chosen], train.skipped, train.folders)
    return TrainingDataset(host, config, train, reg, validation, world_size)


def first_caption(config: TrainConfig) -> str:
    """The caption the dataset's first captioned image trains with (trigger word first; no shuffle or dropout),
    "" when no image has one."""
    root = Path(config.dataset_dir) if config.dataset_dir else None
    if root is None or not root.is_dir():
        return ""
    for folder in training_folders(root, config):
        for path in folder_images(folder.path):
            caption = _read_caption(path, config.caption_extension)
            if caption:
                return with_trigger(caption, config.trigger_word)
    return ""


def timing_image(config: TrainConfig) -> tuple[Path, bucketing.Size] | None:
    """The dataset's first readable image and its size, for timing how long one image takes to read and
    encode; None when there is none (an unreadable one is the scan's to report)."""
    root = Path(config.dataset_dir) if config.dataset_dir else None
    if root is None or not root.is_dir():
        return None
    for folder in training_folders(root, config):
        for path in folder_images(folder.path):
            try:
                return path, _image_size(path)
            except Exception:  # noqa: BLE001 - PIL raises many types for bad files; try the next one
                continue
    return None


def folder_counts(config: TrainConfig, world_size: int = 1) -> DatasetCounts:
    """The counts before any image is opened (for the page), from the folders' image counts and repeats.

    The trainer's own (``TrainingDataset.counts``) can differ where an image turns out
    unreadable, or by a few batches per epoch when the images fall into several buckets.
    """

    def repeats(folder: str) -> list[int]:
        root = Path(folder) if folder else None
        if root is None or not root.is_dir():
            return []
        return [f.repeats for f in training_folders(root, config) for _ in range(f.image_count)]

    train = repeats(config.dataset_dir)
    chosen = held_out(len(train), config)
    kept = [count for position, count in enumerate(train) if position not in chosen]
    return dataset_counts(config, kept, repeats(config.reg_dir), len(chosen), world_size)
